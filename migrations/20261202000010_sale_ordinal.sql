-- A sale's ordinal: a compact number that reservation ids carry, so that an id says
-- where its hold lives (the sale and the stripe) and neither a reserve nor a lookup
-- needs a second Redis key (the old `resv:{id}` index, written after the reserve
-- script: a lost reply left a hold nobody could find).
--
-- Decisions:
-- * An identity column, not the sale id: a sale id is a UUID of its own and leaves no
--   room in a 128-bit reservation id for randomness; 40 bits of ordinal do.
-- * `generated always`: no writer chooses it, and it is never updated, so every process
--   may cache ordinal <-> sale id for as long as it runs. Existing sales are numbered
--   when the column is added (a rewrite of the table under its lock: brief, as `sales`
--   has one row per launch, and checkout never touches the row).
-- * The check keeps it within the 40 bits a reservation id has for it (a trillion
--   sales); the unique index is how a process resolves an ordinal it has not seen.
alter table sales
    add column ordinal bigint generated always as identity
        constraint sales_ordinal_key unique
        constraint sales_ordinal_fits_a_reservation_id check (ordinal between 1 and 1099511627775);
