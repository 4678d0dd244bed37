"""BrokerAuthMiddleware and require_claims in Starlette apps, with keys from a real JWKS over HTTP; and the
package docstring's example, run as written against the real broker."""

from __future__ import annotations

import re
import time
import typing
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket

import broker_sdk
from broker.app import create_app
from broker.config import Settings
from broker.signing import TokenService
from broker.store.embedded import free_port
from broker_sdk import BrokerVerifier, Claims, DPoPChecker, JwksCache
from broker_sdk.asgi import BrokerAuthMiddleware, challenge, require_claims
from tests.sdk.conftest import AUDIENCE, ISSUER, LEEWAY, TTL, Forge, JwksEndpoint, make_service, start
from tests.support.dpop import DPoPKey
from tests.support.servers import ThreadedServer


class CountingVerifier(BrokerVerifier):
    calls = 0

    async def verify(self, token: str) -> Claims:
        self.calls += 1
        return await super().verify(token)


@pytest.fixture
def service(keys_dir: Path) -> TokenService:
    return make_service(keys_dir)[1]


@pytest.fixture
def jwks_url(keys_dir: Path, serve: list[ThreadedServer]) -> str:
    return start(serve, JwksEndpoint(make_service(keys_dir)[0]))


@pytest.fixture
async def verifier(jwks_url: str) -> AsyncIterator[CountingVerifier]:
    checker = CountingVerifier(ISSUER, AUDIENCE, jwks=JwksCache(jwks_url), leeway=LEEWAY)
    yield checker
    await checker.aclose()


def build_app(verifier: BrokerVerifier, *, middleware: bool = True) -> Starlette:
    dependency = require_claims(verifier)

    async def me(request: Request) -> JSONResponse:
        claims = await dependency(request)
        return JSONResponse({"sub": claims["sub"], "state": request.state.broker_claims == claims})

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def feed(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": websocket.state.broker_claims["sub"]})
        await websocket.close()

    routes = [Route("/me", me), Route("/healthz", health), Route("/healthz/deep", health),
              Route("/public/page", health), WebSocketRoute("/feed", feed)]
    stack = [Middleware(BrokerAuthMiddleware, verifier=verifier, exempt_paths=("/healthz", "/public/"))]
    return Starlette(routes=routes, middleware=stack if middleware else [])


@pytest.fixture
async def client(verifier: CountingVerifier) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(verifier)),
                                 base_url="http://api.test") as http:
        yield http


def bearer(token: str, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


async def test_the_middleware_passes_claims_to_the_app(client: httpx.AsyncClient, service: TokenService,
                                                       verifier: CountingVerifier) -> None:
    token = service.issue(sub="alice", sid="s", scope="").token
    for scheme in ("Bearer", "bearer"):
        response = await client.get("/me", headers=bearer(token, scheme))
        assert response.status_code == 200 and response.json() == {"sub": "alice", "state": True}
    assert verifier.calls == 2  # the dependency reused what the middleware had verified


@pytest.mark.parametrize(("headers", "description", "www_authenticate"), [
    ({}, "missing bearer token", "Bearer"),  # no credentials: no error code (RFC 6750 section 3.1)
    (bearer("garbage"), "malformed token", 'Bearer error="invalid_token", error_description="malformed token"'),
    ({"Authorization": "Basic dXNlcjpwdw=="}, "malformed authorization header", 'Bearer error="invalid_token"'),
    ({"Authorization": "Bearer a b"}, "malformed authorization header", 'Bearer error="invalid_token"'),
    ({"Authorization": "Bearer "}, "malformed authorization header", 'Bearer error="invalid_token"'),
])
async def test_the_middleware_answers_401_with_a_bearer_challenge(
        client: httpx.AsyncClient, headers: dict[str, str], description: str, www_authenticate: str) -> None:
    response = await client.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_token", "error_description": description}
    assert response.headers["www-authenticate"].startswith(www_authenticate)
    assert response.headers["cache-control"] == "no-store"


async def test_expired_and_forged_tokens_get_401(client: httpx.AsyncClient, service: TokenService,
                                                 keys_dir: Path) -> None:
    forge = Forge(make_service(keys_dir)[0].signing_key(), time.time() - TTL - LEEWAY - 1)  # just expired
    for token, reason in ((forge.token(), "token expired"), (forge.token(iss="https://evil.example"), "wrong issuer")):
        response = await client.get("/me", headers=bearer(token))
        assert response.status_code == 401 and response.json()["error_description"] == reason
        assert response.headers["www-authenticate"] == (
            f'Bearer error="invalid_token", error_description="{reason}"')


async def test_exempt_paths_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/public/page")).status_code == 200  # an entry ending in / is a prefix
    assert (await client.get("/healthz/deep")).status_code == 401  # any other is an exact path


async def test_no_keys_means_503_not_401(service: TokenService) -> None:
    dead = BrokerVerifier(ISSUER, AUDIENCE, jwks=JwksCache(f"http://127.0.0.1:{free_port()}/jwks.json"))
    transport = httpx.ASGITransport(app=build_app(dead))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        response = await http.get("/me", headers=bearer(service.issue(sub="u", sid="s", scope="").token))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["error"] == "temporarily_unavailable"
    assert "127.0.0.1" not in response.text  # the reason is logged, not shown
    await dead.aclose()


async def test_the_dependency_alone_in_plain_starlette(verifier: CountingVerifier, service: TokenService) -> None:
    transport = httpx.ASGITransport(app=build_app(verifier, middleware=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        ok = await http.get("/me", headers=bearer(service.issue(sub="bob", sid="s", scope="").token))
        assert ok.status_code == 200 and ok.json() == {"sub": "bob", "state": True}
        missing = await http.get("/me")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        bad = await http.get("/me", headers=bearer("x.y.z"))
        assert bad.status_code == 401 and bad.text == "malformed token"
        assert bad.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert verifier.calls == 2


def test_the_dependency_has_the_signature_fastapi_injects() -> None:
    dependency = require_claims(BrokerVerifier(ISSUER, AUDIENCE, jwks=JwksCache("http://127.0.0.1:9/")))
    assert typing.get_type_hints(dependency) == {"request": Request, "return": dict[str, object]}


async def test_websockets_are_checked_too(verifier: CountingVerifier, service: TokenService) -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def connect(headers: list[tuple[bytes, bytes]]) -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "websocket.connect"}

        async def send(message: Message) -> None:
            sent.append(message)

        scope: Scope = {"type": "websocket", "path": "/feed", "headers": headers, "query_string": b""}
        await BrokerAuthMiddleware(inner, verifier)(scope, receive, send)
        return sent

    token = service.issue(sub="carol", sid="s", scope="").token
    assert await connect([(b"authorization", f"Bearer {token}".encode())]) == []
    assert seen[0]["state"]["broker_claims"]["sub"] == "carol"
    assert await connect([]) == [{"type": "websocket.close", "code": 1008, "reason": ""}]
    assert len(seen) == 1


def dpop_app(verifier: BrokerVerifier, *, middleware: DPoPChecker | None, dependency: DPoPChecker | None,
             public_origin: str | None = None) -> httpx.AsyncClient:
    claims_of = require_claims(verifier, dpop=dependency, public_origin=public_origin)

    async def me(request: Request) -> JSONResponse:
        return JSONResponse({"sub": (await claims_of(request))["sub"]})

    stack = [Middleware(BrokerAuthMiddleware, verifier=verifier, dpop=middleware, public_origin=public_origin)]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=Starlette(routes=[Route("/me", me)], middleware=stack)),
                             base_url="http://api.test")


async def test_with_a_dpop_checker_a_bound_token_counts_only_with_its_proof(verifier: CountingVerifier,
                                                                            service: TokenService) -> None:
    key, other = DPoPKey(), DPoPKey()
    bound = service.issue(sub="dora", sid="s", scope="", extra={"cnf": {"jkt": key.jkt}}).token
    plain = service.issue(sub="eve", sid="s", scope="").token
    checker = DPoPChecker()
    url = "http://api.test/me"
    async with dpop_app(verifier, middleware=checker, dependency=checker) as client:
        proof = key.proof("GET", url, access_token=bound)
        ok = await client.get("/me", headers={"Authorization": f"DPoP {bound}", "DPoP": proof})
        assert ok.status_code == 200 and ok.json() == {"sub": "dora"}
        refusals = {
            "replayed proof": ({"Authorization": f"DPoP {bound}", "DPoP": proof}, "already used"),
            "bound token as bearer": (bearer(bound), "needs Authorization: DPoP"),
            "no proof": ({"Authorization": f"DPoP {bound}"}, "a DPoP proof is required"),
            "another key's proof": ({"Authorization": f"DPoP {bound}",
                                     "DPoP": other.proof("GET", url, access_token=bound)}, "another key"),
            "proof for another token": ({"Authorization": f"DPoP {bound}",
                                         "DPoP": key.proof("GET", url, access_token=plain)}, "another access token"),
            "proof for another method": ({"Authorization": f"DPoP {bound}",
                                          "DPoP": key.proof("POST", url, access_token=bound)}, "another HTTP method"),
            "unbound token as DPoP": ({"Authorization": f"DPoP {plain}",
                                       "DPoP": key.proof("GET", url, access_token=plain)}, "not DPoP-bound"),
            "DPoP without a token": ({"Authorization": "DPoP"}, "malformed authorization header"),
        }
        for name, (headers, reason) in refusals.items():
            refused = await client.get("/me", headers=headers)
            assert refused.status_code == 401, name
            assert reason in refused.json()["error_description"], (name, refused.json())
            assert refused.headers["www-authenticate"].startswith('DPoP error="invalid_token"'), name
        unbound = await client.get("/me", headers=bearer(plain))  # bearer tokens are unchanged
        assert unbound.status_code == 200 and unbound.json() == {"sub": "eve"}


async def test_a_dependency_with_a_checker_does_not_trust_a_middleware_without_one(verifier: CountingVerifier,
                                                                                  service: TokenService) -> None:
    """Behind the broker's gateway (no checker) a bound token passes as a bearer token; a route that asks for
    the checker itself checks again, whatever the middleware let through."""
    key = DPoPKey()
    bound = service.issue(sub="dora", sid="s", scope="", extra={"cnf": {"jkt": key.jkt}}).token
    async with dpop_app(verifier, middleware=None, dependency=None) as gateway_side:
        assert (await gateway_side.get("/me", headers=bearer(bound))).status_code == 200
        direct = await gateway_side.get("/me", headers={"Authorization": f"DPoP {bound}",
                                                        "DPoP": key.proof("GET", "http://api.test/me")})
        assert direct.status_code == 401 and direct.headers["www-authenticate"].startswith("Bearer")
    async with dpop_app(verifier, middleware=None, dependency=DPoPChecker()) as strict_route:
        refused = await strict_route.get("/me", headers=bearer(bound))
        assert refused.status_code == 401 and "needs Authorization: DPoP" in refused.text
        assert refused.headers["www-authenticate"].startswith('DPoP error="invalid_token"')


async def test_behind_a_proxy_the_proof_names_the_public_origin(verifier: CountingVerifier,
                                                               service: TokenService) -> None:
    key = DPoPKey()
    bound = service.issue(sub="dora", sid="s", scope="", extra={"cnf": {"jkt": key.jkt}}).token
    checker = DPoPChecker()
    async with dpop_app(verifier, middleware=checker, dependency=checker,
                        public_origin="https://api.example.com") as client:
        public = key.proof("GET", "https://api.example.com/me", access_token=bound)
        assert (await client.get("/me", headers={"Authorization": f"DPoP {bound}", "DPoP": public})).status_code == 200
        internal = key.proof("GET", "http://api.test/me", access_token=bound)
        refused = await client.get("/me", headers={"Authorization": f"DPoP {bound}", "DPoP": internal})
        assert refused.status_code == 401 and "another URL" in refused.json()["error_description"]


def test_error_descriptions_stay_inside_the_quoted_string() -> None:
    assert challenge('bad "quote" \\ and\nnewline') == (
        'Bearer error="invalid_token", error_description="bad quote  andnewline"')


@pytest.fixture
def live_broker(base_settings: Settings) -> Iterator[tuple[Settings, ThreadedServer]]:
    port = free_port()
    settings = base_settings.with_overrides(issuer=f"http://127.0.0.1:{port}")
    with ThreadedServer(create_app(settings), port) as server:
        yield settings, server


async def test_the_docstring_example_runs_as_written(live_broker: tuple[Settings, ThreadedServer]) -> None:
    settings, _ = live_broker
    docstring = broker_sdk.__doc__ or ""
    match = re.search(r"```python\n(.*?)```", docstring, re.DOTALL)
    assert match is not None
    code = match.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) == 11  # short enough to copy
    namespace: dict[str, object] = {}
    exec(code.replace("https://auth.example.com", settings.issuer)  # noqa: S102 (our own docstring)
         .replace("https://api.example.com", settings.token_audience), namespace)
    app, example_verifier = namespace["app"], namespace["verifier"]
    assert isinstance(app, Starlette) and isinstance(example_verifier, BrokerVerifier)
    token = make_service(settings.keys_dir, issuer=settings.issuer, audience=settings.token_audience)[1].issue(
        sub="dana", sid="s", scope="").token
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as http:
        assert (await http.get("/me", headers=bearer(token))).json() == {"sub": "dana"}
        assert (await http.get("/me")).status_code == 401
        assert (await http.get("/healthz")).status_code == 404  # exempt, so the router answers
    await example_verifier.aclose()
