-- join: puts a shopper in line once; joining again returns the same ticket.
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 shopper id, 2 new ticket id, 3 now_ms, 4 starts_ms, 5 line cap,
--       6 seed (hex), 7 commitment (hex) — used only if this is the first pre-queuer.
-- Returns {'existing', ticket json}, {'created', ticket json}, {'full'},
--         {'needs_draw'} (the sale started; the caller runs the draw and retries).
local shopper, id, now, starts, cap =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local existing = redis.call('HGET', K_TICKETS, shopper)
if existing then return {'existing', existing} end

local drawn = meta_int('drawn') == 1
local ticket
if not drawn and now < starts then
  if meta_int('prequeue') >= cap then return {'full'} end
  -- The first pre-queuer fixes the seed: its hash is public from now on.
  redis.call('HSETNX', K_META, 'seed', ARGV[6])
  redis.call('HSETNX', K_META, 'commitment', ARGV[7])
  redis.call('RPUSH', K_PRE, id)
  redis.call('HINCRBY', K_META, 'prequeue', 1)
  ticket = {i = id, p = 0, j = now}
elseif not drawn then
  return {'needs_draw'}
else
  if meta_int('seq') - meta_int('serving') >= cap then return {'full'} end
  ticket = {i = id, p = redis.call('HINCRBY', K_META, 'seq', 1), j = now}
end
local json = cjson.encode(ticket)
redis.call('HSET', K_TICKETS, shopper, json)
redis.call('HSET', K_OWNERS, id, shopper)
return {'created', json}
