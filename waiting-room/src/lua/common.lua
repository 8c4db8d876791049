-- Shared by every queue script (prepended at load time).
--
-- KEYS, the same five for every script of a sale's line, all with the sale's hash tag:
--   1 meta     hash: seq (last position handed out), serving (positions <= it are
--              admitted), drawn (1 once the pre-queue is shuffled), prequeue (count),
--              left (count), drawn_count (tickets in the draw), seed, commitment, rate, reason, active, no_show, sold_out,
--              ceiling (no position past it is handed out: Postgres recorded it first;
--              absent until the line is marked from Postgres, so a line Redis lost
--              entirely is noticed)
--   2 tickets  hash: shopper id -> JSON {i ticket id, p position (0 in pre-queue),
--              j joined ms, a admitted ms (when the serving position passed p, from the
--              log: the admission window runs from then, not from the first poll),
--              r 1 for a priority code's holder}
--   3 pre      sorted set of pre-queued ticket ids, scored class * 2^40 + address
--              group (class 0: a priority code's holder, 1: the public; the group as
--              draw.rs `address_group`, 0 when not known): leaving is one ZREM, not a
--              scan of a list, and the draw reads both classes in one ZRANGE
--   4 owners   hash: ticket id -> shopper id ('' once the shopper left that ticket)
--   5 log      sorted set: "<ms>:<serving>" scored by ms (serving position over time)
--
-- Positions are unique: each comes from one HINCRBY of `seq` or from the draw, which
-- numbers the pre-queue 1..n before any later arrival gets n+1. They are dense until
-- Redis loses the line: the rebuilt line numbers new arrivals from the recorded
-- ceiling, past every place a shopper may still claim with a statement.

local K_META, K_TICKETS, K_PRE, K_OWNERS, K_LOG = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local function meta_int(field)
  return tonumber(redis.call('HGET', K_META, field)) or 0
end

-- The report's wait bucket of `seconds` (report.rs `bucket_of`): quarter octaves, 0
-- under one second.
local function wait_bucket(seconds)
  if seconds < 1 then return 0 end
  -- The nudge keeps exact powers of two in their bucket (log(8) / log(2) is a hair
  -- under 3 in some libms, where Rust's log2 is exact).
  return math.floor(4 * math.log(seconds) / math.log(2) + 1e-9) + 1
end
