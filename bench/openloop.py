"""An open-loop HTTP/1.1 load: requests sent at a fixed rate, whatever the server's pace.

A closed loop measures a server at saturation, where latency is concurrency over throughput. This measures
what a request costs at a moderate, steady load, the usual life of an auth check: `connections` keep-alive
connections each send on their own fixed schedule (rate / connections per second, evenly offset), and a
request's latency runs from its scheduled send time, so a slow answer that delays the next send is charged to
that request too (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

from bench.loadgen import LoadResult, parse_head


@dataclass(frozen=True)
class OpenLoopSpec:
    port: int
    request: bytes
    rate: float  # requests per second, all connections together
    duration: float
    connections: int = 8
    host: str = "127.0.0.1"


async def _connection(spec: OpenLoopSpec, offset: float, start: float, latencies: list[float],
                      statuses: Counter[int]) -> int:
    reader, writer = await asyncio.open_connection(spec.host, spec.port)
    interval = spec.connections / spec.rate
    errors, due, clock = 0, start + offset, time.perf_counter
    try:
        while due < start + spec.duration:
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(spec.request)
            try:
                status, length, _ = parse_head(await reader.readuntil(b"\r\n\r\n"))
                if length:
                    await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(spec.host, spec.port)
                due += interval
                continue
            latencies.append((clock() - due) * 1000)
            statuses[status] += 1
            due += interval
    finally:
        writer.close()
    return errors


async def run_open_loop(spec: OpenLoopSpec) -> LoadResult:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    start = time.perf_counter() + 0.05
    step = 1 / spec.rate
    errors = await asyncio.gather(*(_connection(spec, i * step, start, latencies, statuses)
                                    for i in range(spec.connections)))
    elapsed = time.perf_counter() - start
    return LoadResult(completed=len(latencies), errors=sum(errors), elapsed=elapsed, statuses=dict(statuses),
                      latencies_ms=tuple(sorted(latencies)))


def measure_open_loop(spec: OpenLoopSpec) -> LoadResult:
    return asyncio.run(run_open_loop(spec))
