"""`python -m bench.profile_token`: where the CPU of one refresh and one introspection goes, inside the process.

Drives the broker's ASGI app directly (no socket, no HTTP parser) on uvloop, as `broker serve` runs it, on a real
Redis, with the requests figure peer sends and as many in flight as its connections (32): chained refreshes
(`POST /oauth/token`, each family presenting the refresh token its previous answer rotated in) and introspections
of one access JWT (`POST /oauth/introspect`) with the per-process cache off, from a confidential client with
client_secret_basic. Prints this process's CPU time per request (best of the rounds; the Redis server's time is
not in it, the HTTP server's neither) and a cProfile of each (the functions with the most time of their own).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import functools
import io
import pstats
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from bench.asgi_post import ASGIApp, post_form
from bench.profile_check import _lifespan
from bench.session import app_families
from bench.stack import APP_ID, APP_SECRET, Stack
from broker.app import create_app
from broker.config import load_settings

BASIC = ((b"authorization", b"Basic " + base64.b64encode(f"{APP_ID}:{APP_SECRET}".encode())),)


class Chain:
    """One refresh family, always presenting the latest refresh token."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def step(self, app: ASGIApp, port: int) -> None:
        answer = await post_form(app, "/oauth/token", b"grant_type=refresh_token&refresh_token=" + self.token.encode(),
                                 port=port, headers=BASIC)
        self.token = answer["refresh_token"]


async def _cpu_per_call(actions: list[Callable[[], Awaitable[None]]], count: int) -> float:
    """CPU seconds of this process per call, `count` calls spread over the actions running side by side."""
    async def run(action: Callable[[], Awaitable[None]], times: int) -> None:
        for _ in range(times):
            await action()

    started = time.process_time()
    await asyncio.gather(*(run(action, count // len(actions)) for action in actions))
    return (time.process_time() - started) / (count // len(actions) * len(actions))


async def profile(stack: Stack, count: int, rounds: int, top: int, in_flight: int) -> str:
    env = {**stack.broker_env(stack.broker_ports[0], stack.redis.url), "BROKER_LOCAL_CACHE_SIZE": "0"}
    settings = load_settings(env)
    port = stack.broker_ports[0]
    pairs = await app_families(settings, APP_ID, in_flight)
    chains = [Chain(pair.refresh_token) for pair in pairs]
    introspection = b"token=" + pairs[0].access_token.encode()
    broker = create_app(settings)
    background = await _lifespan(broker)

    async def introspect() -> None:
        answer = await post_form(broker, "/oauth/introspect", introspection, port=port, headers=BASIC)
        if answer.get("active") is not True:
            raise RuntimeError("the token is not active")

    sides: dict[str, list[Callable[[], Awaitable[None]]]] = {
        "refresh (POST /oauth/token)": [functools.partial(chain.step, broker, port) for chain in chains],
        "introspection, cache off": [introspect] * in_flight}
    for actions in sides.values():
        await _cpu_per_call(actions, count // 4)  # warm
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, actions in sides.items():
            seconds = await _cpu_per_call(actions, count)
            best[name] = min(best.get(name, seconds), seconds)
    lines = [f"{name:<30} {best[name] * 1e6:7.1f} µs of CPU per request ({in_flight} in flight, best of {rounds} "
             f"rounds of {count})" for name in sides]
    for name, actions in sides.items():
        profiler = cProfile.Profile()
        profiler.enable()
        await _cpu_per_call(actions, count)
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
    parser.add_argument("--in-flight", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="broker-profile-") as tmp, Stack(Path(tmp)) as stack:
        print(uvloop.run(profile(stack, args.count, args.rounds, args.top, args.in_flight)))


if __name__ == "__main__":
    main()
