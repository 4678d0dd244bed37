"""Figure: the latency of /auth/verify at a steady moderate load, beside the bare route at the same load.

Open loop (bench/openloop.py): a fixed request rate well under every side's capacity, so what is measured is the
time one check takes, not queueing at saturation. The bare route receives the very bytes the cookie side does.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

from bench.config import BenchConfig
from bench.fig_verify_http import LABELS, check_specs
from bench.figures_api import Figure
from bench.loadgen import LoadResult
from bench.openloop import OpenLoopSpec, measure_open_loop
from bench.report import FigureResult, Table, num, ratio, spread
from bench.stack import Stack
from bench.stats import interleaved, median, percentile, ratios


@dataclass(frozen=True)
class Side:
    label: str
    achieved_rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p50_ratio: float
    p50_ratios: list[float]
    p50_vs_answer: float  # against the bare route answering the broker's headers
    bad_responses: int


def _p(result: LoadResult, q: float) -> float:
    return percentile(result.latencies_ms, q)


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    closed = check_specs(stack, config)
    specs = {name: OpenLoopSpec(spec.port, spec.request, rate=config.open_loop_rate, duration=config.http_seconds,
                                connections=config.open_loop_connections) for name, spec in closed.items()}
    for spec in specs.values():
        measure_open_loop(OpenLoopSpec(spec.port, spec.request, rate=spec.rate, duration=config.http_warmup_seconds,
                                       connections=spec.connections))
    rounds = interleaved({name: functools.partial(measure_open_loop, spec) for name, spec in specs.items()},
                         config.http_rounds)
    base, answer = rounds["bare"], rounds["answer"]
    sides = {}
    for name, results in rounds.items():
        p50_ratios = ratios([r.p50_ms for r in results], [b.p50_ms for b in base])
        vs_answer = ratios([r.p50_ms for r in results], [a.p50_ms for a in answer])
        sides[name] = Side(LABELS[name], median([r.rps for r in results]), median([r.p50_ms for r in results]),
                           median([_p(r, 90) for r in results]), median([r.p99_ms for r in results]),
                           median(p50_ratios), p50_ratios, median(vs_answer),
                           sum(r.completed - r.statuses.get(200, 0) + r.errors for r in results))
    rows = tuple((side.label, num(side.achieved_rps, 0), num(side.p50_ms, 2), num(side.p90_ms, 2), num(side.p99_ms, 2),
                  ratio(side.p50_ratio), "-" if name == "bare" else spread(side.p50_ratios),
                  "-" if name == "bare" else ratio(side.p50_vs_answer), str(side.bad_responses))
                 for name, side in sides.items())
    table = Table(
        title=f"/auth/verify latency at a steady {config.open_loop_rate:g} req/s (open loop; median of "
              f"{config.http_rounds} rounds)",
        headers=("side", "req/s", "p50 ms", "p90 ms", "p99 ms", "p50 ratio", "range", "vs answer", "non-200"),
        rows=rows,
        notes=(f"{config.open_loop_connections} keep-alive connections on fixed schedules, {config.http_seconds:g} s "
               "per side per round, order bare, answer, cookie, bearer; latency from each request's scheduled "
               "send time",
               "vs answer: p50 against the bare route answering the broker's very headers",
               "the load generator's own scheduling and the HTTP exchange are in both sides alike"))
    return FigureResult("latency", (table,), {name: asdict(side) for name, side in sides.items()})


FIGURE = Figure("latency", "/auth/verify latency at a steady moderate load vs the bare route", run)
