"""The broker on real Redis Sentinel: a master, a replica and three Sentinels, all speaking TLS only, demanding a
client certificate and an ACL user; and a plain setup for the redis+sentinel:// form."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker.app import create_app
from broker.config import Secret, Settings
from broker.errors import StoreUnavailable
from broker.store.keys import KeySpace
from broker.store.redis import create_redis, ping
from tests.e2e.conftest import ALICE, Stack, live_stack, start_stack
from tests.support.gateway_load import GatewayLoad
from tests.support.redis_topologies import USER, WATCHER, SentinelTopology, requires_redis_server, wait_for
from tests.support.servers import ThreadedServer
from tests.support.user_journey import refresh, sign_in, token_pair, whole_journey

pytestmark = requires_redis_server


@pytest.fixture(scope="module")
def sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    with SentinelTopology(tmp_path_factory.mktemp("sentinel")) as running:
        yield running


@pytest.fixture(scope="module")
def plain_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelTopology]:
    with SentinelTopology(tmp_path_factory.mktemp("plain-sentinel"), tls=False, replicas=0, sentinels=1) as running:
        yield running


async def write_through(url: str) -> tuple[str, str]:
    """Write a fresh value with a client made from `url`; returns (key, value)."""
    client = create_redis(url)
    try:
        key, value = f"probe:{uuid.uuid4().hex}", uuid.uuid4().hex
        await client.set(key, value)
        assert await client.acl_whoami() == USER  # type: ignore[union-attr]
        return key, value
    finally:
        await client.aclose()


@pytest.mark.parametrize("topology", ["rediss+sentinel", "redis+sentinel"])
async def test_the_url_reaches_the_master_through_the_sentinels(sentinels: SentinelTopology,
                                                                plain_sentinel: SentinelTopology,
                                                                topology: str) -> None:
    # TLS setup: the Sentinels listen on TLS ports only, so the client spoke TLS with its certificate and the
    # ACL user to them as well as to the master. The database number in the URL is honoured.
    chosen = sentinels if topology == "rediss+sentinel" else plain_sentinel
    url = chosen.url(db=2)
    assert url.startswith(f"{topology}://")
    key, value = await write_through(url)
    with chosen.master().client(db=2) as direct:
        assert direct.get(key) == value


async def test_sentinels_can_have_credentials_of_their_own(sentinels: SentinelTopology) -> None:
    own = sentinels.url(query={"sentinel_username": WATCHER, "sentinel_password": sentinels.watcher_password})
    key, value = await write_through(own)
    with sentinels.master().client() as direct:
        assert direct.get(key) == value


@pytest.mark.parametrize("change", ["no client certificate", "wrong password", "wrong Sentinel password",
                                    "Sentinel user used for the master"])
async def test_a_refused_client_gets_store_unavailable(sentinels: SentinelTopology, change: str) -> None:
    url = {
        "no client certificate": sentinels.url().split("&ssl_certfile")[0],
        "wrong password": sentinels.url(password="not-it"),
        "wrong Sentinel password": sentinels.url(query={"sentinel_password": "not-it"}),
        # The master does not know the Sentinels' own user: the URL's user must be the one sent to it.
        "Sentinel user used for the master": sentinels.url(user=WATCHER, password=sentinels.watcher_password),
    }[change]
    client = create_redis(url)
    try:
        with pytest.raises(StoreUnavailable):
            await ping(client)
    finally:
        await client.aclose()


@pytest.fixture
def sentinel_stack(base_settings: Settings, sentinels: SentinelTopology) -> Iterator[Stack]:
    settings = base_settings.with_overrides(redis_url=Secret(sentinels.url()),
                                            redis_prefix=f"s{uuid.uuid4().hex[:6]}:")
    with live_stack(settings) as running:
        yield running


def test_the_whole_flow_runs_through_sentinel(sentinel_stack: Stack, sentinels: SentinelTopology) -> None:
    sub = whole_journey(sentinel_stack, ALICE)
    prefix = sentinel_stack.settings.redis_prefix
    marker = KeySpace(prefix).deleted_marker(sub)  # the only key left, and only for a while
    with sentinels.master().client() as direct:
        left = [key for key in direct.scan_iter(match=f"{prefix}*") if sub in key and key != marker]
        assert direct.pttl(marker) > 0
    assert left == []


@pytest.fixture
def fresh(base_settings: Settings, tmp_path: Path) -> Iterator[tuple[Stack, SentinelTopology, str]]:
    """A setup of its own (a failover leaves the old master out of step for a while), with a second broker
    replica beside the stack's, each with its own local session cache."""
    with SentinelTopology(tmp_path / "sentinel") as topology:
        running, servers = start_stack(base_settings.with_overrides(redis_url=Secret(topology.url())))
        servers.append(ThreadedServer(create_app(running.settings)).start())
        yield running, topology, servers[-1].url
        for server in servers:
            server.stop()


@pytest.mark.parametrize("planned", [True, False], ids=["writes paused", "sudden"])
def test_a_failover_under_load_answers_200_or_503_and_loses_no_session(
        fresh: tuple[Stack, SentinelTopology, str], planned: bool) -> None:
    sentinel_stack, sentinels, other_replica = fresh
    url = sentinel_stack.broker.url
    browsers = [sign_in(sentinel_stack, display_name=f"Person {n}") for n in range(3)]
    try:
        pairs = [token_pair(sentinel_stack, browser) for browser in browsers]
        subs = [b.client.get(f"{url}/auth/verify").headers["x-auth-request-user"] for b in browsers]
        sentinels.wait_replicated()  # the sessions above are on the replicas before the master goes
        old_master = sentinels.master()
        cookie = httpx.Cookies(browsers[0].client.cookies)
        assert httpx.get(f"{other_replica}/auth/verify", cookies=cookie).status_code == 200  # now in its cache

        load = GatewayLoad(url).start(cookies=[browser.client.cookies for browser in browsers],
                                      refresh_tokens=[pair["refresh_token"] for pair in pairs])
        wait_for(lambda: load.answered_after(0, "refresh") >= 10, what="load under way")
        start = time.monotonic()
        sentinels.wait_replicated()  # so every write answered before `start` is on both replicas
        new_master = sentinels.failover(pause_writes=planned)
        end = time.monotonic()
        # Within about a second every connection of both replicas, their cache invalidation listeners included,
        # leaves the old master (whose data froze), long before the Sentinels turn it into a replica. The deadline
        # is ten times that: the test files run side by side, and a starved machine once took more than five.
        wait_for(lambda: not sentinels.application_clients(old_master), timeout=10, what="brokers leave old master")
        # The broker finds the new master by itself: refreshes (writes) succeed again, no restart.
        wait_for(lambda: load.answered_after(end, "refresh") >= 10, what="refreshes succeed on the new master")
        load.stop()

        assert new_master is not old_master
        assert load.problems == []
        assert load.in_flight_during(start, end), "no request overlapped the failover"
        # Replication is asynchronous: a rotation the old master answered in the instant of the switch may be
        # lost with it (that client starts over from its session). Nothing that had reached the replicas is.
        for lost in load.lost_rotations:
            assert lost.answered >= start, lost
        if planned:
            assert load.lost_rotations == []
        assert load.answered_after(end, "verify")
        # Every session made before the failover is there, served from the new master.
        for browser, sub in zip(browsers, subs, strict=True):
            verified = browser.client.get(f"{url}/auth/verify")
            assert verified.status_code == 200 and verified.headers["x-auth-request-user"] == sub
        for token in load.refresh_tokens.values():
            assert refresh(sentinel_stack, token).status_code == 200
        # A logout through one replica is honoured by the other, which had the session cached since before the
        # switch: its invalidation listener follows the new master too. (`cookie` is kept: a thief would.)
        assert httpx.get(f"{other_replica}/auth/verify", cookies=cookie).status_code == 200
        assert browsers[0].client.post(f"{url}/logout", headers={"Origin": url}).status_code == 303
        wait_for(lambda: httpx.get(f"{other_replica}/auth/verify", cookies=cookie).status_code == 401, timeout=2,
                 what="the other replica refuses the ended session")
        for broker in (url, other_replica):
            assert httpx.get(f"{broker}/auth/verify", cookies=cookie).status_code == 401
    finally:
        for browser in browsers:
            browser.close()
