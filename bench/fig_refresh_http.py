"""Figure: POST /oauth/token with grant_type=refresh_token, over loopback HTTP against a bare Starlette POST
route, and the Redis work behind one refresh.

Load: bench/chained.py, one refresh family per worker, each always presenting the latest refresh token it
received (rotation, never a reuse). The families come from the session-cookie grant for one signed-in
session written straight through the broker's APIs (bench/session.py). The bare route gets a body of the
same size through the same driver and answers a token response of the broker's shape and size.
Counting: a second broker behind the counting Redis proxy, as in fig_redis.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from bench.chained import ChainSpec, measure_chains, next_refresh_token
from bench.config import BenchConfig
from bench.figures_api import Figure
from bench.loadgen import LoadResult
from bench.redis_proxy import CountingProxy
from bench.redis_stats import CommandCounter, Meter, Tally
from bench.report import FigureResult, Table, num, ratio, spread
from bench.serve_bare import BARE_REFRESH_TOKEN
from bench.session import create_session
from bench.stack import Broker, Stack
from bench.stats import interleaved, median, ratios
from broker.flows.tokens import SESSION_GRANT
from broker.web.cookies import session_cookie_name

PATH = "/oauth/token"
LABELS = {"bare": "bare Starlette POST route (floor)", "refresh": "POST /oauth/token, refresh_token"}
OPERATIONS = {"refresh": "POST /oauth/token, refresh_token (rotation)",
              "grant": "POST /oauth/token, session-cookie (new family)"}


class Chains:
    """Refresh chains for the broker side: one per worker, kept across rounds, replaced when broken."""

    def __init__(self, broker: Broker, size: int) -> None:
        self.broker = broker
        self.cookie_value = asyncio.run(create_session(broker.settings))
        self.tokens: list[str | None] = [None] * size
        self.started = 0

    def grant_headers(self) -> dict[str, str]:
        return {"Origin": self.broker.settings.issuer,
                "Cookie": f"{session_cookie_name(self.broker.settings)}={self.cookie_value}"}

    def refill(self) -> None:
        """A new family (its first refresh token) for every chain that has none."""
        missing = [i for i, token in enumerate(self.tokens) if token is None]
        if not missing:
            return

        async def start() -> list[str]:
            async with httpx.AsyncClient(timeout=10) as client:
                return [await session_grant(client, self.broker.url, self.grant_headers()) for _ in missing]

        for index, token in zip(missing, asyncio.run(start()), strict=True):
            self.tokens[index] = token
        self.started += len(missing)


async def session_grant(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> str:
    answer = await client.post(url + PATH, data={"grant_type": SESSION_GRANT}, headers=headers)
    return _refresh_token(answer, "session-cookie grant")


async def refresh(client: httpx.AsyncClient, url: str, token: str) -> str:
    answer = await client.post(url + PATH, data={"grant_type": "refresh_token", "refresh_token": token})
    return _refresh_token(answer, "refresh")


def _refresh_token(answer: httpx.Response, what: str) -> str:
    token = next_refresh_token(answer.content) if answer.status_code == 200 else None
    if token is None:
        raise RuntimeError(f"{what} answered {answer.status_code}: {answer.text[:200]}")
    return token


def _broker_round(spec: ChainSpec, families: Chains) -> LoadResult:
    families.refill()  # outside the clock: chains broken in an earlier round get a new family
    return measure_chains(spec, families.tokens)


def _bare_round(spec: ChainSpec, concurrency: int) -> LoadResult:
    return measure_chains(spec, [BARE_REFRESH_TOKEN] * concurrency)


@dataclass(frozen=True)
class Side:
    label: str
    rps: float
    p50_ms: float
    p99_ms: float
    rps_ratio: float
    p50_ratio: float
    p99_ratio: float
    bad_responses: int
    rps_ratios: list[float]
    p50_ratios: list[float]
    p99_ratios: list[float]
    rounds: list[dict[str, object]]
    baseline: bool = False

    def row(self) -> tuple[str, ...]:
        return (self.label, num(self.rps, 0), num(self.p50_ms, 2), num(self.p99_ms, 2), ratio(self.rps_ratio),
                "-" if self.baseline else spread(self.rps_ratios), ratio(self.p50_ratio), ratio(self.p99_ratio),
                str(self.bad_responses))


def _side(name: str, results: list[LoadResult], base: list[LoadResult]) -> Side:
    rps_ratios = ratios([r.rps for r in results], [b.rps for b in base])
    p50_ratios = ratios([r.p50_ms for r in results], [b.p50_ms for b in base])
    p99_ratios = ratios([r.p99_ms for r in results], [b.p99_ms for b in base])
    return Side(
        label=LABELS[name], rps=median([r.rps for r in results]), p50_ms=median([r.p50_ms for r in results]),
        p99_ms=median([r.p99_ms for r in results]), rps_ratio=median(rps_ratios), p50_ratio=median(p50_ratios),
        p99_ratio=median(p99_ratios), bad_responses=sum(r.completed - r.statuses.get(200, 0) + r.errors
                                                         for r in results),
        rps_ratios=rps_ratios, p50_ratios=p50_ratios, p99_ratios=p99_ratios, rounds=[r.summary() for r in results],
        baseline=results is base)


def _load(stack: Stack, config: BenchConfig) -> tuple[Table, dict[str, Any]]:
    broker, bare = stack.broker, stack.bare
    families = Chains(broker, config.concurrency)
    specs = {name: ChainSpec(port, PATH, duration=config.http_seconds, max_requests=config.max_requests_per_round)
             for name, port in (("bare", bare.port), ("refresh", broker.port))}
    sides = {"bare": functools.partial(_bare_round, specs["bare"], config.concurrency),
             "refresh": functools.partial(_broker_round, specs["refresh"], families)}
    warm_up = {name: ChainSpec(spec.port, PATH, duration=config.http_warmup_seconds,
                               max_requests=config.max_requests_per_round) for name, spec in specs.items()}
    _bare_round(warm_up["bare"], config.concurrency)  # connections, caches and the allocator settle first
    warm = _broker_round(warm_up["refresh"], families)
    rounds = interleaved(sides, config.http_rounds)
    results = {name: _side(name, side_rounds, rounds["bare"]) for name, side_rounds in rounds.items()}
    broken_in_warm_up = warm.completed - warm.statuses.get(200, 0) + warm.errors
    notes = [f"closed loop, {config.concurrency} keep-alive connections, each its own refresh family presenting "
             f"the latest refresh token it got; {config.http_rounds} rounds of {config.http_seconds:g} s per side, "
             "order bare, refresh every round",
             "the bare route reads the same-size form body and answers a fixed token response of the broker's "
             "shape and size; ratios are medians of per-round ratios against the bare round next to them",
             f"families started: {families.started} (by the session-cookie grant, outside the clock); p99 mostly "
             "measures host stalls on this machine"]
    if any(side.bad_responses for side in results.values()) or broken_in_warm_up:
        notes.append("WARNING: some responses were not 200 or failed; see the JSON")
    table = Table(
        title=f"POST /oauth/token (refresh) over loopback HTTP (uvicorn, 1 worker per app; median of "
              f"{config.http_rounds} rounds)",
        headers=("side", "req/s", "p50 ms", "p99 ms", "req/s ratio", "range", "p50 ratio", "p99 ratio", "non-200"),
        rows=tuple(side.row() for side in results.values()), notes=tuple(notes))
    data = {"sides": {name: asdict(side) for name, side in results.items()}, "concurrency": config.concurrency,
            "round_seconds": config.http_seconds, "rounds": config.http_rounds,
            "families_started": families.started, "warm_up_non_200": broken_in_warm_up}
    return table, data


async def _count(broker: Broker, meter: Meter, config: BenchConfig) -> dict[str, Tally]:
    tallies = {name: Tally() for name in OPERATIONS}
    cookie_value = await create_session(broker.settings)
    headers = {"Origin": broker.settings.issuer,
               "Cookie": f"{session_cookie_name(broker.settings)}={cookie_value}"}
    async with httpx.AsyncClient(timeout=10) as client:
        token = await session_grant(client, broker.url, headers)  # warm: connections, scripts loaded
        for _ in range(2):
            token = await refresh(client, broker.url, token)
        start = meter.point()
        for _ in range(config.counted_grants):
            await session_grant(client, broker.url, headers)
        meter.add(tallies["grant"], start, config.counted_grants)
        start = meter.point()
        for _ in range(config.counted_refreshes):
            token = await refresh(client, broker.url, token)
        meter.add(tallies["refresh"], start, config.counted_refreshes)
    return tallies


def _counted(stack: Stack, config: BenchConfig) -> dict[str, Tally]:
    assert stack.redis.port is not None  # the stack always runs Redis on loopback TCP
    proxy = CountingProxy(stack.redis.port).start()
    counter = CommandCounter(stack.redis.url)
    try:
        url = f"redis://:{stack.redis.password}@127.0.0.1:{proxy.port}/0"
        broker = stack.start_broker("broker-counted-refresh", 1, redis_url=url)
        try:
            return asyncio.run(_count(broker, Meter(counter, proxy), config))
        finally:
            broker.process.stop()
    finally:
        counter.close()
        proxy.stop()


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    speed, speed_data = _load(stack, config)
    tallies = {name: tally.per_op() for name, tally in _counted(stack, config).items()}
    work = Table(
        title="Redis work per token request (commands: INFO commandstats; round trips: counted on the wire)",
        headers=("operation", "commands", "round trips", "commands by name"),
        rows=tuple((OPERATIONS[name], f"{t.commands:g}", f"{t.round_trips:g}", t.breakdown())
                   for name, t in tallies.items()),
        notes=(f"means over {config.counted_refreshes} chained refreshes and {config.counted_grants} "
               "session-cookie grants; a script's inner commands count as commands, each call as one round trip",))
    data = {**speed_data, "per_operation": {name: asdict(t) for name, t in tallies.items()}}
    return FigureResult("refresh_http", (speed, work), data)


FIGURE = Figure("refresh_http", "POST /oauth/token refresh vs a bare Starlette POST route; Redis work per refresh",
                run)
