"""The apps a user let in: consents per third-party client (scopes, first and last use), and which app holds each
of the user's refresh families. Everything lives in the user's slot and goes with the account."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, translated_errors

# A consent no app has used for this long is forgotten (the user is asked again).
CONSENT_TTL = 400 * 86400

# KEYS[1] the user's consents. ARGV: client id, scopes (space-separated), now, TTL (ms). Adds the scopes to what
# the user already let the client have; keeps the first instant.
GRANT = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
local record = {s = {}, f = tonumber(ARGV[3])}
if current then record = cjson.decode(current) end
local have = {}
for _, scope in ipairs(record['s']) do have[scope] = true end
for scope in string.gmatch(ARGV[2], '%S+') do
  if not have[scope] then table.insert(record['s'], scope); have[scope] = true end
end
record['l'] = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
return 1
"""

# Same keys: the last use of a consent, if it still exists.
TOUCH = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local record = cjson.decode(current)
record['l'] = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


@dataclass(frozen=True)
class Consent:
    client_id: str
    scopes: tuple[str, ...]
    first_at: float
    last_at: float


def _consent(client_id: str, raw: str) -> Consent:
    data = json.loads(raw)
    # cjson writes an empty list as an empty object.
    scopes = data.get("s") if isinstance(data.get("s"), list) else []
    return Consent(client_id, tuple(str(s) for s in scopes), float(data.get("f", 0)), float(data.get("l", 0)))


class Consents:
    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._grant = client.register_script(GRANT)
        self._touch = client.register_script(TOUCH)

    async def get(self, user_id: str, client_id: str) -> Consent | None:
        async with translated_errors():
            raw = await cast(Any, self.client).hget(self.keys.consents(user_id), client_id)
        return None if raw is None else _consent(client_id, str(raw))

    async def grant(self, user_id: str, client_id: str, scopes: tuple[str, ...], now: float) -> None:
        async with translated_errors():
            await self._grant(keys=[self.keys.consents(user_id)],
                              args=[client_id, " ".join(scopes), repr(now), CONSENT_TTL * 1000])

    async def touch(self, user_id: str, client_id: str, now: float) -> None:
        async with translated_errors():
            await self._touch(keys=[self.keys.consents(user_id)], args=[client_id, repr(now), CONSENT_TTL * 1000])

    async def all(self, user_id: str) -> list[Consent]:
        async with translated_errors():
            raw = await cast(Any, self.client).hgetall(self.keys.consents(user_id))
        return [_consent(str(client_id), str(value)) for client_id, value in cast(dict[str, str], raw).items()]

    async def remove(self, user_id: str, client_id: str) -> bool:
        async with translated_errors():
            return bool(await cast(Any, self.client).hdel(self.keys.consents(user_id), client_id))

    async def families_by_client(self, user_id: str) -> dict[str, str]:
        """sid -> client id of every live refresh family of the user that an app holds (a native app's own
        session, of kind app, is no family: the app's tokens name its family's sid)."""
        index = self.keys.user_sessions(user_id)
        async with translated_errors():
            sids = [str(sid) for sid in await cast(Any, self.client).zrange(index, 0, -1)]
            if not sids:
                return {}
            async with self.client.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.hmget(self.keys.session(user_id, sid), "client_id", "kind")
                owners = await pipe.execute()
        return {sid: str(owner) for sid, (owner, kind) in zip(sids, owners, strict=True) if owner and kind != "app"}
