"""The SDK's own HTTP clients keep no cookies: a service's one client serves many users, so a cookie the broker
(or anything in front of it) sets on one answer must never travel on the next request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from broker_sdk import Introspection, JwksCache
from broker_sdk.tiktok import BrokerTikTok
from tests.support.servers import ThreadedServer


class CookieSetter:
    """Answers every request with a Set-Cookie, and remembers the Cookie header each request carried."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def app(self) -> Starlette:
        async def answer(request: Request) -> Response:
            self.seen.append(request.headers.get("cookie"))
            body: object = {"keys": []} if request.url.path.endswith("jwks.json") else {"active": False}
            if request.url.path.startswith("/tiktok/"):
                body = {"data": {}, "error": {"code": "ok", "message": "", "log_id": "l"}}
            response = JSONResponse(body)
            response.set_cookie("tracker", f"user-{len(self.seen)}", path="/")
            return response

        return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


@pytest.fixture
def setter() -> Iterator[tuple[CookieSetter, str]]:
    stand_in = CookieSetter()
    with ThreadedServer(stand_in.app()) as server:
        yield stand_in, server.url


async def test_the_jwks_cache_sends_back_no_cookie(setter: tuple[CookieSetter, str]) -> None:
    stand_in, url = setter
    cache = JwksCache(f"{url}/.well-known/jwks.json", min_refetch_interval=0)
    await cache.keys()
    await cache.get_key("unknown-kid")  # an unknown kid: a second fetch
    await cache.aclose()
    assert len(stand_in.seen) == 2 and stand_in.seen == [None, None]


async def test_introspection_sends_back_no_cookie(setter: tuple[CookieSetter, str]) -> None:
    stand_in, url = setter
    introspection = Introspection(f"{url}/oauth/introspect", "svc", "secret")
    for token in ("token-a", "token-b"):
        assert await introspection.is_active(token, lifetime=60) is False
    await introspection.aclose()
    assert stand_in.seen == [None, None]


async def test_the_tiktok_client_sends_back_no_cookie(setter: tuple[CookieSetter, str]) -> None:
    stand_in, url = setter
    async with BrokerTikTok(url, token="a-broker-jwt") as tiktok:
        for _ in range(2):
            await tiktok.get("/v2/user/info/", fields=["open_id"])
    assert stand_in.seen == [None, None]
