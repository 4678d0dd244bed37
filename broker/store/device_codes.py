"""Device authorizations in flight (RFC 8628): the record a device polls, and the user code a person types.

The record lives under the hash of its device_code, the user code under its own hash (naming the record); both
in slots of their own, each step a single command or script on one key. A record goes pending -> approved or
denied (the person's answer on /device) -> issued (the one poll that gets the tokens); it stays after its expiry
for a while, so that a late poll learns `expired_token` rather than nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, translated_errors

KEPT_AFTER_EXPIRY = 600  # seconds a record outlives its expiry, to answer expired_token (and used codes)

# KEYS[1] the record. ARGV: now, then the approval's fields and values ("status" among them). Returns "ok", or
# why not: "unknown", "decided" (answered already), "expired".
DECIDE = """
local state = redis.call('HMGET', KEYS[1], 'status', 'expires_at')
if not state[1] then return 'unknown' end
if state[1] ~= 'pending' then return 'decided' end
if tonumber(ARGV[1]) >= tonumber(state[2]) then return 'expired' end
local fields = {}
for i = 2, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', KEYS[1], unpack(fields))
return 'ok'
"""

# KEYS[1] the record. ARGV: the polling client's id, now, the slow_down step (s). Returns {state} or {"approved",
# the record's fields}: the approved record is marked issued in the same step, so one poll alone gets tokens.
POLL = """
local r = redis.call('HMGET', KEYS[1], 'client_id', 'status', 'expires_at', 'interval', 'last_poll')
if not r[1] or r[1] ~= ARGV[1] then return {'unknown'} end
local now = tonumber(ARGV[2])
if r[2] == 'issued' then return {'used'} end
if now >= tonumber(r[3]) then return {'expired'} end
if r[2] == 'denied' then return {'denied'} end
if r[2] == 'approved' then
  redis.call('HSET', KEYS[1], 'status', 'issued')
  return {'approved', redis.call('HGETALL', KEYS[1])}
end
local interval = tonumber(r[4])
redis.call('HSET', KEYS[1], 'last_poll', ARGV[2])
if now - tonumber(r[5]) < interval then
  redis.call('HSET', KEYS[1], 'interval', tostring(interval + tonumber(ARGV[3])))
  return {'slow_down'}
end
return {'pending'}
"""


@dataclass(frozen=True)
class DeviceRequest:
    """What a device asked for, and once a person allowed it, who they are."""

    client_id: str
    scopes: tuple[str, ...]
    expires_at: float
    device: str  # the account page's label for the device
    user_id: str = ""
    open_id: str = ""
    name: str = ""
    tiktok_scopes: tuple[str, ...] = ()  # what the user granted TikTok: the device gets those it asked for
    auth_time: float = 0.0


def _from_fields(data: dict[str, str]) -> DeviceRequest:
    return DeviceRequest(
        client_id=data["client_id"], scopes=tuple(data.get("scopes", "").split()),
        expires_at=float(data["expires_at"]), device=data.get("device", ""), user_id=data.get("user_id", ""),
        open_id=data.get("open_id", ""), name=data.get("name", ""),
        tiktok_scopes=tuple(s for s in data.get("tiktok_scopes", "").split(",") if s),
        auth_time=float(data.get("auth_time", 0)))


class DeviceCodes:
    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._decide = client.register_script(DECIDE)
        self._poll = client.register_script(POLL)

    async def create(self, device_hash: str, user_code_hash: str, request: DeviceRequest, *,
                     interval: int) -> bool:
        """Store a new authorization; False (nothing stored) when the user code is already in use."""
        lifetime_ms = math.ceil(request.expires_at * 1000)
        record = {"client_id": request.client_id, "scopes": " ".join(request.scopes),
                  "expires_at": repr(request.expires_at), "device": request.device, "status": "pending",
                  "interval": str(interval), "last_poll": "0"}
        async with translated_errors():
            if not await self.client.set(self.keys.user_code(user_code_hash), device_hash, nx=True,
                                         pxat=lifetime_ms):
                return False
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.keys.device_code(device_hash), mapping=cast(Any, record))
                pipe.pexpireat(self.keys.device_code(device_hash), lifetime_ms + KEPT_AFTER_EXPIRY * 1000)
                await pipe.execute()
        return True

    async def pending(self, user_code_hash: str, now: float) -> tuple[str, DeviceRequest] | None:
        """(device code hash, request) of a user code still waiting for its answer; None for anything else."""
        async with translated_errors():
            device_hash = await self.client.get(self.keys.user_code(user_code_hash))
            if device_hash is None:
                return None
            data = cast(dict[str, str], await cast(Any, self.client).hgetall(self.keys.device_code(str(device_hash))))
        if not data or data.get("status") != "pending" or now >= float(data["expires_at"]):
            return None
        return str(device_hash), _from_fields(data)

    async def decide(self, device_hash: str, user_code_hash: str, now: float,
                     approval: DeviceRequest | None) -> str:
        """Record the person's answer (`approval` None: denied) once; "ok" or why not. The user code is spent
        either way."""
        fields: dict[str, str] = {"status": "denied"}
        if approval is not None:
            fields = {"status": "approved", "user_id": approval.user_id, "open_id": approval.open_id,
                      "name": approval.name, "tiktok_scopes": ",".join(approval.tiktok_scopes),
                      "auth_time": repr(approval.auth_time), "scopes": " ".join(approval.scopes)}
        args: list[Any] = [repr(now), *(item for pair in fields.items() for item in pair)]
        async with translated_errors():
            outcome = str(await self._decide(keys=[self.keys.device_code(device_hash)], args=args))
            await self.client.delete(self.keys.user_code(user_code_hash))
        return outcome

    async def poll(self, device_hash: str, client_id: str, now: float,
                   slow_down_step: int) -> tuple[str, DeviceRequest | None]:
        """("approved", the request with its approval) once; else ("pending" | "slow_down" | "denied" |
        "expired" | "used" | "unknown", None). Another client's device code is "unknown"."""
        async with translated_errors():
            result = await self._poll(keys=[self.keys.device_code(device_hash)],
                                      args=[client_id, repr(now), slow_down_step])
        state = str(result[0])
        if state != "approved":
            return state, None
        pairs = [str(item) for item in result[1]]
        return state, _from_fields(dict(zip(pairs[::2], pairs[1::2], strict=True)))
