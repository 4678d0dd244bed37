"""`broker keys new|list|prune` on a real keys directory: files, modes, schedule, states, pruning."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from broker.clock import SystemClock
from broker.signing.keyfiles import parse_instant
from broker.signing.keyring import KeyRing, create_key
from tests.cli import broker_env, run_broker

CREATED = re.compile(r"^created (?P<kid>[A-Za-z0-9_-]{43}) \((?P<alg>\w+)\), signs from (?P<at>\S+)$")


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return tmp_path / "signing-keys"


def keys_cmd(tmp_path: Path, keys: Path, *args: str) -> tuple[int, str, str]:
    result = run_broker("keys", *args, env=broker_env(KEYS_DIR=str(keys)), cwd=tmp_path)
    return result.returncode, result.stdout, result.stderr


def new_key(tmp_path: Path, keys: Path, *args: str) -> tuple[str, dict[str, object]]:
    """One key of one algorithm (ES256 unless `--alg` says otherwise)."""
    code, out, err = keys_cmd(tmp_path, keys, "new", *(args if "--alg" in args else ("--alg", "ES256", *args)))
    assert code == 0, err
    match = CREATED.match(out.strip())
    assert match, out
    meta = json.loads((keys / f"{match['kid']}.json").read_text())
    assert meta["kid"] == match["kid"] and meta["alg"] == match["alg"] and meta["activate_at"] == match["at"]
    return match["kid"], meta


def states(tmp_path: Path, keys: Path) -> dict[str, str]:
    code, out, err = keys_cmd(tmp_path, keys, "list")
    assert code == 0, err
    return {line.split()[0]: line.split()[2] for line in out.splitlines() if line.strip()}


def ring(keys: Path) -> KeyRing:
    return KeyRing(keys, clock=SystemClock(), max_token_lifetime=300, jwks_max_age=300, rescan_interval=None)


def test_first_key_signs_at_once_and_the_second_is_published_but_pending(tmp_path: Path, keys: Path) -> None:
    before = SystemClock().now()
    first, meta = new_key(tmp_path, keys)
    pem = keys / f"{first}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert meta["alg"] == "ES256"
    assert isinstance(serialization.load_pem_private_key(pem.read_bytes(), None), ec.EllipticCurvePrivateKey)
    assert parse_instant(meta["activate_at"]) <= SystemClock().now()
    assert states(tmp_path, keys) == {first: "active"}
    assert ring(keys).signing_key().kid == first

    second, meta2 = new_key(tmp_path, keys)
    # Pre-published: signs only after every cached JWKS (max-age 300 s by default) has seen it.
    assert parse_instant(meta2["activate_at"]) >= before + 300
    assert states(tmp_path, keys) == {first: "active", second: "pending"}
    now = ring(keys)
    assert now.signing_key().kid == first
    assert now.verification_key(second) is not None
    assert {key["kid"] for key in json.loads(now.jwks().body)["keys"]} == {first, second}


def test_alg_and_activate_at(tmp_path: Path, keys: Path) -> None:
    first, _ = new_key(tmp_path, keys)
    kid, meta = new_key(tmp_path, keys, "--alg", "EdDSA", "--activate-at", "2030-01-01T02:00:00+02:00")
    assert meta["alg"] == "EdDSA" and meta["activate_at"] == "2030-01-01T00:00:00Z"
    key = serialization.load_pem_private_key((keys / f"{kid}.pem").read_bytes(), None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    later, meta3 = new_key(tmp_path, keys, "--activate-at", "2031-06-01T00:00:00Z")
    assert meta3["activate_at"] == "2031-06-01T00:00:00Z"
    assert states(tmp_path, keys) == {first: "active", kid: "pending", later: "pending"}


@pytest.mark.parametrize("when", ["2030-01-01T00:00:00", "2030-01-01", "next tuesday"])
def test_activate_at_needs_a_time_zone(tmp_path: Path, keys: Path, when: str) -> None:
    code, _, err = keys_cmd(tmp_path, keys, "new", "--activate-at", when)
    assert code == 2
    assert "--activate-at" in err and "Traceback" not in err
    assert not keys.exists() or not any(keys.iterdir())


def test_an_activation_before_the_newest_key_is_refused(tmp_path: Path, keys: Path) -> None:
    new_key(tmp_path, keys, "--activate-at", "2030-01-01T00:00:00Z")
    files = sorted(p.name for p in keys.iterdir())
    code, _, err = keys_cmd(tmp_path, keys, "new", "--activate-at", "2029-01-01T00:00:00Z")
    assert code == 2 and "activate_at" in err and "Traceback" not in err
    assert sorted(p.name for p in keys.iterdir()) == files


def test_prune_removes_only_expired_keys(tmp_path: Path, keys: Path) -> None:
    new_key(tmp_path, keys)
    new_key(tmp_path, keys)
    files = sorted(p.name for p in keys.iterdir())
    code, out, err = keys_cmd(tmp_path, keys, "prune")
    assert code == 0, err
    assert out.strip() == "nothing to prune"
    assert sorted(p.name for p in keys.iterdir()) == files

    # An old key retired long ago (well past token lifetime + JWKS max-age) is expired; prune deletes only it.
    old_dir = tmp_path / "old-keys"
    clock = SystemClock()
    old = create_key(old_dir, activate_at=clock.now() - 100_000, clock=clock, jwks_max_age=300)
    newer = create_key(old_dir, activate_at=clock.now() - 50_000, clock=clock, jwks_max_age=300)
    assert states(tmp_path, old_dir) == {old.kid: "expired", newer.kid: "active"}
    code, out, err = keys_cmd(tmp_path, old_dir, "prune")
    assert code == 0, err
    assert out.strip() == f"removed {old.kid}"
    assert sorted(p.name for p in old_dir.iterdir()) == [f"{newer.kid}.json", f"{newer.kid}.pem"]


def test_keys_default_to_a_keys_folder_in_the_working_directory(tmp_path: Path) -> None:
    result = run_broker("keys", "new", env=broker_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Without --alg: the broker's key, and the first key of each other algorithm it signs with (ID tokens).
    made = sorted(CREATED.match(line)["alg"] for line in result.stdout.splitlines())  # type: ignore[index]
    assert made == ["ES256", "RS256"]
    assert len(list((tmp_path / "keys").glob("*.pem"))) == 2
    again = run_broker("keys", "new", env=broker_env(), cwd=tmp_path)
    assert [CREATED.match(line)["alg"] for line in again.stdout.splitlines()] == ["ES256"]  # type: ignore[index]
