"""Redis going away at run time: fail closed with 503 (never a logout), recover without a broker restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from broker.config import Secret, Settings
from broker.store.embedded import EmbeddedRedis, free_port
from tests.e2e.conftest import ALICE, Stack, start_stack
from tests.support.browser import Browser
from tests.support.outage import first_unavailable


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


def test_redis_outage_answers_503_then_recovers_with_every_session(base_settings: Settings,
                                                                   own_redis: EmbeddedRedis) -> None:
    client = redis.Redis.from_url(own_redis.url)
    client.config_set("appendfsync", "always")  # so a kill -9 loses nothing the test wrote
    client.close()
    stack: Stack
    stack, servers = start_stack(base_settings.with_overrides(redis_url=Secret(own_redis.url)))
    browser = Browser()
    revived = EmbeddedRedis(own_redis.data_dir, port=own_redis.port, password=own_redis.password)
    try:
        consent = browser.get(f"{stack.broker.url}/login")
        assert browser.consent(consent, user=ALICE).status_code == 200
        before = browser.client.get(f"{stack.broker.url}/auth/verify")
        assert before.status_code == 200

        own_redis.kill()
        down, _ = first_unavailable(lambda: browser.client.get(f"{stack.broker.url}/auth/verify"))
        assert down.headers["retry-after"]
        assert down.json()["error"] == "temporarily_unavailable"
        assert "set-cookie" not in down.headers  # an outage is not a logout
        assert browser.client.get(f"{stack.broker.url}/readyz").status_code == 503
        login = browser.client.get(f"{stack.broker.url}/login")
        assert login.status_code == 503 and "text/html" in login.headers["content-type"]
        jwks = httpx.get(f"{stack.broker.url}/.well-known/jwks.json")
        assert jwks.status_code == 200  # offline verification downstream is unaffected

        # Same port, same folder: the append-only file brings every session back.
        revived.start()
        after = browser.client.get(f"{stack.broker.url}/auth/verify")
        assert after.status_code == 200
        assert after.headers["x-auth-request-user"] == before.headers["x-auth-request-user"]
        assert browser.client.get(f"{stack.broker.url}/readyz").status_code == 200
    finally:
        browser.close()
        for server in servers:
            server.stop()
        revived.stop()
