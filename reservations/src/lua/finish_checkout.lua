-- finish_checkout: ends a `committing` hold once checkout knows what Postgres did.
--
-- KEYS: the eight keys of the hold's stripe (see common.lua).
-- ARGV: 1 hold id, 2 outcome, 3 order id, 4.. unit numbers (see below).
-- Outcomes:
--   'sold'      the order committed; ARGV 4.. are its units. The hold becomes
--               `checked_out` and its units move from held to sold. If the hold is not
--               `committing` any more (Redis lost state and was rebuilt before the order
--               was in Postgres, or a reconciler gave up on it), the order's units are
--               taken off the free list and counted as sold here, so they cannot be
--               handed out again.
--   'abort'     nothing committed (payment declined or failed, database down): the hold
--               goes back to `held` until its own deadline.
--   'conflict'  Postgres refused units already sold to another order (ARGV 4.. are
--               those): they are dropped, the other units return to the free list, and
--               the hold ends `released`.
--   'release'   nothing committed and the hold can never be bought (Postgres refused the
--               order: the shopper's orders would pass the per-shopper limit): every
--               unit returns to the free list and the hold ends `released`.
-- Returns {'ok'}, {'noop'} (nothing to do) or {'no_state'}.
-- A multi-variant sale's counters move per variant too: held:<k> by the hold's lines,
-- sold:<k> by the variant each unit belongs to (meta.ranges, see common.lua).
if redis.call('EXISTS', K_META) == 0 then return {'no_state'} end
check_variant_keys()
local varied = variant_count() > 1
local id, outcome, order = ARGV[1], ARGV[2], ARGV[3]
local units = {}
for i = 4, #ARGV do units[#units + 1] = tonumber(ARGV[i]) end
local hold = load_hold(id)
local committing = hold ~= nil and hold.s == 'committing'

if outcome == 'sold' then
  if hold ~= nil and hold.s == 'checked_out' then return {'noop'} end
  if committing or (hold ~= nil and hold.s == 'held') then
    redis.call('ZREM', K_COMMITTING, id)
    redis.call('ZREM', K_DEADLINES, id)
    redis.call('HINCRBY', K_META, 'held', -hold.q)
    if hold.l then
      for _, line in ipairs(hold.l) do
        redis.call('HINCRBY', K_META, 'held:' .. line.v, -line.q)
      end
    end
  else
    -- Units outside any live hold of ours: wherever they are, they are sold now.
    for _, unit in ipairs(units) do
      redis.call('LREM', free_key(varied and variant_of(unit) or 0), 1, unit)
    end
    if hold ~= nil then
      redis.call('HINCRBY', K_USERS, hold.o, hold.q)
      if hold.l then
        for _, line in ipairs(hold.l) do
          redis.call('HINCRBY', K_USERS, hold.o .. ':' .. line.v, line.q)
        end
      end
    end
  end
  redis.call('HINCRBY', K_META, 'sold', #units)
  if varied then
    for _, unit in ipairs(units) do
      redis.call('HINCRBY', K_META, 'sold:' .. variant_of(unit), 1)
    end
  end
  if hold ~= nil then
    hold.s = 'checked_out'
    hold.r = order
    save_hold(id, hold)
  end
  return {'ok'}
end

if not committing then return {'noop'} end
redis.call('ZREM', K_COMMITTING, id)
if outcome == 'abort' then
  hold.s = 'held'
  save_hold(id, hold)
  redis.call('ZADD', K_DEADLINES, hold.d, id)
  return {'ok'}
end

-- conflict, or release (no units named: all of them return)
local sold_elsewhere = {}
for _, unit in ipairs(units) do sold_elsewhere[unit] = true end
if hold.l then
  release_lines(hold, function(unit) return not sold_elsewhere[unit] end)
else
  local back = {}
  for _, unit in ipairs(hold.u) do
    if not sold_elsewhere[tonumber(unit)] then back[#back + 1] = unit end
  end
  push_free(back)
end
redis.call('HINCRBY', K_USERS, hold.o, -hold.q)
redis.call('HINCRBY', K_META, 'held', -hold.q)
hold.s = 'released'
save_hold(id, hold)
return {'ok'}
