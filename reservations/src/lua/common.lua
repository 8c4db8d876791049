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

-- Pushes `units` back on the free list, in batches small enough for unpack().
local function push_free(units)
  for i = 1, #units, 1000 do
    redis.call('RPUSH', K_FREE, unpack(units, i, math.min(i + 999, #units)))
  end
end

-- Returns a `held` hold's units to the free list and ends it with `status`.
local function release_hold(id, hold, status)
  push_free(hold.u)
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
