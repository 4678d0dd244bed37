"""`python -m bench.profile_token`: where the microseconds of one refresh and one introspection go, in the process.

Drives the broker's ASGI app directly (no socket, no HTTP parser), on a real Redis, with the requests figure peer
sends: a chained refresh (`POST /oauth/token`, each request presenting the refresh token the previous answer
rotated in) and an introspection of one access JWT (`POST /oauth/introspect`) with the per-process cache off, both
from a confidential client with client_secret_basic. Prints the microseconds per request and a cProfile of each
(the functions with the most time of their own). The HTTP server's share is not in these numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import io
import json
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.profile_check import _lifespan
from bench.session import app_families
from bench.stack import APP_ID, APP_SECRET, Stack
from broker.app import create_app
from broker.config import load_settings

ASGIApp = Callable[..., Awaitable[None]]
BASIC = b"Basic " + base64.b64encode(f"{APP_ID}:{APP_SECRET}".encode())


def _scope(path: str, body: bytes, port: int) -> dict[str, Any]:
    headers = [(b"host", f"127.0.0.1:{port}".encode()), (b"authorization", BASIC),
               (b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", str(len(body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", port),
            "state": {}}


async def _call(app: ASGIApp, path: str, body: bytes, port: int) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    await app(_scope(path, body, port), receive, send)
    if answer.get("status") != 200:
        raise RuntimeError(f"{path} answered {answer.get('status')}: {answer.get('body', b'')[:200]!r}")
    result: dict[str, Any] = json.loads(answer["body"])
    return result


class Chain:
    """One refresh family, always presenting the latest refresh token."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def step(self, app: ASGIApp, port: int) -> None:
        answer = await _call(app, "/oauth/token", b"grant_type=refresh_token&refresh_token=" + self.token.encode(),
                             port)
        self.token = answer["refresh_token"]


async def _timed(action: Callable[[], Awaitable[None]], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        await action()
    return (time.perf_counter() - started) / count


async def profile(stack: Stack, count: int, rounds: int, top: int) -> str:
    env = {**stack.broker_env(stack.broker_ports[0], stack.redis.url), "BROKER_LOCAL_CACHE_SIZE": "0"}
    settings = load_settings(env)
    port = stack.broker_ports[0]
    pairs = await app_families(settings, APP_ID, 2)
    chain = Chain(pairs[0].refresh_token)
    introspection = b"token=" + pairs[1].access_token.encode()
    broker = create_app(settings)
    background = await _lifespan(broker)

    async def refresh() -> None:
        await chain.step(broker, port)

    async def introspect() -> None:
        if (await _call(broker, "/oauth/introspect", introspection, port)).get("active") is not True:
            raise RuntimeError("the token is not active")

    sides = {"refresh (POST /oauth/token)": refresh, "introspection, cache off": introspect}
    for action in sides.values():
        await _timed(action, count // 4)  # warm
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, action in sides.items():
            seconds = await _timed(action, count)
            best[name] = min(best.get(name, seconds), seconds)
    lines = [f"{name:<30} {best[name] * 1e6:7.1f} µs per request (best of {rounds} rounds of {count})"
             for name in sides]
    for name, action in sides.items():
        profiler = cProfile.Profile()
        profiler.enable()
        await _timed(action, count)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
        lines += ["", f"cProfile, {name}, {count} requests, by own time:",
                  *(line for line in out.getvalue().splitlines()[6:] if line.strip())]
    background.cancel()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_token", description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="broker-profile-") as tmp, Stack(Path(tmp)) as stack:
        print(asyncio.run(profile(stack, args.count, args.rounds, args.top)))


if __name__ == "__main__":
    main()
