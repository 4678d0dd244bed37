"""The per-process session cache on the gateway hot path: no Redis round trip on a repeated check, and every
revocation, logout or deletion made through another replica refused by this one at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis

from broker.app import create_app
from broker.config import Settings
from broker.store.embedded import free_port
from tests.e2e.conftest import ALICE, Stack, start_stack
from tests.support.browser import Browser
from tests.support.servers import ThreadedServer


@contextmanager
def redis_commands(url: str) -> Iterator[list[str]]:
    """The commands clients send to Redis meanwhile about users (MONITOR): sessions, families, denylists; not
    the background loops (event delivery, TikTok revoke retries) nor the cache's own heartbeats."""
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        client = redis.Redis.from_url(url, decode_responses=True)
        with client.monitor() as monitor:
            for event in monitor.listen():
                if stop.is_set():
                    break
                seen.append(f"{event['client_type']} {event['command']}")
        client.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.3)
    try:
        yield seen
    finally:
        time.sleep(0.3)
        stop.set()
        redis.Redis.from_url(url).ping()  # wakes the monitor so it sees the stop flag
        watcher.join(timeout=5)
        seen[:] = [line for line in seen if not line.startswith("lua") and ("{u:" in line or "deny:" in line)]


def until(condition: Callable[[], bool], within: float = 2.0) -> float:
    """Seconds until `condition` held; fails after `within` (a bound, not a speed claim)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, "not refused in time"
        time.sleep(0.002)
    return time.monotonic() - started


@pytest.fixture
def replicas(base_settings: Settings) -> Iterator[tuple[Stack, ThreadedServer]]:
    """Replica A (the stack's broker) and replica B: the same settings and Redis, so one broker to the world."""
    stack, servers = start_stack(base_settings)
    other = ThreadedServer(create_app(stack.settings), free_port()).start()
    yield stack, other
    other.stop()
    for server in servers:
        server.stop()


def signed_in(stack: Stack) -> Browser:
    browser = Browser()
    consent = browser.get(f"{stack.broker.url}/login")
    assert browser.consent(consent, user=ALICE).status_code == 200
    return browser


def verify(browser: Browser, stack: Stack) -> httpx.Response:
    return browser.client.get(f"{stack.broker.url}/auth/verify")


def test_repeated_checks_need_no_redis_round_trip(replicas: tuple[Stack, ThreadedServer], redis_url: str) -> None:
    stack, _ = replicas
    browser = signed_in(stack)
    try:
        for _ in range(3):  # the first checks read the session and mint its JWT
            first = verify(browser, stack)
        assert first.status_code == 200
        bearer = {"Authorization": first.headers["authorization"]}
        assert httpx.get(f"{stack.broker.url}/auth/verify", headers=bearer).status_code == 200
        with redis_commands(redis_url) as seen:
            for _ in range(20):
                cookie_check = verify(browser, stack)
                assert cookie_check.status_code == 200
                assert cookie_check.headers["authorization"] == first.headers["authorization"]
                assert httpx.get(f"{stack.broker.url}/auth/verify", headers=bearer).status_code == 200
        assert seen == []
    finally:
        browser.close()


def test_without_the_cache_each_check_is_one_round_trip(base_settings: Settings, redis_url: str) -> None:
    stack, servers = start_stack(base_settings.with_overrides(local_cache_size=0))
    browser = signed_in(stack)
    try:
        assert verify(browser, stack).status_code == 200  # warm the JWT cache
        with redis_commands(redis_url) as seen:
            for _ in range(10):
                assert verify(browser, stack).status_code == 200
        assert len(seen) == 10, seen
        assert all("EVALSHA" in line for line in seen)
    finally:
        browser.close()
        for server in servers:
            server.stop()


def test_logout_through_another_replica_is_refused_here_at_once(replicas: tuple[Stack, ThreadedServer]) -> None:
    stack, other = replicas
    browser = signed_in(stack)
    try:
        for _ in range(3):
            assert verify(browser, stack).status_code == 200  # now served from replica A's memory
        cookies = dict(browser.client.cookies)
        ended = httpx.post(f"{other.url}/logout", cookies=cookies, headers={"Origin": stack.settings.issuer})
        assert ended.status_code == 303
        until(lambda: verify(browser, stack).status_code == 401)
    finally:
        browser.close()


def test_a_revoked_access_token_is_replaced_and_refused_here(replicas: tuple[Stack, ThreadedServer]) -> None:
    stack, other = replicas
    browser = signed_in(stack)
    try:
        for _ in range(3):
            handed_out = verify(browser, stack).headers["authorization"]
        bearer = {"Authorization": handed_out}
        assert httpx.get(f"{stack.broker.url}/auth/verify", headers=bearer).status_code == 200
        revoked = httpx.post(f"{other.url}/oauth/revoke", data={"token": handed_out.removeprefix("Bearer ")})
        assert revoked.status_code == 200
        until(lambda: httpx.get(f"{stack.broker.url}/auth/verify", headers=bearer).status_code == 401)
        # The session lives on; the gateway hands out a new token instead of the revoked one.
        until(lambda: verify(browser, stack).headers.get("authorization") not in (None, handed_out))
        assert verify(browser, stack).status_code == 200
    finally:
        browser.close()


def test_deletion_through_another_replica_is_refused_here(replicas: tuple[Stack, ThreadedServer]) -> None:
    stack, other = replicas
    browser = signed_in(stack)
    try:
        for _ in range(3):
            bearer = {"Authorization": verify(browser, stack).headers["authorization"]}
        assert httpx.get(f"{stack.broker.url}/auth/verify", headers=bearer).status_code == 200
        deleted = httpx.delete(f"{other.url}/account", headers=bearer)
        assert deleted.status_code == 200, deleted.text
        until(lambda: verify(browser, stack).status_code == 401)
        until(lambda: httpx.get(f"{stack.broker.url}/auth/verify", headers=bearer).status_code == 401)
    finally:
        browser.close()


def test_while_the_invalidation_connection_is_down_checks_go_to_redis(replicas: tuple[Stack, ThreadedServer],
                                                                      redis_url: str) -> None:
    stack, other = replicas
    browser = signed_in(stack)
    try:
        for _ in range(3):
            assert verify(browser, stack).status_code == 200
        killer = redis.Redis.from_url(redis_url)
        # Both replicas' tracking connections drop; the connection pools of the brokers stay.
        assert killer.client_kill_filter(_type="pubsub") == 2
        killer.close()
        with redis_commands(redis_url) as seen:
            assert verify(browser, stack).status_code == 200
        assert any("EVALSHA" in line for line in seen)  # not served from memory while nothing reports writes
        # The listener comes back by itself and the checks are served from memory again.
        for _ in range(3):
            verify(browser, stack)

        def quiet() -> bool:
            with redis_commands(redis_url) as later:
                for _ in range(3):
                    assert verify(browser, stack).status_code == 200
            return later == []

        until(quiet, within=10)
        ended = httpx.post(f"{other.url}/logout", cookies=dict(browser.client.cookies),
                           headers={"Origin": stack.settings.issuer})
        assert ended.status_code == 303
        until(lambda: verify(browser, stack).status_code == 401)
    finally:
        browser.close()
