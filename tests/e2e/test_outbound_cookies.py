"""The broker's calls to TikTok carry no cookies: a TikTok that sets one on a call for one user never gets it back,
neither on that user's next call nor on another user's (the provider's calls and the API proxy share one client)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.app import create_app
from broker.config import Settings
from broker.store.embedded import free_port
from tests.support.people import Person, sign_in
from tests.support.servers import ThreadedServer
from tiktok_emulator import EmulatorConfig, create_emulator_app

# The paths the broker itself calls (the browser's authorize pages are the browser's business).
SERVER_TO_SERVER = ("/v2/oauth/", "/v2/user/", "/v2/video/")


class CookieSettingTikTok:
    """The emulator behind a middleware that sets a new cookie on every answer and notes the Cookie header of
    every request the broker makes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cookies_seen: list[tuple[str, str]] = []
        self.calls = 0
        self._numbers = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(SERVER_TO_SERVER):
            await self.app(scope, receive, send)
            return
        self.calls += 1
        for name, value in scope["headers"]:
            if name == b"cookie":
                self.cookies_seen.append((scope["path"], value.decode("latin-1")))
        number = next(self._numbers)

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      (b"set-cookie", f"tt_csrf_{number}=call{number}; Path=/".encode())]
            await send(message)

        await self.app(scope, receive, with_cookie)


@pytest.fixture
def live(base_settings: Settings) -> Iterator[tuple[str, CookieSettingTikTok]]:
    broker_port, emulator_port = free_port(), free_port()
    issuer, emulator_url = f"http://127.0.0.1:{broker_port}", f"http://127.0.0.1:{emulator_port}"
    settings = base_settings.with_overrides(issuer=issuer, tiktok_authorize_url=f"{emulator_url}/v2/auth/authorize/",
                                            tiktok_api_url=emulator_url,
                                            tiktok_scopes=("user.info.basic", "user.info.profile"))
    tiktok = CookieSettingTikTok(create_emulator_app(EmulatorConfig(redirect_uris=(f"{issuer}/callback",),
                                                                    public_url=emulator_url)))
    with ThreadedServer(tiktok, emulator_port), ThreadedServer(create_app(settings), broker_port):
        yield issuer, tiktok


def profile(issuer: str, person: Person) -> httpx.Response:
    return httpx.get(f"{issuer}/tiktok/v2/user/info/", params={"fields": "open_id,display_name"},
                     headers=person.bearer_header)


def test_no_cookie_set_by_tiktok_travels_on_a_later_call(live: tuple[str, CookieSettingTikTok]) -> None:
    issuer, tiktok = live
    alice = sign_in(issuer, "Alice Cookie")  # code exchange, then user info: the second call is "later"
    bob = sign_in(issuer, "Bob Cookie")
    try:
        for person in (alice, bob, alice, bob):
            answer = profile(issuer, person)
            assert answer.status_code == 200, answer.text
            assert "set-cookie" not in answer.headers  # and nothing of TikTok's reaches the caller either
        assert tiktok.calls >= 8
        assert tiktok.cookies_seen == []
    finally:
        alice.browser.close()
        bob.browser.close()
