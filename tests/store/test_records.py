"""Records against a real Redis: single-use login attempts, user ids, sealed tokens, sessions, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis as redis_sync

from broker.domain import Identity, LoginAttempt, ProviderTokens, Session
from broker.errors import StoreUnavailable
from broker.store.embedded import free_port
from broker.store.keys import KeySpace
from broker.store.records import Records
from broker.store.redis import create_redis
from broker.store.vault import Vault
from tests.conftest import vault_key

NOW = 1_800_000_000.0


@pytest.fixture
async def records(redis_url: str) -> AsyncIterator[Records]:
    client = create_redis(redis_url)
    yield Records(client, KeySpace("broker:"), Vault([vault_key()]))
    await client.aclose()


def attempt() -> LoginAttempt:
    return LoginAttempt(code_verifier="v" * 64, nonce="n", return_to="https://app.example.com/",
                        binding_hash="b" * 64, created_at=NOW, scopes=("user.info.basic",))


def tokens() -> ProviderTokens:
    return ProviderTokens(subject="open-1", access_token="act.ACCESS", refresh_token="rft.REFRESH",
                          expires_at=NOW + 7200, refresh_expires_at=NOW + 86400, scopes=frozenset({"user.info.basic"}))


def session(sid: str = "s" * 32, *, idle: float = 3600) -> Session:
    return Session(sid=sid, user_id="u" * 22, created_at=NOW, last_seen=NOW, expires_at=NOW + 86400,
                   idle_expires_at=NOW + idle, scopes=("user.info.basic",), open_id="open-1", name="Mara")


async def test_a_login_attempt_can_be_taken_once_only(records: Records) -> None:
    await records.put_login_attempt("h1", attempt(), 600)
    results = await asyncio.gather(*(records.take_login_attempt("h1") for _ in range(10)))
    assert [r for r in results if r is not None] == [attempt()]
    assert await records.take_login_attempt("h1") is None


async def test_login_attempts_expire(records: Records, redis_sync: redis_sync.Redis) -> None:
    await records.put_login_attempt("h2", attempt(), 600)
    assert 590 <= redis_sync.ttl("broker:login:h2") <= 600


async def test_racing_first_logins_agree_on_one_user_id(records: Records) -> None:
    ids = await asyncio.gather(*(records.claim_user_id("open-1", f"candidate-{i}") for i in range(20)))
    assert len(set(ids)) == 1
    assert await records.claim_user_id("open-1", "late") == ids[0]


async def test_save_login_seals_tokens_and_the_session_slides(records: Records, redis_sync: redis_sync.Redis) -> None:
    uid = "u" * 22
    identity = Identity(provider="tiktok", subject="open-1", display_name="Mara")
    await records.save_login(uid, identity, tokens(), session(), NOW)
    raw = redis_sync.get(f"broker:{{u:{uid}}}:tiktok")
    assert raw is not None and "ACCESS" not in raw and "REFRESH" not in raw
    assert await records.get_tiktok_tokens(uid) == tokens()
    assert (await records.get_user(uid))["display_name"] == "Mara"

    touched, _ = await records.touch_session(uid, "s" * 32, NOW + 120, 3600, 60)
    assert touched is not None and touched.last_seen == NOW + 120 and touched.idle_expires_at == NOW + 120 + 3600
    untouched, _ = await records.touch_session(uid, "s" * 32, NOW + 130, 3600, 60)
    assert untouched is not None and untouched.last_seen == NOW + 120  # inside the touch interval: a pure read
    assert (await records.touch_session(uid, "s" * 32, NOW + 120 + 3600, 3600, 60))[0] is None  # idle expiry
    assert redis_sync.exists(f"broker:{{u:{uid}}}:s:{'s' * 32}") == 0


async def test_every_key_but_the_user_record_has_a_ttl(records: Records, redis_sync: redis_sync.Redis) -> None:
    import time

    now = time.time()
    uid = "u" * 22
    fresh = ProviderTokens(subject="open-1", access_token="a", refresh_token="r", expires_at=now + 7200,
                           refresh_expires_at=now + 86400, scopes=frozenset({"user.info.basic"}))
    live = Session(sid="s" * 32, user_id=uid, created_at=now, last_seen=now, expires_at=now + 86400,
                   idle_expires_at=now + 3600, scopes=("user.info.basic",))
    await records.claim_user_id("open-1", uid)
    await records.save_login(uid, Identity(provider="tiktok", subject="open-1"), fresh, live, now)
    for key in redis_sync.keys("*"):
        ttl = redis_sync.ttl(key)
        # User records, the open_id index and the shared indexes (whose members come and go) live on.
        if key.endswith(":user") or key.startswith("broker:oid:") or key == "broker:tiktok:expiry":
            assert ttl == -1, key
        else:
            assert ttl > 0, key


async def test_unreachable_redis_raises_store_unavailable() -> None:
    client = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    records = Records(client, KeySpace(), Vault([vault_key()]))
    with pytest.raises(StoreUnavailable) as caught:
        await records.take_login_attempt("x")
    assert caught.value.status == 503 and caught.value.retry_after
    await client.aclose()
