"""The clients file: the fields apps are described with, their defaults (old files keep working), and refusals
that say which field is wrong and why."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from broker.clients import load_clients, secret_digest
from broker.errors import ConfigError

GATEWAY = "https://gateway.example.com"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def registry(tmp_path: Path, *entries: dict[str, object], gateway: str | None = GATEWAY):  # type: ignore[no-untyped-def]
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump({"clients": list(entries)}))
    return load_clients(path, gateway_audience=gateway)


def test_an_old_entry_gets_the_defaults(tmp_path: Path) -> None:
    client = registry(tmp_path, {"client_id": "old", "redirect_uris": ["https://old.example.com/cb"]}).get("old")
    assert client is not None
    assert client.token_audience == "old"  # its own id: never the broker's audience
    assert client.name == "old" and not client.first_party and not client.require_par
    assert client.grant_types == ("authorization_code", "refresh_token")
    assert client.id_token_alg == "RS256" and client.scopes == ("openid",)
    assert client.post_logout_redirect_uris == () and client.backchannel_logout_uri is None
    assert client.allowed_cors_origins == ()


def test_every_new_field_is_read(tmp_path: Path) -> None:
    client = registry(tmp_path, {
        "client_id": "web", "client_name": "Web App", "first_party": True,
        "client_secret_sha256": secret_digest("s" * 40), "audience": GATEWAY,
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "redirect_uris": ["https://web.example.com/cb"], "scopes": ["openid", "account", "video.list"],
        "post_logout_redirect_uris": ["https://web.example.com/bye"],
        "backchannel_logout_uri": "https://web.example.com/backchannel",
        "allowed_cors_origins": ["https://Web.example.com/"], "id_token_signed_response_alg": "ES256",
        "require_pushed_authorization_requests": True}).get("web")
    assert client is not None and client.first_party and client.require_par and client.name == "Web App"
    assert client.may_use("client_credentials") and client.id_token_alg == "ES256"
    assert client.allowed_cors_origins == ("https://web.example.com",)
    assert client.token_audience == GATEWAY  # a first-party app may receive tokens the gateway accepts


REFUSED = {
    "account scope for a third party": ({"scopes": ["openid", "account"]}, "scopes: 'account' lets an app"),
    "client_credentials without a secret": ({"grant_types": ["client_credentials"]},
                                            "client_credentials needs a confidential client"),
    "unknown grant": ({"grant_types": ["password"]}, "grant_types[0]: unknown grant type"),
    "http back-channel": ({"backchannel_logout_uri": "http://rp.example.com/bc"}, "must use https"),
    "origin with a path": ({"allowed_cors_origins": ["https://a.example.com/app"]}, "must be an origin only"),
    "id token alg": ({"id_token_signed_response_alg": "HS256"}, "must be one of RS256, ES256"),
    "logout redirect with fragment": ({"post_logout_redirect_uris": ["https://a.example.com/#x"]},
                                      "must be absolute and have no fragment"),
    "not a boolean": ({"first_party": "yes"}, "first_party: must be true or false"),
    "gateway audience": ({"audience": GATEWAY}, "only a first_party client may receive tokens for it"),
    "long name": ({"client_name": "x" * 101}, "client_name: must be a printable string"),
    "SDK exchange for a confidential client": (
        {"grant_types": [EXCHANGE], "first_party": True, "client_secret_sha256": secret_digest("s" * 40),
         "tiktok_redirect_uris": ["https://a.example.com/tiktok"]}, "register the app as a public client"),
    "SDK exchange for a third party": ({"grant_types": [EXCHANGE], "tiktok_redirect_uris": [
        "https://a.example.com/tiktok"]}, "only a first_party client may use it"),
    "SDK exchange without TikTok redirect URIs": ({"grant_types": [EXCHANGE], "first_party": True},
                                                  "needs the redirect URIs registered at TikTok"),
    "TikTok redirect URI over http": ({"grant_types": [EXCHANGE], "first_party": True, "tiktok_redirect_uris": [
        "http://a.example.com/tiktok"]}, "tiktok_redirect_uris[0]: must be an https URL"),
    "TikTok redirect URI with a query": ({"grant_types": [EXCHANGE], "first_party": True, "tiktok_redirect_uris": [
        "https://a.example.com/tiktok?x=1"]}, "no query, fragment or credentials"),
    "TikTok redirect URIs without the grant": ({"tiktok_redirect_uris": ["https://a.example.com/tiktok"]},
                                               "only the urn:ietf:params:oauth:grant-type:token-exchange grant"),
    "DPoP flag not a boolean": ({"dpop_bound_access_tokens": "true"}, "dpop_bound_access_tokens: must be true"),
}


@pytest.mark.parametrize("fields,explanation", REFUSED.values(), ids=REFUSED.keys())
def test_each_refused_field_is_explained(tmp_path: Path, fields: dict[str, object], explanation: str) -> None:
    with pytest.raises(ConfigError) as caught:
        registry(tmp_path, {"client_id": "app", "redirect_uris": ["https://a.example.com/cb"], **fields})
    assert any(explanation in problem and "(app)" in problem for problem in caught.value.problems), \
        caught.value.problems


def test_native_app_fields_are_read(tmp_path: Path) -> None:
    clients = registry(tmp_path, {
        "client_id": "mobile", "first_party": True, "grant_types": [EXCHANGE, "refresh_token", DEVICE],
        "tiktok_redirect_uris": ["https://app.example.com/tiktok/callback"], "dpop_bound_access_tokens": True},
        {"client_id": "tv", "grant_types": [DEVICE]})
    mobile, tv = clients.get("mobile"), clients.get("tv")
    assert mobile is not None and tv is not None
    assert mobile.tiktok_redirect_uris == ("https://app.example.com/tiktok/callback",) and mobile.dpop_bound
    assert mobile.may_use(EXCHANGE) and mobile.may_use(DEVICE) and not mobile.may_use("authorization_code")
    assert tv.may_use(DEVICE) and not tv.dpop_bound and tv.tiktok_redirect_uris == ()


def test_a_native_apps_loopback_redirect_matches_any_port(tmp_path: Path) -> None:
    """RFC 8252 section 7.3: the port of a loopback IP redirect URI is the operating system's choice."""
    clients = registry(tmp_path, {"client_id": "cli", "redirect_uris": ["http://127.0.0.1/cb", "http://[::1]:8000/cb",
                                                                         "http://localhost/cb"]},
                       {"client_id": "web", "client_secret_sha256": secret_digest("s" * 40),
                        "redirect_uris": ["http://127.0.0.1:9000/cb"]})
    cli, web = clients.get("cli"), clients.get("web")
    assert cli is not None and web is not None
    for uri in ("http://127.0.0.1/cb", "http://127.0.0.1:53124/cb", "http://[::1]:1/cb", "http://[::1]/cb"):
        assert cli.accepts_redirect_uri(uri), uri
    for uri in ("http://127.0.0.1:53124/cb/", "http://127.0.0.1:53124/other", "https://127.0.0.1:5/cb",
                "http://127.0.0.2:53124/cb", "http://evil@127.0.0.1:53124/cb", "http://127.0.0.1:99999/cb",
                "http://127.0.0.1:53124/cb?x=1", "http://127.0.0.1:53124/cb#x", "http://localhost:5000/cb"):
        assert not cli.accepts_redirect_uri(uri), uri  # localhost is a name: matched exactly (RFC 8252 8.3)
    assert cli.accepts_redirect_uri("http://localhost/cb")
    # A confidential client (a web server on a developer's machine) keeps the exact match.
    assert web.accepts_redirect_uri("http://127.0.0.1:9000/cb")
    assert not web.accepts_redirect_uri("http://127.0.0.1:9001/cb")


def test_an_audience_naming_another_client_is_refused_in_either_order(tmp_path: Path) -> None:
    """Service `billing` checks aud == "billing" (its default audience): another app's tokens must never carry it."""
    billing = {"client_id": "billing", "redirect_uris": ["https://billing.example.com/cb"]}
    intruder = {"client_id": "intruder", "redirect_uris": ["https://i.example.com/cb"], "audience": "billing"}
    for entries in ((billing, intruder), (intruder, billing)):
        with pytest.raises(ConfigError) as caught:
            registry(tmp_path, *entries)
        assert any("(intruder).audience: 'billing' is another client's client_id" in problem
                   for problem in caught.value.problems), caught.value.problems
    # Naming itself, or sharing an API audience with another client, stays allowed.
    shared = registry(tmp_path, {**billing, "audience": "billing"},
                      {"client_id": "web", "redirect_uris": ["https://w.example.com/cb"], "audience": "api"},
                      {"client_id": "cli", "redirect_uris": ["https://c.example.com/cb"], "audience": "api"})
    assert sorted(shared.audiences()) == ["api", "billing"]
