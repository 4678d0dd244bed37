"""Redis server-assisted client-side caching: connections that hear of every write to the broker's keys.

The listener opens its own connection to every node that holds data (the one server, the Sentinel master, or
each Cluster primary), turns on `CLIENT TRACKING ... BCAST` for the key prefixes a per-process cache reads
(every user's keys and the subject denylist), redirected to itself, and subscribes to `__redis__:invalidate`.
From then on Redis pushes the name of every key that any client writes, deletes or lets expire under those
prefixes, so a cached read can be dropped within milliseconds of the write.

The cache may be trusted only while every one of these connections has proven itself within the last `trust`
seconds: a PING sent at instant T whose reply came back proves that every write made before T (give or take one
turn of Redis's event loop) has been reported, since Redis answers in order on that connection. So a write is
known to this process, or the cache is bypassed, at most `trust` seconds after it was made, even when a
connection hangs without closing (a frozen process, a dead network path). A connection is pinged three times
per `trust`. Beyond that, a connection silent for `3 * heartbeat` seconds, or one that fails, is closed and
opened again, as is every connection when a Cluster's primaries are no longer the ones tracked; until tracking
is on again everywhere the cache is off. Every end of a tracking period tells the subscribers to drop
everything, and each period has its own `generation`, so a read begun under an earlier one is never cached
(its writes may have gone unreported).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from redis import exceptions as redis_exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from broker.store.keys import KeySpace
from broker.store.redis import (
    UNAVAILABLE_ERRORS,
    RedisClient,
    cluster_primaries,
    create_redis,
    node_client,
    parse_redis_url,
)

CHANNEL = "__redis__:invalidate"

log = logging.getLogger("broker.store.tracking")


def tracked_prefixes(keys: KeySpace) -> tuple[str, ...]:
    """Every user's keys (sessions, families, token denylist) and the subject denylist."""
    return keys.user_tag_prefix(), keys.denylist_prefix()


@dataclass
class TrackedNodes:
    """The nodes to track for one period: a client per node, and for a Cluster a check that its primaries are
    still the ones tracked."""

    clients: list[RedisClient]
    unchanged: Callable[[], Awaitable[bool]] | None = None
    resources: list[RedisClient] = field(default_factory=list)  # closed with the period

    async def close(self) -> None:
        for client in [*self.clients, *self.resources]:
            with contextlib.suppress(Exception):
                await cast(Any, client).aclose()


# RESP2, so that invalidations arrive as pub/sub messages; no retries, so that a reconnection is never hidden
# from the listener (a new connection has no tracking until the listener turns it on).
TRACKING_OPTIONS: dict[str, Any] = {"protocol": 2, "health_check_interval": 0}


def tracking_connector(url: str) -> Callable[[], Awaitable[TrackedNodes]]:
    """How to open the invalidation connections for BROKER_REDIS_URL, anew for each tracking period."""
    if parse_redis_url(url).kind != "cluster":
        async def single() -> TrackedNodes:
            return TrackedNodes([create_redis(url, retry=Retry(NoBackoff(), 0), **TRACKING_OPTIONS)])
        return single

    async def primaries() -> TrackedNodes:
        cluster = create_redis(url)
        try:
            tracked = await cluster_primaries(cluster)
        except BaseException:
            await cast(Any, cluster).aclose()
            raise

        async def unchanged() -> bool:
            return await cluster_primaries(cluster) == tracked

        clients: list[RedisClient] = [node_client(url, host, port, retry=Retry(NoBackoff(), 0), **TRACKING_OPTIONS)
                                      for host, port in sorted(tracked)]
        return TrackedNodes(clients, unchanged, [cluster])
    return primaries


class InvalidationSubscriber(Protocol):
    def invalidate(self, keys: Iterable[str] | None) -> None:
        """Drop what depends on these keys; None means everything."""


DEFAULT_TRUST = 0.5  # seconds


class InvalidationListener:
    def __init__(self, connect: Callable[[], Awaitable[TrackedNodes]], prefixes: tuple[str, ...], *,
                 heartbeat: float = 1.0, trust: float = DEFAULT_TRUST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`connect` opens the nodes of one tracking period (see tracking_connector); `trust` is the longest a
        write may stay unknown here while the cache is used (see the module's docstring)."""
        self._connect = connect
        self._prefixes = prefixes
        self._heartbeat = heartbeat
        self._trust = trust
        self._ping_every = min(heartbeat, trust / 3)
        self._clock = clock
        self._subscribers: list[InvalidationSubscriber] = []
        self._heard_until: list[float] = []  # per node: when its silence starts to count as death
        self._proven: list[float] = []  # per node: when the last PING that was answered had been sent
        self._trusted_until = 0.0  # the earliest of those, plus `trust`
        self._tracking = False
        self.generation = 0
        self._reconnected = False

    def subscribe(self, subscriber: InvalidationSubscriber) -> None:
        self._subscribers.append(subscriber)

    @property
    def live(self) -> bool:
        """True while every write to the tracked prefixes made more than `trust` seconds ago is known here."""
        return self._tracking and self._clock() < self._trusted_until

    def _heard(self, node: int) -> None:
        self._heard_until[node] = self._clock() + 3 * self._heartbeat

    def _proved(self, node: int, sent_at: float) -> None:
        self._proven[node] = sent_at
        self._trusted_until = min(self._proven) + self._trust

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
        nodes = await self._connect()
        pubsubs: list[Any] = []
        try:
            for client in nodes.clients:
                pubsub: Any = cast(Any, client).pubsub()
                pubsubs.append(pubsub)
                await self._start_tracking(pubsub)
            # Tracking is on from here: anything cached before may have missed a write, so start afresh.
            self._drop_everything()
            self._heard_until = [0.0] * len(pubsubs)
            # The subscription's confirmation, just received on each, proves each connection as of now: the
            # cache starts empty, so nothing written before can be served.
            self._proven = [self._clock()] * len(pubsubs)
            for node in range(len(pubsubs)):
                self._heard(node)
                self._proved(node, self._proven[node])
            self._tracking = True
            watchers = [asyncio.create_task(self._listen(node, pubsub)) for node, pubsub in enumerate(pubsubs)]
            if nodes.unchanged is not None:
                watchers.append(asyncio.create_task(self._watch_topology(nodes.unchanged)))
            try:
                done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for watcher in watchers:
                    watcher.cancel()
                await asyncio.gather(*watchers, return_exceptions=True)
            for finished in done:
                finished.result()  # raises what ended the period
        finally:
            self._tracking = False
            for pubsub in pubsubs:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await nodes.close()

    async def _start_tracking(self, pubsub: Any) -> None:
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
        deadline = self._clock() + 3 * self._heartbeat
        while self._clock() < deadline:
            message = await pubsub.get_message(timeout=self._heartbeat)
            if message is not None and message["type"] == "subscribe":
                return
        raise LostTracking("no subscription confirmation")

    async def _listen(self, node: int, pubsub: Any) -> None:
        pings: deque[float] = deque()  # when each PING not yet answered was sent, oldest first
        last_ping = self._clock()
        while True:
            message = await pubsub.get_message(timeout=self._ping_every / 2)
            if self._reconnected:
                raise LostTracking("a connection was re-established without tracking")
            if message is not None:
                kind = message["type"]
                if kind == "message":
                    keys = message["data"]
                    # None (or an empty list) is how Redis says "forget everything": FLUSHALL, FLUSHDB.
                    for subscriber in self._subscribers:
                        subscriber.invalidate([str(key) for key in keys] if keys else None)
                    self._heard(node)
                elif kind == "pong":
                    self._heard(node)
                    if pings:  # replies come in order: this one answers the oldest PING
                        self._proved(node, pings.popleft())
            now = self._clock()
            if now - last_ping >= self._ping_every:
                pings.append(now)
                await pubsub.ping()
                last_ping = now
            if now >= self._heard_until[node]:
                raise LostTracking("no heartbeat reply")

    async def _watch_topology(self, unchanged: Callable[[], Awaitable[bool]]) -> None:
        # A primary that a failover replaced, or slots moved to a node not tracked: start again with the new
        # set. (A demoted primary still reports the writes it replicates, so nothing is missed meanwhile.)
        while True:
            await asyncio.sleep(self._heartbeat)
            if not await unchanged():
                raise LostTracking("the Cluster's primaries changed")


class LostTracking(Exception):
    """The invalidation connection can no longer be trusted."""


async def _reply(pubsub: Any, wait: float) -> Any:
    reply = await pubsub.parse_response(block=True, timeout=wait)
    if reply is None:
        raise LostTracking("no reply")
    return reply
