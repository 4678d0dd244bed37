"""Redis server-assisted client-side caching: one connection that hears of every write to the broker's keys.

The listener opens its own connection, turns on `CLIENT TRACKING ... BCAST` for the key prefixes a per-process
cache reads (every user's keys and the subject denylist), redirected to itself, and subscribes to
`__redis__:invalidate`. From then on Redis pushes the name of every key that any client writes, deletes or lets
expire under those prefixes, so a cached read can be dropped within milliseconds of the write.

The cache may be trusted only while this connection is known to be alive: `live` turns false when no message or
heartbeat reply has arrived for `3 * heartbeat` seconds, when the connection fails, and until tracking is on
again after a reconnect. Every change of that state tells the subscribers to drop everything, and each period of
tracking has its own `generation`, so a read begun under an earlier one is never cached (its writes may have
gone unreported).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

from redis import exceptions as redis_exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from broker.store.keys import KeySpace
from broker.store.redis import UNAVAILABLE_ERRORS, RedisClient, create_redis, parse_redis_url

CHANNEL = "__redis__:invalidate"

log = logging.getLogger("broker.store.tracking")


def tracked_prefixes(keys: KeySpace) -> tuple[str, ...]:
    """Every user's keys (sessions, families, token denylist) and the subject denylist."""
    return keys.user_tag_prefix(), keys.denylist_prefix()


def tracking_connector(url: str) -> Callable[[], RedisClient] | None:
    """How to open the invalidation connection for BROKER_REDIS_URL; None where it is not supported yet
    (Redis Cluster: each primary would need its own), which leaves the local cache off."""
    if parse_redis_url(url).kind == "cluster":
        return None
    # RESP2, so that invalidations arrive as pub/sub messages; no retries, so that a reconnection is never
    # hidden from the listener (a new connection has no tracking until the listener turns it on).
    return lambda: create_redis(url, protocol=2, retry=Retry(NoBackoff(), 0), health_check_interval=0)


class InvalidationSubscriber(Protocol):
    def invalidate(self, keys: Iterable[str] | None) -> None:
        """Drop what depends on these keys; None means everything."""


class InvalidationListener:
    def __init__(self, connect: Callable[[], RedisClient], prefixes: tuple[str, ...], *,
                 heartbeat: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        """`connect` builds a client speaking RESP2 (its pub/sub messages are the invalidations) with no
        automatic retries, one per tracking period."""
        self._connect = connect
        self._prefixes = prefixes
        self._heartbeat = heartbeat
        self._clock = clock
        self._subscribers: list[InvalidationSubscriber] = []
        self._live_until = 0.0
        self._tracking = False
        self.generation = 0
        self._reconnected = False

    def subscribe(self, subscriber: InvalidationSubscriber) -> None:
        self._subscribers.append(subscriber)

    @property
    def live(self) -> bool:
        """True while every write to the tracked prefixes is known to reach us."""
        return self._tracking and self._clock() < self._live_until

    def _heard(self) -> None:
        self._live_until = self._clock() + 3 * self._heartbeat

    def _drop_everything(self) -> None:
        self._tracking = False
        self.generation += 1
        for subscriber in self._subscribers:
            subscriber.invalidate(None)

    async def run(self) -> None:
        """Track until cancelled, reconnecting with a capped backoff; the cache is bypassed while down."""
        backoff = 0.05
        while True:
            started = self._clock()
            try:
                await self._track_once()
            except asyncio.CancelledError:
                self._drop_everything()
                raise
            except (*UNAVAILABLE_ERRORS, redis_exceptions.RedisError, LostTracking) as exc:  # type: ignore[misc]
                log.info("cache invalidation connection lost; the local cache is bypassed until it is back",
                         extra={"reason": type(exc).__name__})
            self._drop_everything()
            backoff = 0.05 if self._clock() - started > 10 else min(backoff * 2, 2.0)
            await asyncio.sleep(backoff)

    def _on_connect(self, _connection: Any) -> None:
        # redis-py reconnects a pub/sub connection on its own and re-subscribes it, but the new connection
        # has no tracking: whatever it is told from then on is not the whole truth.
        self._reconnected = True

    async def _track_once(self) -> None:
        client = self._connect()
        pubsub: Any = cast(Any, client).pubsub()
        try:
            await pubsub.execute_command("CLIENT", "ID")
            client_id = await _reply(pubsub, self._heartbeat)
            prefix_args: list[str] = []
            for prefix in self._prefixes:
                prefix_args += ["PREFIX", prefix]
            await pubsub.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST", *prefix_args)
            if str(await _reply(pubsub, self._heartbeat)) != "OK":
                raise LostTracking("CLIENT TRACKING refused")
            await pubsub.subscribe(CHANNEL)
            connection = pubsub.connection
            assert connection is not None
            self._reconnected = False
            connection.register_connect_callback(self._on_connect)
            await self._await_subscription(pubsub)
            # Tracking is on from here: anything cached before may have missed a write, so start afresh.
            self._drop_everything()
            self._tracking = True
            self._heard()
            await self._listen(pubsub)
        finally:
            self._tracking = False
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await cast(Any, client).aclose()

    async def _await_subscription(self, pubsub: Any) -> None:
        deadline = self._clock() + 3 * self._heartbeat
        while self._clock() < deadline:
            message = await pubsub.get_message(timeout=self._heartbeat)
            if message is not None and message["type"] == "subscribe":
                return
        raise LostTracking("no subscription confirmation")

    async def _listen(self, pubsub: Any) -> None:
        last_ping = self._clock()
        while True:
            message = await pubsub.get_message(timeout=self._heartbeat / 2)
            if self._reconnected:
                raise LostTracking("the connection was re-established without tracking")
            if message is not None:
                kind = message["type"]
                if kind == "message":
                    keys = message["data"]
                    # None (or an empty list) is how Redis says "forget everything": FLUSHALL, FLUSHDB.
                    for subscriber in self._subscribers:
                        subscriber.invalidate([str(key) for key in keys] if keys else None)
                    self._heard()
                elif kind == "pong":
                    self._heard()
            now = self._clock()
            if now - last_ping >= self._heartbeat:
                await pubsub.ping()
                last_ping = now
            if now >= self._live_until:
                raise LostTracking("no heartbeat reply")


class LostTracking(Exception):
    """The invalidation connection can no longer be trusted."""


async def _reply(pubsub: Any, wait: float) -> Any:
    reply = await pubsub.parse_response(block=True, timeout=wait)
    if reply is None:
        raise LostTracking("no reply")
    return reply
