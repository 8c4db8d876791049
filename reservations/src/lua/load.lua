-- load: writes one stripe's whole Redis state from Postgres, when it is missing.
--
-- KEYS: the eight keys of the stripe (see common.lua).
-- ARGV: 1 state, 2 starts_ms, 3 ends_ms, 4 limit, 5 ttl_ms, 6 total, 7 sold,
--       8 unit_count, 9 version,
--       10 free units of the whole sale as ranges "a-b,c-d" (inclusive),
--       11 stripes, 12 this stripe's index (0-based),
--       13.. pairs of (shopper id, units bought) for the per-shopper limit.
-- `total` and `sold` count this stripe's units; of the free ranges, only the units of
-- this stripe ((u - 1) mod stripes == index) are pushed.
-- Returns 1 when it loaded, 0 when meta already existed (another process won), -1 when
-- it exists with another stripe count (the processes disagree on the setting).
--
-- Leftovers of a partial loss (holds whose meta was evicted) are dropped with the rest:
-- holds that lived only in Redis are gone, and their owners get 410 at checkout.
local stripes, stripe = tonumber(ARGV[11]), tonumber(ARGV[12])
if redis.call('EXISTS', K_META) == 1 then
  if meta_stripes() ~= stripes then return -1 end
  return 0
end
redis.call('DEL', K_FREE, K_HOLDS, K_DEADLINES, K_USERS, K_IDEM, K_COMMITTING, K_RESERVED)
redis.call('HSET', K_META, 'state', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3],
  'limit', ARGV[4], 'ttl_ms', ARGV[5], 'total', ARGV[6], 'held', 0, 'sold', ARGV[7],
  'unit_count', ARGV[8], 'version', ARGV[9])
if stripes > 1 then redis.call('HSET', K_META, 'stripes', stripes) end
local batch = {}
for a, b in string.gmatch(ARGV[10], '(%d+)-(%d+)') do
  for_stripe_units(tonumber(a), tonumber(b), stripes, stripe, function(unit)
    batch[#batch + 1] = unit
    if #batch == 1000 then push_free(batch); batch = {} end
  end)
end
if #batch > 0 then push_free(batch) end
for i = 13, #ARGV, 2 do
  redis.call('HSET', K_USERS, ARGV[i], ARGV[i + 1])
end
return 1
