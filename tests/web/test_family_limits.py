"""Refresh families are bounded: per browser session and per user the oldest end first (with an event), index
entries of expired families are dropped, and ending or deleting many sessions is done in short chunks."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, cast

import httpx
import pytest
import redis

from broker.config import Settings
from broker.flows.tokens import SESSION_GRANT
from broker.store.accounts import CHUNK, DELETE_USER, END_SESSIONS
from tests.support.inprocess import InProcess, in_process

SAME_ORIGIN = {"Origin": "http://127.0.0.1:8080"}
EVENTS = "broker:{events}"


@pytest.fixture
async def stack(base_settings: Settings) -> AsyncIterator[InProcess]:
    async with in_process(base_settings, max_families_per_session=3, max_families_per_user=5) as running:
        await running.sign_in()
        yield running


async def new_family(client: httpx.AsyncClient) -> dict[str, str]:
    answer = await client.post("/oauth/token", data={"grant_type": SESSION_GRANT}, headers=SAME_ORIGIN)
    assert answer.status_code == 200, answer.text
    pair: dict[str, str] = answer.json()
    return pair


async def refreshes(stack: InProcess, pair: dict[str, str]) -> bool:
    answer = await stack.broker.post("/oauth/token", data={"grant_type": "refresh_token",
                                                           "refresh_token": pair["refresh_token"]})
    return answer.status_code == 200


def family_sid(pair: dict[str, str]) -> str:
    return pair["refresh_token"].split(".")[2]


def ended_by_the_limit(redis_sync: redis.Redis) -> list[str]:
    entries = redis_sync.xrange(EVENTS)
    return [fields["sid"] for _, fields in entries
            if fields["type"] == "session.revoked" and json.loads(fields["data"]) == {"reason": "family_limit"}]


async def test_a_session_keeps_its_newest_families_and_the_oldest_end_with_an_event(
        stack: InProcess, redis_sync: redis.Redis) -> None:
    pairs = [await new_family(stack.broker) for _ in range(5)]
    assert [await refreshes(stack, pair) for pair in pairs] == [False, False, True, True, True]
    assert ended_by_the_limit(redis_sync) == [family_sid(pairs[0]), family_sid(pairs[1])]
    user = pairs[0]["refresh_token"].split(".")[1]
    indexed = redis_sync.zrange(f"broker:{{u:{user}}}:fams", 0, -1)
    assert indexed == [family_sid(pair) for pair in pairs[2:]]  # oldest first


async def test_a_user_keeps_at_most_the_per_user_cap(stack: InProcess, redis_sync: redis.Redis) -> None:
    other = httpx.AsyncClient(transport=stack.broker._transport, base_url=stack.settings.issuer)
    twin = InProcess(other, stack.tiktok, stack.clock, stack.settings, stack.app, stack.emulator)
    await twin.sign_in()
    first = [await new_family(stack.broker) for _ in range(3)]
    second = [await new_family(twin.broker) for _ in range(3)]  # six in all: the user's oldest ends
    assert [await refreshes(stack, pair) for pair in first + second] == [False] + [True] * 5
    assert ended_by_the_limit(redis_sync) == [family_sid(first[0])]
    await other.aclose()


async def test_an_expired_familys_index_entries_go_with_the_next_family(
        stack: InProcess, redis_sync: redis.Redis) -> None:
    expired = await new_family(stack.broker)
    user, sid = expired["refresh_token"].split(".")[1:3]
    redis_sync.delete(f"broker:{{u:{user}}}:s:{sid}")  # what its idle expiry does
    assert sid in redis_sync.zrange(f"broker:{{u:{user}}}:sessions", 0, -1)
    await new_family(stack.broker)
    assert sid not in redis_sync.zrange(f"broker:{{u:{user}}}:sessions", 0, -1)
    assert sid not in redis_sync.zrange(f"broker:{{u:{user}}}:fams", 0, -1)
    assert ended_by_the_limit(redis_sync) == []  # it had ended already: no event


async def test_logging_out_of_many_sessions_is_done_in_short_scripts(stack: InProcess,
                                                                     redis_sync: redis.Redis) -> None:
    """2.5 chunks of sessions (written straight into Redis, as many logins would): every one ends, and no
    single script walks more than one chunk of them."""
    pair = await new_family(stack.broker)
    user = pair["refresh_token"].split(".")[1]
    tag = f"broker:{{u:{user}}}"
    many = int(CHUNK * 2.5)
    add_sessions(redis_sync, user, many)
    with every_command(redis_sync) as seen:
        ended = await stack.broker.post("/logout", data={"everywhere": "true"}, headers=SAME_ORIGIN)
    assert ended.status_code == 303
    assert redis_sync.zcard(f"{tag}:sessions") == 0
    assert not redis_sync.keys(f"{tag}:s:*")
    ending = script_sha(END_SESSIONS)
    calls = [entry for entry in seen if entry["command"].startswith(f"EVALSHA {ending}".encode())]
    # One script per chunk (plus, on a fresh Redis, the first call that found no script loaded).
    assert len(calls) >= many // CHUNK + 1, len(calls)
    assert not await refreshes(stack, pair)


async def test_deleting_an_account_with_many_sessions_is_done_in_short_scripts(
        stack: InProcess, redis_sync: redis.Redis) -> None:
    await new_family(stack.broker)
    bearer = (await stack.broker.get("/auth/verify")).headers["authorization"]
    user = (await stack.broker.get("/auth/verify")).headers["x-auth-request-user"]
    many = int(CHUNK * 2.5)
    add_sessions(redis_sync, user, many)
    with every_command(redis_sync) as seen:
        receipt = await stack.broker.delete("/account", headers={"Authorization": bearer})
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["deleted"] == {"profile": True, "sessions": many + 1, "refresh_families": 1,
                                         "tiktok_tokens": True}
    assert redis_sync.keys(f"broker:{{u:{user}}}:*") == [f"broker:{{u:{user}}}:deleted"]
    deleting = script_sha(DELETE_USER)
    assert len([e for e in seen if e["command"].startswith(f"EVALSHA {deleting}".encode())]) >= many // CHUNK + 1


def script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 (how Redis names a script)


def add_sessions(redis_sync: redis.Redis, user: str, count: int) -> None:
    """Browser sessions of the user written straight into Redis, as that many logins would have."""
    tag, now = f"broker:{{u:{user}}}", time.time()
    with redis_sync.pipeline(transaction=False) as pipe:
        for number in range(count):
            sid = f"extra{number:027d}"
            pipe.hset(f"{tag}:s:{sid}", mapping={"sid": sid, "user_id": user, "created_at": now, "last_seen": now,
                                                  "expires_at": now + 3600, "idle_expires_at": now + 3600})
            pipe.zadd(f"{tag}:sessions", {sid: now + 3600})
        pipe.execute()


@contextmanager
def every_command(redis_sync: redis.Redis) -> Iterator[list[dict[str, Any]]]:
    """The commands Redis ran meanwhile, from its slow log with a threshold of zero."""
    before = redis_sync.config_get("slowlog-*")
    seen: list[dict[str, Any]] = []
    redis_sync.config_set("slowlog-log-slower-than", 0)
    redis_sync.config_set("slowlog-max-len", 100_000)
    redis_sync.slowlog_reset()
    try:
        yield seen
        seen += cast(list[dict[str, Any]], redis_sync.slowlog_get(100_000))
    finally:
        for name, value in before.items():
            redis_sync.config_set(name, value)
