"""Whole-user steps in Redis: ending sessions (one with its families, or all) and deleting every key of a user.

Both run as one Lua script in the user's slot, so no reader ever sees half an account. The scripts derive the
names of per-session keys from the user's tag, which keeps every key they touch inside that one slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

from broker.store.families import END_RECORD
from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, translated_errors

# KEYS[1] the user's session index; ARGV[1] the user's key tag; ARGV[2] "all" or a sid to end with the
# refresh families started from it. Returns the ended sids.
END_SESSIONS = END_RECORD + """
local tag = ARGV[1]
local ended = {}
local function finish(sid)
  if end_record(tag, sid) == 1 then table.insert(ended, sid) end
end
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if ARGV[2] == 'all' or sid == ARGV[2]
     or redis.call('HGET', tag .. ':s:' .. sid, 'parent_sid') == ARGV[2] then
    finish(sid)
  end
end
if ARGV[2] ~= 'all' then finish(ARGV[2]) end
return ended
"""

# Every key of one user, in one step, leaving only a short-lived marker that the account was deleted.
# Returns {sessions, refresh families, tiktok grant (0|1), profile (0|1)}.
DELETE_USER = END_RECORD + """
local tag = ARGV[1]
local browser, families = 0, 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local kind = redis.call('HGET', tag .. ':s:' .. sid, 'kind')
  if end_record(tag, sid) == 1 then
    if kind == 'refresh' then families = families + 1 else browser = browser + 1 end
  end
end
for _, key in ipairs(redis.call('SMEMBERS', tag .. ':aux')) do redis.call('DEL', key) end
redis.call('DEL', tag .. ':consents')
local tokens = redis.call('DEL', tag .. ':tiktok')
local profile = redis.call('DEL', tag .. ':user')
redis.call('DEL', KEYS[1], tag .. ':aux', tag .. ':tiktok:lease', tag .. ':posts')
redis.call('SET', tag .. ':deleted', '1', 'PX', tonumber(ARGV[2]))
return {browser, families, tokens, profile}
"""

# How long a deleted account's marker stays: far longer than a login takes between finding the user id and
# writing its session, short enough to be no lasting trace of the account.
DELETED_MARKER_TTL = 120

DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Deleted:
    sessions: int
    refresh_families: int
    tiktok_tokens: bool
    profile: bool


class Accounts:
    def __init__(self, client: RedisClient, keys: KeySpace) -> None:
        self.client = client
        self.keys = keys
        self._end = client.register_script(END_SESSIONS)
        self._delete = client.register_script(DELETE_USER)
        self._delete_if_equal = client.register_script(DELETE_IF_EQUAL)

    async def user_id_for(self, open_id: str) -> str | None:
        async with translated_errors():
            found = await self.client.get(self.keys.open_id_index(open_id))
        return str(found) if found else None

    async def live_session_ids(self, user_id: str, now: float) -> list[str]:
        async with translated_errors():
            found = await cast(Any, self.client).zrangebyscore(self.keys.user_sessions(user_id), now, "+inf")
        return [str(sid) for sid in found]

    async def end_sessions(self, user_id: str, sid: str | None = None) -> list[str]:
        """End one session with the refresh families started from it, or (sid None) every session."""
        async with translated_errors():
            ended = await self._end(keys=[self.keys.user_sessions(user_id)],
                                    args=[self.keys.user_tag(user_id), sid or "all"])
        return [str(s) for s in ended]

    async def delete_user(self, user_id: str, open_id: str, *, deny_for: int, now: float,
                          expiry_index: str) -> Deleted:
        """Delete every key of the user atomically, then the keys outside its slot, then denylist the sub."""
        async with translated_errors():
            counts = await self._delete(keys=[self.keys.user_sessions(user_id)],
                                        args=[self.keys.user_tag(user_id), DELETED_MARKER_TTL * 1000])
            # Outside the user's slot: the open_id index (only if it still points at this user: a new login after
            # deletion is a new account and must keep its own index), the refresher's index, and the denylist
            # entry that makes every token issued before refuse at once, named by a hash of the id only.
            await self._delete_if_equal(keys=[self.keys.open_id_index(open_id)], args=[user_id])
            await cast(Any, self.client).zrem(expiry_index, user_id)
            await self.client.set(self.keys.denied_subject(user_id), "1", pxat=math.ceil((now + deny_for) * 1000))
        browser, families, tokens, profile = (int(n) for n in counts)
        return Deleted(browser, families, bool(tokens), bool(profile))
