-- expire: releases holds whose deadline has passed, oldest first, up to a batch size.
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: 1 now_ms, 2 batch size.
-- Returns {holds expired, holds still live (held or committing), ends_ms}; ends_ms is
-- when the sale ends, at the latest now once the merchant ended it (0 when the state is
-- missing). Holds being checked out are not in the deadline set (checkout moved them to
-- `committing`), so expiry never races a commit.
check_variant_keys()
local now, batch = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', K_DEADLINES, '-inf', now, 'LIMIT', 0, batch)
local expired = 0
for _, id in ipairs(due) do
  local hold = load_hold(id)
  if hold and hold.s == 'held' then
    release_hold(id, hold, 'expired')
    expired = expired + 1
  else
    redis.call('ZREM', K_DEADLINES, id)
  end
end
local m = redis.call('HMGET', K_META, 'state', 'ends_ms')
local ends = tonumber(m[2]) or 0
if m[1] == 'ended' and ends > now then ends = now end
return {expired, redis.call('ZCARD', K_DEADLINES) + redis.call('ZCARD', K_COMMITTING), ends}
