"""OIDC state in Redis: pending authorization requests (while the user signs in at TikTok or answers the consent
page), pushed authorization requests (RFC 9126, 60 s, single use) and authorization codes (single use, 60 s).

A code is taken only by the client and redirect URI it was issued to: anyone else learns `mismatch` and the code
stays as it was, so a leaked code cannot be burnt, nor its tokens revoked, by a client that does not own it. A
code exchanged twice by its owner ends the refresh family its first exchange produced."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from broker.store.keys import KeySpace, digest
from broker.store.redis import RedisClient, translated_errors

SPENT_TTL = 600  # how long a spent code is remembered, to catch replays

# KEYS: the code, its spent marker, the user's short-lived list. ARGV: spent TTL (ms), the client id and redirect
# URI presented. The spent marker is a hash {c: client, r: redirect URI, f: the family the exchange produced}.
TAKE = """
local record = redis.call('GET', KEYS[1])
if record then
  local code = cjson.decode(record)
  if code['client_id'] ~= ARGV[2] or code['redirect_uri'] ~= ARGV[3] then return {'mismatch'} end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'c', ARGV[2], 'r', ARGV[3], 'f', '')
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[1]))
  redis.call('SADD', KEYS[3], KEYS[2])
  return {'fresh', record}
end
local kind = redis.call('TYPE', KEYS[2])['ok']
if kind == 'none' then return {'unknown'} end
-- A marker written before markers named their client (a rolling upgrade; they live ten minutes).
if kind ~= 'hash' then return {'replayed', redis.call('GET', KEYS[2])} end
local spent = redis.call('HMGET', KEYS[2], 'c', 'r', 'f')
if spent[1] ~= ARGV[2] or spent[2] ~= ARGV[3] then return {'mismatch'} end
return {'replayed', spent[3] or ''}
"""

# KEYS: a spent marker. Records the family its exchange produced, if the marker is still there.
REMEMBER = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'f', ARGV[1]) end
return 0
"""


@dataclass(frozen=True)
class PendingAuthorization:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]  # what the client is granted if the user agrees: known scopes it may have
    state: str
    nonce: str
    code_challenge: str
    prompt: str  # the prompt values, space-separated
    created_at: float
    response_mode: str = "query"
    max_age: int | None = None


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


def _pending(raw: str) -> PendingAuthorization:
    data: dict[str, Any] = json.loads(raw)
    known = {field.name for field in fields(PendingAuthorization)}
    data = {name: value for name, value in data.items() if name in known}
    data["scopes"] = tuple(data["scopes"])
    return PendingAuthorization(**data)


class AuthorizationStore:
    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._take = client.register_script(TAKE)
        self._remember = client.register_script(REMEMBER)

    def _pending_key(self, request_id: str) -> str:
        return f"{self.keys.prefix}authz:{digest(request_id)}"

    def _pushed_key(self, client_id: str, request_uri: str) -> str:
        # Filed under its client too: another client presenting the request_uri looks elsewhere and spends nothing.
        return f"{self.keys.prefix}par:{digest(client_id + chr(0) + request_uri)}"

    async def put_pending(self, request_id: str, pending: PendingAuthorization, ttl: int) -> None:
        async with translated_errors():
            await self.client.set(self._pending_key(request_id), json.dumps(asdict(pending)), ex=ttl)

    async def take_pending(self, request_id: str) -> PendingAuthorization | None:
        async with translated_errors():
            raw = await self.client.getdel(self._pending_key(request_id))
        return None if raw is None else _pending(str(raw))

    async def put_pushed(self, request_uri: str, client_id: str, params: dict[str, str], ttl: int) -> None:
        """The parameters of a pushed authorization request, under its request_uri (stored as a hash only)."""
        payload = json.dumps({"client_id": client_id, "params": params}, separators=(",", ":"))
        async with translated_errors():
            await self.client.set(self._pushed_key(client_id, request_uri), payload, ex=ttl)

    async def take_pushed(self, client_id: str, request_uri: str) -> tuple[str, dict[str, str]] | None:
        """(client id, parameters) of a request `client_id` pushed, once; None when unknown, expired, already
        used or pushed by another client."""
        async with translated_errors():
            raw = await self.client.getdel(self._pushed_key(client_id, request_uri))
        if raw is None:
            return None
        data = json.loads(raw)
        return str(data["client_id"]), {str(k): str(v) for k, v in data["params"].items()}

    async def put_code(self, user_id: str, code_hash: str, record: CodeRecord, ttl: int) -> None:
        key = self.keys.authorization_code(user_id, code_hash)
        listed = self.keys.short_lived(user_id)
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.set(key, json.dumps(asdict(record)), px=_ms(ttl))
            pipe.sadd(listed, key)
            pipe.expire(listed, 86400)
            await pipe.execute()

    async def take_code(self, user_id: str, code_hash: str, *, client_id: str,
                        redirect_uri: str) -> tuple[str, CodeRecord | str | None]:
        """For the client and redirect URI presented: ("fresh", record) the first time; ("replayed", family sid
        or "") after; ("mismatch", None) when the code is another client's or redirect URI's (nothing changes);
        ("unknown", None) otherwise."""
        keys = [self.keys.authorization_code(user_id, code_hash), self.keys.spent_code(user_id, code_hash),
                self.keys.short_lived(user_id)]
        async with translated_errors():
            result = await self._take(keys=keys, args=[SPENT_TTL * 1000, client_id, redirect_uri])
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
            await self._remember(keys=[self.keys.spent_code(user_id, code_hash)], args=[family_sid])
