"""Rate limits of our own in front of TikTok's API: GCRA buckets, every bucket of one request in one Lua call.

A bucket allows `limit` requests per `period` seconds with bursts up to `limit` (GCRA: the key holds the
"theoretical arrival time" in milliseconds; O(1) memory, exact waits). All buckets of one call must allow the
request or none is charged, so a refused call does not eat another bucket's allowance. The caller keeps the
keys of one call in one Redis Cluster slot (the user's hash tag); each key expires with its bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from broker.store.keys import KeySpace, digest
from broker.store.redis import RedisClient, translated_errors

# KEYS: the buckets, then the user's list of short-lived keys (so that deleting the account finds them).
# ARGV[1] = now (ms); then for each bucket i: ARGV[2i] = emission interval (ms), ARGV[2i+1] = period (ms).
# Returns 0 when allowed (all buckets charged), else the milliseconds until the request would be allowed.
GCRA = """
local now = tonumber(ARGV[1])
local wait = 0
local next_tat = {}
local buckets = #KEYS - 1
for i = 1, buckets do
  local key = KEYS[i]
  local interval = tonumber(ARGV[2 * i])
  local period = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now and allow_at - now > wait then wait = allow_at - now end
  next_tat[i] = new_tat
end
if wait > 0 then return wait end
for i = 1, buckets do
  redis.call('SET', KEYS[i], next_tat[i], 'PX', next_tat[i] - now)
  redis.call('SADD', KEYS[#KEYS], KEYS[i])
end
redis.call('PEXPIRE', KEYS[#KEYS], 86400000)
return 0
"""


@dataclass(frozen=True)
class Bucket:
    name: str  # part of the key name; hashed, so any text is fine
    limit: int  # requests per period
    period: float = 60.0


class RateLimiter:
    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._script = client.register_script(GCRA)

    def key(self, user_id: str, bucket: Bucket) -> str:
        return f"{self.keys.user_tag(user_id)}:rl:{digest(bucket.name)[:32]}"

    async def take(self, user_id: str, buckets: tuple[Bucket, ...], now: float) -> float:
        """Charge one request to every bucket of this user, or to none: 0.0 when allowed, else seconds to wait."""
        keys = [*(self.key(user_id, bucket) for bucket in buckets), self.keys.short_lived(user_id)]
        args: list[int] = [math.floor(now * 1000)]
        for bucket in buckets:
            period_ms = max(1, round(bucket.period * 1000))
            args += [max(1, math.ceil(period_ms / max(1, bucket.limit))), period_ms]
        async with translated_errors():
            wait_ms = int(await self._script(keys=keys, args=args))
        return wait_ms / 1000
