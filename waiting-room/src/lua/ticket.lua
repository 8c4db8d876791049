-- ticket: a shopper's ticket and the line's state, in one atomic read. Records when
-- the shopper first saw themselves admitted (their admission window starts then).
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 shopper id, 2 now_ms, 3 the ticket id and 4 the first admitted ms the
--       shopper's signed statement gives ('' when none): an older copy of the line
--       may not know the shopper was admitted already; the window never starts later
--       than the statement says.
-- Returns {} when the shopper is not in line, else
--   {ticket json, serving, drawn, sold_out, rate}.
local raw = redis.call('HGET', K_TICKETS, ARGV[1])
if not raw then return {} end
local serving = meta_int('serving')
local ticket = cjson.decode(raw)
if ticket.p > 0 and ticket.p <= serving and ticket.a == nil then
  local stated = ARGV[3] == ticket.i and tonumber(ARGV[4])
  ticket.a = math.min(tonumber(ARGV[2]), stated or tonumber(ARGV[2]))
  raw = cjson.encode(ticket)
  redis.call('HSET', K_TICKETS, ARGV[1], raw)
end
return {raw, serving, meta_int('drawn'), meta_int('sold_out'),
        redis.call('HGET', K_META, 'rate') or '0'}
