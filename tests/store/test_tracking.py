"""The invalidation listener and the tracked cache against a real Redis: writes evict, races spoil, and the
cache serves nothing while tracking is down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
import redis

from broker.store.keys import KeySpace
from broker.store.local_cache import TrackedCache
from broker.store.redis import create_redis
from broker.store.tracking import InvalidationListener, tracked_prefixes, tracking_connector

KEYS = KeySpace("broker:")
SESSION = KEYS.session("u" * 22, "s" * 32)
JTI = KEYS.denied_jti("u" * 22, "jti-1")
SUBJECT = KEYS.denied_subject("u" * 22)


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def tracked(redis_url: str) -> AsyncIterator[tuple[InvalidationListener, TrackedCache[str]]]:
    listener = InvalidationListener(tracking_connector(redis_url), tracked_prefixes(KEYS), heartbeat=0.2)
    cache: TrackedCache[str] = TrackedCache(listener, 100)
    listener.subscribe(cache)
    task = asyncio.create_task(listener.run())
    await eventually(lambda: listener.live)
    yield listener, cache
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_write_to_a_key_the_entry_read_evicts_it(tracked: tuple[InvalidationListener, TrackedCache[str]],
                                                          redis_url: str) -> None:
    _, cache = tracked
    client = create_redis(redis_url)
    await client.set(SESSION, "v1")
    await asyncio.sleep(0.1)  # let the write's own invalidation pass: arriving during the read, it would spoil it
    ticket = cache.begin([SESSION, JTI])
    value = await client.get(SESSION)
    assert cache.put(ticket, "entry", str(value))
    assert cache.get("entry") == "v1"

    await client.set("broker:readyz", "1")  # outside the tracked prefixes: no effect
    await client.set(KEYS.session("v" * 22, "t" * 32), "other user")  # another key of the prefix: no effect
    await asyncio.sleep(0.1)
    assert cache.get("entry") == "v1"

    await client.set(JTI, "1")  # the second key the entry depends on
    await eventually(lambda: cache.get("entry") is None)
    assert len(cache) == 0
    await client.aclose()


@pytest.mark.parametrize("write", ["delete", "expire", "subject_denied", "flushall"])
async def test_every_kind_of_change_evicts(tracked: tuple[InvalidationListener, TrackedCache[str]], redis_url: str,
                                           write: str) -> None:
    _, cache = tracked
    client = create_redis(redis_url)
    await client.set(SESSION, "v1")
    ticket = cache.begin([SESSION, SUBJECT])
    assert cache.put(ticket, "entry", "v1")
    if write == "delete":
        await client.delete(SESSION)
    elif write == "expire":
        await client.pexpire(SESSION, 20)  # the key's expiry itself is reported when Redis removes it
        await asyncio.sleep(0.05)
        await client.get(SESSION)  # lazy expiry: a read makes Redis notice
    elif write == "subject_denied":
        await client.set(SUBJECT, "1")
    else:
        await client.flushall()
    await eventually(lambda: cache.get("entry") is None)
    await client.aclose()


async def test_a_write_during_the_read_spoils_the_ticket(tracked: tuple[InvalidationListener, TrackedCache[str]],
                                                         redis_url: str) -> None:
    _, cache = tracked
    client = create_redis(redis_url)
    await client.set(SESSION, "old")
    ticket = cache.begin([SESSION])
    value = await client.get(SESSION)
    await client.set(SESSION, "new")  # overtakes the read before it is stored
    await asyncio.sleep(0.1)  # the invalidation arrives while the ticket is open
    assert not cache.put(ticket, "entry", str(value))
    assert cache.get("entry") is None
    await client.aclose()


async def test_nothing_is_served_while_tracking_is_down_and_all_comes_back(
        tracked: tuple[InvalidationListener, TrackedCache[str]], redis_url: str) -> None:
    listener, cache = tracked
    generation = listener.generation
    assert cache.put(cache.begin([SESSION]), "entry", "v1")
    in_flight = cache.begin([SESSION])

    killer = redis.Redis.from_url(redis_url)
    assert killer.client_kill_filter(_type="pubsub") == 1  # the tracking connection, and only it
    killer.close()
    await eventually(lambda: not listener.live)
    assert cache.get("entry") is None  # dropped, and no write while down can be missed
    await eventually(lambda: listener.live)  # reconnected with tracking on again
    assert listener.generation > generation
    assert not cache.put(in_flight, "entry", "read before the outage")  # its writes may have gone unreported
    assert cache.put(cache.begin([SESSION]), "entry", "v2")
    assert cache.get("entry") == "v2"


async def test_a_silent_connection_is_not_trusted(redis_url: str) -> None:
    """A stalled invalidation connection (no heartbeat replies) turns the cache off within three heartbeats."""
    listener = InvalidationListener(tracking_connector(redis_url), tracked_prefixes(KEYS), heartbeat=0.2)
    cache: TrackedCache[str] = TrackedCache(listener, 10)
    listener.subscribe(cache)
    task = asyncio.create_task(listener.run())
    pauser = redis.Redis.from_url(redis_url)
    try:
        await eventually(lambda: listener.live)
        assert cache.put(cache.begin([SESSION]), "entry", "v1")
        pauser.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # Redis answers nobody, the PINGs included
        await eventually(lambda: not listener.live, within=1.4)
        assert cache.get("entry") is None
        await eventually(lambda: listener.live, within=5)
    finally:
        pauser.execute_command("CLIENT", "UNPAUSE")
        pauser.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_the_cache_is_bounded() -> None:
    class AlwaysLive:
        live = True
        generation = 0

    cache: TrackedCache[int] = TrackedCache(AlwaysLive(), 3)
    for number in range(5):
        assert cache.put(cache.begin([f"k{number}"]), f"e{number}", number)
    assert len(cache) == 3
    assert cache.get("e0") is None and cache.get("e4") == 4
    cache.invalidate(["k4"])
    assert cache.get("e4") is None and len(cache) == 2


