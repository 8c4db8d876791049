-- load: writes one stripe's whole Redis state from Postgres, when it is missing.
--
-- KEYS: the eight keys of the stripe (see common.lua).
-- ARGV: 1 state, 2 starts_ms, 3 ends_ms, 4 limit, 5 ttl_ms, 6 total, 7 sold,
--       8 unit_count, 9 version,
--       10 free units of the whole sale as ranges "a-b,c-d" (inclusive),
--       11 stripes, 12 this stripe's index (0-based),
--       13 the variants of a multi-variant sale as JSON ('' for a one-variant sale):
--          {"n": count, "ranges": "a-b:k,...", "total": [...], "sold": [...],
--           "limit": [...]} (per variant, this stripe's counts; limit 0 = none),
--       14.. pairs of (users field, units bought) for the per-shopper limit: the
--          shopper id, and "<shopper>:<k>" for variant k of a multi-variant sale.
-- A free range "a-b:k" goes to variant k's free list (see common.lua); "a-b" to
-- variant 0's.
-- `total` and `sold` count this stripe's units; of the free ranges, only the units of
-- this stripe ((u - 1) mod stripes == index) are pushed.
-- Returns 1 when it loaded, 0 when meta already existed (another process won), -1 when
-- it exists with another stripe count (the processes disagree on the setting).
--
-- Leftovers of a partial loss (holds whose meta was evicted) are dropped with the rest:
-- holds that lived only in Redis are gone, and their owners get 410 at checkout.
local stripes, stripe = tonumber(ARGV[11]), tonumber(ARGV[12])
local variants = ARGV[13] ~= '' and cjson.decode(ARGV[13]) or nil
if variants and #KEYS < 7 + variants.n then
  return redis.error_reply('VARIANTS ' .. variants.n)
end
if redis.call('EXISTS', K_META) == 1 then
  if meta_stripes() ~= stripes then return -1 end
  return 0
end
redis.call('DEL', K_FREE, K_HOLDS, K_DEADLINES, K_USERS, K_IDEM, K_COMMITTING, K_RESERVED)
for k = 9, #KEYS do redis.call('DEL', KEYS[k]) end
redis.call('HSET', K_META, 'state', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3],
  'limit', ARGV[4], 'ttl_ms', ARGV[5], 'total', ARGV[6], 'held', 0, 'sold', ARGV[7],
  'unit_count', ARGV[8], 'version', ARGV[9])
if stripes > 1 then redis.call('HSET', K_META, 'stripes', stripes) end
if variants then
  redis.call('HSET', K_META, 'variants', variants.n, 'ranges', variants.ranges)
  for k = 0, variants.n - 1 do
    redis.call('HSET', K_META, 'total:' .. k, variants.total[k + 1], 'held:' .. k, 0,
      'sold:' .. k, variants.sold[k + 1], 'limit:' .. k, variants.limit[k + 1])
  end
end
for a, b, k in string.gmatch(ARGV[10], '(%d+)-(%d+):?(%d*)') do
  local key = free_key(tonumber(k) or 0)
  local batch = {}
  for_stripe_units(tonumber(a), tonumber(b), stripes, stripe, function(unit)
    batch[#batch + 1] = unit
    if #batch == 1000 then push_to(key, batch); batch = {} end
  end)
  if #batch > 0 then push_to(key, batch) end
end
for i = 14, #ARGV, 2 do
  redis.call('HSET', K_USERS, ARGV[i], ARGV[i + 1])
end
return 1
