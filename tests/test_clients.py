"""The clients file: the fields apps are described with, their defaults (old files keep working), and refusals
that say which field is wrong and why."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from broker.clients import load_clients, secret_digest
from broker.errors import ConfigError

GATEWAY = "https://gateway.example.com"


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
}


@pytest.mark.parametrize("fields,explanation", REFUSED.values(), ids=REFUSED.keys())
def test_each_refused_field_is_explained(tmp_path: Path, fields: dict[str, object], explanation: str) -> None:
    with pytest.raises(ConfigError) as caught:
        registry(tmp_path, {"client_id": "app", "redirect_uris": ["https://a.example.com/cb"], **fields})
    assert any(explanation in problem and "(app)" in problem for problem in caught.value.problems), \
        caught.value.problems
