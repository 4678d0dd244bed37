"""Refresh-token families and denylists in Redis: rotation with a grace window, reuse detection, revocation.

A family is a session record of kind "refresh" whose field `rt` holds the SHA-256 of the current refresh token.
Rotation, replay inside the grace window and reuse after it are decided in one Lua script, which also loads the
family (one round trip per refresh), so fifty parallel refreshes of one token see one consistent order. The grace
copy a rotation leaves is sealed: the successor refresh token and the id of the access token handed out with it,
from which a replay inside the window gets the very same pair again (see TokenFlow).
Spent token hashes are kept (the last 128) only to tell a leaked old token (revoke the family) from a made-up one
that merely names the family (ignore it).

A user's families are also listed by age (`KeySpace.user_families`), so that their number stays bounded: a new
family first ends the oldest ones over the caps (per browser session, per user), and drops the index entries
of families that have expired meanwhile. That list never holds more than the per-user cap, so every script that
walks it does a bounded amount of work.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, cast

from broker.domain import Session, TokenPair
from broker.store.keys import KeySpace
from broker.store.records import session_from_pairs, session_to_hash
from broker.store.redis import RedisClient, translated_errors
from broker.store.rotation_lua import ROTATE_BODY
from broker.store.vault import Vault, VaultError

USED_KEPT = 128

# A Lua function for every script that ends a session or family record: the record, the hashes of its spent
# refresh tokens, the sealed pair of its last rotation (named after the token that rotation replaced) and its
# entries in the user's session and family indexes, all under the user's key tag (one slot). Returns 1 if the
# record existed.
END_RECORD = """
local function end_record(tag, sid)
  local key = tag .. ':s:' .. sid
  local spent = redis.call('HGET', key, 'rt_prev')
  if spent and spent ~= '' then redis.call('DEL', tag .. ':rtg:' .. spent) end
  redis.call('DEL', tag .. ':rtu:' .. sid)
  redis.call('ZREM', tag .. ':sessions', sid)
  redis.call('ZREM', tag .. ':fams', sid)
  return redis.call('DEL', key)
end
"""

# Extend (never shorten) a key's expiry to ARGV-given milliseconds: an index lives as long as its longest entry.
EXTEND_EXPIRY = """
local function extend_expiry(key, now_ms, at_ms)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 or now_ms + ttl < at_ms then redis.call('PEXPIREAT', key, at_ms) end
end
"""

# A new family, after ending the oldest families over the caps. KEYS: the family's record, the user's session
# index, the user's family index. ARGV: tag, sid, parent sid, now (ms), record expiry (ms), absolute expiry (s),
# per-session cap, per-user cap, then the record's fields and values. Returns the sids of the families ended.
CREATE = END_RECORD + EXTEND_EXPIRY + """
local tag, sid, parent, now_ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local per_session, per_user = tonumber(ARGV[7]), tonumber(ARGV[8])
local live, of_parent, ended = {}, {}, {}
for _, family in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local its_parent = redis.call('HGET', tag .. ':s:' .. family, 'parent_sid')
  if its_parent then
    table.insert(live, family)
    if its_parent == parent then table.insert(of_parent, family) end
  else
    end_record(tag, family)  -- expired: only its index entries and spent hashes were left
  end
end
local gone = {}
local function evict(family)
  gone[family] = true
  end_record(tag, family)
  table.insert(ended, family)
end
for i = 1, #of_parent - per_session + 1 do evict(of_parent[i]) end
local count = #live - #ended
for _, family in ipairs(live) do
  if count < per_user then break end
  if not gone[family] then evict(family); count = count - 1 end
end
local fields = {}
for i = 9, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[5]))
local absolute_ms = math.ceil(tonumber(ARGV[6]) * 1000)
redis.call('ZADD', KEYS[2], ARGV[6], sid)
-- Scored by creation, and strictly after the newest: two families of one millisecond keep their order.
local newest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')[2]
redis.call('ZADD', KEYS[3], math.max(now_ms, (tonumber(newest) or 0) + 1), sid)
extend_expiry(KEYS[2], now_ms, absolute_ms)
extend_expiry(KEYS[3], now_ms, absolute_ms)
return ended
"""

# Load, check and rotate in one round trip (rotation_lua.py).
ROTATE = END_RECORD + ROTATE_BODY

# KEYS: the record, its spent hashes, the user's session index (declared for Cluster routing); ARGV: tag, sid.
END = END_RECORD + "return end_record(ARGV[1], ARGV[2])\n"


def _ms(instant: float) -> int:
    return math.ceil(instant * 1000)


@dataclass(frozen=True)
class Rotation:
    """What a refresh did: "rotated" or "replayed" (with the family as it stands, the refresh token handed out,
    the id and instant of the access token minted with it), or "reused", "wrong_client", "unknown"."""

    outcome: str
    family: Session | None = None
    refresh_token: str = ""
    jti: str = ""
    rotated_at: float = 0.0
    legacy_pair: TokenPair | None = None


@dataclass(frozen=True)
class FamilyCaps:
    """How many live refresh families one browser session, and one user in all, may have."""

    per_session: int = 32
    per_user: int = 128


class Families:
    def __init__(self, client: RedisClient, keys: KeySpace, vault: Vault, caps: FamilyCaps | None = None) -> None:
        self.client = client
        self.keys = keys
        self.vault = vault
        self.caps = caps or FamilyCaps()
        self._create = client.register_script(CREATE)
        self._rotate = client.register_script(ROTATE)
        self._end = client.register_script(END)

    async def create(self, session: Session, token_hash: str, *, now: float) -> list[str]:
        """A new family: its session record with the first token's hash, listed among the user's sessions and
        families. Families over the caps are ended first, oldest first: their sids are returned."""
        user_id = session.user_id
        record = {**session_to_hash(session), "rt": token_hash, "rt_prev": "", "rt_rotated_at": "0"}
        keys = [self.keys.session(user_id, session.sid), self.keys.user_sessions(user_id),
                self.keys.user_families(user_id)]
        args: list[Any] = [self.keys.user_tag(user_id), session.sid, session.parent_sid, _ms(now),
                           _ms(min(session.expires_at, session.idle_expires_at)), repr(session.expires_at),
                           self.caps.per_session, self.caps.per_user]
        args += [item for pair in record.items() for item in pair]
        async with translated_errors():
            ended = await self._create(keys=keys, args=args)
        return [str(sid) for sid in ended]

    async def load(self, user_id: str, sid: str) -> tuple[Session, dict[str, str]] | None:
        """The session or family and its raw fields (the refresh-token hashes among them)."""
        async with translated_errors(), self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.session(user_id, sid))
            pipe.hget(self.keys.user(user_id), "avatar_url")  # records hold no avatar URL (see records.py)
            raw, picture = await pipe.execute()
        if not raw:
            return None
        pairs = [item for pair in cast(dict[str, str], raw).items() for item in pair]
        return session_from_pairs(pairs, picture=str(picture or "")), cast(dict[str, str], raw)

    async def rotate(self, user_id: str, sid: str, presented_hash: str, successor: str, successor_hash: str, *,
                     jti: str, client_id: str, jkt: str = "", now: float, grace: int, idle_ttl: int) -> Rotation:
        """Load, check and rotate a family in one round trip; the grace copy seals `successor` and `jti`. A
        family bound to a DPoP key (`jkt` field) rotates only for a request that proved that key."""
        grace_key = self.keys.refresh_grace(user_id, presented_hash)
        copy = json.dumps({"refresh_token": successor, "jti": jti}).encode()
        sealed = self.vault.seal(copy, bound_to=grace_key) if grace else ""
        keys = [self.keys.session(user_id, sid), self.keys.refresh_used(user_id, sid), grace_key,
                self.keys.user_sessions(user_id), self.keys.user(user_id)]
        async with translated_errors():
            result = await self._rotate(keys=keys, args=[repr(now), presented_hash, successor_hash, sealed, grace,
                                                          idle_ttl, USED_KEPT, self.keys.user_tag(user_id), client_id,
                                                          jkt])
        outcome = str(result[0])
        if outcome not in ("rotated", "replayed"):
            return Rotation(outcome)
        family = session_from_pairs([str(item) for item in result[3:]], picture=str(result[1]))
        if outcome == "rotated":
            return Rotation(outcome, family, successor, jti, now)
        try:
            data = json.loads(self.vault.open(str(result[2]), bound_to=grace_key))
        except (VaultError, ValueError):
            return Rotation("unknown")
        if "access_token" in data:  # a copy written before copies held only the token and the jti: the pair
            return Rotation(outcome, family, legacy_pair=TokenPair(**data))
        rotated_at = float(dict(zip(result[3::2], result[4::2], strict=True))["rt_rotated_at"])
        return Rotation(outcome, family, str(data["refresh_token"]), str(data["jti"]), rotated_at)

    async def was_issued(self, user_id: str, sid: str, token_hash: str) -> bool:
        """Whether this hash is the family's current or a spent token (revocation needs proof of possession)."""
        key = self.keys.session(user_id, sid)
        async with translated_errors(), self.client.pipeline(transaction=False) as pipe:
            pipe.hget(key, "rt")
            pipe.lrange(self.keys.refresh_used(user_id, sid), 0, -1)
            current, spent = await pipe.execute()
        return token_hash == current or token_hash in (spent or [])

    async def end(self, user_id: str, sid: str) -> bool:
        """Delete a session or family with everything that hangs off it."""
        keys = [self.keys.session(user_id, sid), self.keys.refresh_used(user_id, sid), self.keys.user_sessions(user_id)]
        async with translated_errors():
            return bool(await self._end(keys=keys, args=[self.keys.user_tag(user_id), sid]))

    async def deny_jti(self, user_id: str, jti: str, until: float) -> None:
        """Denylist one access token until it expires; listed on the user so that deletion finds it."""
        listed = self.keys.short_lived(user_id)
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.denied_jti(user_id, jti), "1", pxat=_ms(until))
            pipe.sadd(listed, self.keys.denied_jti(user_id, jti))
            pipe.pexpireat(listed, _ms(until + 86400))
            await pipe.execute()

    def access_state_keys(self, user_id: str, sid: str, jti: str) -> tuple[str, str, str]:
        """What access_state reads: the session or family, the token's denylist entry, the subject's."""
        return self.keys.session(user_id, sid), self.keys.denied_jti(user_id, jti), self.keys.denied_subject(user_id)

    async def access_state(self, user_id: str, sid: str, jti: str, *, needs_session: bool = True) -> str:
        """"ok", "no_session", "jti_denied" or "sub_denied": every denylist, in one round trip. Without
        `needs_session` (a token that stands for no session) only the denylists count."""
        session_key, jti_key, subject_key = self.access_state_keys(user_id, sid, jti)
        async with translated_errors(), self.client.pipeline(transaction=False) as pipe:
            pipe.exists(session_key)
            pipe.exists(jti_key)
            pipe.exists(subject_key)
            session_exists, jti_denied, sub_denied = await pipe.execute()
        if sub_denied:
            return "sub_denied"
        if jti_denied:
            return "jti_denied"
        return "ok" if session_exists or not needs_session else "no_session"
