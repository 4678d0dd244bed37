"""The broker as an OpenID Provider, driven by a real OIDC client library (Authlib) over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from broker.clients import secret_digest
from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack, write_clients
from tests.support.browser import Browser

SECRET = "webapp-secret-0123456789-abcdefghijklmnopq"
WEBAPP_CB = "https://app.example.com/cb"
SPA_CB = "https://spa.example.com/cb"


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    clients = write_clients(tmp_path, f"""
clients:
  - client_id: webapp
    client_secret_sha256: {secret_digest(SECRET)}
    token_endpoint_auth_method: client_secret_basic
    redirect_uris: ["{WEBAPP_CB}"]
    scopes: [openid, profile]
    audience: https://api.example.com
  - client_id: spa
    redirect_uris: ["{SPA_CB}"]
    scopes: [openid, profile]
""")
    with live_stack(base_settings.with_overrides(clients_file=clients)) as running:
        yield running


def sign_in_until_client(stack: Stack, browser: Browser, url: str) -> str:
    """Follow the authorization request like a browser until it leaves for the client; return that URL."""
    response = browser.get(url)
    if response.url.host == "127.0.0.1" and response.url.port == stack.emulator.port and response.status_code == 200:
        response = browser.consent(response, user=ALICE, scopes=("user.info.basic", "user.info.profile"))
    if browser.is_app_consent(response):  # a third-party app: the broker asks the user first
        response = browser.app_consent(response)
    assert response.is_redirect, (response.status_code, response.text[:300])
    return response.headers["location"]


def validate_id_token(stack: Stack, id_token: str, *, nonce: str, client_id: str, access_token: str) -> dict:  # type: ignore[type-arg]
    """What an OIDC client checks (OIDC Core 3.1.3.7), with joserfc as an independent implementation."""
    jwks = KeySet.import_key_set(httpx.get(f"{stack.broker.url}/.well-known/jwks.json").json())
    token = jose_jwt.decode(id_token, jwks, algorithms=["RS256"])  # OpenID's default algorithm
    claims = token.claims
    assert claims["iss"] == stack.settings.issuer
    assert claims["aud"] == client_id
    if claims.get("nonce") != nonce:
        raise ValueError("nonce mismatch")
    digest = hashlib.sha256(access_token.encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    return dict(claims)


async def discovered(stack: Stack) -> dict:  # type: ignore[type-arg]
    async with httpx.AsyncClient() as http:
        return dict((await http.get(f"{stack.broker.url}/.well-known/openid-configuration")).json())


async def test_authlib_logs_in_validates_refreshes_and_reads_userinfo(stack: Stack) -> None:
    metadata = await discovered(stack)
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "authorization_code" in metadata["grant_types_supported"]
    browser = Browser()
    async with AsyncOAuth2Client("webapp", SECRET, scope="openid profile", redirect_uri=WEBAPP_CB,
                                 code_challenge_method="S256",
                                 token_endpoint_auth_method="client_secret_basic") as client:
        verifier, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        url, state = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier,
                                                     nonce=nonce)
        back = sign_in_until_client(stack, browser, url)
        assert back.startswith(WEBAPP_CB) and parse_qs(urlsplit(back).query)["iss"] == [stack.settings.issuer]
        token = await client.fetch_token(metadata["token_endpoint"], authorization_response=back,
                                         code_verifier=verifier, state=state)
        claims = validate_id_token(stack, token["id_token"], nonce=nonce, client_id="webapp",
                                   access_token=token["access_token"])
        assert claims["name"] == "Mara Example" and claims["tiktok_open_id"] == ALICE
        assert claims["auth_time"] <= claims["iat"]
        with pytest.raises(ValueError, match="nonce"):
            validate_id_token(stack, token["id_token"], nonce="another", client_id="webapp",
                              access_token=token["access_token"])
        jwks = (await client.get(f"{stack.broker.url}/.well-known/jwks.json")).json()
        access = jose_jwt.decode(token["access_token"], KeySet.import_key_set(jwks))
        assert access.claims["aud"] == "https://api.example.com" and access.claims["client_id"] == "webapp"

        info = (await client.get(metadata["userinfo_endpoint"])).json()
        assert info == {"sub": claims["sub"], "name": "Mara Example", "picture": claims["picture"],
                        "preferred_username": claims["preferred_username"], "tiktok_open_id": ALICE}

        refreshed = await client.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert (await client.get(metadata["userinfo_endpoint"])).status_code == 200

        # A second authorization needs no TikTok round trip: the broker session is there.
        tiktok_calls = len(stack.tiktok.calls)
        url, _ = client.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)
        assert browser.get(url, follow=False).headers["location"].startswith(WEBAPP_CB)
        assert len(stack.tiktok.calls) == tiktok_calls
    browser.close()


def authorize_url(stack: Stack, **params: str) -> str:
    return str(httpx.URL(f"{stack.broker.url}/authorize", params={"response_type": "code", "scope": "openid",
                                                                   **params}))


def test_wrong_redirect_uri_and_unknown_client_stay_on_an_error_page(stack: Stack) -> None:
    for params in ({"client_id": "webapp", "redirect_uri": "https://evil.example.com/cb"},
                   {"client_id": "nobody", "redirect_uri": WEBAPP_CB}):
        response = httpx.get(authorize_url(stack, **params))
        assert response.status_code == 400 and "location" not in response.headers
        assert "text/html" in response.headers["content-type"]


def test_errors_go_back_to_a_valid_redirect_uri_with_state(stack: Stack) -> None:
    cases = {"unsupported_response_type": {"response_type": "token"},
             "invalid_scope": {"scope": "openid user.info.profile"},  # known, not registered
             "invalid_request": {"code_challenge": "x" * 43, "code_challenge_method": "plain"}}
    for error, extra in cases.items():
        response = httpx.get(authorize_url(stack, client_id="webapp", redirect_uri=WEBAPP_CB, state="s1", **extra))
        assert response.status_code == 302
        query = parse_qs(urlsplit(response.headers["location"]).query)
        assert query["error"] == [error] and query["state"] == ["s1"]


def test_a_public_client_must_use_pkce(stack: Stack) -> None:
    response = httpx.get(authorize_url(stack, client_id="spa", redirect_uri=SPA_CB, state="x"))
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and "PKCE" in query["error_description"][0]


def code_for(stack: Stack, browser: Browser, client_id: str, redirect_uri: str, verifier: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    back = sign_in_until_client(stack, browser, authorize_url(stack, client_id=client_id, redirect_uri=redirect_uri,
                                                              code_challenge=challenge, code_challenge_method="S256"))
    return parse_qs(urlsplit(back).query)["code"][0]


def exchange(stack: Stack, **form: str) -> httpx.Response:
    auth = ("webapp", SECRET) if form.pop("as_webapp", "") else None
    return httpx.post(f"{stack.broker.url}/oauth/token", data={"grant_type": "authorization_code", **form}, auth=auth)


def test_code_replay_revokes_the_tokens_it_produced(stack: Stack) -> None:
    browser = Browser()
    verifier = secrets.token_urlsafe(48)
    code = code_for(stack, browser, "spa", SPA_CB, verifier)
    first = exchange(stack, client_id="spa", code=code, redirect_uri=SPA_CB, code_verifier=verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    assert httpx.get(f"{stack.broker.url}/userinfo", headers={"Authorization": f"Bearer {access}"}).status_code == 200
    replay = exchange(stack, client_id="spa", code=code, redirect_uri=SPA_CB, code_verifier=verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert httpx.get(f"{stack.broker.url}/userinfo", headers={"Authorization": f"Bearer {access}"}).status_code == 401
    refresh = httpx.post(f"{stack.broker.url}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"], "client_id": "spa"})
    assert refresh.status_code == 400
    browser.close()


@pytest.mark.parametrize("case", ["wrong verifier", "no verifier", "other client", "wrong secret",
                                  "wrong redirect_uri"])
def test_code_exchange_refusals(stack: Stack, case: str) -> None:
    browser = Browser()
    verifier = secrets.token_urlsafe(48)
    code = code_for(stack, browser, "spa", SPA_CB, verifier)
    form = {"client_id": "spa", "code": code, "redirect_uri": SPA_CB, "code_verifier": verifier}
    if case == "wrong verifier":
        form["code_verifier"] = secrets.token_urlsafe(48)
    elif case == "no verifier":
        del form["code_verifier"]
    elif case == "other client":
        del form["client_id"]
        form["as_webapp"] = "1"
    elif case == "wrong redirect_uri":
        form["redirect_uri"] = WEBAPP_CB
    if case == "wrong secret":
        response = httpx.post(f"{stack.broker.url}/oauth/token", auth=("webapp", "wrong"),
                              data={"grant_type": "authorization_code", "code": code, "redirect_uri": SPA_CB})
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    else:
        response = exchange(stack, **form)
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    browser.close()
