"""JwksCache over real HTTP on a simulated clock: Cache-Control, ETag revalidation, the refetch rate limit
under concurrency, stale-if-error, and which keys it keeps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.clock import FrozenClock
from broker.signing import KeyRing, TokenService
from broker.signing.jwks import public_jwk, thumbprint
from broker.signing.keyfiles import SigningKey, generate_private_key, write_key
from broker.store.embedded import free_port
from broker_sdk import BrokerVerifier, JwksCache, TokenRejected, VerifierUnavailable
from tests.sdk.conftest import AUDIENCE, ISSUER, LEEWAY, Forge, JwksEndpoint, make_service, start
from tests.support.servers import ThreadedServer

START = 1_800_000_000.0
MAX_AGE = 60


@dataclass
class World:
    clock: FrozenClock
    ring: KeyRing
    service: TokenService
    endpoint: JwksEndpoint
    url: str
    keys_dir: Path

    def verifier(self, cache: JwksCache) -> BrokerVerifier:
        return BrokerVerifier(ISSUER, AUDIENCE, jwks=cache, leeway=LEEWAY, now=self.clock.now)

    def cache(self, **options: Any) -> JwksCache:
        return JwksCache(self.url, clock=self.clock.now, **options)

    def token(self) -> str:
        return self.service.issue(sub="u", sid="s", scope="").token

    def stranger(self) -> SigningKey:
        """A key the broker does not publish."""
        return write_key(self.keys_dir.parent / "strangers", alg="ES256", activate_at=0, created_at=0)


@pytest.fixture
def world(tmp_path: Path, serve: list[ThreadedServer]) -> World:
    clock = FrozenClock(START)
    keys_dir = tmp_path / "keys"
    write_key(keys_dir, alg="ES256", activate_at=START - 1, created_at=START - 1)
    ring, service = make_service(keys_dir, clock, max_age=MAX_AGE)
    endpoint = JwksEndpoint(ring)
    return World(clock, ring, service, endpoint, start(serve, endpoint), keys_dir)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_cache_control_max_age_is_respected_and_304_restarts_the_age(world: World) -> None:
    verifier = world.verifier(world.cache())
    token = world.token()
    await verifier.verify(token)
    assert [(s.if_none_match, s.status) for s in world.endpoint.seen] == [(None, 200)]
    etag = world.ring.jwks().etag
    world.clock.advance(MAX_AGE - 0.5)
    for _ in range(20):
        await verifier.verify(token)
    assert world.endpoint.fetches == 1  # fresh: no request at all within max-age
    world.clock.advance(0.5)
    await verifier.verify(token)
    assert [(s.if_none_match, s.status) for s in world.endpoint.seen[1:]] == [(etag, 304)]
    assert verifier.jwks.stats.not_modified == 1
    world.clock.advance(MAX_AGE - 0.5)
    await verifier.verify(token)
    assert world.endpoint.fetches == 2  # the 304 made the cached keys fresh for another max-age
    world.clock.advance(0.5)
    await verifier.verify(token)
    assert [s.status for s in world.endpoint.seen] == [200, 304, 304]
    await verifier.aclose()


async def test_a_changed_jwks_replaces_the_keys_after_expiry(world: World) -> None:
    verifier = world.verifier(world.cache())
    await verifier.verify(world.token())
    new = write_key(world.keys_dir, alg="EdDSA", activate_at=START + MAX_AGE, created_at=START)
    world.clock.advance(MAX_AGE)
    token = world.token()  # signed by the new key, which the cache has not seen
    assert (await verifier.verify(token))["sub"] == "u"
    assert [s.status for s in world.endpoint.seen] == [200, 200]  # the ETag no longer matched
    assert new.kid in await verifier.jwks.keys()
    assert verifier.jwks.stats.unknown_kid_refetches == 0  # it was found by the expiry revalidation
    await verifier.aclose()


@pytest.mark.parametrize(("cache_control", "age", "options", "fresh_for"), [
    ("", None, {"default_max_age": 120}, 120),  # no Cache-Control: the default
    ("public, max-age=999999", None, {"max_max_age": 300}, 300),  # clamped
    ("public, max-age=60", 45, {}, 15),  # a shared cache kept it 45 s already
    ('max-age="90", public', None, {}, 90),
    ("max-age=soon", None, {"default_max_age": 30}, 30),  # unreadable: the default
    ("no-cache", None, {"min_refetch_interval": 10}, 10),  # no caching, but the rate limit still holds
    ("public, max-age=0", None, {"min_refetch_interval": 5}, 5),
])
async def test_freshness_comes_from_cache_control_with_default_and_clamp(
        world: World, cache_control: str, age: int | None, options: dict[str, float], fresh_for: float) -> None:
    world.endpoint.cache_control, world.endpoint.age = cache_control, age
    cache = world.cache(**options)
    kid = world.ring.signing_key().kid
    assert await cache.get_key(kid) is not None
    world.clock.advance(fresh_for - 0.5)
    await cache.get_key(kid)
    assert world.endpoint.fetches == 1
    world.clock.advance(0.5)
    await cache.get_key(kid)
    assert world.endpoint.fetches == 2
    await cache.aclose()


async def rejections(verifier: BrokerVerifier, token: str, times: int) -> set[str]:
    """Verify one token from `times` concurrent callers; the reasons they got (or "accepted")."""
    async def attempt() -> str:
        try:
            await verifier.verify(token)
        except TokenRejected as exc:
            return exc.reason
        return "accepted"

    return set(await asyncio.gather(*(attempt() for _ in range(times))))


async def test_fifty_concurrent_unknown_kids_cost_one_fetch_per_interval(world: World) -> None:
    verifier = world.verifier(world.cache(min_refetch_interval=10))
    await verifier.verify(world.token())
    world.clock.advance(10)
    forged = Forge(world.stranger(), world.clock.now()).token()
    assert await rejections(verifier, forged, 50) == {"unknown signing key"}
    assert world.endpoint.fetches == 2  # 50 callers, one request
    world.clock.advance(9.9)
    assert await rejections(verifier, forged, 50) == {"unknown signing key"}
    assert world.endpoint.fetches == 2  # within min_refetch_interval: none
    world.clock.advance(0.1)
    assert await rejections(verifier, forged, 50) == {"unknown signing key"}
    assert world.endpoint.fetches == 3
    assert verifier.jwks.stats.unknown_kid_refetches == 2
    await verifier.aclose()


async def test_concurrent_callers_share_the_request_in_flight(world: World) -> None:
    # No rate limit at all: only sharing the one request in flight keeps 50 callers to one fetch.
    verifier = world.verifier(world.cache(min_refetch_interval=0))
    assert await rejections(verifier, world.token(), 50) == {"accepted"}
    assert world.endpoint.fetches == 1
    forged = Forge(world.stranger(), world.clock.now()).token()
    assert await rejections(verifier, forged, 50) == {"unknown signing key"}
    assert world.endpoint.fetches == 2
    await verifier.aclose()


async def test_an_unknown_kid_that_was_just_published_is_found_by_the_refetch(world: World) -> None:
    verifier = world.verifier(world.cache())
    await verifier.verify(world.token())
    world.clock.advance(10)
    # A key that signs at once, without pre-publication (an operator's emergency rotation).
    write_key(world.keys_dir, alg="ES256", activate_at=world.clock.now(), created_at=world.clock.now())
    world.clock.advance(1)  # the key ring rescans its directory once a second
    # 50 callers at once: one refetches, the others wait for that request instead of giving up.
    assert await rejections(verifier, world.token(), 50) == {"accepted"}
    assert verifier.jwks.stats.unknown_kid_refetches == 1 and world.endpoint.fetches == 2
    await verifier.aclose()


async def test_server_down_keeps_serving_cached_keys(world: World, serve: list[ThreadedServer]) -> None:
    verifier = world.verifier(world.cache(min_refetch_interval=10, max_stale=3600))
    token = world.token()
    await verifier.verify(token)
    world.endpoint.down = True  # 503s
    world.clock.advance(MAX_AGE)
    assert (await verifier.verify(token))["sub"] == "u"  # revalidation failed: stale-if-error
    assert verifier.jwks.stats.failures == 1 and world.endpoint.fetches == 2
    for _ in range(5):
        await verifier.verify(token)
    assert world.endpoint.fetches == 2  # failures are retried once per min_refetch_interval, not per call
    for server in serve:
        server.stop()  # now nothing listens at all
    world.clock.advance(10)
    assert (await verifier.verify(world.token()))["sub"] == "u"
    assert verifier.jwks.stats.failures == 2
    world.clock.advance(3600)  # more than max_stale past freshness: the old keys are no longer trusted
    with pytest.raises(VerifierUnavailable, match="too stale"):
        await verifier.verify(token)
    await verifier.aclose()


async def test_server_back_after_an_outage(world: World) -> None:
    verifier = world.verifier(world.cache(min_refetch_interval=10))
    await verifier.verify(world.token())
    world.endpoint.down = True
    world.clock.advance(MAX_AGE)
    await verifier.verify(world.token())
    world.endpoint.down = False
    world.clock.advance(10)
    await verifier.verify(world.token())
    assert [s.status for s in world.endpoint.seen] == [200, 503, 304]
    world.clock.advance(MAX_AGE - 1)
    await verifier.verify(world.token())
    assert world.endpoint.fetches == 3  # fresh again after the 304
    await verifier.aclose()


async def test_no_keys_ever_is_a_clear_error(world: World) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    cache = JwksCache(url, clock=world.clock.now)
    verifier = world.verifier(cache)
    with pytest.raises(VerifierUnavailable, match=f"no signing keys from {url}: ConnectError"):
        await verifier.verify(world.token())
    assert cache.stats.fetches == 1
    with pytest.raises(VerifierUnavailable, match="no signing keys"):
        await verifier.verify(world.token())
    assert cache.stats.fetches == 1  # not retried before min_refetch_interval
    world.endpoint.down = True
    down = world.cache()
    with pytest.raises(VerifierUnavailable, match="HTTP 503"):
        await down.get_key("any")
    await down.aclose()
    await verifier.aclose()


def jwk_of(kind: str, /, **changes: object) -> dict[str, object]:
    """A fresh public JWK as the broker publishes it for algorithm `kind`, with members changed."""
    key = generate_private_key(kind).public_key()
    jwk: dict[str, object] = dict(public_jwk(key))
    jwk.update({"kid": thumbprint(public_jwk(key)), "alg": kind, "use": "sig"})
    jwk.update(changes)
    return {name: value for name, value in jwk.items() if value is not None}


async def test_only_signature_keys_of_allowed_algorithms_are_kept(world: World) -> None:
    good = {alg: jwk_of(alg) for alg in ("ES256", "EdDSA", "RS256")}
    no_use = jwk_of("ES256", use=None)
    twin = jwk_of("ES256")
    ignored = [
        jwk_of("ES256", use="enc"), jwk_of("ES256", alg=None), jwk_of("ES256", alg="RS256"),
        jwk_of("EdDSA", alg="ES256"), jwk_of("ES256", alg="ES384"), jwk_of("ES256", crv="P-384"),
        jwk_of("ES256", d="c2VjcmV0"), jwk_of("ES256", key_ops=["encrypt"]), jwk_of("ES256", kid=None),
        jwk_of("ES256", kid=["list"]), jwk_of("ES256", x="bm90IGEgcG9pbnQ"),
        twin, {**jwk_of("ES256"), "kid": twin["kid"]},  # two keys, one kid: neither is trusted
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"}, {"kid": "none", "alg": "none"},
        "not an object", {"kty": "RSA", "kid": "short", "alg": "RS256", "n": "AQAB" * 3, "e": "AQAB"},
    ]
    world.endpoint.body = json.dumps({"keys": [*good.values(), no_use, *ignored]}).encode()
    cache = world.cache()
    assert set(await cache.keys()) == {*(str(j["kid"]) for j in good.values()), str(no_use["kid"])}
    only_ec = world.cache(algorithms=("ES256",))
    assert set(await only_ec.keys()) == {str(good["ES256"]["kid"]), str(no_use["kid"])}
    assert (await only_ec.get_key(str(good["ES256"]["kid"]))).alg == "ES256"  # type: ignore[union-attr]
    for closing in (cache, only_ec):
        await closing.aclose()


@pytest.mark.parametrize("body", [b"not json", b'{"no": "keys"}', b'["keys"]', b'{"keys": {}}',
                                  b'{"keys": []' + b" " * 600_000 + b"}"])
async def test_documents_that_are_not_a_jwks_are_failures(world: World, body: bytes) -> None:
    world.endpoint.body = body
    cache = world.cache()
    with pytest.raises(VerifierUnavailable, match="no signing keys"):
        await cache.get_key("kid")
    assert cache.stats.failures == 1
    await cache.aclose()


async def test_a_passed_client_is_not_closed(world: World, http: httpx.AsyncClient) -> None:
    cache = JwksCache(world.url, http=http, clock=world.clock.now)
    assert await cache.get_key(world.ring.signing_key().kid) is not None
    await cache.aclose()
    assert not http.is_closed
    assert "keys=1" in repr(cache)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="negative"):
        JwksCache("http://127.0.0.1:9/", min_refetch_interval=-1)


