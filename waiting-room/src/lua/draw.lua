-- draw: numbers the pre-queued tickets 1..n in the shuffled order computed from the
-- committed seed (and recorded in Postgres first), once. Later arrivals are numbered
-- after them.
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 n, the number of tickets in the order, 2.. ticket ids in drawn order.
-- Returns {n} when it drew, {0} when the draw already happened, {-2, needed} when the
-- ceiling is below the last position it would number (the caller raises it in
-- Postgres first).
-- A ticket of the order Redis no longer knows keeps its number (its shopper restores
-- it from their statement). A pre-queued ticket not in the recorded order (it came
-- back, or in, while the order was recorded) is numbered after the drawn ones.
if meta_int('drawn') == 1 then return {0} end
local n = tonumber(ARGV[1])
local pre = redis.call('LRANGE', K_PRE, 0, -1)
local in_order = {}
for i = 2, #ARGV do in_order[ARGV[i]] = true end
local needed = math.max(meta_int('seq'), n)
for _, id in ipairs(pre) do
  if not in_order[id] then needed = needed + 1 end
end
if meta_int('ceiling') < needed then return {-2, needed} end
for i = 2, #ARGV do
  local shopper = redis.call('HGET', K_OWNERS, ARGV[i])
  local raw = shopper and redis.call('HGET', K_TICKETS, shopper)
  if raw then
    local ticket = cjson.decode(raw)
    ticket.p = i - 1
    redis.call('HSET', K_TICKETS, shopper, cjson.encode(ticket))
  end
end
local seq = math.max(meta_int('seq'), n)
for _, id in ipairs(pre) do
  local shopper = redis.call('HGET', K_OWNERS, id)
  local raw = shopper and redis.call('HGET', K_TICKETS, shopper)
  if raw then
    local ticket = cjson.decode(raw)
    if ticket.p == 0 then
      seq = seq + 1
      ticket.p = seq
      redis.call('HSET', K_TICKETS, shopper, cjson.encode(ticket))
    end
  end
end
redis.call('HSET', K_META, 'drawn', 1, 'seq', seq, 'drawn_count', n)
redis.call('HSETNX', K_META, 'serving', 0)
return {n}
