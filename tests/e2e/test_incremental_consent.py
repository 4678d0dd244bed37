"""Incremental consent over a live stack: a signed-in user adds video.publish; the old grant stays until TikTok says
yes, and a refusal at TikTok changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack
from tests.support.browser import Browser, query_of

CREATOR_INFO = "/tiktok/v2/post/publish/creator_info/query/"


@pytest.fixture
def stack(base_settings: Settings) -> Iterator[Stack]:
    with live_stack(base_settings, scopes=("user.info.basic",)) as running:
        yield running


def session_token(stack: Stack, browser: Browser) -> str:
    check = browser.client.get(f"{stack.broker.url}/auth/verify")
    assert check.status_code == 200
    return check.headers["authorization"].removeprefix("Bearer ")


def creator_info(stack: Stack, token: str) -> httpx.Response:
    return httpx.post(f"{stack.broker.url}{CREATOR_INFO}", headers={"Authorization": f"Bearer {token}"})


def asked_scopes(browser: Browser) -> list[str]:
    """The scopes of the last authorize request the broker sent the browser to."""
    authorize = next(r for r in reversed(browser.history) if "/v2/auth/authorize" in str(r.url))
    return query_of(str(authorize.url))["scope"].split(",")


def tiktok_grant(stack: Stack) -> str:
    """The access token TikTok last saw from the broker for Alice."""
    return str([c for c in stack.tiktok.calls if c["endpoint"] in ("user_info", "creator_info")][-1]["token"])


def test_adding_a_scope_replaces_the_grant_only_once_tiktok_confirms(stack: Stack, browser: Browser) -> None:
    page = browser.get(f"{stack.broker.url}/login")
    assert browser.consent(page, user=ALICE, scopes=("user.info.basic",)).status_code == 200
    token = session_token(stack, browser)
    refused = creator_info(stack, token)
    assert refused.status_code == 403 and "video.publish" in refused.json()["error_description"]
    first_grant = tiktok_grant(stack)

    # The person is asked for what they granted plus video.publish, and says no: nothing changes.
    page = browser.get(f"{stack.broker.url}/login?add_scope=video.publish&return_to=/account")
    assert asked_scopes(browser) == ["user.info.basic", "video.publish"]
    denied = browser.consent(page, user=ALICE, scopes=("user.info.basic", "video.publish"), action="deny")
    assert denied.status_code == 403 and "access_denied" in denied.text
    assert session_token(stack, browser)  # still signed in
    assert creator_info(stack, token).status_code == 403
    assert httpx.get(f"{stack.broker.url}/tiktok/v2/user/info/", params={"fields": "open_id"},
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert tiktok_grant(stack) == first_grant  # the old grant is still the one in use

    # This time they say yes: the new grant replaces the old one.
    page = browser.get(f"{stack.broker.url}/login?add_scope=video.publish&return_to=/account")
    done = browser.consent(page, user=ALICE, scopes=("user.info.basic", "video.publish"))
    assert done.url == f"{stack.broker.url}/account"
    fresh = session_token(stack, browser)
    assert creator_info(stack, fresh).status_code == 200
    # A token carries the powers it was issued with: the one from before the new grant still cannot post.
    refused = creator_info(stack, token)
    assert refused.status_code == 403 and "video.publish" in refused.json()["error_description"]
    assert tiktok_grant(stack) != first_grant

    # Adding another asks for everything granted so far plus the new one.
    browser.get(f"{stack.broker.url}/login?add_scope=video.upload")
    assert asked_scopes(browser) == ["user.info.basic", "video.publish", "video.upload"]


def test_unknown_scopes_are_refused_before_tiktok(stack: Stack, browser: Browser) -> None:
    before = len(stack.tiktok.calls)
    for value in ("video.delete", "video.publish,research.data.basic", "x" * 300):
        page = browser.get(f"{stack.broker.url}/login?add_scope={value}", follow=False)
        assert page.status_code == 400 and "text/html" in page.headers["content-type"]
        assert "add_scope" in page.text
    assert len(stack.tiktok.calls) == before


def test_signed_out_add_scope_asks_for_the_configured_scopes_and_the_added_one(stack: Stack,
                                                                             browser: Browser) -> None:
    browser.get(f"{stack.broker.url}/login?add_scope=video.upload", follow=False)
    location = browser.history[-1].headers["location"]
    assert query_of(location)["scope"] == "user.info.basic,video.upload"
