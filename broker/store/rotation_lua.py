"""The Lua of a refresh-token rotation: one script loads the family, checks it and rotates it (one round trip).

KEYS: the family, its spent hashes, the grace copy named after the presented token, the user's session index
(declared for Cluster routing), the user's record (its avatar URL goes into the access token).
ARGV: now, the presented token's hash, the successor's hash, the sealed grace copy, the grace window (s), the idle
lifetime (s), how many spent hashes to keep, the user's key tag, the client the family must belong to ("" for
the broker's own pages), the DPoP key (RFC 7638 thumbprint) the request proved ("" for none).
Returns {outcome, the user's avatar URL, the grace copy (replayed only), then the family's fields and values as
they stand after the call}; the outcome is rotated, replayed, reused, wrong_client, wrong_key or unknown (the
last four without the fields). Needs END_RECORD (families.py) in front of it.
"""

ROTATE_BODY = """
local fields = redis.call('HGETALL', KEYS[1])
if #fields == 0 then return {'unknown'} end
local s = {}
for i = 1, #fields, 2 do s[fields[i]] = fields[i + 1] end
local now = tonumber(ARGV[1])
local presented = ARGV[2]
local grace = tonumber(ARGV[5])
local function revoke()
  end_record(ARGV[8], s['sid'])
  redis.call('DEL', KEYS[3])
end
local function answer(outcome, copy)
  local out = {outcome, redis.call('HGET', KEYS[5], 'avatar_url') or '', copy or ''}
  for name, value in pairs(s) do
    table.insert(out, name)
    table.insert(out, value)
  end
  return out
end
if s['kind'] ~= 'refresh' or now >= tonumber(s['expires_at']) or now >= tonumber(s['idle_expires_at']) then
  if s['kind'] == 'refresh' then revoke() end
  return {'unknown'}
end
-- Another client's token (or an app's token at the broker's own grant) changes nothing, not even a spent one.
if (s['client_id'] or '') ~= ARGV[9] then return {'wrong_client'} end
-- A public client's family bound to a DPoP key rotates only for a proof of that key (a thumbprint: no secret).
if (s['jkt'] or '') ~= '' and s['jkt'] ~= ARGV[10] then return {'wrong_key'} end
if presented == s['rt'] then
  local idle = tostring(math.min(now + tonumber(ARGV[6]), tonumber(s['expires_at'])))
  redis.call('HSET', KEYS[1], 'rt', ARGV[3], 'rt_prev', presented, 'rt_rotated_at', ARGV[1],
             'last_seen', ARGV[1], 'idle_expires_at', idle)
  redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(idle) * 1000))
  -- The spent list lives as long as the family can: its expiry is set once, with its first entry.
  local spent = redis.call('LPUSH', KEYS[2], presented)
  if spent > tonumber(ARGV[7]) then redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[7]) - 1) end
  if spent == 1 then redis.call('PEXPIREAT', KEYS[2], math.floor(tonumber(s['expires_at']) * 1000)) end
  -- Only the token just spent can be replayed, so the previous rotation's grace copy is useless from here on:
  -- drop it, so that the one named after rt_prev is the family's only one and ending the family finds it.
  if s['rt_prev'] and s['rt_prev'] ~= '' then redis.call('DEL', ARGV[8] .. ':rtg:' .. s['rt_prev']) end
  if grace > 0 then
    redis.call('SET', KEYS[3], ARGV[4], 'PX', math.floor(grace * 1000))
  end
  s['rt'], s['rt_prev'], s['rt_rotated_at'], s['last_seen'], s['idle_expires_at'] =
    ARGV[3], presented, ARGV[1], ARGV[1], idle
  return answer('rotated')
end
if presented == s['rt_prev'] and now - tonumber(s['rt_rotated_at']) <= grace then
  local copy = redis.call('GET', KEYS[3])
  if copy then return answer('replayed', copy) end
end
local spent = false
for _, used in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if used == presented then spent = true end
end
if spent then
  revoke()
  return {'reused'}
end
return {'unknown'}
"""
