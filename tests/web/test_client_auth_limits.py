"""Every place that checks a client secret is rate limited alike: per client address and per client named."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette

from broker.app import create_app
from broker.clients import secret_digest
from broker.config import RateLimit, Settings
from tests.support.asgi import raw_request

JOBS_SECRET = "jobs-secret-0123456789-abcdefghijklmnopqrst"
SUBJECT = "A" * 22


@pytest.fixture
async def app(base_settings: Settings, tmp_path: Path) -> AsyncIterator[Starlette]:
    clients = tmp_path / "clients.yaml"
    clients.write_text(f"clients:\n  - client_id: jobs\n    client_secret_sha256: {secret_digest(JOBS_SECRET)}\n"
                       "    scopes: [tiktok.proxy]\n")
    settings = base_settings.with_overrides(clients_file=clients, rate_limit_oauth=RateLimit(3, 60, 3),
                                            rate_limit_client=RateLimit(5, 60, 5))
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def guess(app: Starlette, secret: str, address: str) -> int:
    status, _ = await raw_request(app, "GET", "/tiktok/v2/user/info/", query=b"fields=open_id",
                                  headers={"authorization": basic("jobs", secret), "x-broker-subject": SUBJECT},
                                  client=(address, 40000))
    return status


async def test_guessing_a_secret_through_the_proxy_is_limited_per_address(app: Starlette) -> None:
    answers = [await guess(app, f"wrong-{n}", "192.0.2.1") for n in range(5)]
    assert answers == [401, 401, 401, 429, 429]


async def test_and_per_client_across_addresses(app: Starlette) -> None:
    answers = [await guess(app, f"wrong-{n}", f"192.0.2.{n + 10}") for n in range(7)]
    assert answers == [401] * 5 + [429] * 2
