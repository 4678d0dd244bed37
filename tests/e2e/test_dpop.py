"""DPoP (RFC 9449) over real HTTP: proofs signed with joserfc at the token endpoint bind the tokens (a public
client's refresh token too); /userinfo, /tiktok/... and /auth/verify take a bound token only with a fresh proof
from its key; nonces when the broker requires them."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from broker.clients import secret_digest
from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack
from tests.support.apps import App, authorization_url, pkce, reply_params
from tests.support.browser import Browser
from tests.support.dpop import DPoPKey

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
APP_LINK = "https://photos.example.com/tiktok/callback"
SECRET = "webapp-secret-0123456789-abcdefghijklmnopq"
SPA = App("spa", "https://spa.example.com/cb")
STRICT = App("strict", "https://strict.example.com/cb")
WEBAPP = App("webapp", "https://webapp.example.com/cb", SECRET)


def clients_file(path: Path) -> Path:
    path.write_text(f"""
clients:
  - client_id: spa
    first_party: true
    redirect_uris: ["{SPA.redirect_uri}"]
    scopes: [openid, profile, user.info.basic]
  - client_id: strict
    first_party: true
    dpop_bound_access_tokens: true
    redirect_uris: ["{STRICT.redirect_uri}"]
  - client_id: webapp
    first_party: true
    client_secret_sha256: {secret_digest(SECRET)}
    redirect_uris: ["{WEBAPP.redirect_uri}"]
  - client_id: mobile
    first_party: true
    grant_types: ["{EXCHANGE}", refresh_token]
    tiktok_redirect_uris: ["{APP_LINK}"]
    scopes: [openid, user.info.basic]
    audience: http://gateway.test
""")
    return path


def dpop_stack(base: Settings, tmp_path: Path, **overrides: Any) -> Iterator[Stack]:
    with live_stack(base.with_overrides(
        clients_file=clients_file(tmp_path / "clients.yaml"), gateway_audience="http://gateway.test",
        trusted_proxies=(ip_network("127.0.0.1/32"),), **overrides), sdk_redirect_uris=(APP_LINK,)) as running:
        yield running


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    yield from dpop_stack(base_settings, tmp_path)


def code_for(stack: Stack, app: App) -> tuple[str, str]:
    """A signed-in browser's authorization code for `app`, with its PKCE verifier."""
    browser = Browser()
    verifier, challenge = pkce()
    page = browser.get(authorization_url(stack.broker.url, app, challenge, scope="openid"))
    if page.status_code == 200:
        page = browser.consent(page, user=ALICE)
    browser.close()
    return reply_params(page)["code"], verifier


def token_request(stack: Stack, form: dict[str, str], key: DPoPKey | None, *, app: App | None = None,
                  nonce: str | None = None) -> httpx.Response:
    url = f"{stack.broker.url}/oauth/token"
    headers = {"DPoP": key.proof("POST", url, nonce=nonce)} if key else {}
    if app is not None and app.secret is None:
        form = {"client_id": app.client_id, **form}
    return httpx.post(url, data=form, headers=headers, auth=app.auth if app else None)


def exchange(stack: Stack, app: App, key: DPoPKey | None, **extra: str) -> httpx.Response:
    code, verifier = code_for(stack, app)
    return token_request(stack, {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                                 "redirect_uri": app.redirect_uri, **extra}, key, app=app)


def refresh(stack: Stack, app: App, refresh_token: str, key: DPoPKey | None) -> httpx.Response:
    return token_request(stack, {"grant_type": "refresh_token", "refresh_token": refresh_token}, key, app=app)


def userinfo(stack: Stack, token: str, proof: str | None, scheme: str = "DPoP") -> httpx.Response:
    headers = {"Authorization": f"{scheme} {token}", **({"DPoP": proof} if proof else {})}
    return httpx.get(f"{stack.broker.url}/userinfo", headers=headers)


def refused(answer: httpx.Response, status: int, error: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error, answer.text


def test_a_proof_at_the_token_endpoint_binds_the_tokens_and_userinfo_wants_its_key(stack: Stack) -> None:
    key = DPoPKey()
    answer = exchange(stack, SPA, key)
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["token_type"] == "DPoP"
    access = tokens["access_token"]
    assert jwt.decode(access, options={"verify_signature": False})["cnf"] == {"jkt": key.jkt}
    url = f"{stack.broker.url}/userinfo"
    assert userinfo(stack, access, key.proof("GET", url, access_token=access)).json()["sub"]

    as_bearer = userinfo(stack, access, None, scheme="Bearer")
    refused(as_bearer, 401, "invalid_dpop_proof")  # a stolen bound token is no bearer token
    assert as_bearer.headers["www-authenticate"].startswith("DPoP ")
    refused(userinfo(stack, access, None), 401, "invalid_dpop_proof")
    refused(userinfo(stack, access, key.proof("POST", url, access_token=access)), 401, "invalid_dpop_proof")
    refused(userinfo(stack, access, key.proof("GET", f"{stack.broker.url}/account", access_token=access)), 401,
            "invalid_dpop_proof")
    refused(userinfo(stack, access, key.proof("GET", url, access_token=access, iat=time.time() - 300)), 401,
            "invalid_dpop_proof")
    refused(userinfo(stack, access, key.proof("GET", url, access_token="another token")), 401, "invalid_dpop_proof")
    refused(userinfo(stack, access, DPoPKey().proof("GET", url, access_token=access)), 401, "invalid_dpop_proof")
    once = key.proof("GET", url, access_token=access)
    assert userinfo(stack, access, once).status_code == 200
    replayed = userinfo(stack, access, once)
    refused(replayed, 401, "invalid_dpop_proof")
    assert "already used" in replayed.json()["error_description"]


def test_a_public_clients_refresh_token_is_bound_to_the_same_key(stack: Stack) -> None:
    key, other = DPoPKey(), DPoPKey("EdDSA")
    tokens = exchange(stack, SPA, key).json()
    refused(refresh(stack, SPA, tokens["refresh_token"], other), 400, "invalid_grant")
    refused(refresh(stack, SPA, tokens["refresh_token"], None), 400, "invalid_grant")
    rotated = refresh(stack, SPA, tokens["refresh_token"], key)  # the refusals spent nothing
    assert rotated.status_code == 200 and rotated.json()["token_type"] == "DPoP", rotated.text
    assert jwt.decode(rotated.json()["access_token"], options={"verify_signature": False})["cnf"]["jkt"] == key.jkt


def test_a_confidential_clients_refresh_token_is_not_bound_but_its_access_tokens_are(stack: Stack) -> None:
    key, other = DPoPKey(), DPoPKey("RS256")
    tokens = exchange(stack, WEBAPP, key).json()
    rotated = refresh(stack, WEBAPP, tokens["refresh_token"], other)  # its secret sender-constrains it
    assert rotated.status_code == 200, rotated.text
    assert jwt.decode(rotated.json()["access_token"], options={"verify_signature": False})["cnf"]["jkt"] == other.jkt
    plain = refresh(stack, WEBAPP, rotated.json()["refresh_token"], None)
    assert plain.json()["token_type"] == "Bearer" and "cnf" not in jwt.decode(
        plain.json()["access_token"], options={"verify_signature": False})


def test_a_client_registered_for_dpop_must_send_a_proof(stack: Stack) -> None:
    code, verifier = code_for(stack, STRICT)
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": STRICT.redirect_uri}
    refused(token_request(stack, form, None, app=STRICT), 400, "invalid_dpop_proof")
    refused(token_request(stack, form, DPoPKey(), app=STRICT, nonce="made-up"), 400, "use_dpop_nonce")
    assert token_request(stack, form, DPoPKey(), app=STRICT).json()["token_type"] == "DPoP"  # the code was kept


def test_the_gateway_and_the_proxy_check_the_proof_of_an_apps_bound_token(stack: Stack) -> None:
    key = DPoPKey()
    verifier = secrets.token_urlsafe(32)
    code = httpx.post(f"{stack.emulator.url}/_emulator/sdk/authorize", json={
        "redirect_uri": APP_LINK, "code_challenge": hashlib.sha256(verifier.encode()).hexdigest()}).json()["code"]
    answer = token_request(stack, {"grant_type": EXCHANGE, "client_id": "mobile", "subject_token": code,
                                   "subject_token_type": "urn:tiktok-broker:token-type:tiktok-authorization-code",
                                   "code_verifier": verifier, "redirect_uri": APP_LINK,
                                   "scope": "openid user.info.basic"}, key)
    assert answer.status_code == 200 and answer.json()["token_type"] == "DPoP", answer.text
    access = answer.json()["access_token"]

    original = "https://photos.example.com/api/albums?page=2"
    def verify(proof: str | None, scheme: str = "DPoP") -> httpx.Response:
        headers = {"Authorization": f"{scheme} {access}", "X-Original-URL": original,
                   **({"DPoP": proof} if proof else {})}
        return httpx.get(f"{stack.broker.url}/auth/verify", headers=headers)

    proof = key.proof("GET", "https://photos.example.com/api/albums", access_token=access)
    allowed = verify(proof)
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["x-auth-request-open-id"] == ALICE
    refused(verify(proof), 401, "invalid_dpop_proof")  # replayed
    refused(verify(None, "Bearer"), 401, "invalid_dpop_proof")
    refused(verify(key.proof("GET", "https://photos.example.com/elsewhere", access_token=access)), 401,
            "invalid_dpop_proof")
    refused(verify(key.proof("POST", "https://photos.example.com/api/albums", access_token=access)), 401,
            "invalid_dpop_proof")

    proxy = f"{stack.broker.url}/tiktok/v2/user/info/"
    proxied = httpx.get(proxy, params={"fields": "open_id"}, headers={
        "Authorization": f"DPoP {access}", "DPoP": key.proof("GET", proxy, access_token=access)})
    assert proxied.status_code == 200 and proxied.json()["data"]["user"]["open_id"] == ALICE
    assert httpx.get(proxy, params={"fields": "open_id"}, headers={
        "Authorization": f"Bearer {access}"}).status_code == 401


def test_discovery_lists_the_proof_algorithms(stack: Stack) -> None:
    document = httpx.get(f"{stack.broker.url}/.well-known/openid-configuration").json()
    assert {"ES256", "RS256", "EdDSA"} <= set(document["dpop_signing_alg_values_supported"])


@pytest.fixture
def nonce_stack(base_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    yield from dpop_stack(base_settings, tmp_path, dpop_require_nonce=True)


def test_with_nonces_required_a_proof_without_one_gets_a_fresh_nonce(nonce_stack: Stack) -> None:
    stack, key = nonce_stack, DPoPKey()
    code, verifier = code_for(stack, SPA)
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": SPA.redirect_uri}
    first = token_request(stack, form, key, app=SPA)
    refused(first, 400, "use_dpop_nonce")
    nonce = first.headers["dpop-nonce"]
    answer = token_request(stack, form, key, app=SPA, nonce=nonce)
    assert answer.status_code == 200 and answer.headers["dpop-nonce"], answer.text
    access, url = answer.json()["access_token"], f"{stack.broker.url}/userinfo"
    without = userinfo(stack, access, key.proof("GET", url, access_token=access))
    refused(without, 401, "use_dpop_nonce")
    assert 'error="use_dpop_nonce"' in without.headers["www-authenticate"] and without.headers["dpop-nonce"]
    assert userinfo(stack, access, key.proof("GET", url, access_token=access, nonce=nonce)).status_code == 200
