"""Whole-user steps in Redis: ending sessions (one with its families, or all) and deleting every key of a user.

A user may have many sessions and families, and a Lua script blocks every other client of Redis while it runs,
so both steps walk the user's session index in chunks of CHUNK entries, one short script per chunk (each ends
whole sessions: a reader sees a session either live or gone, never half ended). A deletion then removes the
profile and the TikTok grant in the same script as the last chunk, so no reader ever sees the account without
its profile while a session of it lives. The scripts derive the names of per-session keys from the user's tag,
which keeps every key they touch inside that one slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

from broker.store.families import END_RECORD
from broker.store.keys import KeySpace
from broker.store.redis import RedisClient, translated_errors

CHUNK = 100  # index entries per script call: about a millisecond of Redis time at most (`make bench`, logout_stall)

# One chunk of ending sessions. KEYS[1] the user's session index; ARGV[1] the user's key tag; ARGV[2] "all" or a
# sid to end with the refresh families started from it; ARGV[3] the rank to start at; ARGV[4] the chunk size.
# Entries whose record is gone (expired) are dropped on the way. Returns {entries kept, entries left in the
# index, then the sids ended}: the next chunk starts at start + kept, and the walk is done when that reaches the
# number left.
END_SESSIONS = END_RECORD + """
local tag, which, start, chunk = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local kept, answer = 0, {}
local function finish(sid)
  if end_record(tag, sid) == 1 then table.insert(answer, sid) end
end
if start == 0 and which ~= 'all' then finish(which) end
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], start, start + chunk - 1)) do
  local parent = redis.call('HGET', tag .. ':s:' .. sid, 'parent_sid')
  local exists = parent or redis.call('EXISTS', tag .. ':s:' .. sid) == 1
  if which == 'all' or sid == which or parent == which or not exists then
    finish(sid)
  else
    kept = kept + 1
  end
end
table.insert(answer, 1, redis.call('ZCARD', KEYS[1]))
table.insert(answer, 1, kept)
return answer
"""

# One chunk of a deletion: the marker that the account is being deleted (a login racing it becomes a new
# account), up to a chunk of sessions and of short-lived keys; once none is left, in the same script, the rest.
# KEYS[1] the user's session index; ARGV[1] the user's key tag, ARGV[2] the marker's lifetime (ms), ARGV[3] the
# chunk size. Returns {sessions, refresh families ended in this chunk, tiktok grant (0|1), profile (0|1)}, the
# last two -1 while there is more to do.
DELETE_USER = END_RECORD + """
local tag, chunk = ARGV[1], tonumber(ARGV[3])
redis.call('SET', tag .. ':deleted', '1', 'PX', tonumber(ARGV[2]))
local browser, families = 0, 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, chunk - 1)) do
  local kind = redis.call('HGET', tag .. ':s:' .. sid, 'kind')
  if end_record(tag, sid) == 1 then
    if kind == 'refresh' then families = families + 1 else browser = browser + 1 end
  end
end
for _, key in ipairs(redis.call('SPOP', tag .. ':aux', chunk)) do redis.call('DEL', key) end
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', tag .. ':aux') == 1 then
  return {browser, families, -1, -1}
end
local tokens = redis.call('DEL', tag .. ':tiktok')
local profile = redis.call('DEL', tag .. ':user')
redis.call('DEL', tag .. ':tiktok:lease', tag .. ':fams', tag .. ':consents', tag .. ':posts')
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
        ended: list[str] = []
        start, index, tag = 0, self.keys.user_sessions(user_id), self.keys.user_tag(user_id)
        while True:
            async with translated_errors():
                kept, left, *found = await self._end(keys=[index], args=[tag, sid or "all", start, CHUNK])
            ended += [str(s) for s in found]
            start += int(kept)
            if start >= int(left):
                return ended

    async def delete_user(self, user_id: str, open_id: str, *, deny_for: int, now: float,
                          expiry_index: str) -> Deleted:
        """Delete every key of the user (chunk by chunk, the profile with the last), then the keys outside its
        slot, then denylist the sub."""
        browser = families = 0
        while True:
            async with translated_errors():
                counts = await self._delete(keys=[self.keys.user_sessions(user_id)],
                                            args=[self.keys.user_tag(user_id), DELETED_MARKER_TTL * 1000, CHUNK])
            ended_browser, ended_families, tokens, profile = (int(n) for n in counts)
            browser, families = browser + ended_browser, families + ended_families
            if tokens >= 0:
                break
        async with translated_errors():
            # Outside the user's slot: the open_id index (only if it still points at this user: a new login after
            # deletion is a new account and must keep its own index), the refresher's index, and the denylist
            # entry that makes every token issued before refuse at once, named by a hash of the id only.
            await self._delete_if_equal(keys=[self.keys.open_id_index(open_id)], args=[user_id])
            await cast(Any, self.client).zrem(expiry_index, user_id)
            await self.client.set(self.keys.denied_subject(user_id), "1", pxat=math.ceil((now + deny_for) * 1000))
        return Deleted(browser, families, bool(tokens), bool(profile))
