"""Settings: every problem reported at once with its variable's name, secrets never shown, unsafe prod refused."""

from __future__ import annotations

import pytest

from broker.config import Secret, load_settings, production_problems
from broker.errors import ConfigError

GOOD_VAULT = "k1:" + "A" * 43


def test_defaults_load_from_an_empty_environment() -> None:
    settings = load_settings({})
    assert settings.issuer == "http://127.0.0.1:8080"
    assert settings.redirect_uri == "http://127.0.0.1:8080/callback"
    assert settings.tiktok_scopes == ("user.info.basic",)
    assert settings.access_token_ttl == 300


def test_every_problem_is_reported_together_with_its_name() -> None:
    env = {
        "BROKER_ISSUER": "not a url",
        "BROKER_ACCESS_TOKEN_TTL": "forever",
        "BROKER_VAULT_KEYS": "nokey",
        "BROKER_TIKTOK_SCOPES": "user.info.profile",
        "BROKER_JWKS_MAX_AGE": "-1",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    text = "\n".join(caught.value.problems)
    for name in ("BROKER_ISSUER", "BROKER_ACCESS_TOKEN_TTL", "BROKER_VAULT_KEYS", "BROKER_TIKTOK_SCOPES",
                 "BROKER_JWKS_MAX_AGE"):
        assert name in text
    assert len(caught.value.problems) == 5


def test_lists_are_comma_separated() -> None:
    settings = load_settings({"BROKER_TIKTOK_SCOPES": "user.info.basic, user.info.profile",
                              "BROKER_ALLOWED_RETURN_URLS": "https://a.example.com,https://b.example.com/x"})
    assert settings.tiktok_scopes == ("user.info.basic", "user.info.profile")
    assert settings.allowed_return_urls == ("https://a.example.com", "https://b.example.com/x")


def test_vault_keys_parse_and_the_first_encrypts() -> None:
    settings = load_settings({"BROKER_VAULT_KEYS": f"{GOOD_VAULT},k2:{'B' * 43}"})
    assert [key.kid for key in settings.vault_keys] == ["k1", "k2"]
    assert all(len(key.key) == 32 for key in settings.vault_keys)


@pytest.mark.parametrize("value", ["k1:short", "k1:" + "A" * 43 + ",k1:" + "B" * 43, ":abc", "k1:!!!"])
def test_bad_vault_keys_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="BROKER_VAULT_KEYS"):
        load_settings({"BROKER_VAULT_KEYS": value})


def test_secrets_never_appear_in_reprs_or_errors() -> None:
    settings = load_settings({"BROKER_TIKTOK_CLIENT_SECRET": "s3cr3t-value", "BROKER_VAULT_KEYS": GOOD_VAULT,
                              "BROKER_REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0"})
    shown = repr(settings) + str(settings)
    assert "s3cr3t-value" not in shown
    assert "hunter2" not in shown
    assert "A" * 43 not in shown
    assert settings.tiktok_client_secret.reveal() == "s3cr3t-value"
    assert repr(Secret("x")) == "Secret('**********')"


def test_production_refuses_http_issuer_and_missing_secrets() -> None:
    problems = production_problems(load_settings({"BROKER_ISSUER": "http://auth.example.com"}))
    text = "\n".join(problems)
    assert "BROKER_ISSUER" in text
    assert "BROKER_VAULT_KEYS" in text
    assert "BROKER_TIKTOK_CLIENT_KEY" in text
    assert "BROKER_TIKTOK_CLIENT_SECRET" in text


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8080", "http://localhost:9000", "http://[::1]:8080",
                                    "https://auth.example.com"])
def test_loopback_http_and_https_issuers_are_accepted(issuer: str) -> None:
    settings = load_settings({"BROKER_ISSUER": issuer, "BROKER_VAULT_KEYS": GOOD_VAULT,
                              "BROKER_TIKTOK_CLIENT_KEY": "k", "BROKER_TIKTOK_CLIENT_SECRET": "s"})
    assert production_problems(settings) == []


def test_hardening_settings_parse_and_are_bounded() -> None:
    settings = load_settings({"BROKER_LOCAL_CACHE_TRUST_MS": "250", "BROKER_MAX_FAMILIES_PER_SESSION": "4",
                              "BROKER_MAX_FAMILIES_PER_USER": "8", "BROKER_METRICS_TOKEN": "t" * 32})
    assert (settings.local_cache_trust_ms, settings.max_families_per_session, settings.max_families_per_user) == \
        (250, 4, 8)
    assert settings.metrics_token.reveal() == "t" * 32 and "t" * 32 not in repr(settings)
    with pytest.raises(ConfigError) as caught:
        load_settings({"BROKER_LOCAL_CACHE_TRUST_MS": "10", "BROKER_MAX_FAMILIES_PER_SESSION": "9",
                       "BROKER_MAX_FAMILIES_PER_USER": "8", "BROKER_METRICS_TOKEN": "short"})
    text = "\n".join(caught.value.problems)
    for name in ("BROKER_LOCAL_CACHE_TRUST_MS", "BROKER_MAX_FAMILIES_PER_SESSION", "BROKER_METRICS_TOKEN"):
        assert name in text


def test_a_proxy_path_the_broker_has_no_scope_table_for_must_declare_its_scopes() -> None:
    declared = load_settings({"BROKER_TIKTOK_PROXY_PATHS":
                              "/v2/user/info/, /v2/research/video/query/=research.data.basic+video.list, /v2/x/="})
    assert declared.tiktok_proxy_paths == ("/v2/user/info/", "/v2/research/video/query/=research.data.basic+video.list",
                                           "/v2/x/=")
    for value, named in (("/v2/research/video/query/", "write /v2/research/video/query/=SCOPE"),
                         ("/v2/x/=Video List", "'Video List'"), ("/v2/x/=a++b", "''"),
                         ("/v2/user/info/, /v2/user/info/=video.list", "/v2/user/info/ appears more than once"),
                         ("/v2/./video/list/=", "no '.' or '..' segment"),
                         ("/v2/video/list/.=", "got '/v2/video/list/.'"),
                         ("/v2/x/ =video.list", "got '/v2/x/ '"), ("/v2/%2e%2e/x/=", "got '/v2/%2e%2e/x/'")):
        with pytest.raises(ConfigError) as refused:
            load_settings({"BROKER_TIKTOK_PROXY_PATHS": value})
        assert "BROKER_TIKTOK_PROXY_PATHS" in str(refused.value) and named in str(refused.value), value


def test_the_default_proxy_paths_are_the_ones_the_proxy_knows_the_scopes_of() -> None:
    from broker.config import KNOWN_PROXY_PATHS
    from broker.flows.posting_rules import POSTING_PATHS
    from broker.flows.tiktok_api import USER_INFO, VIDEO_PATHS

    assert set(KNOWN_PROXY_PATHS) == {USER_INFO, *VIDEO_PATHS, *POSTING_PATHS}
    assert load_settings({}).tiktok_proxy_paths == KNOWN_PROXY_PATHS
