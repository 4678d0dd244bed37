"""/metrics behind BROKER_METRICS_TOKEN: open without it (local development), bearer-only with it."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from broker.app import create_app
from broker.config import Secret, Settings

TOKEN = "scrape-token-0123456789abcdef"


async def scrape(app: Starlette, headers: dict[str, str] | None = None) -> httpx.Response:
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080") as client:
        return await client.get("/metrics", headers=headers or {})


async def test_without_a_token_metrics_stay_open(base_settings: Settings) -> None:
    answer = await scrape(create_app(base_settings))
    assert answer.status_code == 200 and "broker_http_request_duration_seconds" in answer.text


async def test_with_a_token_only_its_bearer_may_scrape(base_settings: Settings) -> None:
    app = create_app(base_settings.with_overrides(metrics_token=Secret(TOKEN)))
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        refused = await scrape(app, headers)
        assert refused.status_code == 401, headers
        assert refused.json()["error"] == "invalid_token"
        assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert "broker_" not in refused.text
    allowed = await scrape(app, {"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200 and "broker_http_request_duration_seconds" in allowed.text
