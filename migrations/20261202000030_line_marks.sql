-- What Postgres knows of each sale's line, so that a Redis that lost the line (emptied,
-- or rolled back to an older copy) is rebuilt in the same order (issue #15, point 4).
--
-- Decisions:
-- * One row per sale, written by the admission controller every tick (serving, seq)
--   and, rarely, by joins (the ceiling, the seed): never by a poll.
-- * `ceiling` is the highest position the line may hand out. A join that would pass it
--   first raises it here (by a block), so every position ever handed out is at most the
--   recorded ceiling, and a rebuilt line starts numbering above it: no new joiner ever
--   gets a place a shopper who holds a statement may still claim.
-- * `serving` only grows (writers use greatest()), so the serving position never moves
--   backwards, whatever Redis says after a loss.
-- * The seed and its commitment are written here before the commitment is published;
--   the first writer wins, so a wiped pre-queue keeps its commitment.
-- * `drawn_tickets` keeps the published draw (ticket ids in drawn order), written once
--   before the positions are numbered, so the draw stays checkable after a loss.
create table line_marks (
    sale_id uuid primary key references sales (id) on delete cascade,
    ceiling bigint not null default 0 check (ceiling >= 0),
    seq bigint not null default 0 check (seq >= 0),
    serving bigint not null default 0 check (serving >= 0),
    seed text,
    commitment text,
    drawn_tickets text[],
    updated_at timestamptz not null default now()
);
