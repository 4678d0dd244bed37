"""TikTok (the emulator) disconnects a user: its signed webhook reaches the broker over HTTP and ends everything."""

from __future__ import annotations

import time

import httpx
import redis

from broker.config import Settings
from tests.e2e.conftest import ALICE, start_stack
from tests.support.browser import Browser


def test_authorization_removed_from_tiktok_signs_the_user_out_everywhere(base_settings: Settings,
                                                                        redis_sync: redis.Redis) -> None:
    stack, servers = start_stack(base_settings, tiktok_webhooks=True)
    browsers = [Browser(), Browser()]
    try:
        for browser in browsers:
            page = browser.get(f"{stack.broker.url}/login?prompt=login")
            assert browser.consent(page, user=ALICE).status_code == 200
            assert browser.client.get(f"{stack.broker.url}/auth/verify").status_code == 200
        trigger = httpx.post(f"{stack.emulator.url}/_emulator/webhooks/authorization-removed",
                             json={"open_id": ALICE, "reason": 1})
        assert trigger.status_code == 202
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(b.client.get(f"{stack.broker.url}/auth/verify").status_code == 401 for b in browsers):
                break
            time.sleep(0.1)
        assert all(b.client.get(f"{stack.broker.url}/auth/verify").status_code == 401 for b in browsers)
        sub = redis_sync.get(next(iter(redis_sync.keys("broker:oid:*"))))
        user = redis_sync.hgetall(f"broker:{{u:{sub}}}:user")
        assert user["tiktok_link_reason"] == "tiktok_deauthorized:user_disconnected"
        assert redis_sync.exists(f"broker:{{u:{sub}}}:tiktok") == 0
        metrics = httpx.get(f"{stack.broker.url}/metrics").text
        assert 'broker_tiktok_webhooks_total{outcome="processed"} 1.0' in metrics
    finally:
        for browser in browsers:
            browser.close()
        for server in servers:
            server.stop()
