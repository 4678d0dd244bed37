"""Typed records in Redis: login attempts, users, sealed TikTok tokens and sessions, with their atomic steps."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict
from typing import Any, cast

from broker.domain import Identity, LoginAttempt, ProviderTokens, Session
from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, WatchError, translated_errors
from broker.store.tiktok_tokens import TikTokTokenStore
from broker.store.vault import Vault

# Read a session and slide its idle expiry in the same round trip. The write happens at most once per
# `touch_interval` seconds so that the hot path (/auth/verify) is a read almost every time.
# KEYS[1] the session, KEYS[2] its user (for the avatar, which sessions do not copy), KEYS[3] when given the
# denylist entry of the JWT this process has cached for the session.
TOUCH_SESSION = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return nil end
local now = tonumber(ARGV[1])
local idle = tonumber(ARGV[2])
local interval = tonumber(ARGV[3])
local s = {}
for i = 1, #fields, 2 do s[fields[i]] = fields[i + 1] end
local expires_at = tonumber(s['expires_at'])
local idle_expires_at = tonumber(s['idle_expires_at'])
if now >= expires_at or now >= idle_expires_at then
  redis.call('DEL', KEYS[1])
  return nil
end
if now - tonumber(s['last_seen']) >= interval then
  local new_idle = math.min(now + idle, expires_at)
  redis.call('HSET', KEYS[1], 'last_seen', ARGV[1], 'idle_expires_at', tostring(new_idle))
  redis.call('PEXPIREAT', KEYS[1], math.floor(new_idle * 1000))
  for i = 1, #fields, 2 do
    if fields[i] == 'last_seen' then fields[i + 1] = ARGV[1] end
    if fields[i] == 'idle_expires_at' then fields[i + 1] = tostring(new_idle) end
  end
end
local cached_jti_denied = 0
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 1 then cached_jti_denied = 1 end
return {fields, cached_jti_denied, redis.call('HGET', KEYS[2], 'avatar_url') or ''}
"""

# Redis keeps a small hash as one compact listpack only while every value fits in hash-max-listpack-value
# (64 bytes by default); one longer value makes the whole record a hash table, about 2.5 times the size.
# So a session record holds no avatar URL (the user record has it), a short device label rather than the
# User-Agent (flows/devices.py), and leaves out empty fields.
COMPACT_VALUE = 64


def session_to_hash(session: Session) -> dict[str, str]:
    data = asdict(session)
    del data["picture"]
    data["scopes"] = ",".join(session.scopes)
    data["client_scopes"] = ",".join(session.client_scopes)
    if session.kind == "browser":
        del data["kind"]
    if not session.auth_time:
        del data["auth_time"]
    return {key: str(value) for key, value in data.items() if value != ""}


def session_from_pairs(pairs: list[str], *, picture: str = "") -> Session:
    data = dict(zip(pairs[::2], pairs[1::2], strict=True))
    return Session(
        sid=data["sid"], user_id=data["user_id"], created_at=float(data["created_at"]),
        last_seen=float(data["last_seen"]), expires_at=float(data["expires_at"]),
        idle_expires_at=float(data["idle_expires_at"]),
        scopes=tuple(s for s in data.get("scopes", "").split(",") if s),
        open_id=data.get("open_id", ""), name=data.get("name", ""), picture=picture,
        kind=data.get("kind", "browser"), client_id=data.get("client_id", ""),
        parent_sid=data.get("parent_sid", ""), user_agent=data.get("user_agent", ""), ip=data.get("ip", ""),
        client_scopes=tuple(s for s in data.get("client_scopes", "").split(",") if s),
        auth_time=float(data.get("auth_time", 0)), jkt=data.get("jkt", ""),
    )


# KEYS[1] an open_id index; ARGV[1] the deleted user id it may still name; ARGV[2] the new id. Returns the id the
# index names afterwards.
REPLACE_INDEX = """
local current = redis.call('GET', KEYS[1])
if not current or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return ARGV[2]
end
return current
"""


class AccountDeleted(Exception):
    """The account a login was saving into was deleted meanwhile."""


def _tiktok_tokens(records: Records) -> TikTokTokenStore:
    # The TikTok token blob (format, version, index) is owned by TikTokTokenStore; this is a cheap view on it.
    return TikTokTokenStore(records.client, records.keys, records.vault)


def _ms(instant: float) -> int:
    return math.ceil(instant * 1000)


class Records:
    """The broker's data in Redis. Methods raise StoreUnavailable when Redis cannot be reached."""

    def __init__(self, client: RedisClient, keys: KeySpace, vault: Vault) -> None:
        self.client = client
        self.keys = keys
        self.vault = vault
        self._touch = client.register_script(TOUCH_SESSION)
        self._replace_index = client.register_script(REPLACE_INDEX)

    async def ping(self) -> None:
        async with translated_errors():
            await cast(Any, self.client).ping()

    # Login attempts: written at /login, taken exactly once at /callback.

    async def put_login_attempt(self, state_hash: str, attempt: LoginAttempt, ttl: int) -> None:
        payload = json.dumps(asdict(attempt), separators=(",", ":"))
        async with translated_errors():
            await self.client.set(self.keys.login_attempt(state_hash), payload, ex=ttl)

    async def take_login_attempt(self, state_hash: str) -> LoginAttempt | None:
        async with translated_errors():
            raw = await self.client.getdel(self.keys.login_attempt(state_hash))
        if raw is None:
            return None
        data = json.loads(raw)
        data["scopes"] = tuple(data["scopes"])
        return LoginAttempt(**data)

    # Users: found by open_id through one index key, everything else inside the user's slot.

    async def claim_user_id(self, open_id: str, candidate: str) -> str:
        """The user id for this open_id: the existing one, or `candidate` if this login is the first."""
        index = self.keys.open_id_index(open_id)
        # SETNX then GET in one transaction: one round trip, and racing first logins agree on one id.
        # (SET NX GET would do it in one command, but needs Redis 7.)
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.setnx(index, candidate)
            pipe.get(index)
            _, winner = await pipe.execute()
        return str(winner)

    async def replace_user_id(self, open_id: str, deleted: str, candidate: str) -> str:
        """Point the open_id at `candidate` unless it already points at a live account other than `deleted`."""
        async with translated_errors():
            return str(await self._replace_index(keys=[self.keys.open_id_index(open_id)], args=[deleted, candidate]))

    async def save_login(self, user_id: str, identity: Identity, tokens: ProviderTokens,
                         session: Session, now: float) -> None:
        """Profile, sealed TikTok tokens and the new session, all in one transaction in the user's slot.

        AccountDeleted if the account was deleted after the login found its id: what this transaction wrote
        is removed again, and the login should go on as a new account (see replace_user_id)."""
        user_key = self.keys.user(user_id)
        tiktok = _tiktok_tokens(self)
        session_key = self.keys.session(user_id, session.sid)
        index_key = self.keys.user_sessions(user_id)
        profile = {
            "open_id": identity.subject, "display_name": identity.display_name,
            "avatar_url": identity.avatar_url, "union_id": identity.union_id or "",
            "username": identity.username or "", "scopes": ",".join(sorted(tokens.scopes)),
            "updated_at": str(now),
        }
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(user_key, "created_at", str(now))
            pipe.hset(user_key, mapping=cast(Any, profile))
            tiktok.queue_initial(pipe, user_id, tokens, now)
            pipe.hset(session_key, mapping=cast(Any, session_to_hash(session)))
            pipe.pexpireat(session_key, _ms(min(session.expires_at, session.idle_expires_at)))
            pipe.zadd(index_key, {session.sid: session.expires_at})
            pipe.zremrangebyscore(index_key, "-inf", now)
            # Every session lives at most the same absolute TTL, so the newest one ends last.
            pipe.pexpireat(index_key, _ms(session.expires_at))
            # Read in the same transaction, so a deletion either came before these writes (and they are undone
            # below) or after them (and deleted them with the rest).
            pipe.exists(self.keys.deleted_marker(user_id))
            *_, deleted = await pipe.execute()
        if deleted:
            async with translated_errors():
                await self.client.delete(user_key, self.keys.tiktok_tokens(user_id), session_key, index_key)
            raise AccountDeleted(user_id)
        await tiktok.track(user_id, tokens.expires_at)

    async def save_session(self, session: Session, now: float) -> None:
        """A session opened without a login at TikTok (a device a signed-in person allowed on /device), listed
        among the user's sessions. AccountDeleted (and nothing left behind) when the account is gone."""
        user_id = session.user_id
        session_key, index_key = self.keys.session(user_id, session.sid), self.keys.user_sessions(user_id)
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.hset(session_key, mapping=cast(Any, session_to_hash(session)))
            pipe.pexpireat(session_key, _ms(min(session.expires_at, session.idle_expires_at)))
            pipe.zadd(index_key, {session.sid: session.expires_at})
            pipe.zremrangebyscore(index_key, "-inf", now)
            pipe.pexpireat(index_key, _ms(session.expires_at))  # as in save_login: the newest session ends last
            pipe.exists(self.keys.deleted_marker(user_id))
            pipe.exists(self.keys.user(user_id))
            *_, deleted, profile = await pipe.execute()
        if deleted or not profile:
            async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
                pipe.delete(session_key)
                pipe.zrem(index_key, session.sid)
                await pipe.execute()
            raise AccountDeleted(user_id)

    async def get_user(self, user_id: str) -> dict[str, str]:
        async with translated_errors():
            return cast(dict[str, str], await cast(Any, self.client).hgetall(self.keys.user(user_id)))

    async def get_tiktok_tokens(self, user_id: str) -> ProviderTokens | None:
        stored = await _tiktok_tokens(self).get(user_id)
        return None if stored is None else stored.tokens

    # Sessions.

    async def touch_session(self, user_id: str, sid: str, now: float, idle_ttl: int, touch_interval: int,
                            cached_jti: str | None = None) -> tuple[Session | None, bool]:
        """The live session (idle expiry slid), and whether the JWT cached for it has been revoked."""
        keys = [self.keys.session(user_id, sid), self.keys.user(user_id)]
        if cached_jti:
            keys.append(self.keys.denied_jti(user_id, cached_jti))
        async with translated_errors():
            result = await self._touch(keys=keys, args=[repr(now), idle_ttl, touch_interval])
        if not result:
            return None, False
        pairs, cached_jti_denied, picture = result
        return session_from_pairs(pairs, picture=str(picture)), bool(cached_jti_denied)

    async def delete_session(self, user_id: str, sid: str) -> bool:
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.session(user_id, sid))
            pipe.zrem(self.keys.user_sessions(user_id), sid)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    # Maintenance.

    async def reseal_all(self) -> int:
        """Re-encrypt every sealed blob not under the vault's first key; returns how many changed."""
        changed = 0
        pattern = f"{self.keys.prefix}{{u:*}}:tiktok"
        async with translated_errors(deadline=None):  # a walk of the whole keyspace: no deadline
            async for key in self.client.scan_iter(match=pattern, count=500):
                blob = await self.client.get(key)
                if blob is None or not self.vault.needs_reseal(str(blob)):
                    continue
                fresh = self.vault.seal(self.vault.open(str(blob), bound_to=str(key)), bound_to=str(key))
                # Compare-and-set: a login that rewrote the blob meanwhile wins, its blob is already fresh.
                async with self.client.pipeline(transaction=True) as pipe:
                    await pipe.watch(key)
                    if await pipe.get(key) != blob:
                        continue
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, fresh, keepttl=True)
                    with contextlib.suppress(WatchError):  # rewritten concurrently: leave it
                        await pipe.execute()
                        changed += 1
        return changed
