-- Shared by every hold script (prepended to each one at load time).
--
-- KEYS, the same eight for every script of a sale's stripe, all with the stripe's hash
-- tag (stripe 0: `<prefix>:{sale:<id>}`, stripe k >= 1: `<prefix>:{sale:<id>:<k>}`; a
-- sale that is not striped has only stripe 0). Each stripe is a complete sale state of
-- its own: its own copy of meta and its own units, holds and counters.
--   1 meta        hash: state starts_ms ends_ms limit ttl_ms total held sold unit_count version
--                 [stripes] (total/held/sold count this stripe's units; unit_count is the
--                 sale's; `stripes` is written only when the sale has more than one)
--   2 free        list of free unit numbers
--   3 holds       hash: hold id -> JSON {o owner, q quantity, u units, d deadline ms,
--                                        s status, c created ms, k idempotency key, r order id}
--   4 deadlines   sorted set: hold id scored by its deadline (only holds in `held`)
--   5 users       hash: shopper id -> units held + bought (the per-shopper limit)
--   6 idem        hash: "<shopper>:<idempotency key>" -> hold id, or "@<k>" on the
--                 shopper's home stripe when the first answer is a hold in stripe k
--   7 committing  sorted set: hold id scored by when checkout began (holds in `committing`)
--   8 reserved    set of shoppers who reached the reserve step: held at least once,
--                 or were told sold out (the waiting room counts admitted shoppers not
--                 in it as still to come, or as no-shows); a shopper is recorded only
--                 in their home stripe, so the sets never overlap
--
-- Invariant kept by every script, in every stripe: LLEN(free) + meta.held + meta.sold =
-- meta.total. Unit u lives only in stripe (u - 1) mod stripes.
--
-- Variants (only a sale with more than one; a one-variant sale has none of this):
--   KEYS 9.. free lists of variants 1..n-1 (variant 0's is KEYS[2]), same hash tag
--   meta      also: variants = n, and per variant k (0-based): total:<k> held:<k>
--             sold:<k> (this stripe's units of k) and limit:<k> (0 = no own limit)
--   users     also: "<shopper>:<k>" -> units of variant k held + bought
--   a hold    also: l = {{v = k, q = n}, ...}: its lines; u lists the units line by line
-- Per variant, in every stripe: LLEN(free of k) + held:<k> + sold:<k> = total:<k>.
-- A script that moves units of a multi-variant sale first calls check_variant_keys():
-- a caller that passed too few keys gets the error `VARIANTS <n>` (before any write)
-- and calls again with n.
-- A hold leaves `held` exactly once (released, expired, or checked out): each script
-- checks the status before it moves units, and Redis runs one script at a time.

local K_META, K_FREE, K_HOLDS, K_DEADLINES, K_USERS, K_IDEM, K_COMMITTING, K_RESERVED =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]

local function load_hold(id)
  local raw = redis.call('HGET', K_HOLDS, id)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function save_hold(id, hold)
  redis.call('HSET', K_HOLDS, id, cjson.encode(hold))
end

-- Pushes `units` on the list `key`, in batches small enough for unpack().
local function push_to(key, units)
  for i = 1, #units, 1000 do
    redis.call('RPUSH', key, unpack(units, i, math.min(i + 999, #units)))
  end
end

-- Pushes `units` back on the free list, in batches small enough for unpack().
local function push_free(units)
  push_to(K_FREE, units)
end

-- The variant count the stripe was loaded with (1: not a multi-variant sale).
local function variant_count()
  return tonumber(redis.call('HGET', K_META, 'variants')) or 1
end

-- Raises `VARIANTS <n>` when the caller passed fewer than n variant free lists.
local function check_variant_keys()
  local n = variant_count()
  if #KEYS < 7 + n then error({err = 'VARIANTS ' .. n}) end
end

-- The free list of variant `v` (0-based).
local function free_key(v)
  if v == 0 then return K_FREE end
  return KEYS[8 + v]
end

local unit_ranges = nil
-- The variant (0-based) unit `unit` belongs to, from meta.ranges ("a-b:k,...", written
-- by load and add_units for a multi-variant sale); 0 for a one-variant sale.
local function variant_of(unit)
  if unit_ranges == nil then
    unit_ranges = {}
    local raw = redis.call('HGET', K_META, 'ranges') or ''
    for a, b, k in string.gmatch(raw, '(%d+)-(%d+):(%d+)') do
      unit_ranges[#unit_ranges + 1] = {tonumber(a), tonumber(b), tonumber(k)}
    end
  end
  for _, r in ipairs(unit_ranges) do
    if unit >= r[1] and unit <= r[2] then return r[3] end
  end
  return 0
end

-- A hold's units split by line: {{v, q, units}, ...}; one line of variant 0 for a hold
-- without lines (a one-variant sale's).
local function hold_lines(hold)
  if not hold.l then return {{v = 0, q = hold.q, units = hold.u}} end
  local out, at = {}, 1
  for _, line in ipairs(hold.l) do
    local units = {}
    for i = at, at + line.q - 1 do units[#units + 1] = hold.u[i] end
    at = at + line.q
    out[#out + 1] = {v = line.v, q = line.q, units = units}
  end
  return out
end

-- Returns a cart hold's units (those `keep(unit)` accepts, or all) to their variants'
-- free lists and takes its lines off the per-variant held and per-shopper counts.
local function release_lines(hold, keep)
  for _, line in ipairs(hold_lines(hold)) do
    local back = {}
    for _, unit in ipairs(line.units) do
      if keep == nil or keep(tonumber(unit)) then back[#back + 1] = unit end
    end
    push_to(free_key(line.v), back)
    redis.call('HINCRBY', K_META, 'held:' .. line.v, -line.q)
    redis.call('HINCRBY', K_USERS, hold.o .. ':' .. line.v, -line.q)
  end
end

-- Returns a `held` hold's units to the free list and ends it with `status`.
local function release_hold(id, hold, status)
  if hold.l then release_lines(hold) else push_free(hold.u) end
  redis.call('ZREM', K_DEADLINES, id)
  redis.call('HINCRBY', K_USERS, hold.o, -hold.q)
  redis.call('HINCRBY', K_META, 'held', -hold.q)
  hold.s = status
  save_hold(id, hold)
end

-- Calls `f(unit)` for each unit of this stripe in a..b: the units u with
-- (u - 1) mod stripes == stripe.
local function for_stripe_units(a, b, stripes, stripe, f)
  for unit = a + (stripe - (a - 1)) % stripes, b, stripes do f(unit) end
end

-- How many stripes the sale was loaded with (1 when meta has no `stripes` field).
local function meta_stripes()
  return tonumber(redis.call('HGET', K_META, 'stripes')) or 1
end
