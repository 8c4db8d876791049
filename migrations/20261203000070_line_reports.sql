-- What the post-event report needs of a sale's line once Redis no longer has it
-- (issue #18, point 3): the line's own counters and the admission-wait histograms live
-- in Redis while the sale runs, and the reserve step's set of shoppers goes with the
-- sale's keys after FLASHSALE_ENDED_SALE_RETENTION_SECS. One row per sale, written by
-- the admission controller when it sees the sale over, and by every report read while
-- Redis still has the line. Writes only move the figures forward (`greatest`, and a
-- histogram is replaced only by one that counts at least as many shoppers), so a
-- Redis that lost the line or was purged never makes the report shrink.
--
-- The histograms are JSON objects from a bucket number to a count of shoppers
-- (bucket 0: under one second; bucket b >= 1: [2^((b-1)/4), 2^(b/4)) seconds; see
-- waiting-room/src/report.rs).
create table line_reports (
    sale_id         uuid        primary key references sales (id) on delete cascade,
    joined          bigint      not null default 0 check (joined >= 0),
    prequeued       bigint      not null default 0 check (prequeued >= 0),
    admitted        bigint      not null default 0 check (admitted >= 0),
    reserved        bigint      not null default 0 check (reserved >= 0),
    estimated_waits jsonb       not null default '{}',
    actual_waits    jsonb       not null default '{}',
    updated_at      timestamptz not null default now()
);
