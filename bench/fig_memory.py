"""Figure: Redis memory per session, per linked user and per refresh family.

Users, sessions and families are written through the broker's own APIs (as bench/session.py does), with
TikTok tokens of TikTok's real lengths, under a prefix of their own. Two measures, side by side:
`MEMORY USAGE` of each key (what the key's value and its name cost), and the growth of `used_memory` over
many of them (which adds the keyspace's own entries and expiry records). The target is 1 KiB per session.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any, cast

from bench.config import BenchConfig
from bench.figures_api import Figure
from bench.report import FigureResult, Table, num, ratio
from bench.stack import Stack
from bench.stats import median
from broker.app import create_app
from broker.clock import SystemClock
from broker.config import Settings
from broker.domain import Identity, ProviderTokens, Session
from broker.flows.sessions import new_user_id
from broker.store.redis import create_redis
from broker.web.services import Services

PREFIX = "benchmem:"
TARGET_BYTES = 1024
# TikTok's tokens: "act." / "rft." and about 70 characters in all (tiktok-login-kit.md examples).
ACCESS_TOKEN_LENGTH = REFRESH_TOKEN_LENGTH = 72


def _tokens(open_id: str, now: float, scopes: tuple[str, ...]) -> ProviderTokens:
    return ProviderTokens(subject=open_id, access_token="act." + secrets.token_urlsafe(51)[:68],
                          refresh_token="rft." + secrets.token_urlsafe(51)[:68], expires_at=now + 86_400,
                          refresh_expires_at=now + 365 * 86_400, scopes=frozenset(scopes))


async def _used_memory(client: Any) -> int:
    return int((await client.info("memory"))["used_memory"])


async def _sizes(client: Any, pattern: str) -> list[int]:
    return [int(await client.memory_usage(key, samples=0)) async for key in client.scan_iter(match=pattern)]


async def _measure(settings: Settings, users: int, sessions_of_one: int) -> dict[str, float]:
    redis = create_redis(settings.redis_url.reveal())
    client = cast(Any, redis)
    try:
        services: Services = create_app(settings, redis=redis).state.services
        sessions, now = services.sessions, SystemClock().now()
        await client.memory_purge()
        before = await _used_memory(client)
        first: Session | None = None
        for number in range(users):
            open_id = f"-000{number:05d}-{secrets.token_hex(12)}"  # TikTok's open_ids are about this long
            identity = Identity(provider="tiktok", subject=open_id, display_name=f"Bench User {number}",
                                avatar_url="https://p16-sign.tiktokcdn-us.com/tos-useast5-avt-0068-tx/" + "a" * 64)
            user_id = await sessions.records.claim_user_id(open_id, new_user_id())
            created = sessions.new_session(user_id, identity, _tokens(open_id, now, settings.tiktok_scopes),
                                           user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0", ip="203.0.113.7")
            await sessions.records.save_login(user_id, identity, _tokens(open_id, now, settings.tiktok_scopes),
                                              created.session, now)
            first = first or created.session
        after_users = await _used_memory(client)
        assert first is not None
        for _ in range(sessions_of_one):
            created = sessions.new_session(first.user_id, Identity(provider="tiktok", subject=first.open_id,
                                                                   display_name=first.name),
                                           _tokens(first.open_id, now, settings.tiktok_scopes),
                                           user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0", ip="203.0.113.7")
            await sessions.records.save_login(first.user_id, Identity(provider="tiktok", subject=first.open_id,
                                                                      display_name=first.name),
                                              _tokens(first.open_id, now, settings.tiktok_scopes), created.session, now)
        after_sessions = await _used_memory(client)
        for _ in range(sessions_of_one):
            await services.tokens.start_family(first)
        after_families = await _used_memory(client)
        tag = f"{PREFIX}{{u:"
        per_key = {
            "session": median(await _sizes(client, f"{tag}*}}:s:*")),
            "user": median(await _sizes(client, f"{tag}*}}:user")),
            "tiktok": median(await _sizes(client, f"{tag}*}}:tiktok")),
            "index": median(await _sizes(client, f"{PREFIX}oid:*")),
            "family_used": median(await _sizes(client, f"{tag}*}}:rtu:*") or [0]),
        }
        return {
            **per_key,
            "user_growth": (after_users - before) / users,
            "session_growth": (after_sessions - after_users) / sessions_of_one,
            "family_growth": (after_families - after_sessions) / sessions_of_one,
        }
    finally:
        async for key in client.scan_iter(match=f"{PREFIX}*"):
            await client.delete(key)
        await client.aclose()


def run(stack: Stack, config: BenchConfig) -> FigureResult:
    settings = stack.broker.settings.with_overrides(redis_prefix=PREFIX)
    users = 200 if config.http_rounds > 2 else 20
    found = asyncio.run(_measure(settings, users=users, sessions_of_one=users))
    per_session = found["session_growth"]
    rows = (
        ("one more session of a signed-in user", num(found["session"], 0), num(per_session, 0),
         ratio(per_session / TARGET_BYTES)),
        ("one more refresh family (app sign-in)", "-", num(found["family_growth"], 0),
         ratio(found["family_growth"] / TARGET_BYTES)),
        ("a linked user with one session", num(found["session"] + found["user"] + found["tiktok"] + found["index"], 0),
         num(found["user_growth"], 0), ratio(found["user_growth"] / TARGET_BYTES)),
    )
    breakdown = (f"MEMORY USAGE medians: session hash {found['session']:.0f} B, user hash {found['user']:.0f} B, "
                 f"sealed TikTok tokens {found['tiktok']:.0f} B, open_id index {found['index']:.0f} B")
    table = Table(title=f"Redis memory ({users} users, {users} more sessions and {users} refresh families)",
                  headers=("what", "MEMORY USAGE B", "used_memory growth B", "vs 1 KiB target"), rows=rows,
                  notes=(breakdown, "growth = INFO used_memory after minus before, divided by the count: it adds "
                         "the keyspace and expiry entries and each user's session index; target 1 KiB per session"))
    return FigureResult("memory", (table,), found)


FIGURE = Figure("memory", "Redis memory per session, per linked user and per refresh family", run)
