"""`python -m bench.profile_check`: where the microseconds of one /auth/verify go, inside the process.

Drives the broker's ASGI app directly (no socket, no HTTP parser) with the requests figure verify_http sends, beside
the bare Starlette app answering the broker's very headers, on a real Redis, and prints the microseconds per request
of each and a cProfile of the broker's side (the functions with the most time of their own). The HTTP server's
share is the same on both sides and is not in these numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from bench.session import create_session
from bench.stack import Stack
from broker.app import create_app
from broker.config import load_settings
from broker.web.cookies import session_cookie_name

ASGIApp = Callable[..., Any]


def _scope(headers: dict[str, str], port: int) -> dict[str, Any]:
    raw = [(b"host", f"127.0.0.1:{port}".encode()), *((k.lower().encode(), v.encode()) for k, v in headers.items())]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": "/auth/verify", "raw_path": b"/auth/verify",
            "query_string": b"", "root_path": "", "headers": raw, "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", port), "state": {}}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _drive(app: ASGIApp, scope: dict[str, Any], count: int) -> float:
    """Seconds per request, all answered 200."""
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.perf_counter()
    for _ in range(count):
        await app(dict(scope), _receive, send)
    elapsed = time.perf_counter() - started
    if set(statuses) != {200}:
        raise RuntimeError(f"answers {sorted(set(statuses))}")
    return elapsed / count


async def _lifespan(app: ASGIApp) -> asyncio.Task[None]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})
    started = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, send))
    await started.wait()
    return task


async def profile(stack: Stack, count: int, rounds: int, top: int) -> str:
    from bench.serve_bare import create_bare_app

    env = stack.broker_env(stack.broker_ports[0], stack.redis.url)
    settings = load_settings(env)
    cookie = {"Cookie": f"{session_cookie_name(settings)}={await create_session(settings)}"}
    broker = create_app(settings)
    background = await _lifespan(broker)
    port = stack.broker_ports[0]
    answer: dict[str, str] = {}

    async def capture(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.update({k.decode(): v.decode() for k, v in message["headers"]
                           if k.decode() not in ("content-length", "x-request-id")})

    await broker(_scope(cookie, port), _receive, capture)
    bearer = {"Authorization": answer["authorization"]}
    import os

    os.environ["BENCH_BARE_ANSWER_HEADERS"] = __import__("json").dumps(answer)
    bare = create_bare_app()
    sides = {"bare route, the broker's answer": (bare, cookie), "/auth/verify, session cookie": (broker, cookie),
             "/auth/verify, bearer JWT": (broker, bearer)}
    for app, headers in sides.values():
        await _drive(app, _scope(headers, port), count // 4)  # warm
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, (app, headers) in sides.items():
            seconds = await _drive(app, _scope(headers, port), count)
            best[name] = min(best.get(name, seconds), seconds)
    lines = [f"{name:<34} {best[name] * 1e6:7.1f} µs per request (best of {rounds} rounds of {count})"
             for name in sides]
    for label, headers in (("session cookie", cookie), ("bearer JWT", bearer)):
        profiler = cProfile.Profile()
        profiler.enable()
        await _drive(broker, _scope(headers, port), count)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
        lines += ["", f"cProfile, /auth/verify with a {label}, {count} requests, by own time:",
                  *(line for line in out.getvalue().splitlines()[6:] if line.strip())]
    background.cancel()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_check", description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="broker-profile-") as tmp, Stack(Path(tmp)) as stack:
        print(asyncio.run(profile(stack, args.count, args.rounds, args.top)))


if __name__ == "__main__":
    main()
