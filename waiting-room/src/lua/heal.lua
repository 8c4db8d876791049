-- heal: brings the line up to what Postgres recorded (line_marks), and says whether
-- Redis had lost part of it. Safe to run any time: it only moves marks forward.
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 the recorded ceiling (no position above it was ever handed out), 2 the
--       ceiling to keep from now on, 3 recorded seq, 4 recorded serving, 5 seed,
--       6 commitment ('' when none), 7 force (1 when the caller has other evidence
--       that Redis is older than the line, e.g. a place handed out that Redis no
--       longer counts).
-- The draw is not marked here: a lost draw is run again from the recorded order.
-- Returns {lost (0|1), seq, serving}.
local pg_ceiling, keep_ceiling = tonumber(ARGV[1]), tonumber(ARGV[2])
local pg_seq, pg_serving = tonumber(ARGV[3]), tonumber(ARGV[4])
local seq, serving = meta_int('seq'), meta_int('serving')
-- Lost: the line is gone (no ceiling although Postgres recorded one), or Redis counts
-- fewer places or admissions than it once told Postgres (an older copy), or the
-- caller knows. A ceiling raised in Postgres and not yet in Redis is not a loss.
local marked = redis.call('HEXISTS', K_META, 'ceiling') == 1
local lost = ARGV[7] == '1' or (not marked and pg_ceiling > 0) or seq < pg_seq
  or serving < pg_serving
if lost and seq < pg_ceiling then
  -- Some positions up to the ceiling may be held by shoppers Redis forgot: every
  -- later joiner comes after all of them.
  seq = pg_ceiling
end
if serving < pg_serving then serving = pg_serving end
if serving > seq then serving = seq end
redis.call('HSET', K_META, 'seq', seq, 'serving', serving,
  'ceiling', math.max(meta_int('ceiling'), keep_ceiling, seq))
if ARGV[5] ~= '' then
  redis.call('HSETNX', K_META, 'seed', ARGV[5])
  redis.call('HSETNX', K_META, 'commitment', ARGV[6])
end
return {lost and 1 or 0, seq, serving}
