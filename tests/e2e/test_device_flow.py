"""The device authorization grant (RFC 8628) over real HTTP: a TV asks for a code and polls with Authlib; a person
types the code at /device in headless Chromium, signs in with TikTok there and allows the app."""

from __future__ import annotations

import re
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack
from tests.support.browser import CSRF_TOKEN, Browser
from tests.support.chromium import CHROMIUM_ARGS, chromium_path
from tests.support.user_journey import sign_in

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE = re.compile(r"^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")


def clients_file(path: Path) -> Path:
    path.write_text(f"""
clients:
  - client_id: tv
    client_name: Living Room TV
    grant_types: ["{DEVICE_GRANT}", refresh_token]
    scopes: [openid, profile, user.info.basic]
  - client_id: console
    client_name: Game Console
    first_party: true
    grant_types: ["{DEVICE_GRANT}"]
    scopes: [openid, account]
  - client_id: web
    redirect_uris: ["https://web.example.com/cb"]
""")
    return path


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    settings = base_settings.with_overrides(clients_file=clients_file(tmp_path / "clients.yaml"),
                                            trusted_proxies=(ip_network("127.0.0.1/32"),))
    with live_stack(settings) as running:
        yield running


def start(stack: Stack, client_id: str = "tv", scope: str = "openid profile user.info.basic") -> dict[str, Any]:
    answer = httpx.post(f"{stack.broker.url}/oauth/device_authorization", data={"client_id": client_id,
                                                                                "scope": scope},
                        headers={"User-Agent": "SmartTV/5.1 (Linux; Android 9)"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def poll(stack: Stack, device_code: str, client_id: str = "tv") -> httpx.Response:
    return httpx.post(f"{stack.broker.url}/oauth/token", data={"grant_type": DEVICE_GRANT,
                                                               "device_code": device_code, "client_id": client_id})


def error_of(answer: httpx.Response) -> str:
    assert answer.status_code == 400, answer.text
    return str(answer.json()["error"])


def answer_on_device_page(stack: Stack, browser: Browser, user_code: str, action: str) -> httpx.Response:
    """A signed-in person opens verification_uri_complete and presses Allow or Deny."""
    page = browser.get(f"{stack.broker.url}/device?user_code={user_code}")
    assert page.status_code == 200 and user_code in page.text, page.text
    token = CSRF_TOKEN.search(page.text)
    assert token
    return browser.client.post(f"{stack.broker.url}/device/confirm", headers={"Origin": stack.broker.url},
                               data={"user_code": user_code, "csrf_token": token.group(1), "action": action})


def test_a_person_types_the_code_in_chromium_and_the_tv_signs_in(stack: Stack) -> None:
    url = stack.broker.url
    started = start(stack)
    assert USER_CODE.fullmatch(started["user_code"])
    assert started["verification_uri"] == f"{url}/device"
    assert started["verification_uri_complete"] == f"{url}/device?user_code={started['user_code']}"
    assert (started["expires_in"], started["interval"]) == (600, 5)
    tv = OAuth2Client("tv", token_endpoint_auth_method="none")
    with pytest.raises(OAuthError) as pending:
        tv.fetch_token(f"{url}/oauth/token", grant_type=DEVICE_GRANT, device_code=started["device_code"])
    assert pending.value.error == "authorization_pending"

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_context().new_page()
        page.goto(started["verification_uri"])
        if page.url.startswith(stack.emulator.url):  # not signed in: TikTok first, then back to /device
            page.get_by_role("button", name="Allow").click()
        page.wait_for_url(f"{url}/device")
        assert page.get_by_role("heading", name="Connect a device").is_visible()
        page.get_by_label("Code").fill(started["user_code"].replace("-", "").lower())  # as people type it
        page.get_by_role("button", name="Continue").click()
        assert page.get_by_role("heading", name="Sign in Living Room TV on your device?").is_visible()
        assert started["user_code"] in page.inner_text("body") and "user.info.basic" in page.inner_text("body")
        page.get_by_role("button", name="Allow").click()
        assert page.get_by_role("heading", name="Your device is signed in").is_visible()

        token = tv.fetch_token(f"{url}/oauth/token", grant_type=DEVICE_GRANT, device_code=started["device_code"])
        page.goto(f"{url}/account")
        sessions = page.get_by_role("table", name="Active sessions")
        assert sessions.get_by_role("row").filter(has_text="Living Room TV (Android)").count() == 1
        apps = page.get_by_role("table", name="Apps you allowed to use your sign-in")
        assert apps.get_by_role("row").filter(has_text="Living Room TV").count() == 1  # its consent, remembered
        browser.close()
    assert token["token_type"] == "Bearer" and token["refresh_token"] and token["id_token"]
    assert token["scope"] == "openid profile user.info.basic"
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == "tv" and claims["tiktok_open_id"] == ALICE
    userinfo = httpx.get(f"{url}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert userinfo.json()["name"] == "Mara Example"
    assert error_of(poll(stack, started["device_code"])) == "invalid_grant"  # single use


def test_polling_too_fast_slows_the_device_down(stack: Stack) -> None:
    started = start(stack)
    assert error_of(poll(stack, started["device_code"])) == "authorization_pending"
    assert error_of(poll(stack, started["device_code"])) == "slow_down"
    assert error_of(poll(stack, started["device_code"])) == "slow_down"  # the interval grew: still too fast


def test_deny_is_access_denied_and_logging_out_the_browser_keeps_the_device(stack: Stack) -> None:
    denied, allowed = start(stack), start(stack, "console", "openid")
    person = sign_in(stack, ALICE)
    done = answer_on_device_page(stack, person, denied["user_code"], "deny")
    assert "Nothing was signed in" in done.text
    assert error_of(poll(stack, denied["device_code"])) == "access_denied"
    assert "Your device is signed in" in answer_on_device_page(stack, person, allowed["user_code"], "allow").text
    token = poll(stack, allowed["device_code"], "console").json()
    assert "refresh_token" not in token  # the console may not refresh
    person.client.post(f"{stack.broker.url}/logout", headers={"Origin": stack.broker.url})
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert httpx.get(f"{stack.broker.url}/userinfo", headers=bearer).status_code == 200  # a session of its own


def test_a_code_is_answered_once(stack: Stack) -> None:
    started = start(stack)
    person = sign_in(stack, ALICE)
    page = person.get(f"{stack.broker.url}/device?user_code={started['user_code']}")
    token = CSRF_TOKEN.search(page.text)
    assert token
    form = {"user_code": started["user_code"], "csrf_token": token.group(1), "action": "allow"}
    headers = {"Origin": stack.broker.url}
    assert person.client.post(f"{stack.broker.url}/device/confirm", headers=headers, data=form).status_code == 200
    again = person.client.post(f"{stack.broker.url}/device/confirm", headers=headers, data={**form, "action": "deny"})
    assert again.status_code == 400 and "not valid" in again.text
    assert "access_token" in poll(stack, started["device_code"]).json()


def test_guessing_user_codes_is_rate_limited_per_address_and_per_user(stack: Stack) -> None:
    person = sign_in(stack, ALICE)
    page = person.get(f"{stack.broker.url}/device")
    token = CSRF_TOKEN.search(page.text)
    assert token

    def guess(address: str) -> httpx.Response:
        return person.client.post(f"{stack.broker.url}/device", data={"user_code": "BCDF-GHJK",
                                                                      "csrf_token": token.group(1)},
                                  headers={"Origin": stack.broker.url, "X-Forwarded-For": address})

    answers = [guess("198.51.100.7").status_code for _ in range(11)]
    assert answers[:10] == [400] * 10 and answers[10] == 429  # burst of 10, then one every 10 s
    assert guess("203.0.113.9").status_code == 429  # another address, the same account: still limited


def test_refusals(stack: Stack) -> None:
    url = stack.broker.url
    no_grant = httpx.post(f"{url}/oauth/device_authorization", data={"client_id": "web"})
    assert error_of(no_grant) == "unauthorized_client"
    assert error_of(httpx.post(f"{url}/oauth/device_authorization", data={"client_id": "tv",
                                                                          "scope": "openid account"})) == \
        "invalid_scope"
    assert httpx.post(f"{url}/oauth/device_authorization", data={"client_id": "nobody"}).status_code == 401
    # A user code can be phished (RFC 8628 section 5.4): whoever started the flow gets what the person allows, so
    # a device never gets the power to delete the account or sign the user out everywhere, even the company's own.
    account = httpx.post(f"{url}/oauth/device_authorization", data={"client_id": "console", "scope": "openid account"})
    assert error_of(account) == "invalid_scope" and "account" in account.json()["error_description"]
    started = start(stack)
    assert error_of(poll(stack, started["device_code"], "console")) == "invalid_grant"  # another client's code
    assert error_of(poll(stack, "made-up")) == "invalid_grant"
    missing = httpx.post(f"{url}/oauth/token", data={"grant_type": DEVICE_GRANT, "client_id": "tv"})
    assert error_of(missing) == "invalid_request"
    signed_out = httpx.get(f"{url}/device?user_code={started['user_code']}")
    assert signed_out.status_code == 303 and "/login?return_to=%2Fdevice%3Fuser_code%3D" in signed_out.headers[
        "location"]
