"""Key files: the on-disk format, permissions, thumbprint kids and every way a key directory can be broken."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import JWKRegistry

from broker.clock import FrozenClock
from broker.errors import ConfigError
from broker.signing import KeyRing, create_key, list_keys
from broker.signing.keyfiles import load_keys

START = 1_800_000_000.0


def _new(keys_dir: Path, alg: str = "ES256", clock: FrozenClock | None = None) -> str:
    return create_key(keys_dir, alg=alg, clock=clock or FrozenClock(START), jwks_max_age=300).kid


def _problems(keys_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_keys(keys_dir)
    return caught.value.problems


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "RS256"])
def test_new_key_files_format_mode_and_thumbprint(tmp_path: Path, alg: str) -> None:
    keys_dir = tmp_path / "nested" / "keys"  # created when missing
    info = create_key(keys_dir, alg=alg, clock=FrozenClock(START + 0.7), jwks_max_age=300)

    pem = keys_dir / f"{info.kid}.pem"
    assert info.path == pem
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    assert pem.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    meta = json.loads((keys_dir / f"{info.kid}.json").read_text())
    assert meta == {"kid": info.kid, "alg": alg, "created_at": "2027-01-15T08:00:00Z",
                    "activate_at": "2027-01-15T08:00:00Z"}
    assert info.activate_at == START  # first key: active at once (rounded down to the second)

    # The kid is the RFC 7638 thumbprint, as computed by an independent implementation.
    key = JWKRegistry.import_key(pem.read_bytes(), {"ES256": "EC", "EdDSA": "OKP", "RS256": "RSA"}[alg])
    assert key.thumbprint() == info.kid
    assert [k.kid for k in load_keys(keys_dir)] == [info.kid]


def test_new_key_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        kid = _new(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / f"{kid}.pem").st_mode) == 0o600


def test_unrelated_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# keys\n")
    (tmp_path / ".gitignore").write_text("*\n")
    (tmp_path / "notes.json").write_text("not json at all")
    (tmp_path / ".abc.pem.tmp").write_text("half a key")
    kid = _new(tmp_path)
    assert [s.kid for s in list_keys(tmp_path, clock=FrozenClock(START), max_token_lifetime=300,
                                     jwks_max_age=300)] == [kid]


def test_missing_directory_is_an_empty_ring(tmp_path: Path) -> None:
    assert load_keys(tmp_path / "absent") == []


def test_malformed_pem_names_the_file(tmp_path: Path) -> None:
    kid = _new(tmp_path)
    pem = tmp_path / f"{kid}.pem"
    pem.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    [problem] = _problems(tmp_path)
    assert str(pem) in problem and "PEM" in problem
    assert "bm90IGEga2V5" not in problem  # never echo key material


def test_encrypted_pem_is_rejected(tmp_path: Path) -> None:
    kid = _new(tmp_path)
    pem = tmp_path / f"{kid}.pem"
    key = serialization.load_pem_private_key(pem.read_bytes(), None)
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(b"pw")))
    [problem] = _problems(tmp_path)
    assert str(pem) in problem


def test_wrong_kid_in_metadata_names_the_file(tmp_path: Path) -> None:
    kid = _new(tmp_path)
    meta_path = tmp_path / f"{kid}.json"
    meta = json.loads(meta_path.read_text())
    meta["kid"] = "A" * 43
    meta_path.write_text(json.dumps(meta))
    [problem] = _problems(tmp_path)
    assert f"{kid}.json" in problem and "kid" in problem


def test_file_name_not_matching_the_key_is_rejected(tmp_path: Path) -> None:
    kid = _new(tmp_path)
    other = "B" * 43
    (tmp_path / f"{kid}.pem").rename(tmp_path / f"{other}.pem")
    meta = json.loads((tmp_path / f"{kid}.json").read_text())
    del meta["kid"]
    (tmp_path / f"{kid}.json").unlink()
    (tmp_path / f"{other}.json").write_text(json.dumps(meta))
    [problem] = _problems(tmp_path)
    assert f"{other}.pem" in problem and "thumbprint" in problem


def test_unreadable_metadata_json_names_the_file(tmp_path: Path) -> None:
    kid = _new(tmp_path)
    (tmp_path / f"{kid}.json").write_text("{not json")
    [problem] = _problems(tmp_path)
    assert f"{kid}.json" in problem


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_file_names_the_file(tmp_path: Path) -> None:
    kid = _new(tmp_path)
    (tmp_path / f"{kid}.pem").chmod(0)
    [problem] = _problems(tmp_path)
    assert f"{kid}.pem" in problem and "cannot read" in problem


@pytest.mark.parametrize("change", [{"alg": "RS256"}, {"alg": "HS256"}, {"activate_at": "tomorrow"},
                                    {"activate_at": "2027-01-15T08:00:00"}, {"activate_at": None}])
def test_bad_metadata_values_are_rejected(tmp_path: Path, change: dict[str, object]) -> None:
    kid = _new(tmp_path)
    meta_path = tmp_path / f"{kid}.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), **change}))
    [problem] = _problems(tmp_path)
    assert f"{kid}.json" in problem


def test_epoch_seconds_are_accepted_for_times(tmp_path: Path) -> None:
    kid = _new(tmp_path)
    meta_path = tmp_path / f"{kid}.json"
    meta_path.write_text(json.dumps({"alg": "ES256", "activate_at": START + 60}))
    [key] = load_keys(tmp_path)
    assert key.activate_at == START + 60 and key.created_at is None


def test_missing_metadata_and_orphan_metadata(tmp_path: Path) -> None:
    kid = _new(tmp_path)
    (tmp_path / f"{kid}.json").rename(tmp_path / "moved")
    [problem] = _problems(tmp_path)
    assert f"{kid}.pem" in problem and "missing" in problem
    (tmp_path / f"{kid}.pem").unlink()
    (tmp_path / "moved").rename(tmp_path / f"{kid}.json")
    [problem] = _problems(tmp_path)
    assert f"{kid}.json" in problem


def _write_foreign(keys_dir: Path, private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
                   alg: str) -> Path:
    from broker.signing.jwks import public_jwk, thumbprint

    kid = thumbprint(public_jwk(private_key.public_key()))
    pem = keys_dir / f"{kid}.pem"
    pem.write_bytes(private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    pem.chmod(0o600)
    (keys_dir / f"{kid}.json").write_text(json.dumps({"alg": alg, "activate_at": START}))
    return pem


def test_small_rsa_key_is_rejected(tmp_path: Path) -> None:
    pem = _write_foreign(tmp_path, rsa.generate_private_key(65537, 1024), "RS256")
    [problem] = _problems(tmp_path)
    assert str(pem) in problem and "2048" in problem


def test_other_curves_are_rejected(tmp_path: Path) -> None:
    private_key = ec.generate_private_key(ec.SECP384R1())
    kid = "C" * 43
    (tmp_path / f"{kid}.pem").write_bytes(private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / f"{kid}.json").write_text(json.dumps({"alg": "ES256", "activate_at": START}))
    [problem] = _problems(tmp_path)
    assert f"{kid}.pem" in problem and "P-256" in problem


def test_all_problems_are_reported_together_and_ring_refuses_to_load(tmp_path: Path) -> None:
    first, second = _new(tmp_path), _new(tmp_path, clock=FrozenClock(START + 1))
    (tmp_path / f"{first}.json").write_text("[]")
    (tmp_path / f"{second}.pem").write_text("junk")
    with pytest.raises(ConfigError) as caught:
        KeyRing(tmp_path, clock=FrozenClock(START), max_token_lifetime=300, jwks_max_age=300)
    assert len(caught.value.problems) == 2


def test_signing_key_repr_hides_key_material(tmp_path: Path) -> None:
    _new(tmp_path)
    [key] = load_keys(tmp_path)
    text = repr(key)
    assert key.kid in text and "private" not in text.lower() and "'d'" not in text
