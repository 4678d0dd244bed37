"""Publish records in the user's slot, and the exact sliding window beside the proxy's buckets, on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis

from broker.store.keys import KeySpace
from broker.store.publishes import PRUNE_ABOVE, PublishRecord, PublishStore
from broker.store.ratelimit import Bucket, RateLimiter, Window
from broker.store.redis import RedisClient, create_redis

NOW = 1_800_000_000.0
KEYS = KeySpace("broker:")
ALICE, BOB = "A" * 22, "B" * 22


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    connection = create_redis(redis_url)
    yield connection
    await connection.aclose()


def record(publish_id: str, at: float = NOW, client_id: str = "jobs") -> PublishRecord:
    return PublishRecord(publish_id, client_id, "video.publish", "video", at)


async def test_a_record_is_the_user_s_own_until_it_expires(client: RedisClient, redis_sync: redis.Redis) -> None:
    store = PublishStore(client, KEYS)
    await store.record(ALICE, record("v_pub_file~v2.1"), ttl=3600)
    assert await store.get(ALICE, "v_pub_file~v2.1", NOW + 1) == record("v_pub_file~v2.1")
    assert await store.get(BOB, "v_pub_file~v2.1", NOW + 1) is None  # another user's publish_id: not found
    assert await store.get(ALICE, "v_pub_file~v2.2", NOW + 1) is None
    assert await store.get(ALICE, "v_pub_file~v2.1", NOW + 3600) is None  # expired (even before Redis drops it)
    assert redis_sync.keys("broker:*") == [f"broker:{{u:{ALICE}}}:posts"]  # in Alice's slot, nowhere else
    assert 0 < redis_sync.pttl(f"broker:{{u:{ALICE}}}:posts") <= (NOW + 3600) * 1000


async def test_old_records_are_dropped_as_the_hash_grows(client: RedisClient, redis_sync: redis.Redis) -> None:
    store = PublishStore(client, KEYS)
    for n in range(PRUNE_ABOVE):
        await store.record(ALICE, record(f"old.{n}", at=NOW), ttl=3600)
    assert redis_sync.hlen(f"broker:{{u:{ALICE}}}:posts") == PRUNE_ABOVE
    await store.record(ALICE, record("new", at=NOW + 7200), ttl=3600)
    assert redis_sync.hkeys(f"broker:{{u:{ALICE}}}:posts") == ["new"]


async def test_a_window_refuses_like_tiktok_s_sliding_minute(client: RedisClient) -> None:
    limiter = RateLimiter(client, KEYS)
    roomy = (Bucket("user:init", 600),)  # the broker's own bucket would let all of these through
    window = Window("tiktok:init", 6)
    waits = [await limiter.take(ALICE, roomy, NOW + n, window=window) for n in range(7)]
    assert waits[:6] == [0.0] * 6 and waits[6] == pytest.approx(54.0)  # the first leaves the window at NOW + 60
    assert await limiter.take(ALICE, roomy, NOW + 59.999, window=window) == pytest.approx(0.001)
    assert await limiter.take(ALICE, roomy, NOW + 60, window=window) == 0.0
    assert await limiter.take(ALICE, roomy, NOW + 60, window=window) == pytest.approx(1.0)
    assert await limiter.take(BOB, roomy, NOW + 60, window=window) == 0.0  # per user


async def test_a_refusal_by_the_window_or_a_bucket_charges_neither(client: RedisClient) -> None:
    limiter = RateLimiter(client, KEYS)
    tight = (Bucket("user:status", 2),)
    window = Window("tiktok:status", 3)
    assert [await limiter.take(ALICE, tight, NOW, window=window) for _ in range(3)] == [0.0, 0.0, 30.0]
    # The bucket refused the third: the window holds two requests, so after the bucket refills one more passes.
    assert await limiter.take(ALICE, tight, NOW + 30, window=window) == 0.0
    assert await limiter.take(ALICE, (Bucket("user:other", 600),), NOW + 30, window=window) == pytest.approx(30.0)
