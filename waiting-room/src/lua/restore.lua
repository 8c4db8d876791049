-- restore: puts a shopper Redis forgot back at the place their signed statement gives
-- (the caller checked the signature). A shopper Redis knows keeps their ticket.
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 shopper id, 2 ticket id, 3 position (0: pre-queue), 4 joined ms,
--       5 first admitted ms ('' when never), 6 priority (1: the shopper used a
--       priority access code for this sale, as Postgres recorded; a pre-queue place
--       goes back among the priority tickets).
-- Returns {'existing', json}, {'restored', json}, {'left'}, {'needs_marks'} (the line itself is
-- gone: heal it first), {'behind'} (the place is past the last position Redis counts:
-- Redis is older than the line; heal it first), {'needs_ceiling', seq}.
local shopper = ARGV[1]
local existing = redis.call('HGET', K_TICKETS, shopper)
if existing then return {'existing', existing} end
if redis.call('HEXISTS', K_META, 'ceiling') == 0 then return {'needs_marks'} end
-- The shopper left this place (leave's tombstone): it is not theirs any more.
if redis.call('HEXISTS', K_OWNERS, ARGV[2]) == 1 then return {'left'} end
local seq, position = meta_int('seq'), tonumber(ARGV[3])
if position > seq then return {'behind'} end
if position == 0 then
  if meta_int('drawn') == 1 then
    -- Pre-queued, and not in the recorded draw (the caller places those who are):
    -- the published draw cannot take them in, so they join the back of the line.
    if seq + 1 > meta_int('ceiling') then return {'needs_ceiling', tostring(seq)} end
    position = redis.call('HINCRBY', K_META, 'seq', 1)
  else
    -- Scored as join.lua scores (class * 2^40 + address group); the group is not
    -- in the statement, so 0: a round of its own in the draw (draw.rs).
    redis.call('ZADD', K_PRE, (ARGV[6] == '1' and 0 or 1) * 1099511627776, ARGV[2])
    redis.call('HINCRBY', K_META, 'prequeue', 1)
  end
end
local ticket = {i = ARGV[2], p = position, j = tonumber(ARGV[4])}
if ARGV[5] ~= '' then ticket.a = tonumber(ARGV[5]) end
if ARGV[6] == '1' then ticket.r = 1 end
local json = cjson.encode(ticket)
redis.call('HSET', K_TICKETS, shopper, json)
redis.call('HSET', K_OWNERS, ARGV[2], shopper)
return {'restored', json}
