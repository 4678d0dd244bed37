"""The vault: AES-256-GCM with key ids, bound to the Redis key name, rotating keys."""

from __future__ import annotations

import pytest

from broker.store.vault import Vault, VaultError, new_vault_key_entry
from tests.conftest import vault_key


def test_round_trip_and_no_plaintext_in_the_blob() -> None:
    vault = Vault([vault_key("a")])
    blob = vault.seal(b"act.secret-token", bound_to="broker:{u:1}:tiktok")
    assert "secret-token" not in blob
    assert blob.startswith("v1.a.")
    assert vault.open(blob, bound_to="broker:{u:1}:tiktok") == b"act.secret-token"


def test_a_blob_moved_to_another_key_name_does_not_open() -> None:
    vault = Vault([vault_key()])
    blob = vault.seal(b"x", bound_to="broker:{u:alice}:tiktok")
    with pytest.raises(VaultError):
        vault.open(blob, bound_to="broker:{u:mallory}:tiktok")


def test_tampering_is_detected() -> None:
    vault = Vault([vault_key()])
    blob = vault.seal(b"payload", bound_to="k")
    flipped = blob[:-2] + ("A" if blob[-2] != "A" else "B") + blob[-1]
    with pytest.raises(VaultError):
        vault.open(flipped, bound_to="k")


def test_rotation_old_keys_decrypt_first_key_encrypts() -> None:
    old, new = vault_key("old"), vault_key("new")
    blob = Vault([old]).seal(b"payload", bound_to="k")
    rotated = Vault([new, old])
    assert rotated.open(blob, bound_to="k") == b"payload"
    assert rotated.needs_reseal(blob)
    assert not rotated.needs_reseal(rotated.seal(b"payload", bound_to="k"))
    with pytest.raises(VaultError):
        Vault([new]).open(blob, bound_to="k")


def test_new_key_entry_is_parseable() -> None:
    from broker.config import parse_vault_keys

    (key,) = parse_vault_keys(new_vault_key_entry("k9"))
    assert key.kid == "k9"
    assert len(key.key) == 32
