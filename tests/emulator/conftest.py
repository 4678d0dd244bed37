"""Fixtures: a fresh emulator per test on a frozen clock, driven over in-process HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from broker.clock import FrozenClock
from tiktok_emulator import EmulatorConfig, create_emulator_app

from .support import REDIRECT, TikTok

MakeTikTok = Callable[..., TikTok]


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def make_tiktok(clock: FrozenClock) -> AsyncIterator[MakeTikTok]:
    made: list[TikTok] = []

    def make(*, webhook_client: httpx.AsyncClient | None = None, **overrides: Any) -> TikTok:
        config = EmulatorConfig(**{"redirect_uris": (REDIRECT,), **overrides})
        tiktok = TikTok(create_emulator_app(config, clock=clock, webhook_client=webhook_client))
        made.append(tiktok)
        return tiktok

    yield make
    for tiktok in made:
        await tiktok.aclose()


@pytest.fixture
def tiktok(make_tiktok: MakeTikTok) -> TikTok:
    return make_tiktok()
