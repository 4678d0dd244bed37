"""Figure: where the time of one refresh goes, inside the broker: signing, Redis, form parsing, JSON, the rest.

The broker's ASGI app (built by create_app, as `broker serve` builds it) is driven directly in this process on
uvloop, one refresh after another, each presenting the token the last one returned, on the real Redis. Timers
wrap the four parts the issue names (the JWT signature, the rotation's Redis round trip, the form parser, the
JSON body) and the whole request; the rest is routing, middleware, client checks, the sealed grace copy and the
HTTP messages. The HTTP server's own share (parsing, sockets) is not in these numbers: see refresh_http.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvloop
from starlette.responses import JSONResponse

import broker.signing.tokens as signing
import broker.web.oauth as oauth
from bench.asgi_post import post_form
from bench.config import BenchConfig
from bench.figures_api import Figure
from bench.profile_check import _lifespan
from bench.report import FigureResult, Table, num
from bench.session import create_session
from bench.stack import Stack
from bench.stats import median
from broker.app import create_app
from broker.config import Settings
from broker.flows.tokens import SESSION_GRANT
from broker.web.cookies import session_cookie_name

PARTS = ("signing", "redis", "form", "json")
LABELS = {"signing": "signing the access JWT (ES256)", "redis": "Redis: the rotation script, one round trip",
          "form": "parsing the form body", "json": "JSON body of the answer",
          "rest": "the rest: routing, middleware, client, grace copy, HTTP messages"}


@dataclass
class Timers:
    spent: dict[str, float]

    def timed_sync(self, part: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter() - started
        return timed

    def timed_async(self, part: str, function: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter() - started
        return timed


@contextmanager
def _instrumented(app: Any, timers: Timers) -> Iterator[None]:
    """Timers around the parts, put where the broker looks them up, taken away afterwards."""
    families = app.state.services.tokens.families
    # (where the callable is looked up, its name, the part, whether it is awaited)
    places: list[tuple[Any, str, str, bool]] = [(signing, "sign_jwt", "signing", False), (oauth, "_form", "form", True),
                                                (JSONResponse, "render", "json", False),
                                                (families, "_rotate", "redis", True)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _, _ in places]
    for owner, name, part, awaited in places:
        original = getattr(owner, name)
        setattr(owner, name, timers.timed_async(part, original) if awaited else timers.timed_sync(part, original))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


async def _refresh(app: Any, token: str) -> str:
    answer = await post_form(app, "/oauth/token", b"grant_type=refresh_token&refresh_token=" + token.encode())
    return str(answer["refresh_token"])


async def _first_token(app: Any, settings: Settings) -> str:
    cookie = f"{session_cookie_name(settings)}={await create_session(settings)}".encode()
    answer = await post_form(app, "/oauth/token", f"grant_type={SESSION_GRANT}".encode(),
                             headers=((b"origin", settings.issuer.encode()), (b"cookie", cookie)))
    return str(answer["refresh_token"])


async def _measure(settings: Settings, config: BenchConfig) -> list[dict[str, float]]:
    app = create_app(settings)
    background = await _lifespan(app)
    token = await _first_token(app, settings)
    for _ in range(config.share_warmup):
        token = await _refresh(app, token)
    rounds: list[dict[str, float]] = []
    for _ in range(config.share_rounds):
        timers = Timers(dict.fromkeys(PARTS, 0.0))
        with _instrumented(app, timers):
            started = time.perf_counter()
            for _ in range(config.share_refreshes):
                token = await _refresh(app, token)
            total = time.perf_counter() - started
        per = {part: spent / config.share_refreshes * 1e6 for part, spent in timers.spent.items()}
        per["total"] = total / config.share_refreshes * 1e6
        per["rest"] = per["total"] - sum(per[part] for part in PARTS)
        rounds.append(per)
    background.cancel()
    return rounds


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    settings = stack.broker.settings  # the real Redis, the broker's keys and vault
    rounds = uvloop.run(_measure(settings, config))
    medians = {part: median([r[part] for r in rounds]) for part in (*PARTS, "rest", "total")}
    rows = tuple((LABELS[part], num(medians[part], 1), f"{100 * medians[part] / medians['total']:.0f}%")
                 for part in (*PARTS, "rest"))
    table = Table(
        title=f"Where a refresh's time goes in the broker (in-process, uvloop; median of {config.share_rounds} "
              f"rounds of {config.share_refreshes} chained refreshes)",
        headers=("part", "µs per refresh", "share"),
        rows=(*rows, ("whole request, without the HTTP server", num(medians["total"], 1), "100%")),
        notes=("one refresh after another on one family (the real Redis, one round trip each); the Redis part is "
               "the round trip as this process waits for it, Redis's own script time included",))
    return FigureResult("refresh_shares", (table,), {"medians_us": medians, "rounds": rounds})


FIGURE = Figure("refresh_shares", "where a refresh's time goes: signing, Redis, form parsing, JSON, the rest", run)
