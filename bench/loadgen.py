"""A bounded HTTP/1.1 keep-alive load generator on raw asyncio streams (far cheaper per request than httpx).

Closed loop: `concurrency` connections each send one request, read the whole response, and repeat until
the round's time (or request budget) runs out. Connecting happens before the clock starts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.stats import percentile

GRACE_SECONDS = 15.0  # a round that has not finished this long after its deadline is abandoned


@dataclass(frozen=True)
class LoadSpec:
    port: int
    request: bytes
    concurrency: int = 32
    duration: float = 3.0
    max_requests: int = 200_000
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class LoadResult:
    completed: int
    errors: int
    elapsed: float
    statuses: dict[int, int]
    latencies_ms: tuple[float, ...] = field(repr=False)  # sorted

    @property
    def rps(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)

    def summary(self) -> dict[str, object]:
        return {"rps": self.rps, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "completed": self.completed,
                "errors": self.errors, "elapsed_s": self.elapsed, "statuses": self.statuses}


def build_request(path: str, port: int, headers: Mapping[str, str] | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "User-Agent: broker-bench"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length and whether the server will close, from a response head."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
        elif name == b"transfer-encoding":
            raise ValueError("chunked responses are not supported by this generator")
    return status, length, close


class _Round:
    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.budget = spec.max_requests
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.stop_at = 0.0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.spec.host, self.spec.port)

    async def drive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request, clock = self.spec.request, time.perf_counter
        try:
            while self.budget > 0 and clock() < self.stop_at:
                self.budget -= 1
                started = clock()
                writer.write(request)
                try:
                    status, length, close = parse_head(await reader.readuntil(b"\r\n\r\n"))
                    if length:
                        await reader.readexactly(length)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                    self.errors += 1
                    writer.close()
                    reader, writer = await self.connect()
                    continue
                self.latencies.append((clock() - started) * 1000)
                self.statuses[status] += 1
                if close:
                    writer.close()
                    reader, writer = await self.connect()
        finally:
            writer.close()


async def run_load(spec: LoadSpec) -> LoadResult:
    state = _Round(spec)
    connections = await asyncio.gather(*(state.connect() for _ in range(spec.concurrency)))
    started = time.perf_counter()
    state.stop_at = started + spec.duration
    tasks = [asyncio.ensure_future(state.drive(r, w)) for r, w in connections]
    done, pending = await asyncio.wait(tasks, timeout=spec.duration + GRACE_SECONDS)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - started
    failed = sum(1 for task in done if task.exception() is not None) + len(pending)
    return LoadResult(completed=len(state.latencies), errors=state.errors + failed, elapsed=elapsed,
                      statuses=dict(state.statuses), latencies_ms=tuple(sorted(state.latencies)))


def measure(spec: LoadSpec) -> LoadResult:
    return asyncio.run(run_load(spec))
