-- join: puts a shopper in line once; joining again returns the same ticket. A created
-- ticket is counted in the report here, with the wait it states (report.rs), so the
-- common join is this one call.
--
-- KEYS: the five line keys (see common.lua), and 6 the report's counters (report.rs).
-- ARGV: 1 shopper id, 2 new ticket id, 3 now_ms, 4 starts_ms, 5 line cap,
--       6 floor: the highest position the calling process knows was handed out,
--       7 priority (1: the shopper used a priority access code, drawn ahead of the
--       public pre-queue; after the draw they queue in arrival order like everyone),
--       8 the join's address group (0: not known; see draw.rs, `address_group`).
-- Returns {'existing', ticket json}, {'created', ticket json, serving, rate, ceiling}
--         (what the caller renders the new ticket from, and raises the ceiling by), {'sold_out'} (the controller's verdict:
--         nothing left to wait for), {'full'},
--         {'needs_draw'} (the sale started; the caller runs the draw and retries),
--         {'needs_marks'} (the line is not marked from Postgres: new, or lost),
--         {'needs_seed'} (the draw's seed is not fixed yet: Postgres fixes it first),
--         {'needs_ceiling', seq} (the next position is past the recorded ceiling),
--         {'behind'} (Redis counts fewer positions than were handed out: older).
-- The caller resolves each need and retries.
local shopper, id, now, starts, cap =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local K_REPORT = KEYS[6]
local m = redis.call('HMGET', K_META,
  'sold_out', 'ceiling', 'seq', 'serving', 'drawn', 'prequeue', 'commitment', 'rate')
if m[1] == '1' then return {'sold_out'} end
local existing = redis.call('HGET', K_TICKETS, shopper)
if existing then return {'existing', existing} end
-- No ceiling: the line is not marked from Postgres (a line Redis lost entirely too).
if not m[2] then return {'needs_marks'} end
local ceiling, seq, serving = tonumber(m[2]), tonumber(m[3]) or 0, tonumber(m[4]) or 0
local rate = m[8] or '0'
if seq < tonumber(ARGV[6]) then return {'behind'} end

local drawn = m[5] == '1'
local ticket
if not drawn and now < starts then
  if (tonumber(m[6]) or 0) >= cap then return {'full'} end
  -- The seed is fixed in Postgres before its hash is public (here, from now on).
  if not m[7] then return {'needs_seed'} end
  -- Scored class * 2^40 + address group (draw.rs, GROUP_SPAN): exact in a double.
  local class = ARGV[7] == '1' and 0 or 1
  redis.call('ZADD', K_PRE, class * 1099511627776 + (tonumber(ARGV[8]) or 0), id)
  redis.call('HINCRBY', K_META, 'prequeue', 1)
  ticket = {i = id, p = 0, j = now}
  -- Pre-queued shoppers are told no wait (the draw places them).
  redis.call('HINCRBY', K_REPORT, 'prequeued', 1)
elseif not drawn then
  return {'needs_draw'}
else
  if seq - serving >= cap then return {'full'} end
  if seq + 1 > ceiling then return {'needs_ceiling', tostring(seq)} end
  ticket = {i = id, p = redis.call('HINCRBY', K_META, 'seq', 1), j = now}
  -- The wait the ticket states (queue.rs, `render`): places ahead over the rate.
  local wait = 0
  if ticket.p > serving then
    wait = math.ceil((ticket.p - serving - 1) / math.max(tonumber(rate) or 0, 0.1))
  end
  redis.call('HINCRBY', K_REPORT, 'e:' .. wait_bucket(wait), 1)
end
if ARGV[7] == '1' then ticket.r = 1 end
local json = cjson.encode(ticket)
redis.call('HSET', K_TICKETS, shopper, json)
redis.call('HSET', K_OWNERS, id, shopper)
redis.call('HINCRBY', K_REPORT, 'joined', 1)
return {'created', json, tostring(serving), rate, tostring(ceiling)}
