-- leave: takes a shopper out of line. Their position is not reused (positions stay
-- unique); joining again puts them at the back, statement or not.
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 shopper id.
-- Returns 1 when the shopper was in line, 0 otherwise.
local raw = redis.call('HGET', K_TICKETS, ARGV[1])
if not raw then return 0 end
local ticket = cjson.decode(raw)
redis.call('HDEL', K_TICKETS, ARGV[1])
-- A tombstone: the statement of a place left cannot put the shopper back (restore).
redis.call('HSET', K_OWNERS, ticket.i, '')
if ticket.p == 0 then
  -- One ZREM (O(log n)); it was an LREM, a scan of the whole pre-queue per leave.
  redis.call('ZREM', K_PRE, ticket.i)
  redis.call('HINCRBY', K_META, 'prequeue', -1)
elseif ticket.p > meta_int('serving') then
  redis.call('HINCRBY', K_META, 'left', 1)
end
return 1
