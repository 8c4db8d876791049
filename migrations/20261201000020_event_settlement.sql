-- Events cannot be lost to Redis (issue #15, point 2): the relay republishes every
-- event that has not been settled by every consumer group within a bound, whatever
-- Redis lost and however (a restart from an AOF missing its last second, a failover to
-- a replica that was behind, an empty restart). Postgres knows both sides: the outbox
-- (what was published) and, per consumer group, what it processed or gave up on.

-- A consumer group's giving up on an event, recorded in Postgres beside the
-- dead-letter stream (which lives in Redis and may be lost with it). Without this row a
-- poison event would count as "not yet processed" and be republished for ever.
create table dead_lettered_events (
    consumer          text        not null,
    event_id          uuid        not null,
    reason            text        not null,
    dead_lettered_at  timestamptz not null default now(),
    primary key (consumer, event_id)
);

-- When every consumer group had processed (or dead-lettered) the event. Null while any
-- group still owes it. The relay's settle pass fills it in; the redelivery pass only
-- ever reads unsettled rows, so its cost follows the events in flight, not the history.
alter table outbox add column settled_at timestamptz;

-- Served to both passes: the published, unsettled rows, oldest publication first. A
-- partial index, so it holds only what is in flight (or lost), not the day of history
-- kept for replays.
create index outbox_unsettled on outbox (published_at)
    where settled_at is null and published_at is not null;
