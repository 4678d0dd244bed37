"""The TikTok SDK code exchange (RFC 8693) over real HTTP: the emulator hands out an SDK-style code (as TikTok's
iOS and Android SDKs get it), the mobile app trades it at the broker, and the broker exchanges it at TikTok with its
own key and secret. Authlib plays the app; joserfc checks the ID token."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis
from authlib.integrations.httpx_client import AsyncOAuth2Client
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack, write_clients
from tests.support.chromium import CHROMIUM_ARGS, chromium_path
from tests.support.user_journey import sign_in

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
CODE_TYPE = "urn:tiktok-broker:token-type:tiktok-authorization-code"
APP_LINK = "https://photos.example.com/tiktok/callback"
OTHER_LINK = "https://photos.example.com/tiktok/other"
FOREIGN_LINK = "https://elsewhere.example.com/tiktok"


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    clients = write_clients(tmp_path, f"""
clients:
  - client_id: photos-ios
    client_name: Photo Frame
    first_party: true
    grant_types: ["{EXCHANGE}", refresh_token]
    tiktok_redirect_uris: ["{APP_LINK}", "{OTHER_LINK}"]
    scopes: [openid, profile, user.info.basic]
  - client_id: photos-web
    first_party: true
    redirect_uris: ["https://photos.example.com/cb"]
    scopes: [openid]
""")
    with live_stack(base_settings.with_overrides(clients_file=clients),
                    sdk_redirect_uris=(APP_LINK, OTHER_LINK, FOREIGN_LINK)) as running:
        yield running


def sdk_sign_in(stack: Stack, *, redirect_uri: str = APP_LINK,
                scope: str = "user.info.basic,user.info.profile") -> tuple[str, str]:
    """What the SDK hands the app after the person taps Authorize in TikTok: (code, the SDK's verifier)."""
    verifier = secrets.token_urlsafe(32)
    issued = httpx.post(f"{stack.emulator.url}/_emulator/sdk/authorize", json={
        "redirect_uri": redirect_uri, "code_challenge": hashlib.sha256(verifier.encode()).hexdigest(),
        "scope": scope, "user": ALICE})
    assert issued.status_code == 201, issued.text
    return issued.json()["code"], verifier


def exchange(stack: Stack, code: str, verifier: str, **overrides: str | None) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": EXCHANGE, "client_id": "photos-ios", "subject_token": code, "subject_token_type": CODE_TYPE,
        "code_verifier": verifier, "redirect_uri": APP_LINK, "scope": "openid profile user.info.basic",
        "device_name": "Mara's iPhone", **overrides}
    return httpx.post(f"{stack.broker.url}/oauth/token", data={k: v for k, v in form.items() if v is not None},
                      headers={"User-Agent": "PhotoFrame/2.1 CFNetwork/1490 Darwin/23.2.0"})


def code_exchanges(stack: Stack) -> int:
    return sum(1 for call in stack.tiktok.calls
               if call["endpoint"] == "token" and call["grant_type"] == "authorization_code")


def refused(answer: httpx.Response, error: str, status: int = 400) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["error"] == error and body["error_description"], body
    return body


async def test_the_app_gets_the_brokers_tokens_for_the_same_user(stack: Stack, redis_sync: redis.Redis) -> None:
    web_user = jwt.decode(sign_in(stack, ALICE).client.post(
        f"{stack.broker.url}/oauth/token", headers={"Origin": stack.broker.url},
        data={"grant_type": "urn:tiktok-broker:params:oauth:grant-type:session-cookie"}).json()["access_token"],
        options={"verify_signature": False})["sub"]
    code, verifier = sdk_sign_in(stack)
    async with AsyncOAuth2Client("photos-ios", token_endpoint_auth_method="none") as app:
        token = await app.fetch_token(f"{stack.broker.url}/oauth/token", grant_type=EXCHANGE, subject_token=code,
                                      subject_token_type=CODE_TYPE, code_verifier=verifier, redirect_uri=APP_LINK,
                                      scope="openid profile user.info.basic", device_name="Mara's iPhone")
        userinfo = (await app.get(f"{stack.broker.url}/userinfo")).json()
        proxied = await app.get(f"{stack.broker.url}/tiktok/v2/user/info/", params={"fields": "open_id"})
        jwks = KeySet.import_key_set((await app.get(f"{stack.broker.url}/.well-known/jwks.json")).json())
        refreshed = await app.refresh_token(f"{stack.broker.url}/oauth/token", refresh_token=token["refresh_token"])
    assert refreshed["id_token"] and refreshed["refresh_token"] != token["refresh_token"]
    assert token["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert token["token_type"] == "Bearer" and token["scope"] == "openid profile user.info.basic"
    assert token["refresh_token"].startswith("brt1.") and token["expires_in"] > 0
    tiktok_tokens = [t.token for t in stack.tiktok.issued_tokens_for(ALICE)]
    assert not any(value in str(token) for value in tiktok_tokens)  # TikTok's tokens never reach the app

    id_token = jose_jwt.decode(token["id_token"], jwks, algorithms=["RS256"]).claims
    access = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert id_token["sub"] == access["sub"] == web_user  # the same user record, found by open_id
    assert id_token["aud"] == "photos-ios" and id_token["sid"] == access["sid"] and id_token["name"] == "Mara Example"
    assert access["client_id"] == "photos-ios" and access["tiktok_open_id"] == ALICE
    assert userinfo == {"sub": web_user, "name": "Mara Example", "tiktok_open_id": ALICE,
                        "picture": userinfo["picture"], "preferred_username": "mara.example"}
    assert proxied.json()["data"]["user"]["open_id"] == ALICE  # the broker attaches the sealed TikTok token

    sealed = redis_sync.get(f"broker:{{u:{web_user}}}:tiktok")
    assert sealed and not any(value in sealed for value in tiktok_tokens)
    app_sessions = [redis_sync.hgetall(key) for key in redis_sync.scan_iter(f"broker:{{u:{web_user}}}:s:*")
                    if redis_sync.hget(key, "kind") == "app"]
    assert [(s["client_id"], s["user_agent"]) for s in app_sessions] == [("photos-ios", "Mara's iPhone")]


def test_a_code_is_exchanged_once_and_a_replay_never_reaches_tiktok(stack: Stack) -> None:
    code, verifier = sdk_sign_in(stack)
    assert exchange(stack, code, verifier).status_code == 200
    assert code_exchanges(stack) == 1
    refused(exchange(stack, code, verifier), "invalid_grant")
    assert code_exchanges(stack) == 1


def test_a_wrong_verifier_is_invalid_grant_with_tikToks_log_id_kept_out(stack: Stack, caplog: Any) -> None:
    code, _ = sdk_sign_in(stack)
    body = refused(exchange(stack, code, secrets.token_urlsafe(32)), "invalid_grant")
    assert code_exchanges(stack) == 1  # TikTok refused it ("Code verifier or code challenge is invalid.")
    assert "log_id" not in body and "2026" not in body["error_description"]
    assert any("log_id=" in record.getMessage() for record in caplog.records)  # the operator has it


def test_another_of_the_apps_redirect_uris_is_invalid_grant(stack: Stack) -> None:
    code, verifier = sdk_sign_in(stack)  # issued for APP_LINK
    refused(exchange(stack, code, verifier, redirect_uri=OTHER_LINK), "invalid_grant")
    assert code_exchanges(stack) == 1  # TikTok's answer: the redirect_uri does not match


@pytest.mark.parametrize("overrides,error", [
    ({"redirect_uri": FOREIGN_LINK}, "unauthorized_client"),  # not one of the client's tiktok_redirect_uris
    ({"client_id": "photos-web"}, "unauthorized_client"),  # a client without the grant
    ({"client_id": "nobody"}, "invalid_client"),
    ({"subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}, "invalid_request"),
    ({"code_verifier": None}, "invalid_request"),
    ({"code_verifier": "short"}, "invalid_request"),
    ({"actor_token": "x", "actor_token_type": "urn:ietf:params:oauth:token-type:jwt"}, "invalid_request"),
    ({"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, "invalid_request"),
    ({"audience": "https://someone-else.example.com"}, "invalid_target"),
    ({"scope": "openid user.info.profile"}, "invalid_scope"),  # a TikTok scope the client is not registered for
], ids=["foreign redirect", "no grant", "unknown client", "subject type", "no verifier", "bad verifier", "actor",
        "requested type", "audience", "scope"])
def test_refusals_before_tiktok_is_called(stack: Stack, overrides: dict[str, str | None], error: str) -> None:
    code, verifier = sdk_sign_in(stack)
    refused(exchange(stack, code, verifier, **overrides), error, 401 if error == "invalid_client" else 400)
    assert code_exchanges(stack) == 0
    assert exchange(stack, code, verifier).status_code == 200  # nothing was spent


def test_a_repeated_parameter_is_invalid_request(stack: Stack) -> None:
    code, verifier = sdk_sign_in(stack)
    body = "&".join([f"grant_type={EXCHANGE}", "client_id=photos-ios", f"subject_token={code}",
                     f"subject_token={code}", f"subject_token_type={CODE_TYPE}", f"code_verifier={verifier}",
                     f"redirect_uri={APP_LINK}"])
    answer = httpx.post(f"{stack.broker.url}/oauth/token", content=body,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    refused(answer, "invalid_request")
    assert code_exchanges(stack) == 0


def test_tiktok_unavailable_leaves_the_code_usable(stack: Stack) -> None:
    code, verifier = sdk_sign_in(stack)
    stack.tiktok.set_fault("token", "http_500", count=1)
    assert exchange(stack, code, verifier).status_code == 503
    assert exchange(stack, code, verifier).status_code == 200  # the app may try again


def test_the_account_page_shows_the_app_and_ends_it(stack: Stack) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_context(user_agent="Laptop browser").new_page()
        page.goto(f"{stack.broker.url}/account")
        if page.url.startswith(stack.emulator.url):
            page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{stack.broker.url}/account")
        token = exchange(stack, *sdk_sign_in(stack)).json()
        page.reload()
        rows = page.get_by_role("table", name="Active sessions").get_by_role("row")
        app_row = rows.filter(has_text="Photo Frame (Mara's iPhone)")
        assert app_row.count() == 1 and rows.filter(has_text="Photo Frame").count() == 1  # one row, family folded in
        app_row.get_by_role("button", name="End").click()
        page.wait_for_url(f"{stack.broker.url}/account")
        assert page.get_by_role("row").filter(has_text="Photo Frame").count() == 0
        assert page.get_by_role("row").filter(has_text="(this browser)").count() == 1  # the browser stays signed in
        browser.close()
    refreshed = httpx.post(f"{stack.broker.url}/oauth/token", data={
        "grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": "photos-ios"})
    refused(refreshed, "invalid_grant")
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx.get(f"{stack.broker.url}/userinfo", headers=bearer).status_code == 401


def test_the_apps_own_logout_ends_its_session(stack: Stack, redis_sync: redis.Redis) -> None:
    token = exchange(stack, *sdk_sign_in(stack)).json()
    sub = jwt.decode(token["access_token"], options={"verify_signature": False})["sub"]
    assert len(redis_sync.zrange(f"broker:{{u:{sub}}}:sessions", 0, -1)) == 2  # the app session and its family
    ended = httpx.post(f"{stack.broker.url}/logout", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert ended.status_code == 200 and ended.json()["ended"] == 2, ended.text
    assert redis_sync.zrange(f"broker:{{u:{sub}}}:sessions", 0, -1) == []
