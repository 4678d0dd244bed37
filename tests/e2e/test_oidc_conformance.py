"""OpenID conformance details, in one process with a frozen clock: failures after validation go back to the
app (a cancel at TikTok included), max_age and auth_time, prompt lists, ID token algorithms, response modes,
request objects refused, PAR, scopes, refresh with a new ID token, CORS and client_credentials."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
import redis

from broker.clients import secret_digest
from broker.config import Settings
from tests.support.apps import App, pkce
from tests.support.inprocess import ALICE, EMULATOR, InProcess, in_process

SECRET = "webapp-secret-0123456789-abcdefghijklmnop"
WEB = App("web", "https://web.example.com/cb", SECRET)  # first party, confidential, ES256 ID tokens
SPA = App("spa", "https://spa.example.com/cb")  # first party, public, RS256 (the default)
PAR_ONLY = App("par-only", "https://par.example.com/cb", SECRET)
JOBS = App("jobs", "", SECRET)
SPA_ORIGIN = "https://spa.example.com"


@pytest.fixture
async def stack(base_settings: Settings, tmp_path: Path) -> AsyncIterator[InProcess]:
    clients = tmp_path / "clients.yaml"
    clients.write_text(f"""
clients:
  - client_id: web
    first_party: true
    client_secret_sha256: {secret_digest(SECRET)}
    token_endpoint_auth_method: client_secret_post
    redirect_uris: ["{WEB.redirect_uri}"]
    scopes: [openid, profile, user.info.basic]
    id_token_signed_response_alg: ES256
  - client_id: spa
    first_party: true
    redirect_uris: ["{SPA.redirect_uri}"]
    scopes: [openid, profile]
    allowed_cors_origins: ["{SPA_ORIGIN}"]
  - client_id: par-only
    first_party: true
    client_secret_sha256: {secret_digest(SECRET)}
    redirect_uris: ["{PAR_ONLY.redirect_uri}"]
    require_pushed_authorization_requests: true
  - client_id: jobs
    client_secret_sha256: {secret_digest(SECRET)}
    grant_types: [client_credentials]
    scopes: [reports.read, reports.write]
    audience: https://reports.example.com
""")
    async with in_process(base_settings, clients_file=clients) as running:
        yield running


async def browse(stack: InProcess, url: str, *, tiktok: str = "allow") -> httpx.Response:
    """Follow redirects between the broker and the emulator like a browser; at TikTok's consent page answer
    `tiktok` (allow or deny). Stops at the app's redirect URI or at a page of the broker."""
    client = stack.broker if not url.startswith(EMULATOR) else stack.tiktok
    response = await client.get(url)
    for _ in range(10):
        if response.status_code == 200 and response.url.host == urlsplit(EMULATOR).hostname:
            request_id = re.search(r'name="request_id" value="([^"]+)"', response.text)
            assert request_id, response.text[:300]
            response = await stack.tiktok.post("/v2/auth/authorize/consent", data={
                "request_id": request_id.group(1), "user": ALICE, "scope": ["user.info.basic", "user.info.profile"],
                "action": tiktok})
            continue
        if not response.is_redirect:
            return response
        location = response.headers["location"]
        if location.startswith(EMULATOR):
            response = await stack.tiktok.get(location)
        elif location.startswith(stack.settings.issuer) or location.startswith("/"):
            response = await stack.broker.get(location)
        else:
            return response  # leaving for the app
    raise AssertionError("too many redirects")


def authorize_url(stack: InProcess, app: App, challenge: str = "", **params: str) -> str:
    query = {"client_id": app.client_id, "redirect_uri": app.redirect_uri, "response_type": "code",
             "scope": "openid", "state": "s-1", **params}
    if challenge:
        query.update(code_challenge=challenge, code_challenge_method="S256")
    return f"{stack.settings.issuer}/authorize?{urlencode(query)}"


def answer(response: httpx.Response) -> dict[str, str]:
    assert response.is_redirect, (response.status_code, response.text[:300])
    location = urlsplit(response.headers["location"])
    return {k: v[-1] for k, v in parse_qs(location.query or location.fragment).items()}


async def code_and_tokens(stack: InProcess, app: App, **params: str) -> dict[str, str]:
    verifier, challenge = pkce()
    reply = answer(await browse(stack, authorize_url(stack, app, challenge, **params)))
    form = {"grant_type": "authorization_code", "code": reply["code"], "redirect_uri": app.redirect_uri,
            "code_verifier": verifier, "client_id": app.client_id}
    if app.secret:
        form["client_secret"] = app.secret
    token = await stack.broker.post("/oauth/token", data=form)
    assert token.status_code == 200, token.text
    return dict(token.json())


def claims_of(token: str) -> dict[str, object]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


async def test_a_cancel_at_tiktok_and_a_failing_tiktok_end_at_the_app(stack: InProcess) -> None:
    _, challenge = pkce()
    cancelled = answer(await browse(stack, authorize_url(stack, SPA, challenge), tiktok="deny"))
    assert cancelled == {"error": "access_denied", "state": "s-1", "iss": stack.settings.issuer,
                         "error_description": "Signing in with TikTok did not complete."}
    stack.emulator.state.emulator.set_fault("token", "http_500")
    failed = answer(await browse(stack, authorize_url(stack, SPA, challenge)))
    assert failed["error"] == "temporarily_unavailable" and failed["state"] == "s-1"
    # A made-up error on a request that is not parked is a page, and reaches no app.
    forged = await stack.broker.get("/authorize/resume", params={"request_id": "nope", "error": "access_denied"})
    assert forged.status_code == 400 and "location" not in forged.headers


async def test_max_age_signs_in_again_and_auth_time_is_exact(stack: InProcess) -> None:
    first = await code_and_tokens(stack, SPA)
    signed_in = claims_of(first["id_token"])["auth_time"]
    assert signed_in == int(stack.clock.now())
    stack.clock.advance(120)
    fresh_enough = await code_and_tokens(stack, SPA, max_age="300")
    assert claims_of(fresh_enough["id_token"])["auth_time"] == signed_in  # no new sign-in
    calls = len(stack.emulator.state.emulator.calls)
    stale = await code_and_tokens(stack, SPA, max_age="60")
    assert len(stack.emulator.state.emulator.calls) > calls  # back to TikTok
    assert claims_of(stale["id_token"])["auth_time"] == int(stack.clock.now())


async def test_prompt_is_a_list_and_none_stands_alone(stack: InProcess) -> None:
    await stack.sign_in()
    _, challenge = pkce()
    assert "code" in answer(await browse(stack, authorize_url(stack, SPA, challenge, prompt="login consent")))
    alone = answer(await stack.broker.get(authorize_url(stack, SPA, challenge, prompt="none login")))
    assert alone["error"] == "invalid_request" and alone["state"] == "s-1"
    switch = await stack.broker.get(authorize_url(stack, SPA, challenge, prompt="select_account"))
    assert switch.headers["location"].startswith(EMULATOR)  # TikTok's page, where the account is chosen


async def test_id_tokens_are_rs256_unless_the_client_registered_es256(stack: InProcess) -> None:
    jwks = (await stack.broker.get("/.well-known/jwks.json")).json()
    keys = {key["kid"]: key for key in jwks["keys"]}
    spa, web = await code_and_tokens(stack, SPA), await code_and_tokens(stack, WEB)
    for tokens, alg, kty in ((spa, "RS256", "RSA"), (web, "ES256", "EC")):
        header = jwt.get_unverified_header(tokens["id_token"])
        assert header["alg"] == alg and keys[header["kid"]]["kty"] == kty
        key = jwt.PyJWK(keys[header["kid"]])
        jwt.decode(tokens["id_token"], key.key, algorithms=[alg], audience=claims_of(tokens["id_token"])["aud"],
                   options={"verify_exp": False, "verify_iat": False})
        assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "ES256"  # the broker's own


async def test_response_modes(stack: InProcess) -> None:
    await stack.sign_in()
    _verifier, challenge = pkce()
    fragment = await stack.broker.get(authorize_url(stack, SPA, challenge, response_mode="fragment"))
    assert "#code=" in fragment.headers["location"] and "?" not in fragment.headers["location"]
    posted = await stack.broker.get(authorize_url(stack, SPA, challenge, response_mode="form_post"))
    assert posted.status_code == 200
    assert f'action="{SPA.redirect_uri}"' in posted.text and 'name="code"' in posted.text
    assert 'name="iss"' in posted.text and 'name="state" value="s-1"' in posted.text
    assert "form-action https://spa.example.com" in posted.headers["content-security-policy"]
    bad = await stack.broker.get(authorize_url(stack, SPA, challenge, response_mode="web_message"))
    assert answer(bad)["error"] == "invalid_request"


async def test_request_objects_are_refused_as_the_spec_says(stack: InProcess) -> None:
    _, challenge = pkce()
    for name, code in (("request", "request_not_supported"), ("request_uri", "request_uri_not_supported")):
        response = await stack.broker.get(authorize_url(stack, SPA, challenge, **{name: "https://rp.example/r"}))
        assert answer(response)["error"] == code


async def test_pushed_requests_are_single_use_and_required_when_registered(stack: InProcess,
                                                                          redis_sync: redis.Redis) -> None:
    await stack.sign_in()
    _verifier, challenge = pkce()
    pushed = await stack.broker.post("/oauth/par", auth=(PAR_ONLY.client_id, SECRET), data={
        "response_type": "code", "redirect_uri": PAR_ONLY.redirect_uri, "scope": "openid", "state": "p-1",
        "code_challenge": challenge, "code_challenge_method": "S256"})
    assert pushed.status_code == 201, pushed.text
    request_uri = pushed.json()["request_uri"]
    assert pushed.json()["expires_in"] == 60
    assert 0 < max(redis_sync.ttl(key) for key in redis_sync.keys("broker:par:*")) <= 60
    # Another client presenting it (the request_uri crossed the browser) is refused and spends nothing.
    stolen = f"{stack.settings.issuer}/authorize?{urlencode({'client_id': 'spa', 'request_uri': request_uri})}"
    refused_here = await stack.broker.get(stolen)
    assert refused_here.status_code == 400 and "request_uri is unknown" in refused_here.text
    url = f"{stack.settings.issuer}/authorize?{urlencode({'client_id': 'par-only', 'request_uri': request_uri})}"
    reply = answer(await stack.broker.get(url))
    assert reply["state"] == "p-1" and "code" in reply
    spent = await stack.broker.get(url)
    assert spent.status_code == 400 and "invalid_request_uri" in spent.text
    direct = await stack.broker.get(authorize_url(stack, PAR_ONLY, challenge))
    assert answer(direct)["error"] == "invalid_request"  # this client must push
    refused = await stack.broker.post("/oauth/par", auth=(PAR_ONLY.client_id, SECRET),
                                      data={"response_type": "token", "redirect_uri": PAR_ONLY.redirect_uri})
    assert refused.status_code == 400 and refused.json()["error"] == "unsupported_response_type"
    anonymous = await stack.broker.post("/oauth/par", data={"response_type": "code"})
    assert anonymous.status_code == 401


async def test_unknown_scopes_are_left_out_and_offline_access_is_granted(stack: InProcess) -> None:
    tokens = await code_and_tokens(stack, SPA, scope="openid email offline_access profile")
    assert tokens["scope"].split()[:3] == ["openid", "offline_access", "profile"]
    assert "email" not in tokens["scope"] and tokens["refresh_token"]


async def test_a_refresh_answers_a_fresh_id_token_for_openid(stack: InProcess) -> None:
    tokens = await code_and_tokens(stack, WEB, scope="openid profile", nonce="n-1")
    first = claims_of(tokens["id_token"])
    stack.clock.advance(30)
    refreshed = await stack.broker.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": WEB.client_id,
        "client_secret": SECRET})
    assert refreshed.status_code == 200, refreshed.text
    again = claims_of(refreshed.json()["id_token"])
    assert (again["sub"], again["sid"], again["auth_time"], again["aud"]) == (
        first["sub"], first["sid"], first["auth_time"], first["aud"])
    assert again["iat"] == int(first["iat"]) + 30 and "nonce" not in again and again["name"] == first["name"]
    no_openid = await code_and_tokens(stack, WEB, scope="user.info.basic")
    plain = await stack.broker.post("/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": no_openid["refresh_token"], "client_id": WEB.client_id,
        "client_secret": SECRET})
    assert "id_token" not in plain.json() and "id_token" not in no_openid


async def test_cors_for_registered_origins_only(stack: InProcess) -> None:
    preflight = await stack.broker.options("/oauth/token", headers={
        "Origin": SPA_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    stranger = await stack.broker.options("/userinfo", headers={"Origin": "https://evil.example.com"})
    assert stranger.status_code == 204 and "access-control-allow-origin" not in stranger.headers
    tokens = await code_and_tokens(stack, SPA)
    info = await stack.broker.get("/userinfo", headers={"Origin": SPA_ORIGIN,
                                                        "Authorization": f"Bearer {tokens['access_token']}"})
    assert info.headers["access-control-allow-origin"] == SPA_ORIGIN
    # The web client registered no origin: a page of the SPA's origin may not read its token answers.
    verifier, challenge = pkce()
    reply = answer(await browse(stack, authorize_url(stack, WEB, challenge)))
    exchanged = await stack.broker.post("/oauth/token", headers={"Origin": SPA_ORIGIN}, data={
        "grant_type": "authorization_code", "code": reply["code"], "redirect_uri": WEB.redirect_uri,
        "code_verifier": verifier, "client_id": WEB.client_id, "client_secret": SECRET})
    assert exchanged.status_code == 200 and "access-control-allow-origin" not in exchanged.headers
    refused = await stack.broker.post("/oauth/token", headers={"Origin": SPA_ORIGIN}, data={"grant_type": "nope"})
    assert refused.headers["access-control-allow-origin"] == SPA_ORIGIN  # the SPA may read why it was refused


async def test_client_credentials_for_the_client_itself(stack: InProcess) -> None:
    issued = await stack.broker.post("/oauth/token", auth=(JOBS.client_id, SECRET),
                                     data={"grant_type": "client_credentials", "scope": "reports.read"})
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert "refresh_token" not in body and body["scope"] == "reports.read"
    claims = claims_of(body["access_token"])
    assert claims["sub"] == "jobs" and claims["aud"] == "https://reports.example.com"
    introspected = await stack.broker.post("/oauth/introspect", auth=(JOBS.client_id, SECRET),
                                           data={"token": body["access_token"]})
    assert introspected.json()["active"] is True
    bearer = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await stack.broker.get("/userinfo", headers=bearer)).status_code == 401  # no user behind it
    assert (await stack.broker.get("/auth/verify", headers=bearer)).status_code == 401
    await stack.broker.post("/oauth/revoke", auth=(JOBS.client_id, SECRET), data={"token": body["access_token"]})
    assert (await stack.broker.post("/oauth/introspect", auth=(JOBS.client_id, SECRET),
                                    data={"token": body["access_token"]})).json() == {"active": False}
    for auth, form in (((WEB.client_id, SECRET), {}), (None, {"client_id": "spa"})):
        refused = await stack.broker.post("/oauth/token", auth=auth,
                                          data={"grant_type": "client_credentials", **form})
        assert refused.status_code in (400, 401), refused.text
        assert refused.json()["error"] in ("unauthorized_client", "invalid_client")
    too_much = await stack.broker.post("/oauth/token", auth=(JOBS.client_id, SECRET),
                                       data={"grant_type": "client_credentials", "scope": "openid"})
    assert too_much.status_code == 400 and too_much.json()["error"] == "invalid_scope"


async def test_a_store_failure_after_validation_reaches_the_app(stack: InProcess,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from broker.errors import StoreUnavailable

    async def unreachable(*args: object) -> None:
        raise StoreUnavailable(log_detail="test: Redis away")

    monkeypatch.setattr(stack.app.state.services.oidc.store, "put_pending", unreachable)
    _, challenge = pkce()
    reply = answer(await stack.broker.get(authorize_url(stack, SPA, challenge)))  # no session: parks the request
    assert reply["error"] == "temporarily_unavailable" and reply["state"] == "s-1"
    assert reply["iss"] == stack.settings.issuer
