"""In-process clients for web tests that need no TikTok."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from broker.app import create_app
from broker.config import Settings


@pytest.fixture
def app(base_settings: Settings) -> Starlette:
    return create_app(base_settings)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://127.0.0.1:8080") as http:
        yield http
