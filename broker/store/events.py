"""The events stream and the durable webhook outbox in Redis: append, claim due deliveries, ack, retry, give up.

Layout (one hash tag, `{events}`, so everything here lives in one Cluster slot; no user slot is touched):
  <prefix>{events}                    stream, one entry per event, trimmed to about `maxlen` entries (XADD
                                      MAXLEN ~). Fields: id (the event id, also the SETs' jti), type, sub
                                      (broker user id, never the TikTok open_id), sid ("" when none), time
                                      (Unix seconds), data (JSON object).
  <prefix>{events}:out:deliveries     hash: delivery id → JSON record (event, url, created_at, expires_at,
                                      and for an OpenID back-channel logout the client, sid and algorithm),
                                      and "<delivery id>:n" → failed attempts so far.
  <prefix>{events}:out:due            sorted set: delivery id → instant of its next attempt. A claim pushes the
                                      score to now + lease, so an in-flight delivery is not taken by another
                                      replica, and comes back by itself if its replica dies.
  <prefix>{events}:out:stats          hash: emitted, delivered, given_up (counters for metrics).
  <prefix>{events}:seen:<hash>        set (with a TTL) when an event that stands for one from elsewhere (a TikTok
                                      webhook, delivered at least once) is emitted: a redelivery emits nothing.

An event and its deliveries are written in one MULTI: both or neither. Delivery is at least once (a replica
that outlives its lease may send twice), so receivers drop duplicates by jti.

A downstream service reads the stream at its own pace with a consumer group:

    XGROUP CREATE broker:{events} billing $ MKSTREAM        # once; `$`: only events from now on
    XREADGROUP GROUP billing worker-1 COUNT 100 BLOCK 5000 STREAMS broker:{events} >
    ... handle each entry (idempotently, by its `id` field) ...
    XACK broker:{events} billing 1800000000000-0
    XAUTOCLAIM broker:{events} billing worker-2 60000 0     # take over a dead worker's unacknowledged entries

The stream is capped at about `maxlen` entries: a group that falls further behind than that loses the oldest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, translated_errors

log = logging.getLogger("broker.store.events")

DEFAULT_MAXLEN = 100_000

# Take up to ARGV[3] due deliveries and lease them until ARGV[2]. A due id without a record (should not
# happen: both are written and removed together) is dropped rather than claimed for ever.
CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local record = redis.call('HGET', KEYS[2], id)
  if record then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = record
    out[#out + 1] = redis.call('HGET', KEYS[2], id .. ':n') or '0'
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# Finish a delivery (acknowledged or given up) and count it once, even if two replicas finish it.
FINISH = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1], ARGV[1] .. ':n')
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
return 1
"""

# Count a failed attempt and schedule the next one, unless the delivery was finished meanwhile.
RETRY = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return redis.call('HINCRBY', KEYS[2], ARGV[1] .. ':n', 1)
"""


# Emit an event once per outside identity: KEYS = the seen-mark, the stream, deliveries, due, stats. ARGV[1] the
# mark's TTL (s), ARGV[2] the stream's maxlen, ARGV[3] now, ARGV[4..15] the stream entry's six field/value pairs,
# then pairs of (delivery id, record). Returns the stream id, or false when the mark was already there.
PUBLISH_ONCE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return false end
local fields = {}
for i = 4, 15 do fields[#fields + 1] = ARGV[i] end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
for i = 16, #ARGV, 2 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[i])
end
redis.call('HINCRBY', KEYS[5], 'emitted', 1)
return id
"""


@dataclass(frozen=True)
class Event:
    id: str  # random; the SETs' jti, so receivers can drop duplicates
    type: str  # session.revoked, user.logged_out, user.deleted, tiktok.deauthorized, tiktok.post.*
    sub: str  # broker user id
    sid: str  # "" when the event is not about one session
    time: float
    data: Mapping[str, object]


@dataclass(frozen=True)
class Logout:
    """An OpenID back-channel logout for one app about one of its sessions (the `sid` of its ID tokens)."""

    client_id: str
    uri: str
    sid: str
    alg: str  # the client's ID token algorithm: its logout tokens are signed the same way


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one webhook URL, or a logout token on its way to an app's back-channel URI."""

    id: str
    url: str
    event: Event
    attempts: int  # failed attempts so far
    created_at: float
    expires_at: float  # give up after this instant
    logout: Logout | None = None


@dataclass(frozen=True)
class DeliveryStats:
    pending: int
    emitted: int
    delivered: int
    given_up: int


def _record(event: Event, url: str, now: float, expires_at: float, logout: Logout | None = None) -> str:
    record: dict[str, object] = {"v": 1, "url": url, "created_at": now, "expires_at": expires_at,
                                 "event": {"id": event.id, "type": event.type, "sub": event.sub, "sid": event.sid,
                                           "time": event.time, "data": dict(event.data)}}
    if logout is not None:
        record["logout"] = {"client_id": logout.client_id, "sid": logout.sid, "alg": logout.alg}
    return json.dumps(record, separators=(",", ":"))


def _fields(event: Event) -> dict[str, str]:
    """The stream entry of an event."""
    return {"id": event.id, "type": event.type, "sub": event.sub, "sid": event.sid, "time": f"{event.time:.3f}",
            "data": json.dumps(dict(event.data), separators=(",", ":"))}


def _delivery(delivery_id: str, raw: str, attempts: str) -> Delivery:
    data = json.loads(raw)
    e = data["event"]
    event = Event(id=str(e["id"]), type=str(e["type"]), sub=str(e["sub"]), sid=str(e["sid"]),
                  time=float(e["time"]), data=dict(e["data"]))
    logout = data.get("logout")
    return Delivery(id=delivery_id, url=str(data["url"]), event=event, attempts=int(attempts),
                    created_at=float(data["created_at"]), expires_at=float(data["expires_at"]),
                    logout=Logout(str(logout["client_id"]), str(data["url"]), str(logout["sid"]), str(logout["alg"]))
                    if isinstance(logout, dict) else None)


class EventStore:
    """Events and webhook deliveries in Redis. Methods raise StoreUnavailable when Redis cannot be reached."""

    def __init__(self, client: RedisClient, keys: KeySpace, *, maxlen: int = DEFAULT_MAXLEN) -> None:
        self.client = client
        self.keys = keys
        self.maxlen = maxlen
        self._stream = keys.events_stream()
        self._deliveries = keys.event_outbox("deliveries")
        self._due = keys.event_outbox("due")
        self._stats = keys.event_outbox("stats")
        self._claim = client.register_script(CLAIM)
        self._finish = client.register_script(FINISH)
        self._retry = client.register_script(RETRY)
        self._publish_once = client.register_script(PUBLISH_ONCE)

    async def publish(self, event: Event, *, urls: Sequence[str], now: float, expires_at: float,
                      logouts: Sequence[Logout] = ()) -> str:
        """Append the event to the stream and enqueue one delivery per URL and one per back-channel logout, due
        now; returns the stream id."""
        fields = _fields(event)
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self._stream, cast(Any, fields), maxlen=self.maxlen, approximate=True)
            for index, url in enumerate(urls):
                delivery_id = f"{event.id}.{index}"
                pipe.hset(self._deliveries, delivery_id, _record(event, url, now, expires_at))
                pipe.zadd(self._due, {delivery_id: now})
            for index, logout in enumerate(logouts):
                delivery_id = f"{event.id}.bcl{index}"
                pipe.hset(self._deliveries, delivery_id, _record(event, logout.uri, now, expires_at, logout))
                pipe.zadd(self._due, {delivery_id: now})
            pipe.hincrby(self._stats, "emitted", 1)
            results = await pipe.execute()
        return str(results[0])

    async def publish_once(self, event: Event, *, source_hash: str, seen_ttl: int, urls: Sequence[str], now: float,
                           expires_at: float) -> str | None:
        """As `publish`, unless an event was already published for `source_hash` within `seen_ttl` seconds: then
        nothing is written and None is returned. The mark and the event are written in one step."""
        args: list[str | int | float] = [seen_ttl, self.maxlen, repr(now)]
        for name, value in _fields(event).items():
            args += [name, value]
        for index, url in enumerate(urls):
            args += [f"{event.id}.{index}", _record(event, url, now, expires_at)]
        keys = [self.keys.event_seen(source_hash), self._stream, self._deliveries, self._due, self._stats]
        async with translated_errors():
            stream_id = await self._publish_once(keys=keys, args=args)
        return None if stream_id is None else str(stream_id)

    async def claim_due(self, now: float, lease_seconds: float, limit: int) -> list[Delivery]:
        """Atomically take up to `limit` deliveries due at `now`, leased until now + lease_seconds."""
        async with translated_errors():
            flat = await self._claim(keys=[self._due, self._deliveries],
                                     args=[repr(now), repr(now + lease_seconds), limit])
        claimed: list[Delivery] = []
        for index in range(0, len(flat), 3):
            delivery_id = str(flat[index])
            try:
                claimed.append(_delivery(delivery_id, str(flat[index + 1]), str(flat[index + 2])))
            except (ValueError, KeyError, TypeError):
                # Unreadable (written by an incompatible version?): it can never be sent, so it must not
                # come back every lease.
                log.error("dropping unreadable webhook delivery %s", delivery_id)
                await self.give_up(delivery_id)
        return claimed

    async def ack(self, delivery_id: str) -> bool:
        """The receiver acknowledged: delete the delivery and count it. False if it was already finished."""
        return await self._finish_as(delivery_id, "delivered")

    async def give_up(self, delivery_id: str) -> bool:
        """Stop trying: delete the delivery and count it. False if it was already finished."""
        return await self._finish_as(delivery_id, "given_up")

    async def retry(self, delivery_id: str, next_at: float) -> int:
        """Count a failed attempt and schedule the next at `next_at`; the failed attempts so far (0 when the
        delivery was finished meanwhile, by another replica)."""
        async with translated_errors():
            return int(await self._retry(keys=[self._due, self._deliveries], args=[delivery_id, repr(next_at)]))

    async def stats(self) -> DeliveryStats:
        async with translated_errors(), self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(self._due)
            pipe.hmget(self._stats, ["emitted", "delivered", "given_up"])
            pending, counters = await pipe.execute()
        emitted, delivered, given_up = (int(value or 0) for value in counters)
        return DeliveryStats(pending=int(pending), emitted=emitted, delivered=delivered, given_up=given_up)

    async def _finish_as(self, delivery_id: str, counter: str) -> bool:
        async with translated_errors():
            return bool(await self._finish(keys=[self._due, self._deliveries, self._stats],
                                           args=[delivery_id, counter]))
