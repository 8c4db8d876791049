-- ticket: a shopper's ticket and the line's state, in one atomic read. Records when
-- the shopper was admitted: when the serving position first passed their position,
-- read from the serving log, not when they first polled (a shopper who polls late
-- has less of the window left, never a fresh one: no banked admissions).
--
-- KEYS: the five line keys (see common.lua), and 6 the report's wait histograms (report.rs).
-- ARGV: 1 shopper id, 2 now_ms, 3 the ticket id and 4 the admitted ms the shopper's
--       signed statement gives ('' when none): an older copy of the line may not know
--       the shopper was admitted already; the window never starts later than the
--       statement says.
-- Returns {} when the shopper is not in line, else
--   {ticket json, serving, drawn, sold_out, rate}.

-- When the serving position first reached `position`: a binary search over the log
-- by rank (serving only grows with time), O(log² n) once per ticket. Nil when the log
-- does not show it (a line rebuilt after a loss has no log before it).
local function admitted_at(position)
  local lo, hi, found = 0, redis.call('ZCARD', K_LOG) - 1, nil
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local entry = redis.call('ZRANGE', K_LOG, mid, mid)[1]
    local ms, serving = string.match(entry or '', '^(%-?%d+):(%d+)$')
    if serving and tonumber(serving) >= position then
      found, hi = tonumber(ms), mid - 1
    else
      lo = mid + 1
    end
  end
  return found
end

local raw = redis.call('HGET', K_TICKETS, ARGV[1])
if not raw then return {} end
local serving = meta_int('serving')
local ticket = cjson.decode(raw)
if ticket.p > 0 and ticket.p <= serving and ticket.a == nil then
  local now = tonumber(ARGV[2])
  local stated = ARGV[3] == ticket.i and tonumber(ARGV[4])
  ticket.a = math.min(now, admitted_at(ticket.p) or now, stated or now)
  -- The report's actual-wait histogram (KEYS[6], see report.rs): counted once, here,
  -- where the admission time is stamped.
  if (ticket.j or 0) > 0 and KEYS[6] then
    redis.call('HINCRBY', KEYS[6], 'a:' .. wait_bucket((ticket.a - ticket.j) / 1000), 1)
  end
  raw = cjson.encode(ticket)
  redis.call('HSET', K_TICKETS, ARGV[1], raw)
end
return {raw, serving, meta_int('drawn'), meta_int('sold_out'),
        redis.call('HGET', K_META, 'rate') or '0'}
