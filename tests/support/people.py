"""Signed-in people for fault and soak tests: a real browser login per TikTok user, and every credential it yields.

A person logs in through /login?prompt=login (so TikTok always shows its consent page, whoever consented last),
types their own display name at the emulator (a distinct TikTok open_id per name), and then holds the three
credentials a client can present: the session cookie, the broker JWT from /auth/verify, and a refresh token from
the session-cookie grant.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import httpx
import redis.asyncio

from broker.config import Settings
from broker.domain import ProviderTokens
from broker.flows.tokens import SESSION_GRANT
from broker.store.keys import KeySpace
from broker.store.tiktok_tokens import TikTokTokenStore
from broker.store.vault import Vault
from tests.support.browser import Browser

SESSION_COOKIE = "broker_session"  # the name on a loopback http issuer (no __Host- prefix)
SCOPES = ("user.info.basic", "user.info.profile")


@dataclass
class Person:
    name: str
    sub: str
    cookie: str
    bearer: str
    refresh_token: str
    browser: Browser = field(repr=False)

    @property
    def cookie_header(self) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.cookie}"}

    @property
    def bearer_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"}


def log_in(broker_url: str, browser: Browser, name: str) -> httpx.Response:
    """The whole browser login as `name`; returns the last page (the broker's home page on success)."""
    consent = browser.get(f"{broker_url}/login?prompt=login")
    assert consent.status_code == 200 and "request_id" in consent.text, consent.text[:300]
    return browser.consent(consent, display_name=name, scopes=SCOPES)


def sign_in(broker_url: str, name: str, *, client: httpx.Client | None = None) -> Person:
    """Log in as `name` in a fresh browser (on `client` if given: e.g. one that records every answer)."""
    browser = Browser(client=client) if client is not None else Browser()
    browser.client.cookies.clear()
    home = log_in(broker_url, browser, name)
    assert home.status_code == 200, home.text[:300]
    cookie = browser.client.cookies[SESSION_COOKIE]
    browser.client.cookies.clear()  # from here on, each request names the credential it presents
    session = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    check = browser.client.get(f"{broker_url}/auth/verify", headers=session)
    assert check.status_code == 200, check.text
    pair = browser.client.post(f"{broker_url}/oauth/token", data={"grant_type": SESSION_GRANT},
                               headers={"Origin": broker_url, **session})
    assert pair.status_code == 200, pair.text
    browser.client.cookies.clear()
    return Person(name, check.headers["x-auth-request-user"], cookie,
                  check.headers["authorization"].removeprefix("Bearer "), pair.json()["refresh_token"], browser)


async def _with_store(settings: Settings) -> tuple[redis.asyncio.Redis, TikTokTokenStore]:
    client = redis.asyncio.Redis.from_url(settings.redis_url.reveal(), decode_responses=True)
    return client, TikTokTokenStore(client, KeySpace(settings.redis_prefix), Vault(settings.vault_keys))


def stored_grant(settings: Settings, user_id: str) -> tuple[int, ProviderTokens] | None:
    """(version, tokens) of the user's sealed TikTok grant, opened with the broker's vault keys."""
    async def read() -> tuple[int, ProviderTokens] | None:
        client, store = await _with_store(settings)
        try:
            found = await store.get(user_id)
            return None if found is None else (found.version, found.tokens)
        finally:
            await client.aclose()
    return asyncio.run(read())


def age_grant(settings: Settings, user_id: str, expires_at: float) -> ProviderTokens:
    """Pretend the login happened long ago: the stored access token now expires at `expires_at` (the broker then
    refreshes it with the sealed refresh token before its next use). Returns the grant as it was."""
    async def rewrite() -> ProviderTokens:
        client, store = await _with_store(settings)
        try:
            current = await store.get(user_id)
            assert current is not None, "no grant stored"
            assert await store.compare_and_set(user_id, current.version, replace(current.tokens, expires_at=expires_at))
            return current.tokens
        finally:
            await client.aclose()
    return asyncio.run(rewrite())
