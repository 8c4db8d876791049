-- A draw nobody controls (issue #16, point 4): the sale may name a future round of the
-- drand quicknet beacon, and the pre-queue draw mixes that round's randomness into its
-- keys.
--
-- Decisions:
-- * `sales.draw_beacon` is the merchant's setting, `{ "chain": "drand-quicknet",
--   "round": N }` or null, validated by the application (a round due after the start;
--   frozen at the start like the other rules shoppers rely on).
-- * `draw_beacons` holds what the draw used, one row per sale, written once (the first
--   writer wins, as for the seed in `line_marks`): either the verified round
--   (`outcome = 'verified'`, with its signature and randomness) or the published
--   fallback (`outcome = 'missed'`: the round was not obtained within the bound after it
--   was due, and the draw used the committed seed alone). Only a signature that
--   verified against quicknet's public key is ever written, so a forged one leaves no
--   trace here.
alter table sales add column draw_beacon jsonb;

create table draw_beacons (
    sale_id uuid primary key references sales (id) on delete cascade,
    round bigint not null check (round > 0),
    outcome text not null check (outcome in ('verified', 'missed')),
    signature text,
    randomness text,
    recorded_at timestamptz not null default now(),
    check ((outcome = 'verified') = (signature is not null and randomness is not null))
);
