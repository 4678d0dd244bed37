"""Consent for third-party apps on the broker's own page: shown once per user, client and scope set, again with
prompt=consent or for more scopes, never for first-party apps; prompt=none and Deny answer the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.clients import secret_digest
from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack, write_clients
from tests.support.apps import App, authorization_url, authorize, pkce, reply_params
from tests.support.browser import Browser

THIRD = App("photos", "https://photos.example.com/cb", "photos-secret-0123456789-abcdefghijklmnop")
OURS = App("ours", "https://app.example.com/ours/cb")


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    clients = write_clients(tmp_path, f"""
clients:
  - client_id: {THIRD.client_id}
    client_name: Photo Frame
    client_secret_sha256: {secret_digest(str(THIRD.secret))}
    redirect_uris: ["{THIRD.redirect_uri}"]
    scopes: [openid, profile, user.info.basic]
  - client_id: {OURS.client_id}
    first_party: true
    redirect_uris: ["{OURS.redirect_uri}"]
    scopes: [openid, profile]
""")
    with live_stack(base_settings.with_overrides(clients_file=clients)) as running:
        yield running


@pytest.fixture
def alice(stack: Stack) -> Iterator[Browser]:
    browser = Browser()
    assert browser.consent(browser.get(f"{stack.broker.url}/login"), user=ALICE,
                           scopes=("user.info.basic", "user.info.profile")).status_code == 200
    yield browser
    browser.close()


def test_consent_is_asked_once_per_scope_set(stack: Stack, alice: Browser) -> None:
    url = stack.broker.url
    page, _ = authorize(alice, url, THIRD, allow=None, scope="openid user.info.basic email")
    assert alice.is_app_consent(page)
    assert "Photo Frame" in page.text and "user.info.basic" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    granted = alice.app_consent(page)
    assert set(reply_params(granted)) == {"code", "state", "iss"}

    again, _ = authorize(alice, url, THIRD, allow=None, scope="openid user.info.basic")
    assert "code" in reply_params(again)  # remembered: no page
    forced, _ = authorize(alice, url, THIRD, allow=None, scope="openid", prompt="consent")
    assert alice.is_app_consent(forced)
    more, _ = authorize(alice, url, THIRD, allow=None, scope="openid profile")
    assert alice.is_app_consent(more) and "display name" in more.text  # profile was never agreed to


def test_prompt_none_and_deny_answer_the_app(stack: Stack, alice: Browser) -> None:
    url = stack.broker.url
    silent, _ = authorize(alice, url, THIRD, allow=None, prompt="none")
    assert reply_params(silent) == {"error": "consent_required", "state": "st-1", "iss": url,
                                    "error_description": "The user has not agreed to this app yet."}
    denied, _ = authorize(alice, url, THIRD, allow=False)
    answer = reply_params(denied)
    assert answer["error"] == "access_denied" and answer["state"] == "st-1" and answer["iss"] == url
    authorize(alice, url, THIRD, allow=True)
    assert "code" in reply_params(authorize(alice, url, THIRD, allow=None, prompt="none")[0])


def test_first_party_apps_are_never_asked(stack: Stack, alice: Browser) -> None:
    for prompt in ("", "consent"):
        response, _ = authorize(alice, stack.broker.url, OURS, allow=None, prompt=prompt, scope="openid profile")
        assert "code" in reply_params(response), prompt


def test_the_consent_answer_must_come_from_the_page_it_was_shown_on(stack: Stack, alice: Browser) -> None:
    url = stack.broker.url
    _, challenge = pkce()
    page = alice.get(authorization_url(url, THIRD, challenge))
    assert alice.is_app_consent(page)
    request_id = page.text.split('name="request_id" value="')[1].split('"')[0]
    forged = alice.client.post(f"{url}/authorize/consent", headers={"Origin": url},
                               data={"request_id": request_id, "csrf_token": "forged", "action": "allow"})
    assert forged.status_code == 400 and "text/html" in forged.headers["content-type"]
    cross_site = httpx.post(f"{url}/authorize/consent", headers={"Origin": "https://evil.example.com"},
                            cookies=alice.client.cookies, data={"request_id": request_id, "action": "allow"})
    assert cross_site.status_code == 403
    assert "code" in reply_params(alice.app_consent(page))  # the real page's answer still works
