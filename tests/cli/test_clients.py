"""`broker clients new` prints an entry the registry accepts; a bad clients file fails check-config by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from broker.clients import load_clients
from broker.errors import ConfigError, InvalidClient
from tests.cli import broker_env, production_env, run_broker
from tests.conftest import vault_entry, vault_key


def test_a_confidential_client_entry_works_with_its_secret_shown_once(tmp_path: Path) -> None:
    result = run_broker("clients", "new", "--client-id", "billing", "--redirect-uri", "https://billing.example.com/cb",
                        "--audience", "billing-api", env=broker_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)
    secret = result.stderr.split("store it now): ")[1].strip()
    assert secret not in result.stdout and len(secret) >= 43
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [entry]}))
    registry = load_clients(path)
    assert registry.authenticate("billing", secret).audience == "billing-api"
    with pytest.raises(InvalidClient):
        registry.authenticate("billing", secret + "x")
    with pytest.raises(InvalidClient):
        registry.authenticate("billing", None)


def test_a_public_client_entry_has_no_secret(tmp_path: Path) -> None:
    result = run_broker("clients", "new", "--client-id", "spa", "--public", "--redirect-uri",
                        "http://127.0.0.1:3000/cb", env=broker_env(), cwd=tmp_path)
    entry = json.loads(result.stdout)
    assert "client_secret_sha256" not in entry and entry["token_endpoint_auth_method"] == "none"
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump({"clients": [entry]}))
    assert load_clients(path).authenticate("spa", None).client_id == "spa"


def test_a_mobile_app_entry_for_the_tiktok_sdk_exchange(tmp_path: Path) -> None:
    exchange = "urn:ietf:params:oauth:grant-type:token-exchange"
    args = ("clients", "new", "--client-id", "mobile", "--public", "--first-party", "--grant-type", exchange,
            "--grant-type", "refresh_token", "--tiktok-redirect-uri", "https://app.example.com/tiktok/cb",
            "--dpop-bound-access-tokens")
    result = run_broker(*args, env=broker_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [json.loads(result.stdout)]}))
    client = load_clients(path).authenticate("mobile", None)
    assert client.tiktok_redirect_uris == ("https://app.example.com/tiktok/cb",) and client.dpop_bound
    refused = run_broker(*[arg for arg in args if arg != "--first-party"], env=broker_env(), cwd=tmp_path)
    assert refused.returncode == 2 and "only a first_party client may use it" in refused.stderr


BAD_FILES = {
    "not a mapping": "- a\n- b\n",
    "plain secret": "clients:\n  - client_id: x\n    client_secret: hunter2\n",
    "http redirect": "clients:\n  - client_id: x\n    redirect_uris: [http://app.example.com/cb]\n",
    "duplicate": "clients:\n  - client_id: x\n  - client_id: x\n",
    "bad digest": "clients:\n  - client_id: x\n    client_secret_sha256: abc\n",
    "broken yaml": "clients: [\n",
}


@pytest.mark.parametrize("content", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_clients_files_are_named(tmp_path: Path, content: str) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_clients(path)
    assert all(problem.startswith(f"BROKER_CLIENTS_FILE: {path}") for problem in caught.value.problems)
    assert "hunter2" not in str(caught.value)


def test_check_config_reports_a_bad_clients_file(tmp_path: Path, redis_url: str, keys_dir: Path) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(BAD_FILES["plain secret"])
    env = production_env(redis_url, keys_dir, vault_entry(vault_key()), CLIENTS_FILE=str(path))
    result = run_broker("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "BROKER_CLIENTS_FILE" in result.stderr and "client_secret" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_clients_new_writes_the_app_fields_the_registry_reads(tmp_path: Path) -> None:
    result = run_broker("clients", "new", "--client-id", "crm", "--client-name", "Our CRM", "--first-party",
                        "--redirect-uri", "https://crm.example.com/cb", "--scope", "openid", "--scope", "account",
                        "--grant-type", "authorization_code", "--grant-type", "client_credentials",
                        "--post-logout-redirect-uri", "https://crm.example.com/bye",
                        "--backchannel-logout-uri", "https://crm.example.com/backchannel",
                        "--cors-origin", "https://crm.example.com", "--id-token-alg", "ES256", "--require-par",
                        env=broker_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [json.loads(result.stdout)]}))
    client = load_clients(path).get("crm")
    assert client is not None and client.first_party and client.require_par and client.name == "Our CRM"
    assert client.grant_types == ("authorization_code", "client_credentials") and client.id_token_alg == "ES256"
    assert client.backchannel_logout_uri == "https://crm.example.com/backchannel"
    assert client.allowed_cors_origins == ("https://crm.example.com",)


def test_clients_new_refuses_what_the_file_would_refuse_and_shows_no_secret(tmp_path: Path) -> None:
    result = run_broker("clients", "new", "--client-id", "spa", "--public", "--grant-type", "client_credentials",
                        "--scope", "account", env=broker_env(), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "client_credentials needs a confidential client" in result.stderr
    assert "only a first_party client may have it" in result.stderr
    assert "client_secret" not in result.stderr


def test_check_config_names_a_missing_id_token_key(tmp_path: Path, redis_url: str) -> None:
    from tests.support.keys import write_test_keys

    only_es256 = write_test_keys(tmp_path / "keys", alg="ES256")
    for rsa_file in [*only_es256.glob("*.pem"), *only_es256.glob("*.json")]:
        if '"RS256"' in (rsa_file.with_suffix(".json")).read_text():
            rsa_file.unlink()
    env = production_env(redis_url, only_es256, vault_entry(vault_key()))
    result = run_broker("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "no active RS256 key (ID tokens): run `broker keys new --alg RS256`" in result.stderr
