-- ticket: a shopper's ticket and the line's state, in one atomic read. Records when
-- the shopper first saw themselves admitted (their admission window starts then).
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 shopper id, 2 now_ms.
-- Returns {} when the shopper is not in line, else
--   {ticket json, serving, drawn, sold_out, rate}.
local raw = redis.call('HGET', K_TICKETS, ARGV[1])
if not raw then return {} end
local serving = meta_int('serving')
local ticket = cjson.decode(raw)
if ticket.p > 0 and ticket.p <= serving and ticket.a == nil then
  ticket.a = tonumber(ARGV[2])
  raw = cjson.encode(ticket)
  redis.call('HSET', K_TICKETS, ARGV[1], raw)
end
return {raw, serving, meta_int('drawn'), meta_int('sold_out'),
        redis.call('HGET', K_META, 'rate') or '0'}
