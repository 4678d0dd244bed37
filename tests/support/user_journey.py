"""One user's whole life through a running broker, step by step with its checks: run it against any Redis.

Every store step the broker has is on the way (login attempt, open_id index, user record, sealed TikTok grant,
session, JWT cache check, token pair, rotation with its grace copy, jti denylist, rate-limit buckets, logout,
the TikTok revoke queue, account deletion, events), so a topology that breaks one of them (a Cluster refusing
a step whose keys span two slots, say) fails here with the step named.
"""

from __future__ import annotations

import httpx

from broker.flows.tokens import SESSION_GRANT
from tests.e2e.conftest import Stack
from tests.support.browser import Browser


def sign_in(stack: Stack, user: str = "", *, display_name: str = "") -> Browser:
    """A browser signed in as a seeded emulator user (`user`, an open_id) or one made up on the spot by name."""
    browser = Browser()
    consent = browser.get(f"{stack.broker.url}/login")
    assert browser.consent(consent, user=user, display_name=display_name).status_code == 200, "login"
    return browser


def refresh(stack: Stack, refresh_token: str) -> httpx.Response:
    return httpx.post(f"{stack.broker.url}/oauth/token", timeout=10,
                      data={"grant_type": "refresh_token", "refresh_token": refresh_token})


def token_pair(stack: Stack, browser: Browser) -> dict[str, str]:
    pair = browser.client.post(f"{stack.broker.url}/oauth/token", data={"grant_type": SESSION_GRANT},
                               headers={"Origin": stack.broker.url})
    assert pair.status_code == 200, f"session-cookie grant: {pair.text}"
    return dict(pair.json())


def whole_journey(stack: Stack, user: str) -> str:
    """Sign in twice, use every token kind, log one session out, delete the account; returns the user id."""
    url = stack.broker.url
    first = sign_in(stack, user)
    try:
        verified = first.client.get(f"{url}/auth/verify")
        assert verified.status_code == 200, "auth/verify"
        sub, cookie_jwt = verified.headers["x-auth-request-user"], verified.headers["authorization"][7:]
        assert first.client.get(f"{url}/auth/verify").headers["authorization"][7:] == cookie_jwt, "JWT cache"

        pair = token_pair(stack, first)
        rotated = refresh(stack, pair["refresh_token"])
        assert rotated.status_code == 200, f"refresh: {rotated.text}"
        newer = rotated.json()
        assert refresh(stack, pair["refresh_token"]).json() == newer, "replay inside the grace window"

        assert httpx.post(f"{url}/oauth/revoke", data={"token": cookie_jwt}).status_code == 200, "revoke"
        assert httpx.get(f"{url}/auth/verify", headers={"Authorization": f"Bearer {cookie_jwt}"}).status_code == 401

        proxied = httpx.get(f"{url}/tiktok/v2/user/info/", params={"fields": "open_id"},
                            headers={"Authorization": f"Bearer {newer['access_token']}"})
        assert proxied.status_code == 200, f"TikTok proxy: {proxied.text}"

        second = sign_in(stack, user)  # the same account on another device
        try:
            assert second.client.get(f"{url}/auth/verify").headers["x-auth-request-user"] == sub, "open_id index"
            logout = second.client.post(f"{url}/logout", headers={"Origin": url})
            assert logout.status_code == 303, f"logout: {logout.text}"
            assert second.client.get(f"{url}/auth/verify").status_code == 401, "logged out"
        finally:
            second.close()
        assert first.client.get(f"{url}/auth/verify").status_code == 200, "the other session lives on"

        stack.tiktok.set_fault("revoke", "http_500")  # the revocation has to wait in the durable queue
        try:
            deleted = httpx.delete(f"{url}/account", headers={"Authorization": f"Bearer {newer['access_token']}"})
        finally:
            stack.tiktok.clear_faults()
        assert deleted.status_code == 200, f"deletion: {deleted.text}"
        assert deleted.json()["tiktok"] == "queued"
        assert "broker_tiktok_revoke_backlog 1.0" in httpx.get(f"{url}/metrics").text

        assert first.client.get(f"{url}/auth/verify").status_code == 401, "deleted"
        assert refresh(stack, newer["refresh_token"]).status_code == 400, "refresh after deletion"
        return sub
    finally:
        first.close()
