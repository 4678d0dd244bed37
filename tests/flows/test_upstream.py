"""TikTok token freshness against a real Redis and the emulator in-process (one FrozenClock for both):
single flight across replicas, compare-and-set, invalid_grant ending the link, failures, refresh-ahead."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
import redis as redis_sync

from broker.clock import FrozenClock, SystemClock
from broker.domain import ProviderTokens
from broker.errors import UpstreamRejected, UpstreamUnavailable
from broker.flows.upstream import UpstreamTokens
from broker.providers.base import Provider
from broker.providers.registry import create_provider
from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, create_redis
from broker.store.tiktok_tokens import TikTokTokenStore
from broker.store.vault import Vault
from tests.conftest import vault_key
from tiktok_emulator import EmulatorConfig, create_emulator_app

EMULATOR = "http://emulator.test"
ALICE, JUN = "7c1e2d34-5f6a-4b7c-8d9e-0a1b2c3d4e5f", "3f9a6b1c-2d4e-4f50-8a71-b2c3d4e5f607"
UID, UID2 = "u" * 22, "w" * 22
MARGIN = 300


class FlakyTransport(httpx.AsyncBaseTransport):
    """The emulator behind a transport that can time out (ASGITransport itself ignores httpx timeouts)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.timeouts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.timeouts:
            self.timeouts -= 1
            raise httpx.ReadTimeout("simulated", request=request)
        return await self.inner.handle_async_request(request)


@dataclass
class World:
    clock: FrozenClock
    tiktok: Any  # the emulator's state
    transport: FlakyTransport
    provider: Provider
    vault: Vault
    redis_url: str
    clients: list[RedisClient] = field(default_factory=list)

    def store(self) -> TikTokTokenStore:
        """A store on its own Redis connection pool, as another replica would have."""
        client = create_redis(self.redis_url)
        self.clients.append(client)
        return TikTokTokenStore(client, KeySpace("broker:"), self.vault)

    def replica(self, *, provider: Provider | None = None, lease_ttl: float = 5.0,
                wait_timeout: float = 5.0, call_timeout: float | None = None) -> UpstreamTokens:
        return UpstreamTokens(self.store(), provider or self.provider, self.clock, margin=MARGIN,
                              lease_ttl=lease_ttl, wait_timeout=wait_timeout, call_timeout=call_timeout)

    def refresh_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.tiktok.calls if c["endpoint"] == "token" and c["grant_type"] == "refresh_token"]

    def live_refresh_tokens(self, open_id: str = ALICE) -> list[str]:
        return [t.token for t in self.tiktok.issued_tokens_for(open_id) if t.kind == "refresh" and t.active]

    async def link(self, user_id: str = UID, open_id: str = ALICE) -> ProviderTokens:
        """What a login stores: a grant the emulator really issued, written by `queue_initial`."""
        pair = self.tiktok.tokens.issue(open_id, ("user.info.basic",))
        now = self.clock.now()
        tokens = ProviderTokens(subject=open_id, access_token=pair.access_token, refresh_token=pair.refresh_token,
                                expires_at=now + pair.expires_in, refresh_expires_at=now + pair.refresh_expires_in,
                                scopes=frozenset(pair.scopes))
        store = self.store()
        async with store.client.pipeline(transaction=True) as pipe:
            store.queue_initial(pipe, user_id, tokens, now)
            await pipe.execute()
        await store.track(user_id, tokens.expires_at)
        return tokens


def make_world(redis_url: str, **emulator_options: Any) -> tuple[World, httpx.AsyncClient]:
    clock = FrozenClock(SystemClock().now())
    emulator = create_emulator_app(EmulatorConfig(public_url=EMULATOR, **emulator_options), clock=clock)
    transport = FlakyTransport(httpx.ASGITransport(app=emulator))
    http = httpx.AsyncClient(transport=transport, base_url=EMULATOR)
    provider = create_provider("tiktok", http_client=http, client_key="emulator-client-key",
                               client_secret="emulator-client-secret", authorize_url=f"{EMULATOR}/v2/auth/authorize/",
                               api_url=EMULATOR, clock=clock, timeout_seconds=3)
    return World(clock, emulator.state.emulator, transport, provider, Vault([vault_key()]), redis_url), http


@pytest.fixture
async def world(redis_url: str) -> AsyncIterator[World]:
    made, http = make_world(redis_url)
    yield made
    for client in made.clients:
        await client.aclose()
    await http.aclose()


def near_expiry(world: World, tokens: ProviderTokens) -> None:
    world.clock.set(tokens.expires_at - MARGIN + 10)


async def test_a_fresh_token_is_returned_without_calling_tiktok(world: World) -> None:
    linked = await world.link()
    world.clock.advance(60)
    assert await world.replica().fresh(UID) == linked
    assert world.tiktok.calls == []


async def test_near_expiry_one_refresh_rotates_and_stores_the_newest_refresh_token(world: World) -> None:
    linked = await world.link()
    near_expiry(world, linked)
    fresh = await world.replica().fresh(UID)
    assert len(world.refresh_calls()) == 1
    assert fresh.access_token != linked.access_token and fresh.refresh_token != linked.refresh_token
    assert world.live_refresh_tokens() == [fresh.refresh_token]  # TikTok killed the one we presented
    stored = await world.store().get(UID)
    assert stored is not None and stored.version == 2 and stored.tokens == fresh
    # Lifetimes come from TikTok's expires_in / refresh_expires_in (the family keeps its first deadline).
    assert fresh.expires_at == world.clock.now() + 7200
    assert fresh.refresh_expires_at == linked.refresh_expires_at
    assert await world.replica().fresh(UID) == fresh and len(world.refresh_calls()) == 1


async def test_lifetimes_follow_what_tiktok_answers(redis_url: str) -> None:
    world, http = make_world(redis_url, ttl_profile="legacy", refresh_resets_deadline=True)
    try:
        linked = await world.link()
        near_expiry(world, linked)
        fresh = await world.replica().fresh(UID)
        assert fresh.expires_at == world.clock.now() + 86_400
        assert fresh.refresh_expires_at == world.clock.now() + 31_536_000
    finally:
        for client in world.clients:
            await client.aclose()
        await http.aclose()


async def test_fifty_concurrent_callers_on_five_replicas_cause_one_refresh(world: World) -> None:
    linked = await world.link()
    near_expiry(world, linked)
    world.tiktok.set_fault("token", "latency", latency_ms=200, count=1)  # keep the winner busy at TikTok
    replicas = [world.replica() for _ in range(5)]
    results = await asyncio.gather(*(replicas[i % 5].fresh(UID) for i in range(50)))
    assert len(world.refresh_calls()) == 1
    assert len({r.access_token for r in results}) == 1 and results[0].access_token != linked.access_token
    stored = await world.store().get(UID)
    assert stored is not None and stored.tokens == results[0]
    assert world.live_refresh_tokens() == [stored.tokens.refresh_token]


async def test_a_rejected_access_token_forces_one_refresh_only(world: World) -> None:
    linked = await world.link()  # far from expiry: only the rejection makes it stale
    one, two = world.replica(), world.replica()
    first, second = await asyncio.gather(one.fresh(UID, reject_access_token=linked.access_token),
                                         two.fresh(UID, reject_access_token=linked.access_token))
    assert len(world.refresh_calls()) == 1
    assert first == second and first.access_token != linked.access_token
    # A late caller still holding the old token gets the replacement, without another refresh.
    assert await one.fresh(UID, reject_access_token=linked.access_token) == first
    assert len(world.refresh_calls()) == 1


async def test_compare_and_set_refuses_an_older_version(world: World) -> None:
    linked = await world.link()
    store = world.store()
    read = await store.get(UID)
    assert read is not None and read.version == 1
    newer = replace(linked, access_token="act.newer", refresh_token="rft.newer")
    assert await store.compare_and_set(UID, read.version, newer)
    assert not await store.compare_and_set(UID, read.version, replace(linked, refresh_token="rft.stale"))
    after = await store.get(UID)
    assert after is not None and after.version == 2 and after.tokens == newer
    # A new login replaces the grant and moves the version on, so a refresh begun before it cannot write.
    relinked = await world.link()
    assert not await store.compare_and_set(UID, after.version, replace(linked, refresh_token="rft.late"))
    final = await store.get(UID)
    assert final is not None and final.version == 3 and final.tokens == relinked


async def test_invalid_grant_ends_the_link_once_and_never_loops(world: World, redis_sync: redis_sync.Redis) -> None:
    linked = await world.link()
    await world.provider.revoke(linked.access_token)  # the user disconnected the app at TikTok
    near_expiry(world, linked)
    upstream = world.replica()
    with pytest.raises(UpstreamRejected):
        await upstream.fresh(UID)
    assert len(world.refresh_calls()) == 1 and world.refresh_calls()[0]["error"] == "invalid_grant"
    user = redis_sync.hgetall(f"broker:{{u:{UID}}}:user")
    assert user["tiktok_link"] == "broken" and user["tiktok_link_reason"] == "invalid_grant"
    assert float(user["tiktok_link_broken_at"]) == world.clock.now()
    assert redis_sync.exists(f"broker:{{u:{UID}}}:tiktok", f"broker:{{u:{UID}}}:tiktok:lease") == 0
    assert redis_sync.zscore("broker:tiktok:expiry", UID) is None
    for _ in range(3):
        with pytest.raises(UpstreamRejected):
            await upstream.fresh(UID)
    assert len(world.refresh_calls()) == 1  # no TikTok call once the link is ended
    assert await upstream.refresh_ahead_once(10**6) == 0


async def test_an_expired_refresh_token_ends_the_link_without_calling_tiktok(world: World,
                                                                             redis_sync: redis_sync.Redis) -> None:
    linked = await world.link()
    world.clock.set(linked.refresh_expires_at + 1)
    with pytest.raises(UpstreamRejected):
        await world.replica().fresh(UID)
    assert world.tiktok.calls == []
    assert redis_sync.hget(f"broker:{{u:{UID}}}:user", "tiktok_link_reason") == "refresh_token_expired"


async def test_invalid_grant_after_another_writer_won_uses_the_winners_tokens(world: World,
                                                                               redis_sync: redis_sync.Redis) -> None:
    linked = await world.link()
    near_expiry(world, linked)
    other = world.replica()

    class Racing:
        """Another replica refreshes and stores first (say its lease lapsed), so ours gets invalid_grant."""

        name = "tiktok"

        def __getattr__(self, name: str) -> Any:
            return getattr(world.provider, name)

        async def refresh(self, refresh_token: str) -> ProviderTokens:
            issued = await world.provider.refresh(refresh_token)
            stored = await other.store.get(UID)
            assert stored is not None and await other.store.compare_and_set(UID, stored.version, issued)
            return await world.provider.refresh(refresh_token)

    result = await world.replica(provider=Racing()).fresh(UID)  # type: ignore[arg-type]
    assert [c["error"] for c in world.refresh_calls()] == [None, "invalid_grant"]
    assert world.live_refresh_tokens() == [result.refresh_token]
    assert redis_sync.hget(f"broker:{{u:{UID}}}:user", "tiktok_link") == "linked"


@pytest.mark.parametrize("failure", ["http_500", "error_200", "rate_limit", "timeout"])
async def test_tiktok_failing_during_refresh_leaves_the_grant_alone(world: World, redis_sync: redis_sync.Redis,
                                                                    failure: str) -> None:
    linked = await world.link()
    near_expiry(world, linked)
    if failure == "timeout":
        world.transport.timeouts = 1
    else:
        world.tiktok.set_fault("token", failure, count=1)
    upstream = world.replica()
    with pytest.raises(UpstreamUnavailable):
        await upstream.fresh(UID)
    stored = await world.store().get(UID)
    assert stored is not None and stored.version == 1 and stored.tokens == linked
    assert redis_sync.exists(f"broker:{{u:{UID}}}:tiktok:lease") == 0
    assert "tiktok_link_reason" not in redis_sync.hgetall(f"broker:{{u:{UID}}}:user")
    fresh = await upstream.fresh(UID)  # TikTok is back: the same refresh token still works
    assert fresh.access_token != linked.access_token and world.live_refresh_tokens() == [fresh.refresh_token]


async def test_waiters_take_over_when_the_winner_dies(world: World) -> None:
    linked = await world.link()
    near_expiry(world, linked)
    dead = await world.store().acquire_lease(UID, 400)  # a replica that took the lease and crashed
    assert dead is not None
    results = await asyncio.gather(*(world.replica(wait_timeout=3).fresh(UID) for _ in range(5)))
    assert len(world.refresh_calls()) == 1
    assert len({r.access_token for r in results}) == 1
    assert world.live_refresh_tokens() == [results[0].refresh_token]


async def test_a_refresh_slower_than_its_caller_is_stored_when_tiktok_answers(world: World) -> None:
    """TikTok rotates as it handles the refresh: its late answer holds the only live refresh token."""
    linked = await world.link()
    near_expiry(world, linked)
    world.tiktok.set_fault("token", "latency", latency_ms=600, count=1)
    upstream = world.replica(call_timeout=0.1)
    with pytest.raises(UpstreamUnavailable):
        await upstream.fresh(UID)  # the caller is let go after its timeout ...
    stored = await world.store().get(UID)
    assert stored is not None and stored.tokens == linked
    await upstream.drain(grace=5)  # ... while the refresh goes on and stores TikTok's answer
    stored = await world.store().get(UID)
    assert stored is not None and stored.version == 2 and stored.tokens.refresh_token != linked.refresh_token
    assert world.live_refresh_tokens() == [stored.tokens.refresh_token] and len(world.refresh_calls()) == 1
    assert await world.store().lease_held(UID) is False
    assert await upstream.fresh(UID) == stored.tokens


async def test_a_live_holder_keeps_its_lease_through_a_refresh_longer_than_the_lease(world: World) -> None:
    linked = await world.link()
    near_expiry(world, linked)
    # TikTok takes 2.5 leases to answer. The lease is long enough that a host stall (up to ~0.6 s here) does not
    # delay a renewal (every 0.4 s) past the lease's end, which would let a waiter take over: that is the
    # crash case, tested elsewhere.
    world.tiktok.set_fault("token", "latency", latency_ms=3000, count=1)
    holder = world.replica(lease_ttl=1.2)
    first = asyncio.create_task(holder.fresh(UID))
    await asyncio.sleep(0.2)  # the holder has the lease and is waiting for TikTok
    others = await asyncio.gather(*(world.replica(lease_ttl=1.2, wait_timeout=8).fresh(UID) for _ in range(3)))
    assert {r.access_token for r in others} == {(await first).access_token}
    assert len(world.refresh_calls()) == 1  # renewed over and over: nobody presented the token a second time
    assert world.live_refresh_tokens() == [others[0].refresh_token]


async def test_waiters_give_up_in_bounded_time_without_losing_the_refresh_token(world: World) -> None:
    linked = await world.link()
    near_expiry(world, linked)
    assert await world.store().acquire_lease(UID, 10_000) is not None  # a stuck winner
    started = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamUnavailable):
        await world.replica(wait_timeout=0.3).fresh(UID)
    assert asyncio.get_running_loop().time() - started < 2
    assert world.tiktok.calls == []
    stored = await world.store().get(UID)
    assert stored is not None and stored.tokens == linked and world.live_refresh_tokens() == [linked.refresh_token]


async def test_refresh_ahead_refreshes_only_users_within_the_horizon(world: World,
                                                                     redis_sync: redis_sync.Redis) -> None:
    alice = await world.link(UID, ALICE)
    world.clock.advance(3600)
    jun = await world.link(UID2, JUN)  # expires an hour after Alice
    redis_sync.zadd("broker:tiktok:expiry", {"gone-user": world.clock.now()})  # a user deleted meanwhile
    upstream = world.replica()
    assert await upstream.refresh_ahead_once(horizon=3700) == 1
    assert [c["token"] for c in world.refresh_calls()] == [alice.refresh_token]
    stored = await world.store().get(UID)
    assert stored is not None and stored.tokens.access_token != alice.access_token
    assert redis_sync.zscore("broker:tiktok:expiry", UID) == stored.tokens.expires_at
    assert redis_sync.zscore("broker:tiktok:expiry", UID2) == jun.expires_at
    assert redis_sync.zscore("broker:tiktok:expiry", "gone-user") is None
    assert await upstream.refresh_ahead_once(horizon=3700) == 0  # nothing due any more


@pytest.mark.parametrize("mode", ["latency", "http_500", "error_200", "rate_limit", "garbage"])
async def test_refresh_ahead_through_a_tiktok_fault_keeps_the_grant(world: World, redis_sync: redis_sync.Redis,
                                                                    mode: str) -> None:
    linked = await world.link()
    near_expiry(world, linked)
    world.tiktok.set_fault("token", mode, latency_ms=400, count=1)
    upstream = world.replica(call_timeout=0.1)
    assert await upstream.refresh_ahead_once(horizon=MARGIN) == 0  # failed, or still waiting for a slow TikTok
    await upstream.drain(grace=5)
    assert redis_sync.hget(f"broker:{{u:{UID}}}:user", "tiktok_link") == "linked"
    await upstream.refresh_ahead_once(horizon=MARGIN)  # the next round, once TikTok behaves
    stored = await world.store().get(UID)
    assert stored is not None and stored.tokens.expires_at - world.clock.now() > MARGIN
    assert world.live_refresh_tokens() == [stored.tokens.refresh_token]
    assert redis_sync.zscore("broker:tiktok:expiry", UID) == stored.tokens.expires_at


async def test_the_background_refresher_keeps_going_and_stops_when_cancelled(world: World) -> None:
    linked = await world.link()
    near_expiry(world, linked)
    world.tiktok.set_fault("token", "http_500", count=1)  # the first round fails, the next one succeeds
    task = asyncio.create_task(world.replica().run_refresh_ahead(interval=0.05, horizon=MARGIN))
    until: Callable[[], bool] = lambda: len(world.refresh_calls()) >= 2  # noqa: E731
    for _ in range(100):
        if until():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [c["status"] for c in world.refresh_calls()][:2] == [500, 200]


async def test_the_background_refresher_stops_whenever_it_is_cancelled(world: World) -> None:
    """Cancelled at any point, even mid Redis command (where redis-py can swallow the CancelledError)."""
    await world.link()
    upstream = world.replica()
    for attempt in range(30):
        task = asyncio.create_task(upstream.run_refresh_ahead(interval=0, horizon=60))
        await asyncio.sleep(attempt / 10_000)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1)
        assert done, f"still running after cancel #{attempt}"
