-- purge: deletes the Redis state of one stripe of a sale that is over and holds
-- nothing, once its retention has passed (the caller decides when). Postgres keeps the
-- record: a later read of the sale rebuilds the state from it, as after any loss.
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: 1 now_ms.
-- Returns {'purged'}  the stripe's keys are deleted
--         {'gone'}    the stripe's state was not there
--         {'live'}    not over (its end was moved later) or a hold is still held or
--                     committing: nothing deleted
if redis.call('EXISTS', K_META) == 0 then return {'gone'} end
check_variant_keys()
local now = tonumber(ARGV[1])
local m = redis.call('HMGET', K_META, 'state', 'ends_ms')
local over = m[1] == 'ended' or now >= (tonumber(m[2]) or math.huge)
local live = redis.call('ZCARD', K_DEADLINES) + redis.call('ZCARD', K_COMMITTING)
if not over or live > 0 then return {'live'} end
local variants = variant_count()
redis.call('DEL', K_META, K_FREE, K_HOLDS, K_DEADLINES, K_USERS, K_IDEM, K_COMMITTING,
  K_RESERVED)
for v = 1, variants - 1 do redis.call('DEL', free_key(v)) end
return {'purged'}
