-- reconcile: makes one stripe agree with Postgres after Redis came back older (a
-- restart that lost its last second, a failover to a replica that lagged), keeping
-- every live hold Postgres does not contradict. One script, so no request ever sees a
-- half-reconciled stripe; idempotent, so running it on a stripe that is already right
-- changes nothing (not even the order of the free list).
--
-- KEYS: the eight keys of the stripe (see common.lua).
-- ARGV: 1 state, 2 starts_ms, 3 ends_ms, 4 limit, 5 ttl_ms, 6 version (Postgres' sale),
--       7 unit_count (Postgres), 8 units of the sale that Postgres has neither sold nor
--       retired, as ranges "a-b,c-d" (inclusive; only this stripe's are used),
--       9 units of this stripe Postgres has sold, 10 stripes, 11 this stripe's index,
--       12 n: how many hold ids follow,
--       13 .. 12+n the reservation ids of Postgres' orders whose units are in this stripe,
--       13+n a multi-variant sale's variants as JSON ('' otherwise): {"sold": [units of
--          each variant this stripe sold, by Postgres], "ranges": meta.ranges},
--       then pairs (users field, units bought), as load.lua takes them.
-- Of a multi-variant sale, ARGV 8's ranges name their variant ("a-b:k", as load.lua),
-- each variant's free list is reconciled as the one free list is, and the per-variant
-- counters and per-variant shopper counts are recounted the same way.
-- Returns one of:
--   {'ok', changed (0|1), holds made checked_out, holds ended, free before, free after}
--   {'no_state'}      the stripe's state is missing (the ordinary rebuild loads it)
--   {'stripes', n}    the sale was loaded with n stripes, not ARGV[10]
--
-- Postgres is read before this script runs, so the script also trusts what Redis did
-- after that read: a hold that is `checked_out` in Redis but whose order is not among
-- ARGV's committed after the read (its units are sold, its shopper's count keeps it),
-- and holds taken or released meanwhile are what they are now. Rules, per hold:
--   - its reservation has an order in Postgres: `checked_out` (units sold);
--   - `checked_out` in Redis only: sold (the order committed after the read);
--   - `held`/`committing` with a unit Postgres sold elsewhere or retired: ends
--     `expired` (its other units are free again);
--   - other `held`/`committing` holds stay as they are.
-- Then: free = Postgres' unsold units - live holds' units - Redis-only sold units
-- (the list keeps its order; missing units are appended in ascending order), held and
-- sold are recounted, total = free + held + sold by construction, and every shopper's
-- count = units bought (Postgres) + Redis-only sold + live holds in this stripe.
if redis.call('EXISTS', K_META) == 0 then return {'no_state'} end
local stripes, stripe = tonumber(ARGV[10]), tonumber(ARGV[11])
if meta_stripes() ~= stripes then return {'stripes', meta_stripes()} end

-- Units this stripe may hand out, by Postgres: not sold, not retired.
local n = tonumber(ARGV[12])
local variants = ARGV[13 + n] ~= '' and cjson.decode(ARGV[13 + n]) or nil
if variants then
  check_variant_keys()
  -- Postgres' ranges: newer than or equal to Redis' (variants are added in Postgres first).
  redis.call('HSET', K_META, 'ranges', variants.ranges)
end
local nv = variants and #variants.sold or 1
local candidate, candidates = {}, 0
local unit_variant = {}
local cand_n = {}
for k = 0, nv - 1 do cand_n[k] = 0 end
local unit_count = tonumber(ARGV[7])
local ranges = {}
for a, b, k in string.gmatch(ARGV[8], '(%d+)-(%d+):?(%d*)') do
  ranges[#ranges + 1] = {tonumber(a), tonumber(b), tonumber(k) or 0}
end
-- Units added in Redis after Postgres was read (add_units writes Postgres first, so
-- they are in Postgres by now).
local redis_units = tonumber(redis.call('HGET', K_META, 'unit_count')) or 0
if redis_units > unit_count then
  for unit = unit_count + 1, redis_units do
    ranges[#ranges + 1] = {unit, unit, variants and variant_of(unit) or 0}
  end
  unit_count = redis_units
end
for _, r in ipairs(ranges) do
  for_stripe_units(r[1], r[2], stripes, stripe, function(unit)
    if not candidate[unit] then
      candidate[unit] = true
      candidates = candidates + 1
      unit_variant[unit] = r[3]
      cand_n[r[3]] = cand_n[r[3]] + 1
    end
  end)
end
local pg_sold = tonumber(ARGV[9])

local ordered = {}
for i = 13, 12 + n do ordered[ARGV[i]] = true end

local live, held, redis_sold = {}, 0, 0
local held_v, sold_v = {}, {}
for k = 0, nv - 1 do held_v[k], sold_v[k] = 0, 0 end
local counts = {}
local function count(shopper, units) counts[shopper] = (counts[shopper] or 0) + units end
-- A cart's lines count for their variants too (the variants' own limits).
local function count_lines(hold)
  if hold.l then
    for _, line in ipairs(hold.l) do count(hold.o .. ':' .. line.v, line.q) end
  end
end
local checked_out, ended, changed = 0, 0, 0

local all = redis.call('HGETALL', K_HOLDS)
for i = 1, #all, 2 do
  local id, hold = all[i], cjson.decode(all[i + 1])
  local is_live = hold.s == 'held' or hold.s == 'committing'
  if ordered[id] then
    if hold.s ~= 'checked_out' then
      hold.s = 'checked_out'
      save_hold(id, hold)
      redis.call('ZREM', K_DEADLINES, id)
      redis.call('ZREM', K_COMMITTING, id)
      checked_out = checked_out + 1
    end
  elseif hold.s == 'checked_out' then
    for _, unit in ipairs(hold.u) do
      unit = tonumber(unit)
      if candidate[unit] then
        candidate[unit] = nil
        redis_sold = redis_sold + 1
        sold_v[unit_variant[unit]] = sold_v[unit_variant[unit]] + 1
        cand_n[unit_variant[unit]] = cand_n[unit_variant[unit]] - 1
      end
    end
    count(hold.o, hold.q)
    count_lines(hold)
  elseif is_live then
    local contradicted = false
    for _, unit in ipairs(hold.u) do
      if not candidate[tonumber(unit)] then contradicted = true end
    end
    if contradicted then
      hold.s = 'expired'
      save_hold(id, hold)
      redis.call('ZREM', K_DEADLINES, id)
      redis.call('ZREM', K_COMMITTING, id)
      ended = ended + 1
    else
      for _, unit in ipairs(hold.u) do
        live[tonumber(unit)] = true
        local v = unit_variant[tonumber(unit)]
        held_v[v] = held_v[v] + 1
      end
      held = held + hold.q
      count(hold.o, hold.q)
      count_lines(hold)
    end
  end
end

-- The free lists (one per variant; one for a one-variant sale): what is there and may
-- be free there, in its order, then what is missing.
local before_n, keep_n = 0, 0
local keep, before, present = {}, {}, {}
for k = 0, nv - 1 do
  before[k] = redis.call('LRANGE', free_key(k), 0, -1)
  before_n = before_n + #before[k]
  keep[k] = {}
  for _, unit in ipairs(before[k]) do
    unit = tonumber(unit)
    if candidate[unit] and not live[unit] and not present[unit] and unit_variant[unit] == k then
      keep[k][#keep[k] + 1] = unit
      present[unit] = true
    end
  end
end
local missing = {}
for _, r in ipairs(ranges) do
  for_stripe_units(r[1], r[2], stripes, stripe, function(unit)
    if candidate[unit] and not live[unit] and not present[unit] then
      local k = unit_variant[unit]
      keep[k][#keep[k] + 1] = unit
      present[unit] = true
      missing[k] = true
    end
  end)
end
for k = 0, nv - 1 do
  keep_n = keep_n + #keep[k]
  if missing[k] or #keep[k] ~= #before[k] then
    redis.call('DEL', free_key(k))
    push_to(free_key(k), keep[k])
    changed = 1
  end
end

-- Counters and the definition (an older Postgres version never overwrites a newer one
-- that an admin request wrote after the read).
local sold = pg_sold + redis_sold
local total = candidates + pg_sold
local m = redis.call('HMGET', K_META, 'total', 'held', 'sold', 'version', 'unit_count')
if tonumber(m[1]) ~= total or tonumber(m[2]) ~= held or tonumber(m[3]) ~= sold
    or tonumber(m[5]) ~= unit_count then
  changed = 1
end
redis.call('HSET', K_META, 'total', total, 'held', held, 'sold', sold, 'unit_count', unit_count)
if variants then
  for k = 0, nv - 1 do
    local sold_k = variants.sold[k + 1] + sold_v[k]
    local want = {cand_n[k] + sold_k, held_v[k], sold_k}
    local have = redis.call('HMGET', K_META, 'total:' .. k, 'held:' .. k, 'sold:' .. k)
    for i = 1, 3 do
      if tonumber(have[i]) ~= want[i] then changed = 1 end
    end
    redis.call('HSET', K_META, 'total:' .. k, want[1], 'held:' .. k, want[2], 'sold:' .. k,
      want[3])
  end
end
if (tonumber(m[4]) or 0) <= tonumber(ARGV[6]) then
  redis.call('HSET', K_META, 'state', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3],
    'limit', ARGV[4], 'ttl_ms', ARGV[5], 'version', ARGV[6])
end

-- Shoppers' counts: what they bought, plus what they hold here.
for i = 14 + n, #ARGV, 2 do count(ARGV[i], tonumber(ARGV[i + 1])) end
local users = redis.call('HGETALL', K_USERS)
for i = 1, #users, 2 do
  local want = counts[users[i]]
  if want == nil or want == 0 then
    redis.call('HDEL', K_USERS, users[i])
    changed = 1
  elseif tonumber(users[i + 1]) ~= want then
    redis.call('HSET', K_USERS, users[i], want)
    changed = 1
  end
  counts[users[i]] = nil
end
for shopper, want in pairs(counts) do
  if want > 0 then
    redis.call('HSET', K_USERS, shopper, want)
    changed = 1
  end
end
if checked_out + ended > 0 then changed = 1 end
return {'ok', changed, checked_out, ended, before_n, keep_n}
