"""The indexed router answers every request with the route Starlette's ordered scan would pick."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Route, Router

from broker.web.router import IndexedRouter, exact_index
from broker.web.routes import ROUTES

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _labelled(routes: list[BaseRoute]) -> list[BaseRoute]:
    """The same table, each endpoint answering with its position in it."""
    def endpoint(position: int) -> Callable[[Request], Awaitable[PlainTextResponse]]:
        async def answer(request: Request) -> PlainTextResponse:
            return PlainTextResponse(str(position))
        return answer

    return [Route(route.path, endpoint(position), methods=list(route.methods or ()))  # type: ignore[attr-defined]
            for position, route in enumerate(routes)]


async def _answers(router: Router, requests: list[tuple[str, str]]) -> list[tuple[int, str]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router), base_url="http://broker.test") as client:
        return [((r := await client.request(method, path)).status_code, r.text) for method, path in requests]


def _requests(routes: list[BaseRoute]) -> list[tuple[str, str]]:
    paths = {route.path.replace("{path:path}", "some/where") for route in routes}  # type: ignore[attr-defined]
    paths |= {"/nowhere", "/oauth/token/", "/auth/verify/", "/tiktok/"}
    return [(method, path) for path in sorted(paths) for method in METHODS]


async def test_the_broker_table_answers_as_the_ordered_scan_does() -> None:
    table = _labelled(list(ROUTES))
    requests = _requests(table)
    scanned = await _answers(Router(table, redirect_slashes=False), requests)
    indexed = await _answers(IndexedRouter(table, redirect_slashes=False), requests)
    assert indexed == scanned
    # The index covers the endpoints apps call most, so the lookup is what serves them.
    index = exact_index(table)
    assert {"/auth/verify", "/oauth/token", "/oauth/introspect", "/oauth/revoke", "/userinfo"} <= set(index)


@pytest.mark.parametrize("table", [
    # A route with a parameter between two routes of one exact path takes that path's later methods.
    [("/x", ["GET"]), ("/{name}", ["POST"]), ("/x", ["POST", "PUT"])],
    # ...and one ahead of them takes it whole.
    [("/{name}", ["GET", "POST"]), ("/x", ["GET"])],
    # One after them only gets what they leave.
    [("/x", ["GET"]), ("/{name}", ["POST", "GET"])],
])
async def test_routes_with_parameters_keep_their_place(table: list[tuple[str, list[str]]]) -> None:
    routes = _labelled([Route(path, lambda r: None, methods=methods) for path, methods in table])
    requests = [(method, path) for path in ("/x", "/y") for method in ("GET", "POST", "PUT", "DELETE")]
    assert await _answers(IndexedRouter(routes), requests) == await _answers(Router(routes), requests)


def test_a_path_a_parameter_route_could_take_first_is_left_to_the_scan() -> None:
    routes = [Route("/{name}", lambda r: None, methods=["POST"]), Route("/x", lambda r: None, methods=["GET"]),
              Route("/y", lambda r: None, methods=["GET"])]
    assert exact_index(routes) == {}
    routes = [Route("/x", lambda r: None, methods=["GET"]), Route("/{name}", lambda r: None, methods=["POST"]),
              Route("/y/z", lambda r: None, methods=["GET"])]
    assert set(exact_index(routes)) == {"/x", "/y/z"}
