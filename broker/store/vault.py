"""Sealing of TikTok tokens at rest: AES-256-GCM, key id in the blob, the Redis key name as associated data."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from broker.config import VaultKey
from broker.errors import BrokerError

VERSION = "v1"
NONCE_BYTES = 12


class VaultError(BrokerError):
    """A sealed blob could not be opened: wrong key ring, tampering, or a blob moved to another key name."""

    default_description = "Stored credentials could not be read."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_vault_key_entry(kid: str | None = None) -> str:
    """A fresh `kid:key` entry for BROKER_VAULT_KEYS."""
    return f"{kid or _b64(os.urandom(4))}:{_b64(os.urandom(32))}"


class Vault:
    """Seals with the first key, opens with any: add a key at the front to rotate, then `broker vault rotate`."""

    def __init__(self, keys: Sequence[VaultKey]) -> None:
        if not keys:
            raise ValueError("the vault needs at least one key")
        self._primary = keys[0]
        self._ciphers = {key.kid: AESGCM(key.key) for key in keys}

    @property
    def primary_kid(self) -> str:
        return self._primary.kid

    def seal(self, plaintext: bytes, *, bound_to: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._primary.kid].encrypt(nonce, plaintext, self._aad(bound_to))
        return f"{VERSION}.{self._primary.kid}.{_b64(nonce + sealed)}"

    def open(self, blob: str, *, bound_to: str) -> bytes:
        version, _, rest = blob.partition(".")
        kid, _, payload = rest.partition(".")
        cipher = self._ciphers.get(kid)
        if version != VERSION or cipher is None or not payload:
            raise VaultError(log_detail=f"vault: unknown blob version or key id {kid!r}")
        try:
            raw = _unb64(payload)
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(bound_to))
        except (InvalidTag, ValueError) as exc:
            raise VaultError(log_detail="vault: authentication failed") from exc

    def needs_reseal(self, blob: str) -> bool:
        return blob.split(".", 2)[1:2] != [self._primary.kid]

    @staticmethod
    def _aad(bound_to: str) -> bytes:
        return f"{VERSION}|{bound_to}".encode()
