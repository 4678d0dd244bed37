"""A bounded closed-loop driver for chained refresh requests: each request carries what the last answer said.

Refresh tokens rotate: every successful `POST /oauth/token` (grant_type=refresh_token) returns a new refresh
token, and presenting a spent one after the grace window revokes the family. So, unlike bench/loadgen.py,
which repeats fixed bytes, each worker here holds its own chain (one refresh family on one keep-alive
connection), sends its latest refresh token, reads the whole answer, parses the JSON and presents the new
refresh token next, until the round's time (or request budget) runs out. Connecting happens before the
clock starts; latency is from the write to the last byte of the answer, before the JSON is parsed.

A token is never presented twice. When an answer is not a 200 carrying a refresh token, or the connection
fails, or the round is abandoned with a request in flight, the worker stops and its chain is marked broken
(None in the caller's list): the caller starts a new family before the next round.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass

from bench.loadgen import GRACE_SECONDS, LoadResult, parse_head

FORM = "application/x-www-form-urlencoded"
REFRESH_FORM = b"grant_type=refresh_token&refresh_token="


@dataclass(frozen=True)
class ChainSpec:
    port: int
    path: str = "/oauth/token"
    duration: float = 3.0
    max_requests: int = 200_000
    host: str = "127.0.0.1"
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (a client's Basic credentials)


def post_request(path: str, port: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The bytes of a form POST on a keep-alive connection."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: broker-bench\r\n{extra}"
            f"Content-Type: {FORM}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def refresh_request(spec: ChainSpec, refresh_token: str) -> bytes:
    return post_request(spec.path, spec.port, REFRESH_FORM + refresh_token.encode("ascii"), spec.headers)


def next_refresh_token(body: bytes) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    token = document.get("refresh_token") if isinstance(document, dict) else None
    return token if isinstance(token, str) and token else None


class _Round:
    def __init__(self, spec: ChainSpec, tokens: list[str | None]) -> None:
        self.spec = spec
        self.tokens = tokens
        self.budget = spec.max_requests
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.stop_at = 0.0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.spec.host, self.spec.port)

    async def drive(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clock = time.perf_counter
        token = self.tokens[index]
        self.tokens[index] = None  # broken unless this worker ends the round cleanly with a known token
        try:
            while token is not None and self.budget > 0 and clock() < self.stop_at:
                self.budget -= 1
                started = clock()
                writer.write(refresh_request(self.spec, token))
                try:
                    status, length, close = parse_head(await reader.readuntil(b"\r\n\r\n"))
                    body = await reader.readexactly(length) if length else b""
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                    self.errors += 1  # the answer is lost, and with it the chain's next token
                    return
                self.latencies.append((clock() - started) * 1000)
                self.statuses[status] += 1
                if status != 200:
                    return
                token = next_refresh_token(body)
                if token is None:
                    self.errors += 1
                    return
                if close:
                    writer.close()
                    reader, writer = await self.connect()
            self.tokens[index] = token
        finally:
            writer.close()


async def run_chains(spec: ChainSpec, tokens: list[str | None]) -> LoadResult:
    """One round: a worker and a connection per entry of `tokens`, each updated in place to its chain's
    latest refresh token (None where the chain broke). Every entry must hold a token on entry."""
    if any(token is None for token in tokens):
        raise ValueError("every chain needs a refresh token before a round")
    state = _Round(spec, tokens)
    connections = await asyncio.gather(*(state.connect() for _ in tokens))
    started = time.perf_counter()
    state.stop_at = started + spec.duration
    tasks = [asyncio.ensure_future(state.drive(i, r, w)) for i, (r, w) in enumerate(connections)]
    done, pending = await asyncio.wait(tasks, timeout=spec.duration + GRACE_SECONDS)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    elapsed = time.perf_counter() - started
    failed = sum(1 for task in done if task.exception() is not None) + len(pending)
    return LoadResult(completed=len(state.latencies), errors=state.errors + failed, elapsed=elapsed,
                      statuses=dict(state.statuses), latencies_ms=tuple(sorted(state.latencies)))


def measure_chains(spec: ChainSpec, tokens: list[str | None]) -> LoadResult:
    return asyncio.run(run_chains(spec, tokens))
