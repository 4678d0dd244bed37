"""The broker on a real Redis Cluster: 3 masters with a replica each, an ACL user, TLS with client certificates.

BROKER_REDIS_URL names one node only, so every other node (and the replica a failover promotes) is discovered
after start: each of those connections must carry the username, password and client certificate too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from redis.crc import key_slot

from broker.app import create_app
from broker.config import Secret, Settings
from broker.domain import ProviderTokens
from broker.errors import StoreUnavailable
from broker.store.embedded import free_port
from broker.store.events import Event, EventStore
from broker.store.keys import KeySpace
from broker.store.local_cache import TrackedCache
from broker.store.records import Records
from broker.store.redis import RedisClient, create_redis, ping
from broker.store.revocations import RevocationQueue
from broker.store.tiktok_tokens import TikTokTokenStore
from broker.store.tracking import InvalidationListener, tracked_prefixes, tracking_connector
from broker.store.vault import Vault
from tests.conftest import vault_key
from tests.e2e.conftest import ALICE, Stack, live_stack
from tests.support.gateway_load import GatewayLoad
from tests.support.redis_topologies import ClusterTopology, requires_redis_server, wait_for
from tests.support.servers import ThreadedServer
from tests.support.user_journey import refresh, sign_in, token_pair, whole_journey

pytestmark = requires_redis_server

NOW = time.time()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterTopology]:
    with ClusterTopology(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
async def client(cluster: ClusterTopology) -> AsyncIterator[RedisClient]:
    connected = create_redis(cluster.url())
    yield connected
    await connected.aclose()


@pytest.mark.parametrize("tls", [False, True], ids=["redis+cluster", "rediss+cluster"])
async def test_one_node_in_the_url_reaches_every_master_with_the_same_credentials_and_tls(
        cluster: ClusterTopology, tls: bool) -> None:
    # The default user is off and the TLS ports demand a client certificate: a connection to a discovered node
    # that lost the username, the password or the certificate would be refused.
    client = create_redis(cluster.url(tls=tls))
    value = uuid.uuid4().hex
    keys = cluster.key_per_master(f"probe:{tls}:")
    try:
        for key in keys.values():
            await client.set(key, value)
    finally:
        await client.aclose()
    for master, key in keys.items():
        with master.client() as direct:
            assert direct.get(key) == value


@pytest.mark.parametrize("change", ["wrong password", "no client certificate", "unknown user"])
async def test_a_refused_client_gets_store_unavailable(cluster: ClusterTopology, change: str) -> None:
    assert cluster.tls is not None
    url = {"wrong password": cluster.url(password="not-it"),
           "no client certificate": cluster.url(query={}).split("&ssl_certfile")[0],
           "unknown user": cluster.url(user="nobody")}[change]
    client = create_redis(url)
    try:
        with pytest.raises(StoreUnavailable):
            await ping(client)
    finally:
        await client.aclose()


async def test_resealing_scans_every_master_and_compare_and_sets_each_key(cluster: ClusterTopology,
                                                                         client: RedisClient) -> None:
    """scan_iter walks all masters; WATCH/MULTI runs on the node of each key."""
    old, new = vault_key("old"), vault_key("new")
    keys = KeySpace(f"reseal-{uuid.uuid4().hex[:6]}:")
    grant = ProviderTokens(subject="open", access_token="act.A", refresh_token="rft.R", expires_at=NOW + 3600,
                           refresh_expires_at=NOW + 86400, scopes=frozenset({"user.info.basic"}))
    users = [f"user-{n}" for n in range(12)]
    assert len({cluster.shard_of(keys.tiktok_tokens(user))[0] for user in users}) == 3  # spread over all masters
    before = TikTokTokenStore(client, keys, Vault([old]))
    for user in users:
        async with client.pipeline(transaction=True) as pipe:
            before.queue_initial(pipe, user, grant, NOW)
            await pipe.execute()

    assert await Records(client, keys, Vault([new, old])).reseal_all() == len(users)
    after = TikTokTokenStore(client, keys, Vault([new]))  # the old key is gone: only resealed blobs open
    for user in users:
        stored = await after.get(user)
        assert stored is not None and stored.tokens == grant


async def test_the_revocation_queue_and_the_event_outbox_work_in_their_slots(client: RedisClient) -> None:
    keys = KeySpace(f"queues-{uuid.uuid4().hex[:6]}:")
    queue = RevocationQueue(client, keys, Vault([vault_key()]))
    grant = ProviderTokens(subject="open", access_token="act.A", refresh_token="rft.R", expires_at=NOW + 60,
                           refresh_expires_at=NOW + 86400, scopes=frozenset())
    item = await queue.enqueue(grant, next_at=NOW, now=NOW)
    [claimed] = await queue.claim_due(NOW, lease=60)
    assert (claimed.item_id, claimed.tokens) == (item, grant)
    await queue.retry(claimed, next_at=NOW)
    [again] = await queue.claim_due(NOW, lease=60)
    assert again.attempts == 1
    await queue.done(item)
    assert await queue.backlog() == 0

    events = EventStore(client, keys)
    event = Event(id="e1", type="user.deleted", sub="u", sid="", time=NOW, data={})
    await events.publish(event, urls=["https://a.example/hook", "https://b.example/hook"], now=NOW,
                         expires_at=NOW + 60)
    deliveries = await events.claim_due(NOW, 30, 10)
    assert sorted(d.url for d in deliveries) == ["https://a.example/hook", "https://b.example/hook"]
    assert all([await events.ack(d.id) for d in deliveries])
    assert (await events.stats()).delivered == 2


@pytest.fixture
def cluster_stack(base_settings: Settings, cluster: ClusterTopology) -> Iterator[Stack]:
    # Webhook deliveries to a closed port stay in the outbox and are retried: more store steps on the way.
    settings = base_settings.with_overrides(redis_url=Secret(cluster.url()), redis_prefix=f"c{uuid.uuid4().hex[:6]}:",
                                            webhook_urls=(f"http://127.0.0.1:{free_port()}/events",))
    with live_stack(settings) as running:
        yield running


def test_the_whole_flow_runs_on_the_cluster(cluster_stack: Stack, cluster: ClusterTopology) -> None:
    sub = whole_journey(cluster_stack, ALICE)
    prefix = cluster_stack.settings.redis_prefix
    marker = KeySpace(prefix).deleted_marker(sub)  # the only key left, and only for a while
    with cluster.cluster_client() as direct:
        left = [key for key in direct.scan_iter(match=f"{prefix}*", target_nodes="primaries")  # type: ignore
                if sub in key and key != marker]
        deleted = [entry for _, entry in direct.xrange(f"{prefix}{{events}}") if entry["type"] == "user.deleted"]
        waiting = direct.zcard(f"{prefix}{{revoke}}:queue")
        assert direct.pttl(marker) > 0
    assert left == [], "deletion left keys of the user"
    assert [entry["sub"] for entry in deleted] == [sub]
    assert waiting == 1  # the TikTok revocation that failed during deletion


def test_a_master_failover_under_load_answers_200_or_503_and_loses_nothing(cluster_stack: Stack,
                                                                          cluster: ClusterTopology) -> None:
    browsers = [sign_in(cluster_stack, display_name=f"Person {n}") for n in range(3)]
    try:
        pairs = [token_pair(cluster_stack, browser) for browser in browsers]
        subs = [b.client.get(f"{cluster_stack.broker.url}/auth/verify").headers["x-auth-request-user"]
                for b in browsers]
        cluster.wait_replicated()  # what the broker wrote so far is on the replicas
        # Fail over the master serving the first user's slot; its replica is not in BROKER_REDIS_URL.
        user_key = f"{cluster_stack.settings.redis_prefix}{{u:{subs[0]}}}"
        _, [replica] = cluster.shard_of(user_key)

        load = GatewayLoad(cluster_stack.broker.url).start(cookies=[browser.client.cookies for browser in browsers],
                                                           refresh_tokens=[pair["refresh_token"] for pair in pairs])
        wait_for(lambda: load.answered_after(0, "refresh") >= 10, what="load under way")
        start = time.monotonic()
        cluster.failover(replica)
        end = time.monotonic()
        wait_for(lambda: load.answered_after(end, "refresh") >= 10, what="refreshes after the failover")
        load.stop()

        assert load.problems == []
        assert load.lost_rotations == []  # a manual Cluster failover waits for the replica to catch up
        assert load.in_flight_during(start, end), "no request overlapped the failover"
        statuses = load.statuses()
        assert statuses[("verify", 200)] and statuses[("refresh", 200)], statuses
        assert cluster.shard_of(user_key)[0] is replica  # a node the URL never named serves the slot now
        # Every session made before the failover is still there, and the newest refresh token of every chain
        # still works: nothing written before or during the switch was lost.
        for browser, sub in zip(browsers, subs, strict=True):
            verified = browser.client.get(f"{cluster_stack.broker.url}/auth/verify")
            assert verified.status_code == 200 and verified.headers["x-auth-request-user"] == sub
        for token in load.refresh_tokens.values():
            assert refresh(cluster_stack, token).status_code == 200
    finally:
        for browser in browsers:
            browser.close()


def test_keys_of_one_user_share_a_slot_on_the_cluster(cluster_stack: Stack, cluster: ClusterTopology) -> None:
    browser = sign_in(cluster_stack, ALICE)
    try:
        token_pair(cluster_stack, browser)
        sub = browser.client.get(f"{cluster_stack.broker.url}/auth/verify").headers["x-auth-request-user"]
    finally:
        browser.close()
    with cluster.cluster_client() as direct:
        keys = [key for key in direct.scan_iter(match=f"{cluster_stack.settings.redis_prefix}*",  # type: ignore
                                                target_nodes="primaries") if sub in key]
    assert len(keys) >= 4 and len({key_slot(key.encode()) for key in keys}) == 1, keys


def user_key_per_master(cluster: ClusterTopology, prefix: str) -> dict[str, str]:
    """For each master (by port), a session key of a made-up user whose slot it serves."""
    with cluster.cluster_client() as direct:
        ranges = [(low, high, int(served["primary"][1]))
                  for (low, high), served in direct.execute_command("CLUSTER SLOTS").items()]
    found: dict[str, str] = {}
    for low, high, port in ranges:
        user = next(f"user{n}" for n in range(100_000) if low <= key_slot(f"u:user{n}".encode()) <= high)
        found[str(port)] = KeySpace(prefix).session(user, "s" * 32)
    return found


async def test_the_session_cache_hears_every_primary_and_follows_a_failover(cluster: ClusterTopology) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    listener = InvalidationListener(tracking_connector(cluster.url()), tracked_prefixes(KeySpace(prefix)),
                                    heartbeat=0.2)
    cache: TrackedCache[str] = TrackedCache(listener, 100)
    listener.subscribe(cache)
    task = asyncio.create_task(listener.run())
    writer = create_redis(cluster.url())
    try:
        await until_async(lambda: listener.live)
        keys = user_key_per_master(cluster, prefix)
        assert len(keys) == 3
        for key in keys.values():
            assert cache.put(cache.begin([key]), key, "cached")
        for key in keys.values():  # a write on each master reaches the listener
            await writer.set(key, "changed")
            await until_async(lambda k=key: cache.get(k) is None)  # type: ignore[misc]

        moved = next(iter(keys.values()))
        _, [replica] = cluster.shard_of(moved)
        generation = listener.generation
        await asyncio.to_thread(cluster.failover, replica)
        # The primaries changed: the listener starts again on the new set, and the promoted node reports too.
        await until_async(lambda: listener.generation > generation and listener.live, within=10)
        assert cache.put(cache.begin([moved]), moved, "cached again")
        await writer.set(moved, "changed on the promoted node")
        await until_async(lambda: cache.get(moved) is None)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await writer.aclose()


def test_a_logout_through_one_replica_is_refused_by_the_other_on_the_cluster(cluster_stack: Stack) -> None:
    other = ThreadedServer(create_app(cluster_stack.settings), free_port()).start()
    browser = sign_in(cluster_stack, display_name="Cached Carla")
    try:
        for _ in range(3):  # served from the first replica's memory after these
            assert browser.client.get(f"{cluster_stack.broker.url}/auth/verify").status_code == 200
        ended = httpx.post(f"{other.url}/logout", cookies=dict(browser.client.cookies),
                           headers={"Origin": cluster_stack.settings.issuer})
        assert ended.status_code == 303
        wait_for(lambda: browser.client.get(f"{cluster_stack.broker.url}/auth/verify").status_code == 401,
                 timeout=2, what="the logout refused by the other replica")
    finally:
        browser.close()
        other.stop()


async def until_async(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
