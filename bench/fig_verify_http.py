"""Figure: GET /auth/verify (session cookie, and bearer JWT) vs a bare Starlette route, over loopback HTTP.

Both apps run under the same uvicorn options, one worker each, as child processes; the load comes from
this process (bench/loadgen.py). The bare route receives the very bytes the cookie side does.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import asdict, dataclass, replace

import httpx

from bench.config import BenchConfig
from bench.figures_api import Figure
from bench.loadgen import LoadResult, LoadSpec, build_request, measure
from bench.report import FigureResult, Table, num, ratio, spread
from bench.session import create_session
from bench.stack import Stack
from bench.stats import interleaved, median, ratios
from broker.web.cookies import session_cookie_name

PATH = "/auth/verify"
LABELS = {"bare": "bare Starlette route (floor)", "answer": "bare route, the broker's answer",
          "cookie": "/auth/verify, session cookie", "bearer": "/auth/verify, bearer JWT"}
# What the broker's answer carries that the second floor repeats (uvicorn adds date and content-length itself).
ANSWER_HEADERS = ("authorization", "x-auth-request-user", "x-auth-request-open-id", "cache-control", "pragma",
                  "x-request-id")


def check_specs(stack: Stack, config: BenchConfig) -> dict[str, LoadSpec]:
    """The sides' requests, for a session written straight into Redis: the bare floor, the bare route answering
    with the broker's headers (the HTTP cost of the answer itself, without the broker's work), cookie, bearer."""
    broker, bare = stack.broker, stack.bare
    cookie_value = asyncio.run(create_session(broker.settings))
    cookie = {"Cookie": f"{session_cookie_name(broker.settings)}={cookie_value}"}
    first = httpx.get(broker.url + PATH, headers=cookie, timeout=10)
    if first.status_code != 200:
        raise RuntimeError(f"cookie check answered {first.status_code}: {first.text[:200]}")
    bearer = {"Authorization": first.headers["authorization"]}
    if (status := httpx.get(broker.url + PATH, headers=bearer, timeout=10).status_code) != 200:
        raise RuntimeError(f"bearer check answered {status}")
    answering = stack.start_bare_answering({name: first.headers[name] for name in ANSWER_HEADERS
                                            if name in first.headers})
    shape = LoadSpec(0, b"", concurrency=config.concurrency, duration=config.http_seconds,
                     max_requests=config.max_requests_per_round)
    return {
        "bare": replace(shape, port=bare.port, request=build_request(PATH, bare.port, cookie)),
        "answer": replace(shape, port=answering.port, request=build_request(PATH, answering.port, cookie)),
        "cookie": replace(shape, port=broker.port, request=build_request(PATH, broker.port, cookie)),
        "bearer": replace(shape, port=broker.port, request=build_request(PATH, broker.port, bearer)),
    }


@dataclass(frozen=True)
class Side:
    label: str
    rps: float
    p50_ms: float
    p99_ms: float
    rps_ratio: float
    p50_ratio: float
    bad_responses: int
    rps_ratios: list[float]
    p50_ratios: list[float]
    answer_ratio: float  # req/s against the bare route giving the broker's answer
    answer_ratios: list[float]
    rounds: list[dict[str, object]]
    baseline: bool = False

    def row(self) -> tuple[str, ...]:
        return (self.label, num(self.rps, 0), num(self.p50_ms, 2), num(self.p99_ms, 2), ratio(self.rps_ratio),
                "-" if self.baseline else spread(self.rps_ratios), ratio(self.p50_ratio),
                "-" if self.baseline else ratio(self.answer_ratio), str(self.bad_responses))


def _side(name: str, results: list[LoadResult], base: list[LoadResult], answer: list[LoadResult]) -> Side:
    rps_ratios = ratios([r.rps for r in results], [b.rps for b in base])
    p50_ratios = ratios([r.p50_ms for r in results], [b.p50_ms for b in base])
    answer_ratios = ratios([r.rps for r in results], [a.rps for a in answer])
    return Side(
        label=LABELS[name], rps=median([r.rps for r in results]), p50_ms=median([r.p50_ms for r in results]),
        p99_ms=median([r.p99_ms for r in results]), rps_ratio=median(rps_ratios), p50_ratio=median(p50_ratios),
        bad_responses=sum(r.completed - r.statuses.get(200, 0) + r.errors for r in results),
        rps_ratios=rps_ratios, p50_ratios=p50_ratios, answer_ratio=median(answer_ratios),
        answer_ratios=answer_ratios, rounds=[r.summary() for r in results], baseline=results is base)


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    specs = check_specs(stack, config)
    for spec in specs.values():  # connections, caches and the allocator settle before anything counts
        measure(replace(spec, duration=config.http_warmup_seconds))
    rounds = interleaved({name: functools.partial(measure, spec) for name, spec in specs.items()},
                         config.http_rounds)
    sides = {name: _side(name, results, rounds["bare"], rounds["answer"]) for name, results in rounds.items()}
    notes = [f"closed loop, {config.concurrency} keep-alive connections, {config.http_rounds} rounds of "
             f"{config.http_seconds:g} s per side, order bare, answer, cookie, bearer every round",
             "ratios are medians of per-round ratios against the bare round next to them; vs answer: req/s against "
             "the bare route answering the broker's very headers (a JWT among them), i.e. what the broker's own "
             "work costs; p99 mostly measures host stalls on this machine"]
    if any(side.bad_responses for side in sides.values()):
        notes.append("WARNING: some responses were not 200 or failed; see the JSON")
    table = Table(
        title=f"/auth/verify over loopback HTTP (uvicorn, 1 worker per app; median of {config.http_rounds} rounds)",
        headers=("side", "req/s", "p50 ms", "p99 ms", "req/s ratio", "range", "p50 ratio", "vs answer", "non-200"),
        rows=tuple(side.row() for side in sides.values()), notes=tuple(notes))
    data = {"sides": {name: asdict(side) for name, side in sides.items()}, "concurrency": config.concurrency,
            "round_seconds": config.http_seconds, "rounds": config.http_rounds}
    return FigureResult("verify_http", (table,), data)


FIGURE = Figure("verify_http", "/auth/verify (cookie, bearer) vs a bare Starlette route over loopback", run)
