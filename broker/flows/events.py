"""Events for downstream services: the Redis stream, and webhooks as signed SETs (RFC 8417, RFC 8935 push).

`emit` only writes to Redis (the stream entry and one queued delivery per webhook URL, in one transaction), so
a webhook that is down never fails the caller's logout or deletion. Every replica runs `run_delivery`; claims
are atomic and leased, so each delivery is in flight on one replica at a time, and a replica that dies
mid-delivery only delays it by one lease. Delivery is at least once: receivers drop duplicates by `jti`.

Each webhook gets a Security Event Token with `aud` = the origin of its URL (scheme://host[:port], the port
only when not the default), so a token sent to one receiver is useless at another. 2xx acknowledges; anything
else (or no answer) is retried after 1 s, 2 s, 4 s ... (capped at 1 h, minus up to 20 % jitter) until the
delivery's horizon, then given up (logged and counted; the event stays in the stream).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode, urlsplit

import httpx

from broker.clock import Clock
from broker.errors import BrokerError, StoreUnavailable
from broker.metrics import Metrics
from broker.signing.logout_tokens import LogoutTokenSigner
from broker.signing.tokens import TokenService
from broker.store.events import Delivery, DeliveryStats, Event, EventStore, Logout

log = logging.getLogger("broker.events")

# tiktok.post.*: how posts made through the proxy end, from TikTok's webhooks (flows/post_events.py).
POST_EVENT_TYPES = frozenset({"tiktok.post.failed", "tiktok.post.complete", "tiktok.post.inbox_delivered",
                              "tiktok.post.publicly_available", "tiktok.post.no_longer_publicly_available",
                              "tiktok.post.share_failed", "tiktok.post.share_completed"})
EVENT_TYPES = frozenset({"session.revoked", "user.logged_out", "user.deleted", "tiktok.deauthorized",
                         "app.disconnected", *POST_EVENT_TYPES})
SET_MEDIA_TYPE = "application/secevent+jwt"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
FIRST_DELAY = 1.0
MAX_DELAY = 3600.0
JITTER = 0.2  # delays shrink by up to 20 %: spread out, yet each retry still waits longer than the one before
BATCH = 100
_DEFAULT_PORTS = {"http": 80, "https": 443}
_random = secrets.SystemRandom()


def backoff(attempts: int, random: float | None = None) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (1 → ~1 s, 2 → ~2 s, ... capped at 1 h)."""
    base = min(FIRST_DELAY * 2.0 ** min(max(attempts - 1, 0), 32), MAX_DELAY)
    return base * (1 - JITTER * (_random.random() if random is None else random))


def origin(url: str) -> str:
    """The RFC 6454 origin of a URL: the `aud` of the SETs sent to it."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return f"{scheme}://{host}" if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{scheme}://{host}:{port}"


class Events:
    """Emits events and delivers them to every URL in BROKER_WEBHOOK_URLS.

    `issuer` must be the TokenService's issuer: event type URIs are `<issuer>/events/<type>`.
    `lease` (default: four timeouts, at least 30 s) must exceed the time one round of deliveries takes.
    """

    def __init__(self, store: EventStore, tokens: TokenService, http: httpx.AsyncClient, clock: Clock, *,
                 urls: tuple[str, ...], issuer: str, retry_horizon: int = 3 * 86400, timeout: float = 5.0,
                 lease: float | None = None, batch: int = BATCH, metrics: Metrics | None = None,
                 logout_tokens: LogoutTokenSigner | None = None) -> None:
        self.store = store
        self.tokens = tokens
        self.logout_tokens = logout_tokens
        self.http = http
        self.clock = clock
        self.urls = urls
        self.issuer = issuer
        self.retry_horizon = retry_horizon
        self.timeout = timeout
        self.lease = lease if lease is not None else max(30.0, 4 * timeout)
        self.batch = batch
        self.metrics = metrics or Metrics()
        self._last_claimed = 0

    def event_uri(self, event_type: str) -> str:
        """The key of the SET's `events` claim for this event type."""
        return f"{self.issuer}/events/{event_type}"

    async def emit(self, event_type: str, *, sub: str, sid: str | None = None,
                   data: Mapping[str, object] | None = None, logouts: Sequence[Logout] = ()) -> str:
        """Append the event to the stream and queue its webhooks (and the apps' back-channel logouts it causes);
        returns the event id (the SETs' jti).

        Raises ValueError for an unknown type or a payload naming an open_id, StoreUnavailable when Redis is
        down (the caller decides whether its operation may go on without the event).
        """
        event = self._event(event_type, sub, sid, data)
        await self.store.publish(event, urls=self.urls, now=event.time, expires_at=event.time + self.retry_horizon,
                                 logouts=logouts if self.logout_tokens is not None else ())
        return event.id

    async def emit_once(self, event_type: str, *, source: str, sub: str, data: Mapping[str, object] | None = None,
                        ttl: int = 4 * 86400) -> str | None:
        """Emit an event standing for one from elsewhere, named `source` (a TikTok webhook), unless it was emitted
        within `ttl` seconds: the event id, or None for a repeat. Marking and emitting are one atomic step, so an
        event is neither lost nor emitted twice, however often (or concurrently) the source delivers it."""
        event = self._event(event_type, sub, None, data)
        emitted = await self.store.publish_once(event, source_hash=hashlib.sha256(source.encode()).hexdigest(),
                                                seen_ttl=ttl, urls=self.urls, now=event.time,
                                                expires_at=event.time + self.retry_horizon)
        return None if emitted is None else event.id

    def _event(self, event_type: str, sub: str, sid: str | None, data: Mapping[str, object] | None) -> Event:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")
        if not sub:
            raise ValueError("an event needs a sub")
        payload = dict(data or {})
        # Downstream services know users by the broker's id only; the TikTok open_id stays in the broker.
        if any("open_id" in key for key in payload):
            raise ValueError("event data must not carry a TikTok open_id")
        return Event(id=secrets.token_urlsafe(16), type=event_type, sub=sub, sid=sid or "", time=self.clock.now(),
                     data=payload)

    async def stats(self) -> DeliveryStats:
        return await self.store.stats()

    async def deliver_due(self) -> int:
        """One round: claim due deliveries, send them concurrently; returns how many were acknowledged.

        A failed send is rescheduled (or given up) here; a Redis failure is raised after the round, and the
        deliveries it left behind come back when their lease ends.
        """
        now = self.clock.now()
        claimed = await self.store.claim_due(now, self.lease, self.batch)
        self._last_claimed = len(claimed)
        results = await asyncio.gather(*(self._attempt(d, now) for d in claimed), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(1 for result in results if result is True)

    async def run_delivery(self, *, interval: float = 1.0) -> None:
        """Deliver until cancelled; a failing round is logged and the loop goes on."""
        task = asyncio.current_task()
        while True:
            try:
                await self.deliver_due()
            except BrokerError as exc:
                if isinstance(exc, StoreUnavailable):
                    self.metrics.redis_unavailable("webhook_delivery")
                log.warning("event delivery round failed: %s %s", type(exc).__name__, exc.log_detail)
                self._last_claimed = 0
            except Exception:
                log.exception("event delivery round failed")
                self._last_claimed = 0
            # Python 3.11's asyncio.wait_for (inside redis-py) drops a cancellation that lands as a reply
            # arrives (CPython gh-86296); without this check, shutdown would wait for this loop for ever.
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            # A full batch means a backlog: go on at once instead of waiting.
            if self._last_claimed < self.batch:
                await asyncio.sleep(interval)

    async def _attempt(self, delivery: Delivery, now: float) -> bool:
        where = f"{delivery.id} ({delivery.event.type}) to {origin(delivery.url)}"
        if now >= delivery.expires_at:
            if await self.store.give_up(delivery.id):
                log.error("webhook delivery %s given up: expired before it could be sent", where)
            return False
        outcome = await self._send(delivery, now)
        if isinstance(outcome, int) and 200 <= outcome < 300:
            await self.store.ack(delivery.id)
            return True
        attempts = delivery.attempts + 1
        next_at = now + backoff(attempts)
        if next_at > delivery.expires_at:
            if await self.store.give_up(delivery.id):
                log.error("webhook delivery %s given up after %d attempts (last: %s)", where, attempts, outcome)
            return False
        await self.store.retry(delivery.id, next_at)
        log.warning("webhook delivery %s failed (attempt %d: %s); next in %.1f s", where, attempts, outcome,
                    next_at - now)
        return False

    async def _send(self, delivery: Delivery, now: float) -> int | str:
        """The receiver's HTTP status, or why there was none. The token itself is never logged."""
        event = delivery.event
        try:
            if delivery.logout is not None and self.logout_tokens is not None:
                logout = delivery.logout
                # Back-Channel Logout 1.0 section 2.5: a form POST with the logout token; one jti per delivery.
                token = self.logout_tokens.sign(client_id=logout.client_id, sub=event.sub, sid=logout.sid,
                                                jti=delivery.id, iat=now, alg=logout.alg)
                content, media = urlencode({"logout_token": token}).encode(), FORM_MEDIA_TYPE
            else:
                content = self.tokens.sign_event(audience=origin(delivery.url), sub=event.sub,
                                                 sid=event.sid or None, event_type=event.type, data=event.data,
                                                 jti=event.id, iat=now, toe=event.time).encode()
                media = SET_MEDIA_TYPE
            async with asyncio.timeout(self.timeout):
                # Streamed and never read: a receiver's body is of no interest and must not cost memory.
                async with self.http.stream("POST", delivery.url, content=content, timeout=self.timeout,
                                            follow_redirects=False,
                                            headers={"Content-Type": media,
                                                     "Accept": "application/json"}) as response:
                    return response.status_code
        except (httpx.HTTPError, TimeoutError) as exc:
            return type(exc).__name__
        except BrokerError as exc:  # NoActiveKey: nothing may sign right now; retry with the others
            return f"{type(exc).__name__}: {exc.log_detail}"
