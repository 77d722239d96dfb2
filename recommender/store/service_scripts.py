"""The Lua scripts of serving, impressions, keys and rate limits (the feature store's apply
scripts are in `scripts`, which re-exports these: `scripts.SERVING_READ_LUA`)."""

from __future__ import annotations

from recommender.store.keys import ERASED_PREFIX, USER_PREFIX, USER_TAG_CHARS

#: `keys.user_bucket` and the tag part of `keys.user_base` in Lua.
USER_TAG_LUA = f"""
local function ubucket(p) return '{{' .. string.sub(p, 1, {USER_TAG_CHARS}) .. '}}' end
local function utag(p) return ubucket(p) .. ':' .. p end
"""

#: Served lists: ARGV = attribution window s, lists kept per user, then per user: pseudonym, n,
#: and n entries (`user_lists`' format), oldest first. Three commands per user and none per list:
#: a list is one element of the user's own list. (Before: a hash per list, a sorted set and a
#: hash of shown items per user, seven commands per list: ad hoc, 600 lists a call of 671 users'
#: lists, 23.6-33.4 us of Valkey per list against 5.4-5.8 in the same hour, and calls of 800
#: lists that every request in flight waited out.) Sent again, a user's lists are not doubled:
#: when their newest (each holds its list's unique id) is at the head, they are there. Returns
#: a 1 per user.
RECORD_IMPRESSIONS_LUA = """
local ttl, per_user = tonumber(ARGV[1]), tonumber(ARGV[2])
local i, done = 3, {}
while i <= #ARGV do
  local p, n = ARGV[i], tonumber(ARGV[i + 1])
  local key = '__USER__' .. utag(p) .. ':lists'
  -- An erased user is not brought back by being served: not until they act again.
  if (redis.call('EXISTS', '__ERASED__' .. utag(p)) == 0
      or redis.call('EXISTS', '__USER__' .. utag(p) .. ':counts') == 1)
      and redis.call('LINDEX', key, 0) ~= ARGV[i + 1 + n] then
    redis.call('LPUSH', key, unpack(ARGV, i + 2, i + 1 + n))
    redis.call('LTRIM', key, 0, per_user - 1)
    redis.call('EXPIRE', key, ttl)
  end
  done[#done + 1] = 1
  i = i + 2 + n
end
return done
"""
RECORD_IMPRESSIONS_LUA = USER_TAG_LUA + RECORD_IMPRESSIONS_LUA.replace(
    "__USER__", USER_PREFIX
).replace("__ERASED__", ERASED_PREFIX)
#: On a cluster, one call per primary over the users it serves (`cluster.by_primary`).
RECORD_IMPRESSIONS_NODE_LUA = "#!lua flags=allow-cross-slot-keys\n" + RECORD_IMPRESSIONS_LUA

#: The served list each outcome answers: ARGV = triples of pseudonym, the recommendation id the
#: outcome quotes ('' for none) and its item. For each, the newest of the user's lists with that
#: id, or else (unquoted) the newest that showed the item; false if none. The search runs here,
#: so that a user's 200 lists do not travel for one outcome.
FIND_LISTS_LUA = """
local lists, found = {}, {}
for i = 1, #ARGV, 3 do
  local p, rid, item = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local mine = lists[p]
  if mine == nil then
    mine = redis.call('LRANGE', '__USER__' .. utag(p) .. ':lists', 0, -1)
    lists[p] = mine
  end
  local hit = false
  if rid ~= '' then
    local head = rid .. '|'
    for _, entry in ipairs(mine) do
      if string.sub(entry, 1, #head) == head then hit = entry; break end
    end
  else
    local needle = ' ' .. item .. ' '
    for _, entry in ipairs(mine) do
      if string.find(entry, needle, 1, true) then hit = entry; break end
    end
  end
  found[#found + 1] = hit
end
return found
"""
FIND_LISTS_LUA = USER_TAG_LUA + FIND_LISTS_LUA.replace("__USER__", USER_PREFIX)


#: Compare-and-set: KEYS[1] = ARGV[2] only if it still equals ARGV[1] (1 if set, else 0).
COMPARE_AND_SET_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


#: What serving reads of the users of the requests in flight, on one node: KEYS =
#: `user_vectors(v)`, `user_recs(v)` and the family's pointer (`model_current`); ARGV = the
#: number of recent items serving blends, then pairs of a pseudonym and the `as_of` of the
#: answer the caller already holds for it ('' for none).
#: Returns {vectors, candidates, pointer, states}, the lists in ARGV's order (nil where absent):
#: - where the vector's `as_of` is the one the caller named, the vector is `=` and the rest nil:
#:   the caller's answer still stands, and the ~2.5 KB of vector and candidates need not travel
#:   and be parsed again (a conditional read, as HTTP's If-None-Match);
#: - where the candidates are missing or older than the vector (the worker folded the user in
#:   since), the user's state comes along, {their items, their latest recent entries}: what
#:   computing the candidates afresh needs, without a second round trip;
#: - the pointer as HGETALL gives it, so that a reader whose served model moved since it last
#:   looked knows at once (the worker folds users into the version served now).
#: One call for the reads of every request in flight (`recommender.store.coalesce`).
_SERVING_READ_LUA = """
local function serving_read(vkey, rkey, recent, with_state, users, held)
  local vectors = redis.call('HMGET', vkey, unpack(users))
  local candidates = redis.call('HMGET', rkey, unpack(users))
  local states = {}
  for i, vector in ipairs(vectors) do
    local state = false
    if vector then
      local as_of = string.match(vector, '^(%d+):') or ''
      if as_of ~= '' and as_of == held[i] then
        vectors[i] = '='
        candidates[i] = false
      elseif not candidates[i] or string.sub(candidates[i], 1, #as_of + 1) ~= as_of .. '|' then
        if with_state then
          local base = '__USER__' .. utag(users[i])
          state = {redis.call('HKEYS', base .. ':items'),
                   redis.call('LRANGE', base .. ':recent', 0, math.max(recent, 1) - 1)}
        else
          state = 1  -- due, read by the caller: on a cluster the user's keys are in other slots
        end
      end
    end
    states[i] = state
  end
  return vectors, candidates, states
end
"""
SERVING_READ_LUA = """
local users, held = {}, {}
for i = 2, #ARGV, 2 do
  users[#users + 1] = ARGV[i]
  held[#held + 1] = ARGV[i + 1]
end
local vectors, candidates, states =
  serving_read(KEYS[1], KEYS[2], tonumber(ARGV[1]), true, users, held)
return {vectors, candidates, redis.call('HGETALL', KEYS[3]), states}
"""
#: On a cluster, the reads of many buckets in one call per primary (`cluster.by_primary`; a
#: read may be sent again): ARGV = the number of recent items, then per bucket its vectors'
#: and candidates' keys, n, and n pairs as above. Returns per bucket {vectors, candidates,
#: states}, the states flagged for the caller (the users' keys are in their own slots).
SERVING_READ_BUCKETS_LUA = """
local recent, out, i = tonumber(ARGV[1]), {}, 2
while i <= #ARGV do
  local vkey, rkey, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local users, held = {}, {}
  for j = 1, n do
    users[j] = ARGV[i + 1 + 2 * j]
    held[j] = ARGV[i + 2 + 2 * j]
  end
  local vectors, candidates, states = serving_read(vkey, rkey, recent, false, users, held)
  out[#out + 1] = {vectors, candidates, states}
  i = i + 3 + 2 * n
end
return out
"""
_SERVING_READ_LUA = USER_TAG_LUA + _SERVING_READ_LUA.replace("__USER__", USER_PREFIX)
SERVING_READ_LUA = _SERVING_READ_LUA + SERVING_READ_LUA
SERVING_READ_BUCKETS_LUA = (
    "#!lua flags=allow-cross-slot-keys,no-writes\n" + _SERVING_READ_LUA + SERVING_READ_BUCKETS_LUA
)


#: A token bucket's refill, the start of both rate scripts: KEYS[1] = the key's bucket hash;
#: ARGV = now_ms, rate per second, burst, n. The bucket expires once it would be full again,
#: so idle keys cost nothing.
_BUCKET_LUA = """
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
"""

#: Requests: takes up to `n` whole tokens (a replica's lease). Returns {taken, wait}: wait is 0
#: when any were taken, else the ms until one is there.
RATE_LIMIT_LUA = (
    _BUCKET_LUA
    + """
local taken, wait = math.min(n, math.floor(tokens)), 0
if taken >= 1 then
  tokens = tokens - taken
else
  taken = 0
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {taken, wait}
"""
)

#: What a key publishes: a charge of `n` units, admitted while the bucket holds at least one
#: (it may go below zero: a batch is never split, and the next one waits until the debt is paid
#: back). Returns the ms to wait, 0 when admitted.
RATE_CHARGE_LUA = (
    _BUCKET_LUA
    + """
local wait = 0
if tokens >= 1 then
  tokens = tokens - n
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst + n) * 1000 / rate) + 1000)
return wait
"""
)
