"""TikTok's tokens at rest: the sealed blob, its version (compare-and-set), the refresh lease and expiry index.

Layout (all in the user's slot `{u:<uid>}` except the index):
  <tag>:tiktok        the sealed JSON of `ProviderTokens` (Vault, bound to this key name); TTL = refresh expiry
  <tag>:user          field `tiktok_version`: how many grants/refreshes/breaks were written, never reused. It
                      lives on the user record (no TTL) so it keeps counting across expiry and new logins; it is
                      clear text because the compare-and-set runs in Lua, which cannot open the blob.
                      Fields `tiktok_link` (linked | broken), `tiktok_link_reason`, `tiktok_link_broken_at`.
  <tag>:tiktok:lease  who may refresh right now: a random fence, SET NX PX, renewed by its holder while it works
  <prefix>tiktok:expiry  sorted set, user id by access-token expiry: a hint for the background refresher.
                      It is in another slot, so it is written after the user's atomic step and may lag.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from dataclasses import asdict, dataclass
from typing import Any, cast

from broker.domain import ProviderTokens
from broker.errors import StoreUnavailable
from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, translated_errors
from broker.store.vault import Vault

log = logging.getLogger("broker.store.tiktok_tokens")

VERSION_FIELD = "tiktok_version"  # also spelled out in the Lua below
LINK_FIELD = "tiktok_link"
REASON_FIELD = "tiktok_link_reason"
BROKEN_AT_FIELD = "tiktok_link_broken_at"

# Write the refreshed grant only if nobody wrote since we read (same version) and the grant still exists
# (a deleted blob means the link was ended: a late refresh must not bring it back). The fence does not gate
# the write: TikTok rotates refresh tokens, so a successful refresh holds the *only* live refresh token, and
# refusing it because our lease lapsed would lose the grant. It only lets us release our lease in the same step.
COMPARE_AND_SET = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = tonumber(redis.call('HGET', KEYS[2], 'tiktok_version') or '0')
if current ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
redis.call('HSET', KEYS[2], 'tiktok_version', current + 1)
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
return current + 1
"""

# End the link: drop the grant and flag the user, bumping the version so that an in-flight refresh of the
# dead grant cannot write afterwards. Conditional on the version the caller saw (a newer login wins), and
# never creates a user record that was deleted meanwhile.
BREAK_LINK = """
local current = tonumber(redis.call('HGET', KEYS[2], 'tiktok_version') or '0')
if ARGV[1] ~= '' and current ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 0 then return 1 end
redis.call('HSET', KEYS[2], 'tiktok_version', current + 1, 'tiktok_link', 'broken',
           'tiktok_link_reason', ARGV[2], 'tiktok_link_broken_at', ARGV[3])
return 1
"""

RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


@dataclass(frozen=True)
class VersionedTokens:
    """A stored grant and the version it was read at (the compare-and-set's expected value)."""

    version: int
    tokens: ProviderTokens


def tokens_to_json(tokens: ProviderTokens) -> bytes:
    data = asdict(tokens)
    data["scopes"] = sorted(tokens.scopes)
    return json.dumps(data, separators=(",", ":")).encode()


def tokens_from_json(raw: bytes) -> ProviderTokens:
    data = json.loads(raw)
    return ProviderTokens(
        subject=data["subject"], access_token=data["access_token"], refresh_token=data["refresh_token"],
        expires_at=float(data["expires_at"]), refresh_expires_at=float(data["refresh_expires_at"]),
        scopes=frozenset(data["scopes"]),
    )


def _ms(instant: float) -> int:
    return math.ceil(instant * 1000)


def _expiry_ms(tokens: ProviderTokens) -> int:
    # Kept until the refresh token dies. The access expiry is a floor: TikTok may answer refresh_expires_in=0,
    # and a PXAT in the past would make the grant vanish without the link being marked broken.
    return _ms(max(tokens.refresh_expires_at, tokens.expires_at))


class TikTokTokenStore:
    """Owns the TikTok token blob format and every write to it. Methods raise StoreUnavailable on outage."""

    def __init__(self, client: RedisClient, keys: KeySpace, vault: Vault) -> None:
        self.client = client
        self.keys = keys
        self.vault = vault
        self._cas = client.register_script(COMPARE_AND_SET)
        self._break = client.register_script(BREAK_LINK)
        self._release = client.register_script(RELEASE_LEASE)
        self._renew = client.register_script(RENEW_LEASE)

    def lease_key(self, user_id: str) -> str:
        return f"{self.keys.tiktok_tokens(user_id)}:lease"

    def index_key(self) -> str:
        return f"{self.keys.prefix}tiktok:expiry"

    def _seal(self, user_id: str, tokens: ProviderTokens) -> str:
        return self.vault.seal(tokens_to_json(tokens), bound_to=self.keys.tiktok_tokens(user_id))

    async def get(self, user_id: str) -> VersionedTokens | None:
        key = self.keys.tiktok_tokens(user_id)
        async with translated_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.hget(self.keys.user(user_id), VERSION_FIELD)
            blob, version = await pipe.execute()
        if blob is None:
            return None
        return VersionedTokens(int(version or 0), tokens_from_json(self.vault.open(str(blob), bound_to=key)))

    def queue_initial(self, pipe: Any, user_id: str, tokens: ProviderTokens, now: float) -> None:
        """Queue a new login's grant on the caller's MULTI (in this user's slot).

        A login replaces the grant whatever was stored: HINCRBY gives it the next version, so a refresh of
        the previous grant that is still in flight fails its compare-and-set instead of overwriting it.
        Call `track` after the transaction (the index is in another slot).
        """
        user_key = self.keys.user(user_id)
        pipe.set(self.keys.tiktok_tokens(user_id), self._seal(user_id, tokens),
                 pxat=max(_expiry_ms(tokens), _ms(now + 1)))
        pipe.hincrby(user_key, VERSION_FIELD, 1)
        pipe.hset(user_key, LINK_FIELD, "linked")
        pipe.hdel(user_key, REASON_FIELD, BROKEN_AT_FIELD)

    async def compare_and_set(self, user_id: str, expected_version: int, new_tokens: ProviderTokens,
                              fence: str = "") -> bool:
        """Store `new_tokens` as version expected+1 if the stored version is still `expected_version`.

        Releases the lease `fence` (when still held) in the same step. False: someone wrote first.
        """
        keys = [self.keys.tiktok_tokens(user_id), self.keys.user(user_id), self.lease_key(user_id)]
        args: list[str | int] = [expected_version, self._seal(user_id, new_tokens), _expiry_ms(new_tokens), fence]
        async with translated_errors():
            written = await self._cas(keys=keys, args=args)
        if not written:
            return False
        await self.track(user_id, new_tokens.expires_at)
        return True

    async def mark_link_broken(self, user_id: str, reason: str, now: float, *,
                               expected_version: int | None = None) -> bool:
        """Delete the grant and flag the user record; False if a newer grant than `expected_version` exists."""
        keys = [self.keys.tiktok_tokens(user_id), self.keys.user(user_id)]
        args: list[str | int] = ["" if expected_version is None else expected_version, reason, repr(now)]
        async with translated_errors():
            broken = await self._break(keys=keys, args=args)
        if broken:
            await self.untrack(user_id)
        return bool(broken)

    # The refresh lease: one refresher per user across replicas.

    async def acquire_lease(self, user_id: str, ttl_ms: int) -> str | None:
        fence = secrets.token_urlsafe(16)
        async with translated_errors():
            taken = await self.client.set(self.lease_key(user_id), fence, nx=True, px=ttl_ms)
        return fence if taken else None

    async def release_lease(self, user_id: str, fence: str) -> bool:
        """Delete the lease only if it is still ours (after a lapse another replica may hold it)."""
        async with translated_errors():
            return bool(await self._release(keys=[self.lease_key(user_id)], args=[fence]))

    async def renew_lease(self, user_id: str, fence: str, ttl_ms: int) -> bool:
        """Extend the lease if it is still ours; False once it lapsed (or was released) and may be another's."""
        async with translated_errors():
            return bool(await self._renew(keys=[self.lease_key(user_id)], args=[fence, ttl_ms]))

    async def lease_held(self, user_id: str) -> bool:
        async with translated_errors():
            return bool(await self.client.exists(self.lease_key(user_id)))

    # The expiry index for the background refresher.

    async def track(self, user_id: str, expires_at: float) -> None:
        """Best effort: a missed index write only means the background refresher skips the user; use still
        refreshes on demand. So an outage here is logged, not raised after the grant itself was stored."""
        try:
            async with translated_errors():
                await cast(Any, self.client).zadd(self.index_key(), {user_id: expires_at})
        except StoreUnavailable as exc:
            log.warning("tiktok expiry index not updated for user %s: %s", user_id, exc.log_detail)

    async def untrack(self, user_id: str) -> None:
        async with translated_errors():
            await cast(Any, self.client).zrem(self.index_key(), user_id)

    async def due(self, until: float, limit: int = 500) -> list[str]:
        """Users whose access token expires by `until` according to the index, soonest first."""
        async with translated_errors():
            found = await cast(Any, self.client).zrangebyscore(self.index_key(), "-inf", until, start=0, num=limit)
        return [str(user_id) for user_id in found]
