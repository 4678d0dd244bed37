"""Shared fixtures: a real redis-server for the whole run, signing keys, settings, and live servers."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from broker.config import Secret, Settings, VaultKey
from broker.store.embedded import EmbeddedRedis, free_port
from tests.support.keys import write_test_keys
from tests.support.redis_topologies import SlotCheckingRedis

# What `make test-fast` leaves out: tests that start servers in other processes, drive a browser, or run long.
SLOW_DIRECTORIES = ("e2e", "cli", "deploy")
SLOW_FILES = ("test_schemathesis.py",)
# What `make test` runs in one process after the others: schemathesis reports each API operation as a subtest,
# and pytest-xdist's workers drop subtest failures (the test would pass with an undocumented answer).
SERIAL_FILES = ("test_schemathesis.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        relative = item.path.relative_to(root)
        if relative.parts[0] in SLOW_DIRECTORIES or relative.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
        if relative.name in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server (from PATH, or the bundled one) on a free loopback port, for the whole run."""
    server = SlotCheckingRedis(tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """The broker's ES256 key and an RS256 key for ID tokens, both active."""
    return write_test_keys(tmp_path / "keys")


def vault_key(kid: str = "test") -> VaultKey:
    return VaultKey(kid, os.urandom(32))


def vault_entry(key: VaultKey) -> str:
    return f"{key.kid}:{base64.urlsafe_b64encode(key.key).rstrip(b'=').decode()}"


@pytest.fixture
def base_settings(redis_url: str, keys_dir: Path, tmp_path: Path) -> Settings:
    return Settings(
        issuer="http://127.0.0.1:8080", redis_url=Secret(redis_url), data_dir=tmp_path / "data",
        keys_dir=keys_dir, vault_keys=(vault_key(),), tiktok_client_key="emulator-client-key",
        tiktok_client_secret=Secret("emulator-client-secret"), tiktok_timeout=3.0,
        allowed_return_urls=("https://app.example.com",),
    )
