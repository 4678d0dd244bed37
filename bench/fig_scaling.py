"""Figure: /auth/verify (session cookie) with 1 and 2 uvicorn workers, beside the bare route with 1 and 2.

Load from wrk when it is installed (C: it leaves more of the two cores to the servers than our generator
would), else from bench/loadgen.py. Each round measures the four sides in the same order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx

from bench import wrk
from bench.config import BenchConfig
from bench.figures_api import Figure
from bench.loadgen import LoadSpec, build_request, measure
from bench.report import FigureResult, Table, num, ratio, spread
from bench.session import create_session
from bench.stack import Stack
from bench.stats import interleaved, median, ratios
from broker.web.cookies import session_cookie_name

PATH = "/auth/verify"
WORKER_COUNTS = (1, 2)


@dataclass(frozen=True)
class Sample:
    rps: float
    p50_ms: float
    bad: int


def _sampler(port: int, headers: dict[str, str], config: BenchConfig, use_wrk: bool) -> Callable[[], Sample]:
    def sample() -> Sample:
        if use_wrk:
            result = wrk.run(f"http://127.0.0.1:{port}{PATH}", headers=headers, seconds=config.http_seconds,
                             connections=config.concurrency)
            return Sample(result.rps, result.p50_ms, result.bad)
        loaded = measure(LoadSpec(port, build_request(PATH, port, headers), concurrency=config.concurrency,
                                  duration=config.http_seconds, max_requests=config.max_requests_per_round))
        return Sample(loaded.rps, loaded.p50_ms, loaded.completed - loaded.statuses.get(200, 0) + loaded.errors)

    return sample


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    use_wrk = wrk.available()
    servers = {}
    for workers in WORKER_COUNTS:
        servers[f"bare x{workers}"] = stack.start_workers(f"bare-w{workers}", broker=False, workers=workers)
        servers[f"broker x{workers}"] = stack.start_workers(f"broker-w{workers}", broker=True, workers=workers)
    cookie_value = asyncio.run(create_session(stack.broker.settings))
    headers = {"Cookie": f"{session_cookie_name(stack.broker.settings)}={cookie_value}"}
    for name, server in servers.items():  # every worker warms up: several checks each
        for _ in range(20):
            status = httpx.get(server.url + PATH, headers=headers, timeout=10).status_code
            if status != 200:
                raise RuntimeError(f"{name} answered {status}")
    samplers = {name: _sampler(server.port, headers, config, use_wrk) for name, server in servers.items()}
    rounds = interleaved(samplers, config.http_rounds)
    rows = []
    raw: dict[str, list[dict[str, object]]] = {}
    for workers in WORKER_COUNTS:
        bare, broker = rounds[f"bare x{workers}"], rounds[f"broker x{workers}"]
        vs_bare = ratios([b.rps for b in broker], [b.rps for b in bare])
        for name, side in ((f"bare x{workers}", bare), (f"broker x{workers}", broker)):
            one = rounds[name.replace(f"x{workers}", "x1")]
            scaling = ratios([s.rps for s in side], [o.rps for o in one])
            is_broker = name.startswith("broker")
            rows.append((
                f"{'/auth/verify, cookie' if is_broker else 'bare route'}, {workers} worker{'s' * (workers > 1)}",
                num(median([s.rps for s in side]), 0), num(median([s.p50_ms for s in side]), 2),
                ratio(median(vs_bare)) if is_broker else "1.00x", spread(vs_bare) if is_broker else "-",
                ratio(median(scaling)), str(sum(s.bad for s in side))))
            raw[name] = [asdict(s) for s in side]
    generator = "wrk" if use_wrk else "bench.loadgen"
    notes = (f"closed loop, {config.concurrency} keep-alive connections, {config.http_rounds} rounds of "
             f"{config.http_seconds:g} s per side, generator: {generator}",
             "vs bare: the broker's req/s over the bare route's with as many workers, same round; "
             "vs 1 worker: the same app's req/s over its 1-worker req/s, same round",
             "two cores carry the servers, Redis and the load generator: a second worker cannot double anything")
    table = Table(title=f"/auth/verify scaling with uvicorn workers (median of {config.http_rounds} rounds)",
                  headers=("side", "req/s", "p50 ms", "vs bare", "range", "vs 1 worker", "non-200"),
                  rows=tuple(rows), notes=notes)
    return FigureResult("scaling", (table,), {"generator": generator, "rounds": raw})


FIGURE = Figure("scaling", "/auth/verify with 1 and 2 uvicorn workers beside the bare route", run)
