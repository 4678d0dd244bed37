"""The gateway hot path costs one Redis round trip per check, and no TikTok call."""

from __future__ import annotations

import threading
import time

import redis

from tests.e2e.conftest import ALICE, Stack
from tests.support.browser import Browser


def record_commands(url: str, stop: threading.Event, seen: list[str]) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    with client.monitor() as monitor:
        for event in monitor.listen():
            if stop.is_set():
                break
            seen.append(f"{event['client_type']} {event['command']}")
    client.close()


def test_each_cookie_check_is_one_redis_round_trip(stack: Stack, browser: Browser, redis_url: str) -> None:
    consent = browser.get(f"{stack.broker.url}/login")
    assert browser.consent(consent, user=ALICE).status_code == 200
    assert browser.client.get(f"{stack.broker.url}/auth/verify").status_code == 200  # warm the JWT cache
    tiktok_calls = len(stack.tiktok.calls)

    seen: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=record_commands, args=(redis_url, stop, seen), daemon=True)
    watcher.start()
    time.sleep(0.3)
    checks = 10
    for _ in range(checks):
        assert browser.client.get(f"{stack.broker.url}/auth/verify").status_code == 200
    time.sleep(0.3)
    stop.set()
    redis.Redis.from_url(redis_url).ping()  # wakes the monitor so it sees the stop flag
    watcher.join(timeout=5)

    from_clients = [line for line in seen if not line.startswith("lua") and "PING" not in line]
    assert len(from_clients) == checks, from_clients
    assert all("EVALSHA" in line for line in from_clients)
    assert len(stack.tiktok.calls) == tiktok_calls
