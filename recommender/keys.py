"""Every Redis key name, TTL and Lua script of streamrec lives here, and only here.

User ids never appear in a key in clear: `pseudonymize` maps them to a keyed HMAC-SHA256
(ENISA's recommended pseudonymisation: a plain hash could be reversed by enumerating ids).

| key               | type   | meaning                                        | bound            |
|-------------------|--------|------------------------------------------------|------------------|
| `u:{p}:items`     | hash   | item -> summed confidence weight (CF input)    | user TTL         |
| `u:{p}:recent`    | list   | newest interactions, `type|item|ts`            | capped, user TTL |
| `u:{p}:counts`    | hash   | event type -> count, `last_seen` -> ts         | user TTL         |
| `users:active`    | zset   | pseudonym -> last applied (wall ms)            | pruned by TTL    |
| `item:{id}`       | hash   | title, text, categories (JSON)                 | catalogue size   |
| `items:catalogue` | zset   | item -> first content ts                       | catalogue size   |
| `items:popular`   | zset   | item -> interaction count                      | catalogue size   |
| `seen:{event_id}` | string | dedupe marker                                  | dedupe TTL       |
| `stats`           | hash   | global counters (events applied, duplicates..) | fixed fields     |
| `model:current`   | hash   | served model version and its data watermark    | one              |
| `model:{v}:users` | hash   | pseudonym -> base64 float32 vector (version v) | retired on swap  |
"""

from __future__ import annotations

import hashlib
import hmac

USERS_ACTIVE = "users:active"
ITEMS_CATALOGUE = "items:catalogue"
ITEMS_POPULAR = "items:popular"
STATS = "stats"
MODEL_CURRENT = "model:current"
MODEL_CHANNEL = "model:changed"


def pseudonymize(secret: bytes, user_id: str) -> str:
    """Keyed, stable pseudonym of a user id (128 bits of HMAC-SHA256, hex)."""
    return hmac.new(secret, user_id.encode(), hashlib.sha256).hexdigest()[:32]


def user_items(pseudonym: str) -> str:
    return f"u:{pseudonym}:items"


def user_recent(pseudonym: str) -> str:
    return f"u:{pseudonym}:recent"


def user_counts(pseudonym: str) -> str:
    return f"u:{pseudonym}:counts"


def item_meta(item_id: str) -> str:
    return f"item:{item_id}"


def seen(event_id: str) -> str:
    return f"seen:{event_id}"


def user_vectors(version: str) -> str:
    return f"model:{version}:users"


#: How long a replaced model version's user vectors stay readable for requests in flight.
RETIRED_MODEL_TTL_S = 60


#: Applies a batch of events atomically and idempotently.
#: KEYS = users:active, items:popular, stats, then 4 per event: seen, items, recent, counts.
#: ARGV = now_ms, dedupe_ttl_s, user_ttl_s, recent_cap, then 5 per event:
#:        item, type, weight, ts, pseudonym.
#: Returns the 0-based indexes of the events that were new (and so applied).
APPLY_EVENTS_LUA = """
local users, popular, stats = KEYS[1], KEYS[2], KEYS[3]
local now, dedupe_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local user_ttl, recent_cap = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = (#KEYS - 3) / 4
local applied = {}
for i = 0, n - 1 do
  local k = 4 + i * 4
  local a = 5 + i * 5
  if redis.call('SET', KEYS[k], '1', 'NX', 'EX', dedupe_ttl) then
    local items, recent, counts = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
    local item, etype, weight, ts = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
    redis.call('HINCRBYFLOAT', items, item, weight)
    redis.call('LPUSH', recent, etype .. '|' .. item .. '|' .. ts)
    redis.call('LTRIM', recent, 0, recent_cap - 1)
    redis.call('HINCRBY', counts, etype, 1)
    local last = tonumber(redis.call('HGET', counts, 'last_seen') or '0')
    if tonumber(ts) > last then redis.call('HSET', counts, 'last_seen', ts) end
    redis.call('EXPIRE', items, user_ttl)
    redis.call('EXPIRE', recent, user_ttl)
    redis.call('EXPIRE', counts, user_ttl)
    redis.call('ZINCRBY', popular, 1, item)
    redis.call('ZADD', users, now, ARGV[a + 4])
    applied[#applied + 1] = i
  end
end
redis.call('ZREMRANGEBYSCORE', users, '-inf', '(' .. (now - user_ttl * 1000))
redis.call('HINCRBY', stats, 'events_applied', #applied)
redis.call('HINCRBY', stats, 'duplicates_suppressed', n - #applied)
return applied
"""
