-- The least a hold needs (issue 19): an atomic pop of `qty` free units, the shopper's
-- count against the limit, and a deadline. loadtests/bench/reserve drives it with
-- redis-benchmark EVALSHA as the physical limit of the reserve path.
-- KEYS: 1 free list, 2 deadlines zset, 3 per-shopper hash.
-- ARGV: 1 shopper, 2 quantity, 3 limit, 4 now_ms, 5 ttl_ms, 6 hold id.
local qty = tonumber(ARGV[2])
local had = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if had + qty > tonumber(ARGV[3]) then return {-2} end
local units = redis.call('LPOP', KEYS[1], qty)
if not units then return {-1} end
if #units < qty then for i=#units,1,-1 do redis.call('LPUSH', KEYS[1], units[i]) end return {-1} end
redis.call('HINCRBY', KEYS[3], ARGV[1], qty)
redis.call('ZADD', KEYS[2], tonumber(ARGV[4]) + tonumber(ARGV[5]), ARGV[6])
return units
