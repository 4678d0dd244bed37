"""JWKS (cacheable, ETag, 304), discovery, probes, and failing closed when Redis is away."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import httpx
import jwt
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from jwt import PyJWKSet

from broker.app import create_app
from broker.config import Secret, Settings
from broker.store.embedded import free_port


async def test_jwks_is_cacheable_with_etag_and_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/.well-known/jwks.json")
    assert first.status_code == 200
    assert first.headers["cache-control"].startswith("public, max-age=300")
    etag = first.headers["etag"]
    assert first.headers["access-control-allow-origin"] == "*"  # browser apps verify ID tokens too
    keys = PyJWKSet.from_dict(first.json())
    # The broker's own ES256 key first (access tokens), then the RS256 key of ID tokens.
    assert [key.algorithm_name for key in keys.keys] == ["ES256", "RS256"] and all(k.key_id for k in keys.keys)
    again = await client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = await client.get("/.well-known/jwks.json", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content


async def test_discovery_names_issuer_and_jwks(client: httpx.AsyncClient, base_settings: Settings) -> None:
    answer = await client.get("/.well-known/openid-configuration")
    document = answer.json()
    assert answer.headers["access-control-allow-origin"] == "*"
    assert document["issuer"] == base_settings.issuer
    assert document["jwks_uri"] == f"{base_settings.issuer}/.well-known/jwks.json"
    # OpenID Connect Discovery: RS256 MUST be listed; the broker signs ID tokens with RS256 unless a client asks ES256.
    assert document["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    assert document["end_session_endpoint"] == f"{base_settings.issuer}/logout"
    assert document["request_parameter_supported"] is False and document["request_uri_parameter_supported"] is False
    assert {"offline_access", "openid", "profile"} <= set(document["scopes_supported"])
    # RFC 8414 asks for the same metadata at its own well-known name.
    assert (await client.get("/.well-known/oauth-authorization-server")).json() == document


async def test_discovery_lists_the_native_app_grants_and_the_device_endpoint(client: httpx.AsyncClient,
                                                                             base_settings: Settings) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    AuthorizationServerMetadata(document).validate()  # Authlib's RFC 8414 checks
    assert document["device_authorization_endpoint"] == f"{base_settings.issuer}/oauth/device_authorization"
    assert {"urn:ietf:params:oauth:grant-type:token-exchange",
            "urn:ietf:params:oauth:grant-type:device_code"} <= set(document["grant_types_supported"])


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "signing_key": "ok"}


async def test_unknown_paths_and_methods_answer_json_errors(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = await client.post("/auth/verify")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


async def test_verify_without_credentials_is_401_with_login_hint(base_settings: Settings) -> None:
    # The in-process client's address is 127.0.0.1: a trusted gateway's X-Original-URL becomes return_to.
    app = create_app(base_settings.with_overrides(trusted_proxies=(ip_network("127.0.0.1/32"),)))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080") as gateway:
        response = await gateway.get("/auth/verify", headers={"X-Original-URL": "https://app.example.com/x"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["location"] == (
        "http://127.0.0.1:8080/login?return_to=https%3A%2F%2Fapp.example.com%2Fx")


async def test_verify_ignores_an_untrusted_callers_original_url(client: httpx.AsyncClient) -> None:
    response = await client.get("/auth/verify", headers={"X-Original-URL": "https://app.example.com/x"})
    assert response.status_code == 401
    assert response.headers["location"] == "http://127.0.0.1:8080/login"


async def test_verify_rejects_forged_and_garbage_bearers(client: httpx.AsyncClient) -> None:
    forged = jwt.encode({"sub": "x"}, "a-long-enough-hmac-secret-for-pyjwt-0123456789", algorithm="HS256")
    for token in (forged, "garbage", "a.b.c"):
        response = await client.get("/auth/verify", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.json()["error"] == "invalid_token"


async def test_redis_down_means_503_with_retry_after_never_500(base_settings: Settings) -> None:
    dead = base_settings.with_overrides(redis_url=Secret(f"redis://127.0.0.1:{free_port()}/0"))
    app = create_app(dead)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://127.0.0.1:8080") as http:
        http.cookies.set("broker_session", "A" * 22 + "." + "B" * 43)
        verify = await http.get("/auth/verify")
        assert verify.status_code == 503 and verify.headers["retry-after"]
        assert verify.json()["error"] == "temporarily_unavailable"
        login = await http.get("/login")
        assert login.status_code == 503 and login.headers["retry-after"]
        assert "text/html" in login.headers["content-type"]
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "unreachable"
        # The JWKS needs no Redis: downstream verification keeps working.
        assert (await http.get("/.well-known/jwks.json")).status_code == 200


async def test_automatic_rotation_gives_a_fresh_deployment_a_key(base_settings: Settings, tmp_path: Path) -> None:
    settings = base_settings.with_overrides(keys_dir=tmp_path / "empty-keys", key_rotation_period=86400)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080") as http:
        assert (await http.get("/readyz")).status_code == 200
        published = (await http.get("/.well-known/jwks.json")).json()["keys"]
        assert sorted(key["alg"] for key in published) == ["ES256", "RS256"]  # access tokens and ID tokens
    assert len(list((tmp_path / "empty-keys").glob("*.pem"))) == 2


async def test_readiness_needs_a_key_for_every_algorithm_it_signs_with(base_settings: Settings,
                                                                      tmp_path: Path) -> None:
    from tests.support.keys import write_test_keys

    only_rsa = write_test_keys(tmp_path / "rsa-only", alg="RS256")  # no ES256 key: access tokens cannot be signed
    app = create_app(base_settings.with_overrides(keys_dir=only_rsa))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080") as http:
        ready = await http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["signing_key"] == "no active key"
