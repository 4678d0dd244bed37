"""`broker check-config`: OK on good settings; every bad variable named at once; secrets never printed."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from broker.clock import SystemClock
from broker.signing.keyring import create_key
from broker.store.embedded import free_port
from tests.cli import CLIENT_SECRET, named_variables, production_env, run_broker
from tests.conftest import vault_entry, vault_key


@pytest.fixture
def vault() -> str:
    return vault_entry(vault_key("k1"))


def redis_password(url: str) -> str:
    password = urlsplit(url).password
    assert password, "the test Redis is password-protected, so a leak would show"
    return password


@pytest.mark.parametrize("issuer", ["https://auth.example.com", "http://[::1]:8080"])
def test_good_settings_pass(issuer: str, redis_url: str, keys_dir: Path, vault: str, tmp_path: Path) -> None:
    result = run_broker("check-config", env=production_env(redis_url, keys_dir, vault, ISSUER=issuer), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Configuration OK"
    output = result.stdout + result.stderr
    for secret in (CLIENT_SECRET, redis_password(redis_url), vault.partition(":")[2]):
        assert secret not in output


def test_without_a_redis_url_it_says_the_store_is_embedded(keys_dir: Path, vault: str, tmp_path: Path) -> None:
    env = production_env("", keys_dir, vault)
    result = run_broker("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "embedded" in result.stdout


def test_every_bad_variable_is_named_at_once(redis_url: str, keys_dir: Path, tmp_path: Path) -> None:
    short_key = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    unreachable = f"redis://:redis-pw-2b9c@127.0.0.1:{free_port()}/0"
    env = production_env(
        unreachable, tmp_path / "no-keys-here", f"old:{short_key}",
        ISSUER="http://auth.example.com",            # http on a public host: unsafe
        ACCESS_TOKEN_TTL="5",                        # out of range: does not parse
        TIKTOK_SCOPES="user.info.profile",           # lacks user.info.basic
        TIKTOK_API_URL="http://open.example.com",    # http on a public host
        TIKTOK_CLIENT_KEY="",                        # missing
    )
    result = run_broker("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert named_variables(result.stderr) == {
        "BROKER_ISSUER", "BROKER_ACCESS_TOKEN_TTL", "BROKER_TIKTOK_SCOPES", "BROKER_TIKTOK_API_URL",
        "BROKER_TIKTOK_CLIENT_KEY", "BROKER_VAULT_KEYS", "BROKER_KEYS_DIR", "BROKER_REDIS_URL",
    }, result.stderr
    output = result.stdout + result.stderr
    for secret in (short_key, "redis-pw-2b9c", CLIENT_SECRET):
        assert secret not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("redis_url_template", [
    "redis://:{pw}@127.0.0.1:{port}/0",          # unreachable
    "redis+cluster://:{pw}@cache.internal",       # malformed: no port
    "redis+sentinel://:{pw}@127.0.0.1:{port}",    # malformed: no service name
    "redis://:{pw}@127.0.0.1:not-a-port/0",       # malformed port
])
def test_redis_problems_name_the_variable_and_never_the_password(redis_url_template: str, keys_dir: Path,
                                                                 vault: str, tmp_path: Path) -> None:
    password = "pw-" + os.urandom(6).hex()
    url = redis_url_template.format(pw=password, port=free_port())
    result = run_broker("check-config", env=production_env(url, keys_dir, vault), cwd=tmp_path, timeout=20)
    assert result.returncode == 2
    assert named_variables(result.stderr) == {"BROKER_REDIS_URL"}, result.stderr
    assert password not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_vault_key_is_named_without_its_value(redis_url: str, keys_dir: Path, tmp_path: Path) -> None:
    good = vault_entry(vault_key("good"))
    for bad in (f"{good},broken-entry-no-colon", f"{good},{good}", good.replace("good", "k3") + "AA"):
        result = run_broker("check-config", env=production_env(redis_url, keys_dir, bad), cwd=tmp_path)
        assert result.returncode == 2, bad
        assert named_variables(result.stderr) == {"BROKER_VAULT_KEYS"}, result.stderr
        assert good.partition(":")[2] not in result.stdout + result.stderr


@pytest.mark.parametrize("make_dir", [False, True], ids=["missing", "empty"])
def test_a_missing_or_empty_keys_dir_is_reported(make_dir: bool, redis_url: str, vault: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys-nowhere"
    if make_dir:
        keys.mkdir()
    result = run_broker("check-config", env=production_env(redis_url, keys, vault), cwd=tmp_path)
    assert result.returncode == 2
    assert named_variables(result.stderr) == {"BROKER_KEYS_DIR"}, result.stderr
    assert str(keys) in result.stderr
    assert keys.exists() == make_dir  # checking creates nothing


def test_only_pending_keys_are_reported_as_no_signing_key(redis_url: str, vault: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    clock = SystemClock()
    create_key(keys, activate_at=clock.now() + 3600, clock=clock, jwks_max_age=300)
    result = run_broker("check-config", env=production_env(redis_url, keys, vault), cwd=tmp_path)
    assert result.returncode == 2
    assert named_variables(result.stderr) == {"BROKER_KEYS_DIR"}, result.stderr


def test_malformed_key_files_are_each_named(redis_url: str, vault: str, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    clock = SystemClock()
    first = create_key(keys, activate_at=clock.now() - 60, clock=clock, jwks_max_age=300)
    second = create_key(keys, activate_at=clock.now() - 30, clock=clock, jwks_max_age=300)
    original_pem = first.path.read_text()
    first.path.write_text("-----BEGIN PRIVATE KEY-----\nnot really a key\n-----END PRIVATE KEY-----\n")
    second.path.with_suffix(".json").write_text("{not json")
    result = run_broker("check-config", env=production_env(redis_url, keys, vault), cwd=tmp_path)
    assert result.returncode == 2
    assert first.path.name in result.stderr
    assert second.path.with_suffix(".json").name in result.stderr
    assert "not really a key" not in result.stderr and original_pem not in result.stderr
    assert "Traceback" not in result.stderr
