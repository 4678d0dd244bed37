"""The posts a user made through the TikTok API proxy: each publish_id with the client that made it, for a while.

Layout: one hash per user, `<prefix>{u:<user id>}:posts`, publish_id → JSON record {c: client id, s: the TikTok
scope the post was made with, k: kind, t: created (s), x: expires (ms)}. The hash lives in the user's slot, so
deleting the account deletes it with the rest (store/accounts.py), and it expires with its newest record; older
records are dropped when the hash grows (TikTok allows about 15 posts a day, so it stays small).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, translated_errors

PRUNE_ABOVE = 32  # records; below this the hash is left alone

# KEYS[1] the user's posts; ARGV[1] publish_id, ARGV[2] the record, ARGV[3] now (ms), ARGV[4] its expiry (ms),
# ARGV[5] the size above which expired records are dropped.
RECORD = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[5]) then
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local ok, record = pcall(cjson.decode, all[i + 1])
    if not ok or type(record) ~= 'table' or not tonumber(record['x']) or tonumber(record['x']) <= tonumber(ARGV[3])
    then
      redis.call('HDEL', KEYS[1], all[i])
    end
  end
end
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class PublishRecord:
    publish_id: str
    client_id: str  # the client that made the post ("browser" for a cookie session's token)
    scope: str  # the TikTok scope the post was made with: a status fetch needs it too
    kind: str  # "video" (direct post), "inbox" or "photo"
    created_at: float


class PublishStore:
    """Raises StoreUnavailable when Redis cannot be reached."""

    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._record = client.register_script(RECORD)

    async def record(self, user_id: str, record: PublishRecord, *, ttl: int) -> None:
        expires_ms = math.ceil((record.created_at + ttl) * 1000)
        value = json.dumps({"c": record.client_id, "s": record.scope, "k": record.kind, "t": record.created_at,
                            "x": expires_ms}, separators=(",", ":"))
        async with translated_errors():
            await self._record(keys=[self.keys.publishes(user_id)],
                               args=[record.publish_id, value, math.floor(record.created_at * 1000), expires_ms,
                                     PRUNE_ABOVE])

    async def get(self, user_id: str, publish_id: str, now: float) -> PublishRecord | None:
        """The user's own record of this publish_id, while it lasts; None for anyone else's or an unknown one."""
        async with translated_errors():
            raw = await self.client.hget(self.keys.publishes(user_id), publish_id)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            record = PublishRecord(publish_id, str(data["c"]), str(data["s"]), str(data["k"]), float(data["t"]))
            expired = int(data["x"]) <= now * 1000
        except (ValueError, KeyError, TypeError):
            return None
        return None if expired else record
