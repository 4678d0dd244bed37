"""OpenID RP-Initiated Logout 1.0 at /logout, and Back-Channel Logout 1.0: every way a session ends sends the
apps that held tokens for it a logout token, through the durable outbox, checked here with PyJWT against the
JWKS as an app would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from broker.clients import secret_digest
from broker.config import Settings
from tests.e2e.conftest import ALICE, Stack, live_stack
from tests.support.apps import App, tokens_for
from tests.support.backchannel import LogoutReceiver, logout_receiver
from tests.support.browser import Browser

PHOTOS = App("photos", "https://photos.example.com/cb", "photos-secret-0123456789-abcdefghijklmnop")
OURS = App("ours", "https://app.example.com/ours/cb")
BYE = "https://photos.example.com/bye"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture
def receiver() -> Iterator[LogoutReceiver]:
    with logout_receiver() as running:
        yield running


def clients_file(path: Path, receiver: LogoutReceiver) -> Path:
    path.write_text(f"""
clients:
  - client_id: {PHOTOS.client_id}
    client_name: Photo Frame
    client_secret_sha256: {secret_digest(str(PHOTOS.secret))}
    redirect_uris: ["{PHOTOS.redirect_uri}"]
    post_logout_redirect_uris: ["{BYE}"]
    backchannel_logout_uri: {receiver.url}
  - client_id: {OURS.client_id}
    first_party: true
    redirect_uris: ["{OURS.redirect_uri}"]
    scopes: [openid, account]
    backchannel_logout_uri: {receiver.url}
    id_token_signed_response_alg: ES256
""")
    return path


@pytest.fixture
def stack(base_settings: Settings, tmp_path: Path, receiver: LogoutReceiver) -> Iterator[Stack]:
    with live_stack(base_settings.with_overrides(
        clients_file=clients_file(tmp_path / "clients.yaml", receiver)), tiktok_webhooks=True) as running:
        yield running


@pytest.fixture
def alice(stack: Stack) -> Iterator[Browser]:
    browser = Browser()
    assert browser.consent(browser.get(f"{stack.broker.url}/login?prompt=login"), user=ALICE).status_code == 200
    yield browser
    browser.close()


def validated(stack: Stack, token: str, client_id: str) -> dict[str, object]:
    """What Back-Channel Logout 1.0 section 2.6 has a receiver check, with PyJWT and the broker's JWKS."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "logout+jwt"
    key = jwt.PyJWKClient(f"{stack.broker.url}/.well-known/jwks.json").get_signing_key(header["kid"])
    claims: dict[str, object] = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=client_id,
                                           issuer=stack.settings.issuer,
                                           options={"require": ["iat", "exp", "jti", "iss", "aud"]})
    assert claims["events"] == {BACKCHANNEL_EVENT: {}} and "nonce" not in claims
    assert claims["sid"] and claims["sub"]
    return claims


def logouts_by_client(stack: Stack, receiver: LogoutReceiver, count: int) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for token in receiver.wait_for(count):
        aud = str(jwt.decode(token, options={"verify_signature": False})["aud"])
        found[aud] = validated(stack, token, aud)
    return found


def sid_of(id_token: str) -> object:
    return jwt.decode(id_token, options={"verify_signature": False})["sid"]


def test_rp_initiated_logout_with_a_hint_ends_the_session_and_tells_every_app(
        stack: Stack, alice: Browser, receiver: LogoutReceiver) -> None:
    url = stack.broker.url
    photos, ours = tokens_for(alice, url, PHOTOS), tokens_for(alice, url, OURS)
    response = alice.client.get(f"{url}/logout", params={
        "id_token_hint": photos["id_token"], "post_logout_redirect_uri": BYE, "state": "bye-1"})
    assert response.status_code == 303 and response.headers["location"] == f"{BYE}?state=bye-1"
    assert alice.client.get(f"{url}/auth/verify").status_code == 401
    logouts = logouts_by_client(stack, receiver, 2)
    assert logouts["photos"]["sid"] == sid_of(photos["id_token"])
    assert logouts["ours"]["sid"] == sid_of(ours["id_token"])
    assert jwt.get_unverified_header(receiver.tokens[0])["alg"] in ("RS256", "ES256")
    assert receiver.content_types[0] == "application/x-www-form-urlencoded"


def test_without_a_hint_the_user_confirms_first(stack: Stack, alice: Browser, receiver: LogoutReceiver) -> None:
    url = stack.broker.url
    tokens_for(alice, url, PHOTOS)
    page = alice.client.get(f"{url}/logout", params={"client_id": "photos", "post_logout_redirect_uri": BYE,
                                                     "state": "s"})
    assert page.status_code == 200 and "Photo Frame" in page.text and 'name="confirm"' in page.text
    assert alice.client.get(f"{url}/auth/verify").status_code == 200  # nothing ended yet
    fields = dict(part.split('" value="') for part in page.text.split('<input type="hidden" name="')[1:]
                  for part in [part.split('">')[0]])
    confirmed = alice.client.post(f"{url}/logout", data=fields, headers={"Origin": url})
    assert confirmed.status_code == 303 and confirmed.headers["location"] == f"{BYE}?state=s"
    assert alice.client.get(f"{url}/auth/verify").status_code == 401
    assert list(logouts_by_client(stack, receiver, 1)) == ["photos"]


def test_logout_requests_are_checked_before_anything_ends(stack: Stack, alice: Browser) -> None:
    url = stack.broker.url
    photos = tokens_for(alice, url, PHOTOS)
    for params in ({"id_token_hint": photos["id_token"], "post_logout_redirect_uri": "https://evil.example.com/"},
                   {"id_token_hint": photos["id_token"], "client_id": "ours"},
                   {"client_id": "nobody"}):
        refused = alice.client.get(f"{url}/logout", params=params)
        assert refused.status_code == 400 and "location" not in refused.headers, params
    assert alice.client.get(f"{url}/auth/verify").status_code == 200
    # A form posted by the app itself (cross-site) with a valid hint is enough.
    posted = alice.client.post(f"{url}/logout", headers={"Origin": "https://photos.example.com"},
                               data={"id_token_hint": photos["id_token"], "post_logout_redirect_uri": BYE})
    assert posted.status_code == 303 and posted.headers["location"] == BYE
    assert alice.client.get(f"{url}/auth/verify").status_code == 401


def test_a_hint_without_the_browsers_cookie_ends_only_the_apps_own_sign_in(
        stack: Stack, alice: Browser, receiver: LogoutReceiver) -> None:
    """An ID token is no key to the user's broker session: sent from anywhere but the user's browser (no cookie, so
    nothing to sign out there), even expired, it ends only what the app's own token could end."""
    url = stack.broker.url
    photos, ours = tokens_for(alice, url, PHOTOS), tokens_for(alice, url, OURS)
    answer = httpx.get(f"{url}/logout", params={"id_token_hint": photos["id_token"],
                                                "post_logout_redirect_uri": BYE})
    assert answer.status_code == 303 and answer.headers["location"] == BYE
    assert list(logouts_by_client(stack, receiver, 1)) == ["photos"]  # the app's own family ended...
    refreshed = httpx.post(f"{url}/oauth/token", auth=PHOTOS.auth,
                           data={"grant_type": "refresh_token", "refresh_token": photos["refresh_token"]})
    assert refreshed.status_code == 400
    # ...and nothing else: Alice's browser session, another app's family, her TikTok link.
    assert alice.client.get(f"{url}/auth/verify").status_code == 200
    kept = httpx.post(f"{url}/oauth/token", data={"grant_type": "refresh_token", "client_id": OURS.client_id,
                                                  "refresh_token": ours["refresh_token"]})
    assert kept.status_code == 200, kept.text
    assert [call for call in stack.tiktok.calls if call["endpoint"] == "revoke"] == []
    assert len(receiver.tokens) == 1


def test_every_way_a_session_ends_sends_a_logout_token(stack: Stack, receiver: LogoutReceiver) -> None:
    url = stack.broker.url

    browsers: list[Browser] = []

    def signed_in_with_apps() -> tuple[Browser, dict[str, str]]:
        browser = Browser()
        browsers.append(browser)
        assert browser.consent(browser.get(f"{url}/login?prompt=login"), user=ALICE).status_code == 200
        return browser, tokens_for(browser, url, PHOTOS)

    def expect_logout(expected: int, what: str) -> None:
        tokens = receiver.wait_for(expected)
        assert len(tokens) == expected, what
        validated(stack, tokens[-1], "photos")

    browser, photos = signed_in_with_apps()  # logout everywhere, with the session's own JWT
    session_jwt = browser.client.get(f"{url}/auth/verify").headers["authorization"][7:]
    assert httpx.post(f"{url}/logout", data={"everywhere": "true"},
                      headers={"Authorization": f"Bearer {session_jwt}"}).status_code == 200
    expect_logout(1, "logout everywhere")

    browser, photos = signed_in_with_apps()  # a session ended on /account (the app's family, from the page)
    family_sid = sid_of(photos["id_token"])
    session_jwt = browser.client.get(f"{url}/auth/verify").headers["authorization"][7:]
    ended = httpx.post(f"{url}/account/sessions/end", data={"sid": family_sid},
                       headers={"Authorization": f"Bearer {session_jwt}"})
    assert ended.json() == {"ended": 1}
    expect_logout(2, "session ended on /account")

    browser, photos = signed_in_with_apps()  # deletion
    session_jwt = browser.client.get(f"{url}/auth/verify").headers["authorization"][7:]
    assert httpx.delete(f"{url}/account", headers={"Authorization": f"Bearer {session_jwt}"}).status_code == 200
    expect_logout(3, "account deletion")

    browser, photos = signed_in_with_apps()  # TikTok's deauthorization webhook
    receiver.failures_left = 2  # and the app is down for a while: the outbox retries (after ~1 s, then ~2 s)
    trigger = httpx.post(f"{stack.emulator.url}/_emulator/webhooks/authorization-removed",
                         json={"open_id": ALICE, "reason": 1})
    assert trigger.status_code == 202
    tokens = receiver.wait_for(4, timeout=20)
    assert validated(stack, tokens[-1], "photos")["sid"] == sid_of(photos["id_token"])
    assert receiver.failures_left == 0
    for each in browsers:
        each.close()


def test_the_logout_of_the_brokers_own_pages_still_uses_the_allowlist(stack: Stack, alice: Browser) -> None:
    url = stack.broker.url
    back = alice.client.post(f"{url}/logout", headers={"Origin": url},
                             data={"post_logout_redirect_uri": "https://app.example.com/signed-out"})
    assert back.status_code == 303 and back.headers["location"] == "https://app.example.com/signed-out"
    refused = alice.client.post(f"{url}/logout", headers={"Origin": url},
                                data={"post_logout_redirect_uri": "https://evil.example.com/"})
    assert refused.status_code == 400
