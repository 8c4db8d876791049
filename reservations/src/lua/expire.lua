-- expire: releases holds whose deadline has passed, oldest first, up to a batch size.
--
-- KEYS: the eight keys of one stripe of the sale (see common.lua).
-- ARGV: 1 now_ms, 2 batch size.
-- Returns {holds expired, holds still live (held or committing), ends_ms}. Holds being
-- checked out are not in the deadline set (checkout moved them to `committing`), so
-- expiry never races a commit.
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
return {expired, redis.call('ZCARD', K_DEADLINES) + redis.call('ZCARD', K_COMMITTING),
        tonumber(redis.call('HGET', K_META, 'ends_ms')) or 0}
