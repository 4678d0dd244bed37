"""Rate limits in Redis (GCRA): per-user buckets of the TikTok API proxy (with, where TikTok counts requests in a
sliding window, an exact window beside them), and buckets that belong to no user (a client's address, an OAuth
client) in front of the sensitive endpoints.

A bucket allows `limit` requests per `period` seconds with bursts up to `limit` (GCRA: the key holds the
"theoretical arrival time" in milliseconds; O(1) memory, exact waits). All buckets of one call must allow the
request or none is charged, so a refused call does not eat another bucket's allowance. The caller keeps the
keys of one call in one Redis Cluster slot (the user's hash tag); each key expires with its bucket.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from broker.store.keys import KeySpace, digest
from broker.store.redis import RedisClient, translated_errors

# KEYS: the buckets, then (when ARGV[2] > 0) a sliding window, then the user's list of short-lived keys (so that
# deleting the account finds them). ARGV[1] = now (ms); ARGV[2] = the window's limit (0: no window); ARGV[3] = its
# length (ms); ARGV[4] = a unique member for this request; then for each bucket i: ARGV[3 + 2i] = emission interval
# (ms), ARGV[4 + 2i] = period (ms). Returns 0 when allowed (all charged), else the milliseconds until it would be.
GCRA = """
local now = tonumber(ARGV[1])
local window_limit = tonumber(ARGV[2])
local window_length = tonumber(ARGV[3])
local wait = 0
local next_tat = {}
local buckets = #KEYS - 1
if window_limit > 0 then buckets = buckets - 1 end
for i = 1, buckets do
  local key = KEYS[i]
  local interval = tonumber(ARGV[3 + 2 * i])
  local period = tonumber(ARGV[4 + 2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now and allow_at - now > wait then wait = allow_at - now end
  next_tat[i] = new_tat
end
local window = KEYS[buckets + 1]
if window_limit > 0 then
  redis.call('ZREMRANGEBYSCORE', window, '-inf', now - window_length)
  if redis.call('ZCARD', window) >= window_limit then
    local oldest = tonumber(redis.call('ZRANGE', window, 0, 0, 'WITHSCORES')[2])
    if oldest + window_length - now > wait then wait = oldest + window_length - now end
  end
end
if wait > 0 then return wait end
for i = 1, buckets do
  redis.call('SET', KEYS[i], next_tat[i], 'PX', next_tat[i] - now)
  redis.call('SADD', KEYS[#KEYS], KEYS[i])
end
if window_limit > 0 then
  redis.call('ZADD', window, now, ARGV[4])
  redis.call('PEXPIRE', window, window_length)
  redis.call('SADD', KEYS[#KEYS], window)
end
redis.call('PEXPIRE', KEYS[#KEYS], 86400000)
return 0
"""

# One bucket that belongs to no user: KEYS[1] is the bucket (its own hash tag, so its own Cluster slot).
# ARGV = now (ms), emission interval (ms), tolerance (ms: burst x interval). Returns 0 when allowed (charged),
# else the milliseconds until one request would be allowed. A refused request is not charged.
GCRA_ONE = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - tolerance - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return 0
"""


@dataclass(frozen=True)
class Window:
    """At most `limit` requests in any `period` seconds (a sliding log, exact like TikTok's own windows)."""

    name: str
    limit: int
    period: float = 60.0


@dataclass(frozen=True)
class Bucket:
    name: str  # part of the key name; hashed, so any text is fine
    limit: int  # requests per period
    period: float = 60.0
    burst: int | None = None  # at most this many at once; None: `limit` (the whole period's share)

    def interval_ms(self) -> int:
        """Whole milliseconds between two requests on average (ceiling: the limit is never exceeded)."""
        return max(1, math.ceil(round(self.period * 1000) / max(1, self.limit)))


class RateLimiter:
    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._script = client.register_script(GCRA)

    def key(self, user_id: str, bucket: Bucket) -> str:
        return f"{self.keys.user_tag(user_id)}:rl:{digest(bucket.name)[:32]}"

    def window_key(self, user_id: str, window: Window) -> str:
        return f"{self.keys.user_tag(user_id)}:rlw:{digest(window.name)[:32]}"

    async def take(self, user_id: str, buckets: tuple[Bucket, ...], now: float, *,
                   window: Window | None = None) -> float:
        """Charge one request to every bucket of this user (and its window, when given), or to none: 0.0 when
        allowed, else seconds to wait."""
        keys = [self.key(user_id, bucket) for bucket in buckets]
        now_ms = math.floor(now * 1000)
        args: list[int | str] = [now_ms, 0, 0, ""]
        if window is not None:
            keys.append(self.window_key(user_id, window))
            args[1:] = [window.limit, max(1, round(window.period * 1000)), f"{now_ms}:{secrets.token_hex(6)}"]
        keys.append(self.keys.short_lived(user_id))
        for bucket in buckets:
            args += [bucket.interval_ms(), max(1, round(bucket.period * 1000))]
        async with translated_errors():
            wait_ms = int(await self._script(keys=keys, args=args))
        return wait_ms / 1000


class SharedLimiter:
    """Buckets named by any text (a client's address, a client id) that belong to no user.

    Each bucket's key is a hash tag of its own, so buckets spread over the Cluster's slots instead of piling into
    one; the buckets of one request go out in one pipeline (one round trip per node). Their script is sent with
    EVAL, which a Cluster pipeline routes by key without a NOSCRIPT dance. Buckets are charged independently: a
    request refused by one bucket may already have been charged to another.
    """

    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys

    def key(self, bucket_name: str) -> str:
        return self.keys.rate_bucket(digest(bucket_name)[:32])

    async def take(self, buckets: tuple[Bucket, ...], now: float) -> float:
        """Charge every bucket that allows the request: 0.0 when all did, else the longest wait in seconds."""
        return max(await self.take_each(buckets, now), default=0.0)

    async def take_each(self, buckets: tuple[Bucket, ...], now: float) -> tuple[float, ...]:
        """As `take`, answering each bucket's wait in seconds (0.0: it allowed the request and was charged)."""
        now_ms = math.floor(now * 1000)
        async with translated_errors(), self.client.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                interval = bucket.interval_ms()
                pipe.eval(GCRA_ONE, 1, self.key(bucket.name), now_ms, interval,
                          interval * (bucket.burst or bucket.limit))
            waits = await pipe.execute()
        return tuple(int(wait) / 1000 for wait in waits)
