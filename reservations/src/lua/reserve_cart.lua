-- reserve_cart: takes every line of a cart (variant, quantity) from one stripe of a
-- multi-variant sale for one shopper, all or none: every line is checked first, units
-- are popped only when all pass, so no moment exists where part of a cart is held.
--
-- KEYS: the eight keys of the stripe, then the free lists of variants 1..n-1 (see
--       common.lua).
-- ARGV: 1 now_ms, 2 new hold id, 3 shopper id, 4 idempotency key ('' when none),
--       5 the stripe count the caller expects, 6 '1' on the shopper's home stripe,
--       7.. pairs (variant ordinal, quantity), distinct ordinals, in the cart's order.
-- Returns one of:
--   {'ok', hold id, deadline_ms, replayed (0|1)}
--   {'no_state'} {'stripes', n} {'elsewhere', k} {'idem_mismatch'} {'not_live'}
--                           as reserve.lua
--   {'unknown_variant', k}  the sale has no variant k
--   {'limit', 'sale', limit}           the sale's per-shopper limit would be passed
--   {'limit', 'variant', k, limit}     variant k's own limit would be passed
--   {'sold_out', k1, free1, k2, free2, ...}  the lines this stripe cannot serve, with
--                           the free units of their variants here
-- The hold is one record: q the cart's units, u its units line by line, l its lines;
-- the idempotency key answers the first cart if the lines are the same, else
-- idem_mismatch.
if redis.call('EXISTS', K_META) == 0 then return {'no_state'} end
check_variant_keys()
local now, id, shopper, key = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local m = redis.call('HMGET', K_META, 'state', 'starts_ms', 'ends_ms', 'limit', 'ttl_ms',
  'stripes')
local stripes = tonumber(m[6]) or 1
if stripes ~= tonumber(ARGV[5]) then return {'stripes', stripes} end
local n = variant_count()

local lines, qty = {}, 0
for i = 7, #ARGV, 2 do
  local v, q = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if v < 0 or v >= n then return {'unknown_variant', v} end
  lines[#lines + 1] = {v = v, q = q}
  qty = qty + q
end

local function same_lines(a, b)
  if a == nil or #a ~= #b then return false end
  for i = 1, #a do
    if a[i].v ~= b[i].v or a[i].q ~= b[i].q then return false end
  end
  return true
end

local idem_field = shopper .. ':' .. key
if key ~= '' then
  local previous = redis.call('HGET', K_IDEM, idem_field)
  if previous then
    local elsewhere = string.match(previous, '^@(%d+)$')
    if elsewhere then return {'elsewhere', tonumber(elsewhere)} end
    local hold = load_hold(previous)
    if hold == nil or not same_lines(hold.l, lines) then return {'idem_mismatch'} end
    return {'ok', previous, hold.d, 1}
  end
end

if m[1] ~= 'active' or now < tonumber(m[2]) or now >= tonumber(m[3]) then
  return {'not_live'}
end
local limit = tonumber(m[4])
local have = tonumber(redis.call('HGET', K_USERS, shopper)) or 0
if have + qty > limit then return {'limit', 'sale', limit} end
for _, line in ipairs(lines) do
  local own = tonumber(redis.call('HGET', K_META, 'limit:' .. line.v)) or 0
  if own > 0 then
    local had = tonumber(redis.call('HGET', K_USERS, shopper .. ':' .. line.v)) or 0
    if had + line.q > own then return {'limit', 'variant', line.v, own} end
  end
end

local short = {'sold_out'}
for _, line in ipairs(lines) do
  local free = redis.call('LLEN', free_key(line.v))
  if free < line.q then
    short[#short + 1] = line.v
    short[#short + 1] = free
  end
end
if #short > 1 then
  if ARGV[6] == '1' then redis.call('SADD', K_RESERVED, shopper) end
  return short
end

local units = {}
for _, line in ipairs(lines) do
  for _, unit in ipairs(redis.call('LPOP', free_key(line.v), line.q)) do
    units[#units + 1] = tonumber(unit)
  end
  redis.call('HINCRBY', K_META, 'held:' .. line.v, line.q)
  redis.call('HINCRBY', K_USERS, shopper .. ':' .. line.v, line.q)
end
local deadline = now + tonumber(m[5])
save_hold(id, {o = shopper, q = qty, u = units, l = lines, d = deadline, s = 'held', c = now,
  k = key})
redis.call('ZADD', K_DEADLINES, deadline, id)
redis.call('HINCRBY', K_USERS, shopper, qty)
redis.call('HINCRBY', K_META, 'held', qty)
if ARGV[6] == '1' then redis.call('SADD', K_RESERVED, shopper) end
if key ~= '' then redis.call('HSET', K_IDEM, idem_field, id) end
return {'ok', id, deadline, 0}
