"""`broker vault new-key` and `broker vault rotate` against a real Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis

from broker.config import VaultKey, parse_vault_keys
from broker.domain import Identity, ProviderTokens, Session
from broker.store.embedded import free_port
from broker.store.keys import KeySpace
from broker.store.records import Records
from broker.store.redis import create_redis
from broker.store.vault import Vault
from tests.cli import broker_env, run_broker
from tests.conftest import vault_entry, vault_key

ALICE, BOB = "a" * 22, "b" * 22


def test_new_key_prints_an_entry_the_settings_accept(tmp_path: Path) -> None:
    entries = []
    for _ in range(2):
        result = run_broker("vault", "new-key", env=broker_env(), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        entries.append(result.stdout.strip())
        (key,) = parse_vault_keys(entries[-1])
        assert len(key.key) == 32 and key.kid
    assert entries[0] != entries[1]
    assert entries[0].partition(":")[2] != entries[1].partition(":")[2]

    named = run_broker("vault", "new-key", "--kid", "2027-01", env=broker_env(), cwd=tmp_path)
    assert named.returncode == 0 and parse_vault_keys(named.stdout.strip())[0].kid == "2027-01"


def _tokens(user: str, now: float) -> ProviderTokens:
    return ProviderTokens(subject=f"open-{user}", access_token=f"act.{user}", refresh_token=f"rft.{user}",
                          expires_at=now + 7200, refresh_expires_at=now + 86400,
                          scopes=frozenset({"user.info.basic"}))


def _session(user: str, now: float) -> Session:
    return Session(sid=user[0] * 32, user_id=user, created_at=now, last_seen=now, expires_at=now + 86400,
                   idle_expires_at=now + 3600, scopes=("user.info.basic",), open_id=f"open-{user}")


async def _save(redis_url: str, key: VaultKey, user: str, now: float) -> None:
    client = create_redis(redis_url)
    try:
        records = Records(client, KeySpace("broker:"), Vault([key]))
        await records.save_login(user, Identity(provider="tiktok", subject=f"open-{user}"), _tokens(user, now),
                                 _session(user, now), now)
    finally:
        await client.aclose()


async def _read(redis_url: str, keys: list[VaultKey], user: str) -> ProviderTokens | None:
    client = create_redis(redis_url)
    try:
        return await Records(client, KeySpace("broker:"), Vault(keys)).get_tiktok_tokens(user)
    finally:
        await client.aclose()


def test_rotate_reseals_old_blobs_under_the_first_key_keeping_contents_and_ttl(redis_url: str,
                                                                               tmp_path: Path) -> None:
    old, new = vault_key("old"), vault_key("new")
    now = time.time()
    asyncio.run(_save(redis_url, old, ALICE, now))
    asyncio.run(_save(redis_url, new, BOB, now))  # already under the new key: left alone
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        alice_key, bob_key = f"broker:{{u:{ALICE}}}:tiktok", f"broker:{{u:{BOB}}}:tiktok"
        assert str(sync.get(alice_key)).startswith("v1.old.")
        bob_blob = sync.get(bob_key)
        ttl_before = int(sync.pttl(alice_key))
        assert ttl_before > 80_000_000

        env = broker_env(REDIS_URL=redis_url, VAULT_KEYS=f"{vault_entry(new)},{vault_entry(old)}")
        result = run_broker("vault", "rotate", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "re-encrypted 1 entries with key new"
        for secret in (vault_entry(new), vault_entry(old)):
            assert secret.partition(":")[2] not in result.stdout + result.stderr

        assert str(sync.get(alice_key)).startswith("v1.new.")
        assert sync.get(bob_key) == bob_blob
        ttl_after = int(sync.pttl(alice_key))
        assert 0 < ttl_after <= ttl_before and ttl_before - ttl_after < 10_000
        # The new key alone opens it, and it holds the same tokens.
        assert asyncio.run(_read(redis_url, [new], ALICE)) == _tokens(ALICE, now)
    finally:
        sync.close()

    again = run_broker("vault", "rotate", env=env, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == "re-encrypted 0 entries with key new"


def test_rotate_needs_redis_and_vault_keys(tmp_path: Path, redis_url: str) -> None:
    for env in (broker_env(REDIS_URL=redis_url), broker_env(VAULT_KEYS=vault_entry(vault_key()))):
        result = run_broker("vault", "rotate", env=env, cwd=tmp_path)
        assert result.returncode == 2
        assert "BROKER_REDIS_URL" in result.stderr and "BROKER_VAULT_KEYS" in result.stderr


def test_rotate_without_the_old_key_fails_cleanly_naming_the_variable(redis_url: str, tmp_path: Path) -> None:
    old, new = vault_key("old"), vault_key("new")
    asyncio.run(_save(redis_url, old, ALICE, time.time()))
    result = run_broker("vault", "rotate", env=broker_env(REDIS_URL=redis_url, VAULT_KEYS=vault_entry(new)),
                        cwd=tmp_path)
    assert result.returncode == 2
    assert "BROKER_VAULT_KEYS" in result.stderr and "'old'" in result.stderr
    assert "Traceback" not in result.stderr
    assert vault_entry(new).partition(":")[2] not in result.stdout + result.stderr
    assert asyncio.run(_read(redis_url, [old], ALICE)) is not None  # the blob is untouched


def test_rotate_with_redis_away_fails_cleanly(tmp_path: Path) -> None:
    url = f"redis://:pw-away-1234@127.0.0.1:{free_port()}/0"
    result = run_broker("vault", "rotate", env=broker_env(REDIS_URL=url, VAULT_KEYS=vault_entry(vault_key())),
                        cwd=tmp_path)
    assert result.returncode == 2
    assert "BROKER_REDIS_URL" in result.stderr and "Traceback" not in result.stderr
    assert "pw-away-1234" not in result.stderr
