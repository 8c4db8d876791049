-- advance: the controller moves the serving position and publishes its decision.
--
-- KEYS: the five line keys (see common.lua).
-- ARGV: 1 now_ms, 2 positions to admit, 3 rate, 4 reason, 5 sold_out (0|1),
--       6 active shoppers, 7 no-show rate, 8 the signals it decided on (JSON).
-- Returns the new serving position. It never passes the last position handed out.
local now, admit = tonumber(ARGV[1]), tonumber(ARGV[2])
local seq, serving = meta_int('seq'), meta_int('serving')
local next_serving = math.min(seq, serving + admit)
redis.call('HSET', K_META, 'serving', next_serving, 'rate', ARGV[3], 'reason', ARGV[4],
  'sold_out', ARGV[5], 'active', ARGV[6], 'no_show', ARGV[7], 'signals', ARGV[8])
redis.call('ZADD', K_LOG, now, now .. ':' .. next_serving)
-- Keep two hours of history at two ticks a second.
redis.call('ZREMRANGEBYRANK', K_LOG, 0, -14401)
return next_serving
