"""Figure: how long a worst-case logout blocks Redis, against an ordinary one.

A Lua script runs alone: while it runs, Redis answers no other client, so the longest script a logout runs is a
stall for every user of that Redis. The worst case is a user who has started as many refresh families as they
could (1,500 asked for from one browser session; the caps keep the newest `BROKER_MAX_FAMILIES_PER_USER`) and
holds many browser sessions (1,000 logins). Three steps are timed by Redis itself (its slow log with a
threshold of zero gives each command's execution time): ending the session that started the families, ending
every session (logout everywhere), and starting one more family at the cap (which ends the oldest). The baseline,
measured in the same rounds, is the ordinary logout: one session with one family. The steps run through the
broker's own store code (`Accounts.end_sessions`, `TokenFlow.start_family`), so they run the very scripts a
logout runs; the TikTok revocation and the events that follow are not Redis stalls and are left out.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, cast

from bench.config import BenchConfig
from bench.figures_api import Figure
from bench.report import FigureResult, Table, num, ratio, spread
from bench.stack import Stack
from bench.stats import interleaved, median, ratios
from broker.app import create_app
from broker.clock import SystemClock
from broker.config import Settings
from broker.domain import Identity, ProviderTokens, Session
from broker.flows.sessions import new_user_id
from broker.store.accounts import END_SESSIONS
from broker.store.families import CREATE
from broker.store.redis import create_redis
from broker.web.services import Services

PREFIX = "benchlogout:"
STEPS = ("one", "all", "create")


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (how Redis names a script)


def _tokens(open_id: str, now: float) -> ProviderTokens:
    return ProviderTokens(subject=open_id, access_token="act.bench", refresh_token="rft.bench",  # noqa: S106
                          expires_at=now + 86_400, refresh_expires_at=now + 86_400, scopes=frozenset())


async def _login(services: Services, user_id: str, open_id: str, now: float) -> Session:
    identity = Identity(provider="tiktok", subject=open_id, display_name="Bench Logout")
    created = services.sessions.new_session(user_id, identity, _tokens(open_id, now))
    await services.sessions.records.save_login(user_id, identity, _tokens(open_id, now), created.session, now)
    return created.session


async def _script_times(client: Any, sha: str) -> list[float]:
    """Execution times (µs) of this script's calls in the slow log, which is then emptied."""
    entries = await client.slowlog_get(100_000)
    await client.slowlog_reset()
    return [float(entry["duration"]) for entry in entries
            if str(entry["command"], "latin-1" if isinstance(entry["command"], bytes) else "utf-8")
            .startswith(f"EVALSHA {sha}")]


async def _one_round(settings: Settings, families: int, sessions: int) -> dict[str, dict[str, float]]:
    """{step: {"stall": longest call µs, "total": all calls µs, "calls": n}} for one user built to size."""
    redis = create_redis(settings.redis_url.reveal())
    client = cast(Any, redis)
    try:
        services: Services = create_app(settings, redis=redis).state.services
        now = SystemClock().now()
        open_id = f"bench-logout-{new_user_id()}"
        user_id = await services.sessions.records.claim_user_id(open_id, new_user_id())
        parent = await _login(services, user_id, open_id, now)
        for _ in range(sessions - 1):
            await _login(services, user_id, open_id, now)
        for _ in range(families - 1):
            await services.tokens.start_family(parent)
        await client.slowlog_reset()
        await services.tokens.start_family(parent)
        found: dict[str, dict[str, float]] = {}
        for step, sha, act in (
                ("create", _sha(CREATE), None),
                ("one", _sha(END_SESSIONS), services.account.accounts.end_sessions(user_id, parent.sid)),
                ("all", _sha(END_SESSIONS), services.account.accounts.end_sessions(user_id))):
            if act is not None:
                await act
            times = await _script_times(client, sha)
            found[step] = {"stall": max(times, default=0.0), "total": sum(times), "calls": float(len(times))}
        return found
    finally:
        async for key in client.scan_iter(match=f"{PREFIX}*"):
            await client.delete(key)
        await client.aclose()


async def _measure(settings: Settings, families: int, sessions: int) -> dict[str, dict[str, float]]:
    admin = cast(Any, create_redis(settings.redis_url.reveal()))
    before = await admin.config_get("slowlog-*")
    try:
        await admin.config_set("slowlog-log-slower-than", 0)
        await admin.config_set("slowlog-max-len", 100_000)
        return await _one_round(settings, families, sessions)
    finally:
        for name, value in before.items():
            await admin.config_set(name, value)
        await admin.aclose()


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    settings = stack.broker.settings.with_overrides(redis_prefix=PREFIX)
    families, sessions = config.logout_families, config.logout_sessions
    rounds = interleaved({"baseline": lambda: asyncio.run(_measure(settings, 1, 1)),
                          "worst": lambda: asyncio.run(_measure(settings, families, sessions))},
                         config.logout_rounds)
    base = [r["one"]["stall"] for r in rounds["baseline"]]
    rows: list[tuple[str, ...]] = [("logout, 1 session and 1 family (baseline)", num(median(base), 0),
                                    num(median([r["one"]["calls"] for r in rounds["baseline"]]), 0),
                                    num(median([r["one"]["total"] for r in rounds["baseline"]]), 0), "1.00x", "-")]
    labels = {"one": f"logout of the session that started {families:,} families",
              "all": f"logout everywhere: {sessions:,} sessions and the families",
              "create": f"a new family at the cap ({settings.max_families_per_user} live)"}
    data: dict[str, Any] = {"baseline_stall_us": base}
    for step in ("one", "all", "create"):
        stalls = [r[step]["stall"] for r in rounds["worst"]]
        each = ratios(stalls, base)
        rows.append((labels[step], num(median(stalls), 0), num(median([r[step]["calls"] for r in rounds["worst"]]), 0),
                     num(median([r[step]["total"] for r in rounds["worst"]]), 0), ratio(median(each)), spread(each)))
        data[f"{step}_stall_us"] = stalls
    table = Table(title=f"Redis stall of a worst-case logout (Redis's own execution times; median of "
                        f"{config.logout_rounds} rounds)",
                  headers=("step", "longest script µs", "scripts", "all scripts µs", "stall ratio", "range"),
                  rows=tuple(rows),
                  notes=("stall = the longest single script of the step: Redis answers no other client meanwhile",
                         "stall ratio: against the baseline's longest script in the same round; the worst case "
                         f"asked for {families:,} families from one session and logged in {sessions:,} times",
                         "ending sessions walks the user's index in chunks of 100 entries, one script each"))
    return FigureResult("logout_stall", (table,), data)


FIGURE = Figure("logout_stall", "the Redis stall of a worst-case logout against an ordinary one", run)
