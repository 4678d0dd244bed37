"""Sessions over time (a frozen clock): JWT reuse until 80% of its life, idle and absolute expiry, cookies."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from broker.app import create_app
from broker.config import Settings
from tests.support.inprocess import InProcess, in_process


@pytest.fixture
async def stack(base_settings: Settings) -> AsyncIterator[InProcess]:
    async with in_process(base_settings, session_idle_ttl=3600, session_ttl=4 * 3600) as running:
        yield running


async def sign_in(stack: InProcess) -> None:
    await stack.sign_in()


async def bearer(stack: InProcess) -> str | None:
    response = await stack.broker.get("/auth/verify")
    return response.headers.get("authorization") if response.status_code == 200 else None


async def test_the_session_jwt_is_reused_until_80_percent_of_its_life(stack: InProcess) -> None:
    await sign_in(stack)
    ttl = stack.settings.access_token_ttl
    first = await bearer(stack)
    stack.clock.advance(ttl * 0.79)
    assert await bearer(stack) == first
    stack.clock.advance(ttl * 0.02)
    second = await bearer(stack)
    assert second is not None and second != first


async def test_idle_sessions_end_and_use_keeps_them_alive(stack: InProcess) -> None:
    await sign_in(stack)
    for _ in range(3):  # 3 x 50 minutes of activity, beyond one idle period in total
        stack.clock.advance(50 * 60)
        assert await bearer(stack) is not None
    stack.clock.advance(3601)
    assert await bearer(stack) is None


async def test_sessions_end_at_their_absolute_lifetime_even_when_used(stack: InProcess) -> None:
    await sign_in(stack)
    for _ in range(4):
        stack.clock.advance(59 * 60)
        assert await bearer(stack) is not None
    stack.clock.advance(5 * 60)  # past 4 hours since login
    assert await bearer(stack) is None


async def test_a_jwt_never_outlives_its_session(stack: InProcess) -> None:
    import jwt

    await sign_in(stack)
    session_end = stack.clock.now() + stack.settings.session_ttl
    while stack.clock.now() < session_end - 50 * 60:  # kept alive by use, 50 minutes apart
        stack.clock.advance(50 * 60)
        assert await bearer(stack) is not None
    stack.clock.set(session_end - 120)  # two minutes before the absolute end
    token = await bearer(stack)
    assert token is not None
    claims = jwt.decode(token.removeprefix("Bearer "), options={"verify_signature": False})
    assert claims["exp"] <= session_end


async def test_https_issuers_get_host_prefixed_secure_cookies(base_settings: Settings) -> None:
    settings = base_settings.with_overrides(issuer="https://auth.example.com")
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer) as client:
        response = await client.get("/login")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-broker_login=")
    assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie and "Domain" not in cookie


async def test_redis_holds_only_a_hash_of_the_cookie_secret(stack: InProcess, redis_sync: redis.Redis) -> None:
    """A dump of Redis is no way into a session: the cookie's secret appears in no key and no value."""
    await sign_in(stack)
    cookie = next(value for name, value in stack.broker.cookies.items() if name.endswith("broker_session"))
    secret = cookie.split(".")[1]
    everything: list[str] = []
    for key in redis_sync.scan_iter():
        kind = redis_sync.type(key)
        everything.append(key)
        if kind == "string":
            everything.append(str(redis_sync.get(key)))
        elif kind == "hash":
            everything += [f"{k}={v}" for k, v in redis_sync.hgetall(key).items()]
        elif kind == "zset":
            everything += redis_sync.zrange(key, 0, -1)
        elif kind == "set":
            everything += list(redis_sync.smembers(key))
        elif kind == "list":
            everything += redis_sync.lrange(key, 0, -1)
    assert any(":s:" in key for key in everything)  # the session is there, under its id
    assert not [item for item in everything if secret in item]
