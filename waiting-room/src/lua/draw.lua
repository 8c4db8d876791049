-- draw: numbers the pre-queued tickets 1..n in the shuffled order computed from the
-- committed seed, once. Later arrivals are numbered after them.
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 number of pre-queued tickets the order was computed from, 2.. ticket ids in
--       drawn order.
-- Returns n when it drew, 0 when the draw already happened, -1 when the pre-queue
-- changed meanwhile (the caller recomputes).
if meta_int('drawn') == 1 then return 0 end
if redis.call('LLEN', K_PRE) ~= tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV do
  local shopper = redis.call('HGET', K_OWNERS, ARGV[i])
  local ticket = cjson.decode(redis.call('HGET', K_TICKETS, shopper))
  ticket.p = i - 1
  redis.call('HSET', K_TICKETS, shopper, cjson.encode(ticket))
end
redis.call('HSET', K_META, 'drawn', 1, 'seq', #ARGV - 1)
redis.call('HSETNX', K_META, 'serving', 0)
return #ARGV - 1
