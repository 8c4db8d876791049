-- draw: numbers the pre-queued tickets 1..n in the drawn order (computed from the
-- committed seed and recorded in Postgres first), once, in chunks: each call numbers
-- one slice of the order, so no call runs long whatever the pre-queue's size (a
-- 200,000-ticket draw in one script would hold Redis past its script time limit).
-- Later arrivals are numbered after the pre-queue.
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 n, the number of tickets in the order, 2 offset: how many tickets of the
--       order come before this slice, 3 last (1 when this slice ends the order),
--       4.. the slice's ticket ids in drawn order.
-- Returns {n} when the draw is complete (now), {0} when it happened before,
-- {-1, next} when the slice is numbered and the next starts at `next`,
-- {-3, next} when the slice starts past the cursor `draw_next` (resume from it),
-- {-2, needed} when the ceiling is below the last position it would number (the
-- caller raises it in Postgres first).
-- Slices are idempotent (a ticket's number is its index in the order), so processes
-- drawing at once, or one resuming after a crash, agree. A ticket of the order Redis
-- no longer knows keeps its number (its shopper restores it from their statement); a
-- pre-queued ticket not in the recorded order (it came back, or in, while the order
-- was recorded) is numbered after the drawn ones by the last slice: numbered tickets
-- leave the pre-queue set, so what is left there is only those.
if meta_int('drawn') == 1 then return {0} end
local n, offset, last = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local cursor = meta_int('draw_next')
if offset > cursor then return {-3, cursor} end
local base = math.max(meta_int('seq'), n)
if meta_int('ceiling') < base then return {-2, base} end
for i = 4, #ARGV do
  local id = ARGV[i]
  local shopper = redis.call('HGET', K_OWNERS, id)
  local raw = shopper and redis.call('HGET', K_TICKETS, shopper)
  if raw then
    -- The position replaced in the JSON text: the one numeric "p" field of a ticket
    -- (ticket ids are UUIDs), at a fraction of a decode and an encode per ticket.
    local numbered = string.gsub(raw, '"p":%-?%d+', '"p":' .. (offset + i - 3), 1)
    redis.call('HSET', K_TICKETS, shopper, numbered)
  end
end
-- One ZREM for the slice (Lua's stack takes a slice of DRAW_CHUNK ids at once).
if #ARGV >= 4 then redis.call('ZREM', K_PRE, unpack(ARGV, 4)) end
local next = offset + #ARGV - 3
if next > cursor then redis.call('HSET', K_META, 'draw_next', next) end
if not last then return {-1, math.max(next, cursor)} end

-- The rest of the pre-queue, priority first (score 0), then by id.
local rest = redis.call('ZRANGE', K_PRE, 0, -1)
local needed = base + #rest
if meta_int('ceiling') < needed then return {-2, needed} end
local seq = base
for _, id in ipairs(rest) do
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
  redis.call('ZREM', K_PRE, id)
end
redis.call('HSET', K_META, 'drawn', 1, 'seq', seq, 'drawn_count', n)
redis.call('HDEL', K_META, 'draw_next')
redis.call('HSETNX', K_META, 'serving', 0)
return {n}
