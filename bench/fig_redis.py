"""Figure: Redis work per login and per gateway check, and the time a whole login takes.

Counting pass: a second broker talks to Redis through a counting proxy (round trips on the wire) while
`INFO commandstats` counts the commands Redis executed, snapshot before and after each step. Timing pass:
the plain broker (no proxy), sequential logins, interleaved with the same TikTok calls made without it.
The emulator runs with no faults and no added latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict

import httpx

from bench.config import BenchConfig
from bench.figures_api import Figure
from bench.logins import broker_login, finish_login, provider_for, start_login, tiktok_only
from bench.redis_proxy import CountingProxy
from bench.redis_stats import CommandCounter, Meter, Tally
from bench.report import FigureResult, Table, num, ratio, spread
from bench.stack import Broker, Stack
from bench.stats import interleaved, median, percentile, ratios
from broker.web.cookies import session_cookie_name

OPERATIONS = {"login": "GET /login", "callback": "GET /callback (after consent)",
              "cookie": "GET /auth/verify, cookie", "bearer": "GET /auth/verify, bearer JWT",
              "logout": "POST /logout (the user's other sessions stay)"}


async def _count(broker: Broker, meter: Meter, config: BenchConfig) -> dict[str, Tally]:
    tallies = {name: Tally() for name in OPERATIONS}
    verify = f"{broker.url}/auth/verify"
    async with httpx.AsyncClient(timeout=10) as client:
        cookie_value = ""
        for _ in range(2):  # warm: Redis connections opened, the session script loaded
            cookie_value = await broker_login(client, broker)
        client.cookies.clear()
        cookie = {"Cookie": f"{session_cookie_name(broker.settings)}={cookie_value}"}
        bearer = {"Authorization": (await client.get(verify, headers=cookie)).headers["authorization"]}
        for _ in range(config.counted_logins):
            start = meter.point()
            callback = await start_login(client, broker)
            meter.add(tallies["login"], start)
            start = meter.point()
            await finish_login(client, broker, callback)
            meter.add(tallies["callback"], start)
        client.cookies.clear()
        for name, headers in (("cookie", cookie), ("bearer", bearer)):
            start = meter.point()
            for _ in range(config.counted_checks):
                if (await client.get(verify, headers=headers)).status_code != 200:
                    raise RuntimeError(f"{name} check refused")
            meter.add(tallies[name], start, config.counted_checks)
        # Logouts of sessions made by the logins above (the first ones, whose JWTs were never handed out).
        sessions = [await broker_login(client, broker) for _ in range(config.counted_logins)]
        client.cookies.clear()
        start = meter.point()
        for value in sessions:
            answer = await client.post(f"{broker.url}/logout", headers={
                "Origin": broker.settings.issuer, "Cookie": f"{session_cookie_name(broker.settings)}={value}",
                "Content-Type": "application/x-www-form-urlencoded"})
            if answer.status_code != 303:
                raise RuntimeError(f"logout answered {answer.status_code}: {answer.text[:200]}")
        meter.add(tallies["logout"], start, config.counted_logins)
    return tallies


def _counted(stack: Stack, config: BenchConfig) -> dict[str, Tally]:
    assert stack.redis.port is not None  # the stack always runs Redis on loopback TCP
    proxy = CountingProxy(stack.redis.port).start()
    counter = CommandCounter(stack.redis.url)
    try:
        url = f"redis://:{stack.redis.password}@127.0.0.1:{proxy.port}/0"
        broker = stack.start_broker("broker-counted", 1, redis_url=url)
        try:
            return asyncio.run(_count(broker, Meter(counter, proxy), config))
        finally:
            broker.process.stop()
    finally:
        counter.close()
        proxy.stop()


def _timed_round(broker: Broker, config: BenchConfig, side: str) -> list[float]:
    """ms per login for one round of sequential logins (one untimed login first opens connections)."""

    async def go() -> list[float]:
        async with httpx.AsyncClient(timeout=10) as client:
            provider = provider_for(client, broker)
            login: Callable[[], Awaitable[object]] = (
                (lambda: broker_login(client, broker)) if side == "broker"
                else (lambda: tiktok_only(client, provider, broker)))
            await login()
            times = []
            for _ in range(config.logins_per_round):
                started = time.perf_counter()
                await login()
                times.append((time.perf_counter() - started) * 1000)
            return times

    return asyncio.run(go())


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    _ = stack.emulator
    tallies = {name: tally.per_op() for name, tally in _counted(stack, config).items()}
    work = Table(
        title="Redis work per operation (commands: INFO commandstats; round trips: counted on the wire)",
        headers=("operation", "commands", "round trips", "commands by name"),
        rows=tuple((OPERATIONS[name], f"{t.commands:g}", f"{t.round_trips:g}", t.breakdown())
                   for name, t in tallies.items()),
        notes=(f"means over {config.counted_logins} logins, {config.counted_checks} checks of each kind and "
               f"{config.counted_logins} logouts; "
               "MULTI/EXEC and a script's inner commands count as commands, each block as one round trip",))

    broker = stack.broker
    sides = {"tiktok": lambda: _timed_round(broker, config, "tiktok"),
             "broker": lambda: _timed_round(broker, config, "broker")}
    rounds = interleaved(sides, config.login_rounds)
    means = {side: [sum(r) / len(r) for r in results] for side, results in rounds.items()}
    per_round = ratios(means["broker"], means["tiktok"])
    pooled = {side: sorted(t for r in results for t in r) for side, results in rounds.items()}
    labels = {"tiktok": "TikTok calls alone (baseline)", "broker": "full login through the broker"}
    timing = Table(
        title=f"Login time, emulator at zero latency (median of {config.login_rounds} rounds of "
              f"{config.logins_per_round} sequential logins)",
        headers=("side", "ms/login", "p50 ms", "p99 ms", "ratio", "range"),
        rows=tuple((labels[side], num(median(means[side]), 2), num(percentile(pooled[side], 50), 2),
                    num(percentile(pooled[side], 99), 2), ratio(median(per_round) if side == "broker" else 1.0),
                    spread(per_round) if side == "broker" else "-")
                   for side in ("tiktok", "broker")),
        notes=("baseline: authorize + consent + code exchange + user info, made by the broker's provider code "
               "without the broker; full login adds /login, /callback, Redis and the session",))
    data = {"per_operation": {name: asdict(t) for name, t in tallies.items()},
            "login_ms": {side: median(m) for side, m in means.items()},
            "login_ratio": median(per_round), "round_means_ms": means, "round_ratios": per_round}
    return FigureResult("redis_work", (work, timing), data)


FIGURE = Figure("redis_work", "Redis commands and round trips per login and per check; ms per login", run)
