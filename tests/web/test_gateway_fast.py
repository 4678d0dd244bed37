"""The lean path of GET /auth/verify answers an allowed check as the route would (same headers, request id,
one metric sample), and hands everything else to the route without checking twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from broker.config import Settings
from broker.web.services import Services
from tests.support.inprocess import InProcess, in_process
from tests.support.metrics import parse

REQUESTS = "broker_http_request_duration_seconds"
ANSWER = ("authorization", "x-auth-request-user", "x-auth-request-open-id", "cache-control", "pragma",
          "content-length")


@pytest.fixture
async def stack(base_settings: Settings) -> AsyncIterator[InProcess]:
    async with in_process(base_settings) as running:
        await running.sign_in()
        yield running


def _services(stack: InProcess) -> Services:
    services: Services = stack.app.state.services
    return services


async def _samples(stack: InProcess, status: str) -> float:
    scraped = parse((await stack.broker.get("/metrics")).text)
    return scraped.count(REQUESTS, route="/auth/verify", method="GET", status=status)


async def test_an_allowed_check_answers_what_the_route_answers(stack: InProcess) -> None:
    lean = await stack.broker.get("/auth/verify")
    routed = await stack.broker.get("/auth/verify?redirect=0")  # a query string takes the route
    assert lean.status_code == routed.status_code == 200
    assert [(name, lean.headers[name]) for name in ANSWER] == [(name, routed.headers[name]) for name in ANSWER]
    assert lean.headers["x-auth-request-user"] and lean.headers["authorization"].startswith("Bearer ey")
    bearer = {"Authorization": lean.headers["authorization"]}
    by_token = await stack.broker.get("/auth/verify", headers=bearer)
    assert by_token.status_code == 200 and by_token.headers["authorization"] == lean.headers["authorization"]
    assert sorted(lean.headers.keys()) == sorted(routed.headers.keys())


async def test_the_request_id_is_echoed_or_made_up_and_each_check_is_one_metric_sample(stack: InProcess) -> None:
    before = await _samples(stack, "200")
    echoed = await stack.broker.get("/auth/verify", headers={"X-Request-Id": "gw-trace:42"})
    assert echoed.headers["x-request-id"] == "gw-trace:42"
    made_up = [await stack.broker.get("/auth/verify", headers={"X-Request-Id": "not sane!"}) for _ in range(2)]
    ids = {answer.headers["x-request-id"] for answer in made_up}
    assert len(ids) == 2 and "not sane!" not in ids
    assert await _samples(stack, "200") == before + 3


async def test_a_denial_is_the_routes_answer_from_one_check(stack: InProcess, monkeypatch: Any) -> None:
    sessions = _services(stack).sessions
    calls: list[str | None] = []
    resolve = sessions.resolve

    async def counted(cookie_value: str | None) -> Any:
        calls.append(cookie_value)
        return await resolve(cookie_value)

    monkeypatch.setattr(sessions, "resolve", counted)
    stack.broker.cookies.clear()
    before = await _samples(stack, "401")
    denied = await stack.broker.get("/auth/verify", headers={"Cookie": f"broker_session={'a' * 22}.{'b' * 43}",
                                                             "X-Request-Id": "denied-1"})
    assert denied.status_code == 401 and denied.json()["error"] == "invalid_token"
    assert denied.headers["location"].endswith("/login") and denied.headers["x-request-id"] == "denied-1"
    assert len(calls) == 1  # the route used the denial the lean path found
    assert await _samples(stack, "401") == before + 1
    forged = await stack.broker.get("/auth/verify", headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code == 401 and "www-authenticate" in forged.headers


async def test_other_schemes_and_head_go_through_the_route(stack: InProcess) -> None:
    # Not a bearer token: the route decides (a DPoP proof is checked there), here by the session cookie.
    basic = await stack.broker.get("/auth/verify", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 200 and basic.headers["authorization"].startswith("Bearer ")
    head = await stack.broker.head("/auth/verify")
    assert head.status_code == 200 and head.headers["authorization"] == basic.headers["authorization"]
