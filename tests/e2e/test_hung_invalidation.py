"""A replica whose invalidation connection hangs (frozen, not closed) stops trusting its session cache within
BROKER_LOCAL_CACHE_TRUST_MS: a logout made through another replica is refused there within that bound."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from broker.app import create_app
from broker.config import Secret, Settings
from broker.store.embedded import EmbeddedRedis, free_port
from tests.e2e.conftest import ALICE, Stack, start_stack
from tests.support.browser import Browser
from tests.support.freezing_proxy import FreezingProxy
from tests.support.servers import ThreadedServer

TRUST_MS = 500


@pytest.fixture
def replicas(base_settings: Settings,
             redis_server: EmbeddedRedis) -> Iterator[tuple[Stack, ThreadedServer, FreezingProxy]]:
    """Replica B (the stack's broker) talks to Redis directly; replica A through a proxy that can freeze A's
    invalidation connection alone."""
    stack, servers = start_stack(base_settings.with_overrides(local_cache_trust_ms=TRUST_MS))
    proxy = FreezingProxy(redis_server.port).start()
    through_proxy = stack.settings.with_overrides(redis_url=Secret(proxy.url_for(redis_server.url)))
    replica_a = ThreadedServer(create_app(through_proxy), free_port()).start()
    yield stack, replica_a, proxy
    proxy.thaw()
    replica_a.stop()
    proxy.stop()
    for server in servers:
        server.stop()


def test_a_logout_elsewhere_is_refused_within_the_trust_bound(
        replicas: tuple[Stack, ThreadedServer, FreezingProxy]) -> None:
    stack, replica_a, proxy = replicas
    browser = Browser()
    try:
        consent = browser.get(f"{stack.broker.url}/login")
        assert browser.consent(consent, user=ALICE).status_code == 200
        cookies = dict(browser.client.cookies)

        def check_on_a() -> int:
            return httpx.get(f"{replica_a.url}/auth/verify", cookies=cookies).status_code

        for _ in range(3):
            assert check_on_a() == 200  # now in replica A's session cache
        proxy.freeze()
        time.sleep(0.05)
        ended = httpx.post(f"{stack.broker.url}/logout", cookies=cookies, headers={"Origin": stack.settings.issuer})
        assert ended.status_code == 303
        logged_out = time.monotonic()
        while (status := check_on_a()) == 200:
            time.sleep(0.01)
        admitted_for = time.monotonic() - logged_out
        assert status == 401
        # The bound, plus one check's round trip and a scheduling hiccup on a loaded machine.
        assert admitted_for < TRUST_MS / 1000 + 0.3, f"admitted {admitted_for:.2f} s after the logout"
    finally:
        browser.close()
