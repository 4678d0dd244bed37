"""The broker and the TikTok emulator in one process, sharing a frozen clock, over ASGI transports."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from broker.app import create_app
from broker.clock import FrozenClock, SystemClock
from broker.config import Settings
from tiktok_emulator import EmulatorConfig, create_emulator_app

EMULATOR = "http://emulator.test"
ALICE = "7c1e2d34-5f6a-4b7c-8d9e-0a1b2c3d4e5f"


@dataclass
class InProcess:
    broker: httpx.AsyncClient
    tiktok: httpx.AsyncClient
    clock: FrozenClock
    settings: Settings
    app: Any
    emulator: Any

    async def sign_in(self, user: str = ALICE, scopes: tuple[str, ...] = ("user.info.basic",)) -> None:
        """The browser login, leaving the session cookie in `broker`'s cookie jar."""
        start = await self.broker.get("/login")
        page = await self.tiktok.get(start.headers["location"])
        request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
        if request_id is None:  # TikTok skipped its consent page (already authorized)
            back = page
        else:
            back = await self.tiktok.post("/v2/auth/authorize/consent", data={
                "request_id": request_id.group(1), "user": user, "scope": list(scopes), "action": "allow"})
        done = await self.broker.get(back.headers["location"])
        assert done.status_code == 303, done.text


@asynccontextmanager
async def in_process(base: Settings, **overrides: Any) -> AsyncIterator[InProcess]:
    clock = FrozenClock(SystemClock().now())
    settings = base.with_overrides(tiktok_authorize_url=f"{EMULATOR}/v2/auth/authorize/", tiktok_api_url=EMULATOR,
                                   **overrides)
    emulator = create_emulator_app(EmulatorConfig(redirect_uris=(settings.redirect_uri,), public_url=EMULATOR),
                                   clock=clock)
    tiktok = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url=EMULATOR)
    app = create_app(settings, http_client=tiktok, clock=clock)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as broker:
        yield InProcess(broker, tiktok, clock, settings, app, emulator)
    await tiktok.aclose()
