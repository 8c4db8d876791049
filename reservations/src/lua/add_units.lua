-- add_units: makes units up to `unit_count` free (a merchant's positive stock delta).
--
-- KEYS: the eight keys of one stripe (see common.lua).
-- ARGV: 1 unit_count after the change (Postgres), 2 total after the change (unused:
--       each stripe counts its own units), 3 stripes, 4 this stripe's index.
-- Returns the number of units added to this stripe, or -1 when the state is missing.
-- Only units above meta.unit_count are pushed, so a rebuild that already read the new
-- count and this call can run in either order without a unit appearing twice.
-- Of a multi-variant sale: ARGV 5 the ordinal of the variant the new units belong to,
-- ARGV 6 the sale's unit ranges after the change (meta.ranges); '' and '' otherwise.
if redis.call('EXISTS', K_META) == 0 then return -1 end
local variant = tonumber(ARGV[5] or '')
if variant then check_variant_keys() end
local have = tonumber(redis.call('HGET', K_META, 'unit_count'))
local want = tonumber(ARGV[1])
local added = {}
for_stripe_units(have + 1, want, tonumber(ARGV[3]), tonumber(ARGV[4]), function(unit)
  added[#added + 1] = unit
end)
push_to(free_key(variant or 0), added)
if want > have then
  redis.call('HSET', K_META, 'unit_count', want)
  redis.call('HINCRBY', K_META, 'total', #added)
  if variant then
    redis.call('HINCRBY', K_META, 'total:' .. variant, #added)
    redis.call('HSET', K_META, 'ranges', ARGV[6])
  end
end
return #added
