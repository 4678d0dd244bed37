"""Consent and connected apps in a real headless Chromium: a person allows a third-party app on the broker's
consent page, finds it under Connected apps on /account, and revokes it; the app's tokens die at once, it gets
a back-channel logout token, and `app.disconnected` is emitted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import redis

from broker.clients import secret_digest
from broker.config import Settings
from tests.e2e.conftest import Stack, live_stack, write_clients
from tests.support.apps import App, authorization_url, exchange, pkce
from tests.support.backchannel import LogoutReceiver, logout_receiver
from tests.support.chromium import CHROMIUM_ARGS, chromium_path

playwright = pytest.importorskip("playwright.sync_api")

THIRD = App("photos", "https://photos.example.com/cb", "photos-secret-0123456789-abcdefghijklmnop")


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as running:
        yield running


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path, receiver: LogoutReceiver) -> Iterator[Stack]:
    clients = write_clients(tmp_path, f"""
clients:
  - client_id: {THIRD.client_id}
    client_name: Photo Frame
    client_secret_sha256: {secret_digest(str(THIRD.secret))}
    redirect_uris: ["{THIRD.redirect_uri}"]
    scopes: [openid, profile, user.info.basic]
    backchannel_logout_uri: {receiver.url}
""")
    with live_stack(base_settings.with_overrides(clients_file=clients)) as running:
        yield running


def test_allow_an_app_then_revoke_it_from_the_account_page(stack: Stack, receiver: LogoutReceiver,
                                                           redis_sync: redis.Redis) -> None:
    url = stack.broker.url
    verifier, challenge = pkce()
    landed: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_context().new_page()
        # The app's site is not on this machine: the browser's arrival there is caught and recorded.
        page.route("https://photos.example.com/**",
                   lambda route: (landed.append(route.request.url), route.fulfill(status=200, body="back at the app")))
        page.goto(authorization_url(url, THIRD, challenge, scope="openid profile user.info.basic"))
        if page.url.startswith(stack.emulator.url):  # signing in at TikTok first
            page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{url}/authorize/resume**")
        assert page.get_by_role("heading", name="Allow Photo Frame?").is_visible()
        assert "user.info.basic" in page.inner_text("body")
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url("https://photos.example.com/**")
        code = parse_qs(urlsplit(landed[-1]).query)["code"][0]
        tokens = exchange(url, THIRD, code, verifier).json()
        assert httpx.get(f"{url}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).is_success

        page.goto(f"{url}/account")
        apps = page.get_by_role("table", name="Apps you allowed to use your sign-in")
        row = apps.get_by_role("row").filter(has_text="Photo Frame")
        assert row.count() == 1 and "user.info.basic" in row.inner_text()
        row.get_by_role("button", name="Revoke Photo Frame").click()
        page.wait_for_url(f"{url}/account")
        assert page.get_by_text("No other app may use your sign-in.").is_visible()
        assert page.get_by_role("link", name="Delete my account").is_visible()  # still signed in
        browser.close()

    refreshed = httpx.post(f"{url}/oauth/token", auth=THIRD.auth,
                           data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert httpx.get(f"{url}/userinfo", headers=bearer).status_code == 401
    logout = jwt.decode(receiver.wait_for(1)[0], options={"verify_signature": False})
    id_token = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert logout["sid"] == id_token["sid"] and logout["sub"] == id_token["sub"] and logout["aud"] == "photos"
    events = [json.loads(fields["data"]) for _, fields in redis_sync.xrange("broker:{events}")
              if fields["type"] == "app.disconnected"]
    assert events == [{"client_id": "photos", "sessions_ended": 1}]
    assert not [key for key in redis_sync.keys("*") if redis_sync.type(key) == "hash" and key.endswith(":consents")
                and redis_sync.hlen(key)]  # the consent is gone: the next authorization asks again
