"""OIDC state in Redis: pending authorization requests (while the user signs in at TikTok) and authorization
codes (single use, 60 s). A code exchanged twice ends the refresh family its first exchange produced."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from broker.store.keys import KeySpace, digest
from broker.store.redis import RedisClient, translated_errors

SPENT_TTL = 600  # how long a spent code is remembered, to catch replays

# KEYS: the code, its spent marker, the user's short-lived list. Returns the record, or {'replayed', family}.
TAKE = """
local record = redis.call('GET', KEYS[1])
if record then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '', 'PX', tonumber(ARGV[1]))
  redis.call('SADD', KEYS[3], KEYS[2])
  return {'fresh', record}
end
local spent = redis.call('GET', KEYS[2])
if spent then return {'replayed', spent} end
return {'unknown'}
"""


@dataclass(frozen=True)
class PendingAuthorization:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str
    nonce: str
    code_challenge: str
    prompt: str
    created_at: float


@dataclass(frozen=True)
class CodeRecord:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    nonce: str
    code_challenge: str
    sid: str
    auth_time: float


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)


class AuthorizationStore:
    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._take = client.register_script(TAKE)

    def _pending_key(self, request_id: str) -> str:
        return f"{self.keys.prefix}authz:{digest(request_id)}"

    async def put_pending(self, request_id: str, pending: PendingAuthorization, ttl: int) -> None:
        async with translated_errors():
            await self.client.set(self._pending_key(request_id), json.dumps(asdict(pending)), ex=ttl)

    async def take_pending(self, request_id: str) -> PendingAuthorization | None:
        async with translated_errors():
            raw = await self.client.getdel(self._pending_key(request_id))
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        data["scopes"] = tuple(data["scopes"])
        return PendingAuthorization(**data)

    async def put_code(self, user_id: str, code_hash: str, record: CodeRecord, ttl: int) -> None:
        key = self.keys.authorization_code(user_id, code_hash)
        listed = self.keys.short_lived(user_id)
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.set(key, json.dumps(asdict(record)), px=_ms(ttl))
            pipe.sadd(listed, key)
            pipe.expire(listed, 86400)
            await pipe.execute()

    async def take_code(self, user_id: str, code_hash: str) -> tuple[str, CodeRecord | str | None]:
        """("fresh", record) the first time; ("replayed", family sid or "") after; ("unknown", None) otherwise."""
        keys = [self.keys.authorization_code(user_id, code_hash), self.keys.spent_code(user_id, code_hash),
                self.keys.short_lived(user_id)]
        async with translated_errors():
            result = await self._take(keys=keys, args=[SPENT_TTL * 1000])
        status = str(result[0])
        if status == "fresh":
            data: dict[str, Any] = json.loads(result[1])
            data["scopes"] = tuple(data["scopes"])
            return status, CodeRecord(**data)
        if status == "replayed":
            return status, str(result[1])
        return status, None

    async def remember_family(self, user_id: str, code_hash: str, family_sid: str) -> None:
        async with translated_errors():
            await self.client.set(self.keys.spent_code(user_id, code_hash), family_sid, xx=True, keepttl=True)
