"""Rate-limit buckets that belong to no user: GCRA against a real Redis, and a real three-node Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from redis.crc import key_slot

from broker.clients import Client, ClientRegistry
from broker.clock import FrozenClock
from broker.config import RateLimit
from broker.errors import RateLimited, StoreUnavailable
from broker.flows.request_limits import LimitPolicy, RequestLimits, address_subject
from broker.store.embedded import free_port
from broker.store.keys import KeySpace
from broker.store.ratelimit import Bucket, RateLimiter, SharedLimiter
from broker.store.redis import RedisClient, create_redis
from tests.support.cluster import redis_cluster

NOW = 1_800_000_000.0
KEYS = KeySpace("broker:")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    connection = create_redis(redis_url)
    yield connection
    await connection.aclose()


async def test_a_bucket_allows_its_burst_then_exact_waits_and_refills(client: RedisClient) -> None:
    limiter = SharedLimiter(client, KEYS)
    bucket = Bucket("address:token:203.0.113.7", limit=6, period=60.0, burst=3)  # one per 10 s, 3 at once
    assert [await limiter.take((bucket,), NOW) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert await limiter.take((bucket,), NOW) == 10.0  # the next one is due one interval later
    assert await limiter.take((bucket,), NOW + 9.999) == pytest.approx(0.001)  # refused: not charged
    assert await limiter.take((bucket,), NOW + 10) == 0.0  # refilled by one
    assert await limiter.take((bucket,), NOW + 10) == 10.0
    assert await limiter.take((bucket,), NOW + 40) == 0.0  # after a quiet spell the whole burst is back
    assert [await limiter.take((bucket,), NOW + 40) for _ in range(2)] == [0.0, 0.0]
    assert await limiter.take((bucket,), NOW + 40) > 0


async def test_every_bucket_key_expires_and_names_no_address(client: RedisClient,
                                                             redis_sync: redis.Redis) -> None:
    limiter = SharedLimiter(client, KEYS)
    # One request every 30 s on average: a key lives as long as its bucket holds anything back (one interval).
    await limiter.take((Bucket("address:login:203.0.113.7", 10, 300.0, 5),
                        Bucket("client:token:webapp", 2, 60.0)), NOW)
    names = redis_sync.keys("broker:{rl:*")
    assert len(names) == 2
    for name in names:
        assert 0 < redis_sync.pttl(name) <= 30_000
        assert "203.0.113.7" not in name and "webapp" not in name
        assert name.startswith("broker:{rl:") and name.endswith("}")  # the whole name is its own hash tag


async def test_buckets_are_charged_independently_and_the_longest_wait_wins(client: RedisClient) -> None:
    limiter = SharedLimiter(client, KEYS)
    tight, loose = Bucket("tight", 1, 30.0), Bucket("loose", 100, 60.0)
    assert await limiter.take((tight, loose), NOW) == 0.0
    assert await limiter.take((tight, loose), NOW) == 30.0
    assert await limiter.take((loose,), NOW) == 0.0  # the refused call above still charged `loose`: 3rd fits
    assert await limiter.take_each((loose, tight), NOW) == (0.0, 30.0)  # each bucket's own wait, in order


async def test_request_limits_count_addresses_ipv6_networks_and_registered_clients(client: RedisClient) -> None:
    clock = FrozenClock(NOW)
    clients = ClientRegistry((Client("webapp", "0" * 64, (), (), None, "client_secret_basic"),))
    one = RateLimit(1, 60, 1)
    policy = LimitPolicy(True, {"token": one}, per_client=RateLimit(2, 60, 2))
    limits = RequestLimits(SharedLimiter(client, KEYS), clients, policy, clock)
    await limits.check("token", ip="2001:db8:1:2::5")
    with pytest.raises(RateLimited) as refused:
        await limits.check("token", ip="2001:db8:1:2:ffff::9")  # same /64: same subscriber
    assert refused.value.retry_after == 60 and refused.value.status == 429
    await limits.check("token", ip="2001:db8:1:3::5")  # another /64
    # A registered client is limited over all addresses; a made-up client id gets no bucket.
    await limits.check("token", ip="203.0.113.1", client_id="webapp")
    await limits.check("token", ip="203.0.113.2", client_id="webapp")
    with pytest.raises(RateLimited):
        await limits.check("token", ip="203.0.113.3", client_id="webapp")
    await limits.check("token", ip="203.0.113.4", client_id="made-up")
    assert address_subject("2001:db8:1:2::5") == "2001:db8:1:2::/64"
    assert address_subject("203.0.113.7") == "203.0.113.7"


async def test_switched_off_nothing_is_counted(client: RedisClient, redis_sync: redis.Redis) -> None:
    policy = LimitPolicy(False, {"token": RateLimit(1, 60, 1)}, per_client=RateLimit(1, 60, 1))
    limits = RequestLimits(SharedLimiter(client, KEYS), ClientRegistry(), policy, FrozenClock(NOW))
    for _ in range(5):
        await limits.check("token", ip="203.0.113.7")
    assert redis_sync.keys("*") == []


async def test_redis_down_fails_closed() -> None:
    dead = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    policy = LimitPolicy(True, {"token": RateLimit(100, 60, 100)}, per_client=RateLimit(1, 60, 1))
    limits = RequestLimits(SharedLimiter(dead, KEYS), ClientRegistry(), policy, FrozenClock(NOW))
    with pytest.raises(StoreUnavailable) as refused:
        await limits.check("token", ip="203.0.113.7")
    assert refused.value.status == 503 and refused.value.retry_after
    await dead.aclose()


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as url:
        yield url


def _node_of(slot: int, ranges: list[tuple[int, int, int]]) -> int:
    return next(node for first, last, node in ranges if first <= slot <= last)


async def test_on_a_cluster_each_bucket_has_its_own_slot_and_one_pipeline_reaches_every_node(
        cluster_url: str) -> None:
    client = create_redis(cluster_url)
    try:
        limiter = SharedLimiter(client, KeySpace("cl:"))
        # Buckets whose keys live on three different nodes, charged in one call.
        share = 16384 // 3
        ranges = [(0, share - 1, 0), (share, 2 * share - 1, 1), (2 * share, 16383, 2)]
        chosen: dict[int, Bucket] = {}
        for n in range(200):
            bucket = Bucket(f"address:login:198.51.100.{n}", 2, 60.0)
            chosen.setdefault(_node_of(key_slot(limiter.key(bucket.name).encode()), ranges), bucket)
        assert len(chosen) == 3
        buckets = tuple(chosen.values())
        assert await limiter.take(buckets, NOW) == 0.0
        assert await limiter.take(buckets, NOW) == 0.0
        assert await limiter.take(buckets, NOW) == 30.0
        for bucket in buckets:
            assert 0 < await client.pttl(limiter.key(bucket.name)) <= 60_000  # type: ignore[misc]
        # The per-user buckets of the TikTok proxy keep to the user's slot (with the user's key list).
        per_user = RateLimiter(client, KeySpace("cl:"))
        user_buckets = (Bucket("user:/v2/user/info/", 1), Bucket("client:browser:/v2/user/info/", 1))
        assert await per_user.take("Abc123_-xyzXYZ0987654", user_buckets, NOW) == 0.0
        assert await per_user.take("Abc123_-xyzXYZ0987654", user_buckets, NOW) == 60.0
    finally:
        await client.aclose()


def test_cluster_fixture_refuses_cross_slot_scripts(cluster_url: str) -> None:
    """The cluster really enforces slots, so the test above would fail on keys sharing one script call."""
    port = int(cluster_url.split(",")[0].rsplit(":", 1)[1])  # the node that owns the first third of the slots
    first, second, *_ = (name for name in (f"k{n}" for n in range(100)) if key_slot(name.encode()) < 16384 // 3)
    node = redis.Redis(host="127.0.0.1", port=port)
    try:
        with pytest.raises(redis.ResponseError, match="same slot"):
            node.eval("return redis.call('MGET', KEYS[1], KEYS[2])", 2, first, second)
    finally:
        node.close()
