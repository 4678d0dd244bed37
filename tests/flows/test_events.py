"""Downstream events against a real Redis and a real HTTP receiver: the stream read by a consumer group, signed
SETs verified with the JWKS, retries with backoff, giving up, restarts, concurrent replicas, crashed claims."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import pytest
import redis as redis_lib
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.clock import FrozenClock
from broker.errors import InvalidToken, StoreUnavailable
from broker.flows.events import Events, backoff, origin
from broker.signing import KeyRing, TokenService
from broker.store.embedded import free_port
from broker.store.events import EventStore
from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, create_redis
from tests.support.servers import ThreadedServer

ISSUER = "https://broker.example"
KEYS = KeySpace("broker:")
STREAM = KEYS.events_stream()
DUE = KEYS.event_outbox("due")


@dataclass
class Receiver:
    """A webhook endpoint that records every request and fails when told to."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    always_fail: bool = False
    delay: float = 0.0

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = (await request.body()).decode()
            self.requests.append({"content_type": request.headers.get("content-type"), "token": body})
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.always_fail or self.fail_next > 0:
                self.fail_next -= 1
                return Response(status_code=503)
            return Response(status_code=202)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    @property
    def jtis(self) -> list[str]:
        return [jwt.decode(r["token"], options={"verify_signature": False})["jti"] for r in self.requests]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ThreadedServer, Receiver]]:
    receiver = Receiver()
    with ThreadedServer(receiver.app()) as running:
        receiver.url = running.url + "/hook"
        yield running, receiver


@pytest.fixture
def receiver(server: tuple[ThreadedServer, Receiver]) -> Receiver:
    rec = server[1]
    rec.requests.clear()
    rec.fail_next, rec.always_fail, rec.delay = 0, False, 0.0
    return rec


@dataclass
class World:
    redis_url: str
    clock: FrozenClock
    tokens: TokenService
    keyring: KeyRing
    receiver: Receiver
    clients: list[RedisClient] = field(default_factory=list)
    https: list[httpx.AsyncClient] = field(default_factory=list)

    def replica(self, *, urls: tuple[str, ...] | None = None, horizon: int = 3 * 86400, timeout: float = 2.0,
                batch: int = 100, redis_url: str | None = None) -> Events:
        """An Events as one broker replica would build it: its own Redis pool and HTTP client."""
        client = create_redis(redis_url or self.redis_url)
        http = httpx.AsyncClient()
        self.clients.append(client)
        self.https.append(http)
        return Events(EventStore(client, KEYS), self.tokens, http, self.clock,
                      urls=(self.receiver.url,) if urls is None else urls, issuer=ISSUER, retry_horizon=horizon,
                      timeout=timeout, batch=batch)


@pytest.fixture
async def world(redis_url: str, keys_dir: Path, receiver: Receiver) -> AsyncIterator[World]:
    clock = FrozenClock(time.time())  # near the real time, so that PyJWT's own iat check agrees
    keyring = KeyRing(keys_dir, clock=clock, max_token_lifetime=310, jwks_max_age=300, rescan_interval=None)
    tokens = TokenService(keyring, issuer=ISSUER, audience="https://api.example", ttl=300, leeway=10, clock=clock)
    w = World(redis_url, clock, tokens, keyring, receiver)
    yield w
    for http in w.https:
        await http.aclose()
    for client in w.clients:
        await client.aclose()


def next_attempt(redis_sync: redis_lib.Redis) -> float:
    ((_, score),) = cast(Any, redis_sync).zrange(DUE, 0, -1, withscores=True)
    return float(score)


async def test_emit_appends_to_the_stream_and_a_consumer_group_reads_it(world: World,
                                                                       redis_sync: redis_lib.Redis) -> None:
    redis_sync.xgroup_create(STREAM, "billing", id="$", mkstream=True)
    events = world.replica(urls=())
    event_id = await events.emit("session.revoked", sub="user-1", sid="sid-1", data={"reason": "logout"})

    ((_, entries),) = cast(Any, redis_sync).xreadgroup("billing", "worker-1", {STREAM: ">"}, count=10)
    ((stream_id, fields),) = entries
    assert fields["id"] == event_id and fields["type"] == "session.revoked"
    assert fields["sub"] == "user-1" and fields["sid"] == "sid-1"
    assert float(fields["time"]) == pytest.approx(world.clock.now(), abs=0.001)
    assert fields["data"] == '{"reason":"logout"}'
    assert redis_sync.xack(STREAM, "billing", stream_id) == 1
    assert redis_sync.xpending(STREAM, "billing")["pending"] == 0
    stats = await events.stats()
    assert (stats.emitted, stats.pending) == (1, 0)  # no webhook URLs: nothing to deliver


async def test_emit_refuses_unknown_types_and_open_ids_and_reports_redis_down(world: World) -> None:
    events = world.replica()
    with pytest.raises(ValueError, match="unknown event type"):
        await events.emit("user.renamed", sub="u")
    with pytest.raises(ValueError, match="open_id"):
        await events.emit("user.deleted", sub="u", data={"tiktok_open_id": "x"})
    down = world.replica(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable):
        await down.emit("user.deleted", sub="u")


async def test_the_receiver_gets_a_set_verifiable_with_the_jwks(world: World, receiver: Receiver) -> None:
    events = world.replica()
    event_id = await events.emit("user.logged_out", sub="user-1", sid="sid-1", data={"everywhere": True})
    assert await events.deliver_due() == 1

    (request,) = receiver.requests
    assert request["content_type"] == "application/secevent+jwt"
    token = request["token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "secevent+jwt" and header["alg"] == "ES256"
    jwk = jwt.PyJWKSet.from_json(world.keyring.jwks().body.decode())[header["kid"]]
    audience = origin(receiver.url)
    assert audience.startswith("http://127.0.0.1:") and "/hook" not in audience
    claims = jwt.decode(token, jwk.key, algorithms=["ES256"], audience=audience, issuer=ISSUER,
                        options={"require": ["iss", "aud", "iat", "jti"]})
    assert claims["jti"] == event_id and claims["sub"] == "user-1" and claims["sid"] == "sid-1"
    assert claims["events"] == {f"{ISSUER}/events/user.logged_out": {"everywhere": True}}
    assert "exp" not in claims and "nonce" not in claims and "scope" not in claims
    assert world.tokens.verify_event(token, audience=audience)["jti"] == event_id
    with pytest.raises(InvalidToken, match="wrong audience"):
        world.tokens.verify_event(token, audience="https://elsewhere.example")
    stats = await events.stats()
    assert (stats.pending, stats.delivered, stats.given_up) == (0, 1, 0)


def test_access_tokens_and_event_tokens_are_not_interchangeable(world: World) -> None:
    event_token = world.tokens.sign_event(audience="https://svc.example", sub="u", sid=None,
                                          event_type="user.deleted", data={}, jti="j", iat=world.clock.now())
    with pytest.raises(InvalidToken, match="not an access token"):
        world.tokens.verify(event_token, audience="https://svc.example")
    access = world.tokens.issue(sub="u", sid="s", scope="openid", audience="https://svc.example").token
    with pytest.raises(InvalidToken, match="not a security event token"):
        world.tokens.verify_event(access, audience="https://svc.example")
    assert "sid" not in world.tokens.verify_event(event_token, audience="https://svc.example")


async def test_a_receiver_failing_twice_gets_the_event_on_the_third_attempt(
        world: World, receiver: Receiver, redis_sync: redis_lib.Redis) -> None:
    receiver.fail_next = 2
    events = world.replica()
    event_id = await events.emit("user.deleted", sub="user-1")
    delays = []
    for expected in (1.0, 2.0):
        start = world.clock.now()
        assert await events.deliver_due() == 0
        due = next_attempt(redis_sync)
        delays.append(due - start)
        assert 0.8 * expected <= due - start <= expected
        assert await events.deliver_due() == 0  # not due yet: nothing is sent
        world.clock.set(due)
    assert await events.deliver_due() == 1
    assert delays[0] < delays[1]
    assert receiver.jtis == [event_id] * 3  # one jti for every retry: receivers can drop duplicates
    assert (await events.stats()).delivered == 1


async def test_a_receiver_that_never_acknowledges_is_given_up_at_the_horizon(
        world: World, receiver: Receiver, redis_sync: redis_lib.Redis) -> None:
    receiver.always_fail = True
    events = world.replica(horizon=10)
    start = world.clock.now()
    await events.emit("tiktok.deauthorized", sub="user-1")
    while redis_sync.zcard(DUE):
        await events.deliver_due()
        if redis_sync.zcard(DUE):
            world.clock.set(next_attempt(redis_sync))
            assert world.clock.now() <= start + 10
    assert len(receiver.requests) == 4  # at ~0, ~1, ~3, ~7 s; the next would be past the horizon
    stats = await events.stats()
    assert (stats.pending, stats.delivered, stats.given_up) == (0, 0, 1)
    assert redis_sync.hlen(KEYS.event_outbox("deliveries")) == 0


async def test_a_delivery_past_its_horizon_is_given_up_unsent(world: World, receiver: Receiver) -> None:
    events = world.replica(horizon=60)
    await events.emit("user.deleted", sub="user-1")
    world.clock.advance(61)  # say, every replica was down
    assert await events.deliver_due() == 0
    assert receiver.requests == [] and (await events.stats()).given_up == 1


async def test_a_receiver_that_hangs_counts_as_a_failed_attempt(world: World, receiver: Receiver) -> None:
    receiver.delay = 0.5
    events = world.replica(timeout=0.1)
    await events.emit("user.deleted", sub="user-1")
    started = time.monotonic()
    assert await events.deliver_due() == 0
    assert time.monotonic() - started < 0.4
    assert (await events.stats()).pending == 1


async def test_delivery_state_survives_a_broker_restart(world: World, receiver: Receiver) -> None:
    before = world.replica()
    event_id = await before.emit("session.revoked", sub="user-1", sid="sid-1")
    await world.clients.pop().aclose()  # the broker goes away before delivering
    after = world.replica()
    assert await after.deliver_due() == 1
    assert receiver.jtis == [event_id]


async def test_two_replicas_deliver_each_event_exactly_once(world: World, receiver: Receiver) -> None:
    first, second = world.replica(batch=4), world.replica(batch=4)
    ids = {await first.emit("user.logged_out", sub=f"user-{n}") for n in range(20)}
    delivered = [0, 0]
    while (await first.stats()).pending:
        rounds = await asyncio.gather(first.deliver_due(), second.deliver_due())
        delivered = [total + n for total, n in zip(delivered, rounds, strict=True)]
    assert sum(delivered) == 20 and min(delivered) > 0  # both took part, neither sent what the other did
    assert sorted(receiver.jtis) == sorted(ids)


async def test_a_claim_by_a_crashed_replica_comes_back_after_the_lease(world: World, receiver: Receiver) -> None:
    events = world.replica()
    await events.emit("user.deleted", sub="user-1")
    crashed = EventStore(world.clients[-1], KEYS)
    assert len(await crashed.claim_due(world.clock.now(), 30, 10)) == 1  # ... and never finishes
    assert await events.deliver_due() == 0 and receiver.requests == []
    world.clock.advance(31)
    assert await events.deliver_due() == 1


async def test_run_delivery_delivers_and_stops_when_cancelled(world: World, receiver: Receiver) -> None:
    events = world.replica()
    broken = world.replica(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    tasks = [asyncio.create_task(e.run_delivery(interval=0.01)) for e in (events, broken)]
    await events.emit("user.deleted", sub="user-1")
    for _ in range(200):
        if receiver.requests:
            break
        await asyncio.sleep(0.01)
    assert len(receiver.requests) == 1
    assert not any(task.done() for task in tasks)  # a replica without Redis keeps trying, it does not crash
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_delivery_always_stops_when_cancelled_even_mid_redis_call(world: World) -> None:
    # Python 3.11's asyncio.wait_for, used by redis-py, can swallow a cancellation (CPython gh-86296).
    events = world.replica()
    for attempt in range(40):
        task = asyncio.create_task(events.run_delivery(interval=0))
        await asyncio.sleep(attempt % 8 * 0.0005)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        assert done and task.cancelled()


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    assert [backoff(n, random=0.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(3, random=1.0) == pytest.approx(3.2)
    assert backoff(100, random=0.0) == 3600.0


def test_the_audience_is_the_origin_of_the_webhook_url() -> None:
    assert origin("https://Svc.Example/hooks/broker") == "https://svc.example"
    assert origin("https://svc.example:443/x") == "https://svc.example"
    assert origin("http://127.0.0.1:8081/x") == "http://127.0.0.1:8081"
    assert origin("http://[::1]:9000/x") == "http://[::1]:9000"


async def test_an_event_from_elsewhere_is_emitted_once_even_by_replicas_at_once(world: World,
                                                                                 redis_sync: redis_lib.Redis) -> None:
    one, two = world.replica(), world.replica()
    source = '["post.publish.complete","open-id",1800000000,{"publish_id":"v.1"}]'
    emitted = await asyncio.gather(*(replica.emit_once("tiktok.post.complete", source=source, sub="user-1",
                                                       data={"publish_id": "v.1"})
                                     for replica in (one, two, one, two)))
    assert sum(event_id is not None for event_id in emitted) == 1
    assert redis_sync.xlen(STREAM) == 1 and redis_sync.zcard(DUE) == 1  # one entry, one delivery to the one URL
    (_, fields), = redis_sync.xrange(STREAM)
    assert fields["id"] == next(e for e in emitted if e) and fields["type"] == "tiktok.post.complete"
    assert await one.deliver_due() == 1
    assert world.receiver.jtis == [fields["id"]]
    assert await one.emit_once("tiktok.post.complete", source=source, sub="user-1") is None  # still a repeat
    seen = [key for key in redis_sync.keys("broker:{events}:seen:*")]
    assert len(seen) == 1 and 0 < redis_sync.ttl(seen[0]) <= 4 * 86400
    world.clock.advance(1)
    other = await one.emit_once("tiktok.post.complete", source=source.replace("v.1", "v.2"), sub="user-1")
    assert other is not None and redis_sync.xlen(STREAM) == 2
