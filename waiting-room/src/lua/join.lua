-- join: puts a shopper in line once; joining again returns the same ticket.
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 shopper id, 2 new ticket id, 3 now_ms, 4 starts_ms, 5 line cap,
--       6 floor: the highest position the calling process knows was handed out,
--       7 priority (1: the shopper used a priority access code, drawn ahead of the
--       public pre-queue; after the draw they queue in arrival order like everyone),
--       8 the join's address group (0: not known; see draw.rs, `address_group`).
-- Returns {'existing', ticket json}, {'created', ticket json}, {'full'},
--         {'needs_draw'} (the sale started; the caller runs the draw and retries),
--         {'needs_marks'} (the line is not marked from Postgres: new, or lost),
--         {'needs_seed'} (the draw's seed is not fixed yet: Postgres fixes it first),
--         {'needs_ceiling', seq} (the next position is past the recorded ceiling),
--         {'behind'} (Redis counts fewer positions than were handed out: older).
-- The caller resolves each need and retries.
local shopper, id, now, starts, cap =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local existing = redis.call('HGET', K_TICKETS, shopper)
if existing then return {'existing', existing} end
if redis.call('HEXISTS', K_META, 'ceiling') == 0 then return {'needs_marks'} end
if meta_int('seq') < tonumber(ARGV[6]) then return {'behind'} end

local drawn = meta_int('drawn') == 1
local ticket
if not drawn and now < starts then
  if meta_int('prequeue') >= cap then return {'full'} end
  -- The seed is fixed in Postgres before its hash is public (here, from now on).
  if redis.call('HEXISTS', K_META, 'commitment') == 0 then return {'needs_seed'} end
  -- Scored class * 2^40 + address group (draw.rs, GROUP_SPAN): exact in a double.
  local class = ARGV[7] == '1' and 0 or 1
  redis.call('ZADD', K_PRE, class * 1099511627776 + (tonumber(ARGV[8]) or 0), id)
  redis.call('HINCRBY', K_META, 'prequeue', 1)
  ticket = {i = id, p = 0, j = now}
elseif not drawn then
  return {'needs_draw'}
else
  if meta_int('seq') - meta_int('serving') >= cap then return {'full'} end
  if meta_int('seq') + 1 > meta_int('ceiling') then
    return {'needs_ceiling', tostring(meta_int('seq'))}
  end
  ticket = {i = id, p = redis.call('HINCRBY', K_META, 'seq', 1), j = now}
end
if ARGV[7] == '1' then ticket.r = 1 end
local json = cjson.encode(ticket)
redis.call('HSET', K_TICKETS, shopper, json)
redis.call('HSET', K_OWNERS, id, shopper)
return {'created', json}
