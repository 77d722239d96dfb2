"""Every Lua script streamrec runs in Redis; each builds its key names from `keys`' prefixes, so
`keys` and this module together own every key. The feature store's apply scripts are here; the
others (serving, impressions, keys, rate limits) in `service_scripts`, re-exported below."""

from __future__ import annotations

import json

from recommender.store.faults import INFRASTRUCTURE_CODES
from recommender.store.keys import (
    AFFINITY_TAU_MS,
    ERASED_PREFIX,
    ITEM_PREFIX,
    POP_PREFIX,
    SEEN_PREFIX,
    USER_PREFIX,
    WINDOWS,
)
from recommender.store.service_scripts import (
    COMPARE_AND_SET_LUA,
    FIND_LISTS_LUA,
    RATE_CHARGE_LUA,
    RATE_LIMIT_LUA,
    RECORD_IMPRESSIONS_LUA,
    RECORD_IMPRESSIONS_NODE_LUA,
    SERVING_READ_BUCKETS_LUA,
    SERVING_READ_LUA,
    USER_TAG_LUA,
)

#: `keys.key_part` in Lua: an id as it appears in a key name (`%`, `:`, `{`, `}` percent-encoded).
KEY_PART_LUA = """
local function escape(c) return string.format('%%%02X', string.byte(c)) end
local function key_part(id)
  return (string.gsub(id, '[%%:{}]', escape))
end
"""


#: One event's writes to its user's keys, shared by the apply scripts of one node and of a
#: cluster (`_fill` puts it in front of each). The one write that can fail on valid-looking
#: input (a key of another type) goes first, under pcall; Redis refusing writes (OOM, MISCONF,
#: READONLY...) is no record's fault and aborts the whole call (such a refusal comes at a call's
#: first write, so nothing of it was written). Returns the reason Redis refused the record, or
#: nil and whether the item had categories. Category affinity is kept in log space: add
#: w * exp((ts - base) / tau); ranking needs no decay of old fields, and reading multiplies by
#: exp((base - now) / tau).
USER_EVENT_LUA = """
local infrastructure = {}
for _, code in ipairs(cjson.decode('__INFRASTRUCTURE__')) do infrastructure[code] = true end
local function apply_to_user(base, item, etype, weight, ts, rid, cats_json, keep_times)
  local ok = redis.pcall('HINCRBYFLOAT', base .. ':items', item, weight)
  if type(ok) == 'table' and ok.err then
    if infrastructure[string.match(ok.err, '^%-?(%u+)') or ''] then error(ok) end
    return ok.err
  end
  if keep_times then  -- each item's newest event, for a fit that weighs by recency
    local times = base .. ':times'
    if tonumber(ts) > tonumber(redis.call('HGET', times, item) or '-1') then
      redis.call('HSET', times, item, ts)
    end
  end
  local entry = etype .. '|' .. item .. '|' .. ts
  if rid ~= '' then entry = entry .. '|' .. rid end
  redis.call('LPUSH', base .. ':recent', entry)
  redis.call('HINCRBY', base .. ':counts', etype, 1)
  if not cats_json or cats_json == '' or cats_json == '[]' then return nil, false end
  local cats, t = base .. ':cats', tonumber(ts)
  local cbase = tonumber(redis.call('HGET', cats, '_base') or '')
  if not cbase then
    cbase = t
    redis.call('HSET', cats, '_base', t)
  end
  local boost = tonumber(weight) * math.exp((t - cbase) / __TAU__)
  for _, c in ipairs(cjson.decode(cats_json)) do
    redis.call('HINCRBYFLOAT', cats, c, boost)
  end
  return nil, true
end
-- What is the same for every event of a user, written once a call after their events: the
-- recent list's cap, last_seen (what the user's vector and kept answers are `as_of`: it moves
-- with every applied event, a late one too, by a millisecond past the last) and the TTLs.
local function close_user(base, newest, user_ttl, recent_cap, has_cats, keep_times)
  local recent, counts = base .. ':recent', base .. ':counts'
  redis.call('LTRIM', recent, 0, recent_cap - 1)
  local last = tonumber(redis.call('HGET', counts, 'last_seen') or '0')
  redis.call('HSET', counts, 'last_seen', math.max(newest, last + 1))
  redis.call('EXPIRE', base .. ':items', user_ttl)
  if keep_times then redis.call('EXPIRE', base .. ':times', user_ttl) end
  redis.call('EXPIRE', recent, user_ttl)
  redis.call('EXPIRE', counts, user_ttl)
  if has_cats then redis.call('EXPIRE', base .. ':cats', user_ttl) end
end
"""


def _fill(script: str) -> str:
    """``script`` with the shared Lua in front and `keys`' prefixes and constants in place."""
    return (
        (KEY_PART_LUA + USER_TAG_LUA + USER_EVENT_LUA + script)
        .replace("__SEEN__", SEEN_PREFIX)
        .replace("__ERASED__", ERASED_PREFIX)
        .replace("__USER__", USER_PREFIX)
        .replace("__POP__", POP_PREFIX)
        .replace("__ITEM__", ITEM_PREFIX)
        .replace("__TAU__", str(AFFINITY_TAU_MS))
        .replace("__INFRASTRUCTURE__", json.dumps(INFRASTRUCTURE_CODES))
        .replace(
            "__WINDOWS__",
            json.dumps([x for w in WINDOWS.values() for x in (w.name, w.bucket_ms, w.ttl_s)]),
        )
    )


#: Applies a batch of events atomically and idempotently.
#: KEYS = users:active, items:popular, stats. Per-event keys are built here from the prefixes
#: above (passing them as KEYS doubled the bytes the worker packs per event).
#: ARGV = now_ms, dedupe_ttl_s, user_ttl_s, recent_cap, keep_times ('1': keep each item's newest
#:        event time, `keys.user_item_times`, when fits weigh by recency), then one per event:
#:        `event_id|pseudonym|item|type|weight|ts|recommendation_id` (the last may be empty; ids
#:        cannot hold `|`: the schema forbids it; one joined argument is 7x fewer for redis-py
#:        to pack). The recommendation id stays with the event in the user's recent list.
#: Returns {applied indexes, {failed index, reason, ...}} (0-based). An event is marked seen only
#: after its updates succeeded, and a failing one does not stop the rest: Lua does not roll back
#: the writes made before an error, so an abort would leave half a batch applied and unmarked.
#: What is per user or per bucket (TTLs, the recent list's cap, last_seen, the active index) is
#: written once after the loop; the user's next event writes it again if an abort skipped it.
APPLY_EVENTS_LUA = """
local users, popular, stats = KEYS[1], KEYS[2], KEYS[3]
local now, dedupe_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local user_ttl, recent_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local keep_times = ARGV[5] == '1'
local n = #ARGV - 5
local applied, failed = {}, {}
local windows = cjson.decode('__WINDOWS__')
local clock = tonumber(redis.call('HGET', stats, 'clock') or '0')
-- What is the same for every event of a user or a bucket (TTLs, the recent list's cap, the
-- newest event time, the active-users index, per-type counts) is written once per call, after
-- the loop: it was half of the commands the script ran, and Valkey's time per event.
local newest, has_cats, buckets, per_type = {}, {}, {}, {}  -- newest: pseudonym -> ts
-- pseudonym -> when the user was erased (-1: never): events from before it are not applied.
local erased_at, erased_skipped = {}, 0
for i = 0, n - 1 do
  local eid, p, item, etype, weight, ts, rid = string.match(
    ARGV[6 + i], '^([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]*)$')
  local seen = '__SEEN__' .. ubucket(p) .. ':' .. key_part(eid)
  if erased_at[p] == nil then
    erased_at[p] = tonumber(redis.call('GET', '__ERASED__' .. utag(p)) or '-1')
  end
  if tonumber(ts) <= erased_at[p] then
    erased_skipped = erased_skipped + 1
  -- (and the marker of a version before 2026-12-07, without the user, until it expires)
  elseif redis.call('EXISTS', seen, '__SEEN__' .. key_part(eid)) == 0 then
    local base = '__USER__' .. utag(p)
    local item_key = '__ITEM__{' .. key_part(item) .. '}'
    local cats_json = redis.call('HGET', item_key, 'categories')
    local refused, with_cats = apply_to_user(
      base, item, etype, weight, ts, rid, cats_json, keep_times)
    if refused then
      failed[#failed + 1] = i
      failed[#failed + 1] = refused
    else
      local t = tonumber(ts)
      if newest[p] == nil or t > newest[p] then newest[p] = t end
      redis.call('ZINCRBY', popular, 1, item)
      for w = 1, #windows, 3 do
        local bucket = '__POP__' .. windows[w] .. ':' .. math.floor(t / windows[w + 1])
        redis.call('ZINCRBY', bucket, 1, item)
        buckets[bucket] = windows[w + 2]
      end
      redis.call('PFADD', item_key .. ':users', p)
      if with_cats then has_cats[p] = true end
      per_type[etype] = (per_type[etype] or 0) + 1
      if t > clock then clock = t end
      redis.call('SET', seen, '1', 'EX', dedupe_ttl)
      applied[#applied + 1] = i
    end
  end
end
for p, ts_max in pairs(newest) do
  close_user('__USER__' .. utag(p), ts_max, user_ttl, recent_cap, has_cats[p], keep_times)
  redis.call('ZADD', users, now, p)
end
for bucket, ttl in pairs(buckets) do
  redis.call('EXPIRE', bucket, ttl)
end
for etype, count in pairs(per_type) do
  redis.call('HINCRBY', stats, 'type:' .. etype, count)
end
redis.call('ZREMRANGEBYSCORE', users, '-inf', '(' .. (now - user_ttl * 1000))
redis.call('HSET', stats, 'clock', clock, 'applied_at', now)
redis.call('HINCRBY', stats, 'events_applied', #applied)
redis.call('HINCRBY', stats, 'duplicates_suppressed', n - #applied - #failed / 2 - erased_skipped)
if erased_skipped > 0 then redis.call('HINCRBY', stats, 'erased_suppressed', erased_skipped) end
return {applied, failed}
"""
APPLY_EVENTS_LUA = _fill(APPLY_EVENTS_LUA)


#: On a Redis Cluster, a batch is applied by two scripts, each atomic in one slot: this one per
#: user (everything of the user's, under their hash tag, with their dedupe markers), then
#: `APPLY_SHARD_LUA` per popularity shard. KEYS = the user's tombstone, items, recent, counts, cats
#: and times (`cluster._user_apply_keys`), then each event's dedupe marker: every key it touches is
#: declared, so that a slot in migration answers TRYAGAIN or ASK before the script runs rather
#: than let it write a key on the node that no longer (or does not yet) hold the rest of the
#: user. ARGV =
#: dedupe_ttl_s, user_ttl_s, recent_cap, keep_times (as `APPLY_EVENTS_LUA`'s), then two per
#: event:
#: `event_id|item|type|weight|ts|recommendation_id` and the item's categories (JSON, '' for none:
#: the item's keys are in another slot, so the caller reads them). Returns {applied, failed
#: (index, reason, ...), duplicates, erased} (0-based indexes; erased: how many were from before
#: the user's erasure).
APPLY_USER_LUA = """
-- KEYS[2..6] are the user's keys (`base .. ':items'` first), declared for the cluster only.
local tombstone, items = KEYS[1], KEYS[2]
local base = string.sub(items, 1, #items - #':items')
local dedupe_ttl, user_ttl, recent_cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local keep_times = ARGV[4] == '1'
local n = (#ARGV - 4) / 2
local erased_at = tonumber(redis.call('GET', tombstone) or '-1')
local applied, failed, duplicates, erased = {}, {}, {}, 0
local newest, has_cats = nil, false
for i = 0, n - 1 do
  local eid, item, etype, weight, ts, rid = string.match(
    ARGV[5 + 2 * i], '^([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]+)|([^|]*)$')
  local cats_json = ARGV[6 + 2 * i]
  local seen = KEYS[7 + i]
  local t = tonumber(ts)
  if t <= erased_at then
    erased = erased + 1
  elseif redis.call('EXISTS', seen) == 1 then
    duplicates[#duplicates + 1] = i
  else
    local refused, with_cats = apply_to_user(
      base, item, etype, weight, ts, rid, cats_json, keep_times)
    if refused then
      failed[#failed + 1] = i
      failed[#failed + 1] = refused
    else
      if newest == nil or t > newest then newest = t end
      if with_cats then has_cats = true end
      redis.call('SET', seen, '1', 'EX', dedupe_ttl)
      applied[#applied + 1] = i
    end
  end
end
if newest ~= nil then
  close_user(base, newest, user_ttl, recent_cap, has_cats, keep_times)
end
return {applied, failed, duplicates, erased}
"""

#: The shard's side of a batch on a cluster: popularity (all time and windows), per-type counts,
#: the stream clock and the applied/duplicate counters, once per event by the shard's own marker
#: (`shard_seen`; an event the user's side applied before a crash is counted here on replay).
#: KEYS = the shard's `stats_key`, `items_popular`, then each event's `shard_seen` marker, then
#: the window buckets the events fall in (declared, as the user's side declares its keys). ARGV =
#: now_ms, dedupe_ttl_s, the shard's tag, then per event `event_id|item|type|ts`. Returns how
#: many were new here.
APPLY_SHARD_LUA = """
local stats, popular = KEYS[1], KEYS[2]
local now, dedupe_ttl, tag = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local windows = cjson.decode('__WINDOWS__')
local clock = tonumber(redis.call('HGET', stats, 'clock') or '0')
local buckets, per_type, new = {}, {}, 0
for i = 4, #ARGV do
  local eid, item, etype, ts = string.match(ARGV[i], '^([^|]+)|([^|]+)|([^|]+)|([^|]+)$')
  local seen = KEYS[i - 1]
  if redis.call('SET', seen, '1', 'NX', 'EX', dedupe_ttl) then
    local t = tonumber(ts)
    redis.call('ZINCRBY', popular, 1, item)
    for w = 1, #windows, 3 do
      local bucket = '__POP__' .. tag .. ':' .. windows[w] .. ':' .. math.floor(t / windows[w + 1])
      redis.call('ZINCRBY', bucket, 1, item)
      buckets[bucket] = windows[w + 2]
    end
    per_type[etype] = (per_type[etype] or 0) + 1
    if t > clock then clock = t end
    new = new + 1
  end
end
for bucket, ttl in pairs(buckets) do redis.call('EXPIRE', bucket, ttl) end
for etype, count in pairs(per_type) do redis.call('HINCRBY', stats, 'type:' .. etype, count) end
redis.call('HSET', stats, 'clock', clock, 'applied_at', now)
redis.call('HINCRBY', stats, 'events_applied', new)
redis.call('HINCRBY', stats, 'duplicates_suppressed', #ARGV - 3 - new)
return new
"""


APPLY_USER_LUA = _fill(APPLY_USER_LUA)
APPLY_SHARD_LUA = _fill(APPLY_SHARD_LUA)

#: On a cluster, one call per primary over the keys of many slots it serves (the flag lets a
#: script reach undeclared keys of other slots on its own node; a key it does not serve fails
#: the call, and the caller sends those commands one by one). Only for what may run twice:
#: items' distinct users (PFADD). ARGV = key, member, key, member, ...
NODE_PFADD_LUA = """#!lua flags=allow-cross-slot-keys
local out = {}
for i = 1, #ARGV, 2 do out[#out + 1] = redis.call('PFADD', ARGV[i], ARGV[i + 1]) end
return out
"""
#: ... and reads: ARGV = field, then keys; one value per key ('' for none).
NODE_HGET_LUA = """#!lua flags=allow-cross-slot-keys,no-writes
local out = {}
for i = 2, #ARGV do out[i - 1] = redis.call('HGET', ARGV[i], ARGV[1]) or '' end
return out
"""


__all__ = [
    "APPLY_EVENTS_LUA",
    "APPLY_SHARD_LUA",
    "APPLY_USER_LUA",
    "COMPARE_AND_SET_LUA",
    "FIND_LISTS_LUA",
    "KEY_PART_LUA",
    "NODE_HGET_LUA",
    "NODE_PFADD_LUA",
    "RATE_CHARGE_LUA",
    "RATE_LIMIT_LUA",
    "RECORD_IMPRESSIONS_LUA",
    "RECORD_IMPRESSIONS_NODE_LUA",
    "SERVING_READ_BUCKETS_LUA",
    "SERVING_READ_LUA",
]
