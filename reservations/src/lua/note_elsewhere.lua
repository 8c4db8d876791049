-- note_elsewhere: tells the shopper's home stripe about a hold that landed in another
-- stripe (the home stripe was sold out), so that the shopper counts once in `reserved`
-- and a retry with the same idempotency key meets this hold, not a new one.
--
-- KEYS: the eight keys of the shopper's home stripe (see common.lua).
-- ARGV: 1 shopper id, 2 idempotency key ('' when none), 3 the stripe of the hold.
-- Returns {'ok'}, or {'taken'} when the key already names another first answer (a
-- concurrent request with the same key got there first): the caller gives its own hold
-- back and answers that one. When the home stripe's state is missing, nothing is
-- recorded ({'ok'}): a rebuild forgets idempotency keys anyway.
if redis.call('EXISTS', K_META) == 0 then return {'ok'} end
local shopper, key, marker = ARGV[1], ARGV[2], '@' .. ARGV[3]
redis.call('SADD', K_RESERVED, shopper)
if key == '' then return {'ok'} end
local field = shopper .. ':' .. key
if redis.call('HSETNX', K_IDEM, field, marker) == 1 then return {'ok'} end
if redis.call('HGET', K_IDEM, field) == marker then return {'ok'} end
return {'taken'}
