"""Two broker replicas (real uvicorn servers, one Redis, the emulator over real HTTP) race to refresh one user's
expiring TikTok token: TikTok sees one refresh, both get the new token, the newest refresh token is stored."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
import pytest
import redis

from broker.app import create_app
from broker.clock import SystemClock
from broker.config import Settings
from broker.domain import ProviderTokens
from broker.flows.upstream import UpstreamTokens
from broker.providers.registry import create_provider
from broker.store.embedded import free_port
from broker.store.keys import KeySpace
from broker.store.redis import create_redis
from broker.store.tiktok_tokens import TikTokTokenStore
from broker.store.vault import Vault
from tests.e2e.conftest import ALICE, Stack
from tests.e2e.test_login import log_in
from tests.support.browser import Browser
from tests.support.servers import ThreadedServer
from tiktok_emulator import EmulatorConfig, create_emulator_app

T = TypeVar("T")


def on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
    """Run a coroutine on a server's own event loop (its thread), as a request handler there would."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


@dataclass
class Replica:
    server: ThreadedServer
    app: Any
    loop: asyncio.AbstractEventLoop
    upstream: UpstreamTokens
    closers: tuple[Any, ...] = ()  # clients this test opened on the replica's loop


async def own_upstream(settings: Settings) -> tuple[UpstreamTokens, tuple[Any, ...]]:
    """The flow as app.py wires it, built on the replica's loop: its own Redis pool and HTTP client."""
    client, http, clock = create_redis(settings.redis_url.reveal()), httpx.AsyncClient(), SystemClock()
    provider = create_provider("tiktok", http_client=http, client_key=settings.tiktok_client_key,
                               client_secret=settings.tiktok_client_secret.reveal(),
                               authorize_url=settings.tiktok_authorize_url, api_url=settings.tiktok_api_url,
                               clock=clock, timeout_seconds=settings.tiktok_timeout)
    store = TikTokTokenStore(client, KeySpace(settings.redis_prefix), Vault(settings.vault_keys))
    upstream = UpstreamTokens(store, provider, clock, margin=settings.tiktok_refresh_margin,
                              lease_ttl=2 * settings.tiktok_timeout + 1, wait_timeout=2 * settings.tiktok_timeout + 2)
    return upstream, (client, http)


def start_replica(settings: Settings, port: int) -> Replica:
    app = create_app(settings)
    server = ThreadedServer(app, port).start()
    loop = server.server.servers[0].get_loop()
    wired = getattr(app.state.services, "upstream", None)  # once app.py wires the flow, race the real one
    if isinstance(wired, UpstreamTokens):
        return Replica(server, app, loop, wired)
    upstream, closers = on_loop(loop, own_upstream(settings))
    return Replica(server, app, loop, upstream, closers)


async def close_all(closers: tuple[Any, ...]) -> None:
    for closer in closers:
        await closer.aclose()


@dataclass
class Cluster:
    stack: Stack  # replica A as `broker`, for logging in
    replicas: tuple[Replica, Replica]


@pytest.fixture
def cluster(base_settings: Settings) -> Iterator[Cluster]:
    port_a, port_b, emulator_port = free_port(), free_port(), free_port()
    issuer, emulator_url = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{emulator_port}"
    settings = base_settings.with_overrides(issuer=issuer, tiktok_authorize_url=f"{emulator_url}/v2/auth/authorize/",
                                            tiktok_api_url=emulator_url, tiktok_scopes=("user.info.basic",))
    emulator_app = create_emulator_app(EmulatorConfig(redirect_uris=(f"{issuer}/callback",), public_url=emulator_url))
    emulator = ThreadedServer(emulator_app, emulator_port).start()
    replicas = (start_replica(settings, port_a), start_replica(settings, port_b))  # same settings: one broker
    yield Cluster(Stack(replicas[0].server, emulator, settings, emulator_app), replicas)
    for replica in replicas:
        if replica.closers:
            on_loop(replica.loop, close_all(replica.closers))
        replica.server.stop()
    emulator.stop()


def the_user_id(redis_sync: redis.Redis) -> str:
    (user_key,) = redis_sync.keys("broker:{u:*}:user")
    return str(user_key).split("{u:", 1)[1].split("}", 1)[0]


async def make_expiring(settings: Settings, user_id: str) -> ProviderTokens:
    """Pretend the login happened long ago: the stored access token now expires well inside the margin."""
    client = create_redis(settings.redis_url.reveal())
    try:
        store = TikTokTokenStore(client, KeySpace(settings.redis_prefix), Vault(settings.vault_keys))
        stored = await store.get(user_id)
        assert stored is not None
        expiring = replace(stored.tokens, expires_at=time.time() + 5)
        assert await store.compare_and_set(user_id, stored.version, expiring)
        return expiring
    finally:
        await client.aclose()


async def stored_tokens(settings: Settings, user_id: str) -> ProviderTokens | None:
    client = create_redis(settings.redis_url.reveal())
    try:
        found = await TikTokTokenStore(client, KeySpace(settings.redis_prefix), Vault(settings.vault_keys)).get(user_id)
        return None if found is None else found.tokens
    finally:
        await client.aclose()


def test_two_replicas_asked_at_once_refresh_once_and_keep_the_newest_refresh_token(
        cluster: Cluster, browser: Browser, redis_sync: redis.Redis) -> None:
    stack, settings = cluster.stack, cluster.stack.settings
    assert log_in(stack, browser).status_code == 200
    user_id = the_user_id(redis_sync)
    old = asyncio.run(make_expiring(settings, user_id))
    # Keep the winner at TikTok for a moment, so the other replica surely arrives while the refresh runs.
    stack.tiktok.set_fault("token", "latency", latency_ms=300, count=1)

    barrier = threading.Barrier(2)
    results: list[ProviderTokens | BaseException] = [RuntimeError("not run"), RuntimeError("not run")]

    def use_token(index: int, replica: Replica) -> None:
        barrier.wait()
        try:
            results[index] = on_loop(replica.loop, replica.upstream.fresh(user_id))
        except BaseException as exc:  # reported by the assertions below, with the other replica's outcome
            results[index] = exc

    threads = [threading.Thread(target=use_token, args=(i, r)) for i, r in enumerate(cluster.replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    refreshes = [c for c in stack.tiktok.calls if c["endpoint"] == "token" and c["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1, refreshes
    first, second = results
    assert isinstance(first, ProviderTokens) and isinstance(second, ProviderTokens), results
    assert first.access_token == second.access_token != old.access_token
    stored = asyncio.run(stored_tokens(settings, user_id))
    live = [t.token for t in stack.tiktok.issued_tokens_for(ALICE) if t.kind == "refresh" and t.active]
    assert stored is not None and stored.refresh_token == first.refresh_token and live == [stored.refresh_token]
    assert stored.refresh_token != old.refresh_token

    # And it works at TikTok: the other replica, told the access token is bad, refreshes with it.
    b = cluster.replicas[1]
    again = on_loop(b.loop, b.upstream.fresh(user_id, reject_access_token=first.access_token))
    assert again.access_token != first.access_token
    assert [c["error"] for c in stack.tiktok.calls if c["grant_type"] == "refresh_token"] == [None, None]
