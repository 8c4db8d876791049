-- Sales: the merchant-owned definition of a limited launch.
--
-- Decisions:
-- * `state` stores only what the merchant decides (active / paused / ended). The public
--   status (scheduled, live, sold_out, …) is derived from state, the clock and the
--   stock in Redis, so there is no background job that flips a column at `starts_at`
--   and nothing that can disagree with the clock.
-- * Stock is a set of numbered units 1..=unit_count (see order_units). `total` is the
--   sellable count: unit_count minus units the merchant retired. It changes only on a
--   merchant's stock delta, never on checkout: checkout must not touch this row, or
--   every order of a sale would serialise on it.
-- * `version` is the optimistic-concurrency counter behind ETag / If-Match; an update
--   that names a stale version matches no row, so exactly one concurrent PATCH wins.
-- * `admission` is JSON because the waiting room owns its shape and it is read whole.
create table sales (
    id                 uuid        primary key,
    merchant_id        uuid        not null,
    name               text        not null,
    sku                text        not null,
    description        text        not null,
    price_minor        bigint      not null check (price_minor >= 0),
    currency           char(3)     not null,
    unit_count         integer     not null check (unit_count >= 0),
    total              integer     not null check (total >= 0 and total <= unit_count),
    per_user_limit     integer     not null,
    hold_ttl_seconds   integer     not null,
    starts_at          timestamptz not null,
    ends_at            timestamptz not null check (ends_at > starts_at),
    state              text        not null check (state in ('active', 'paused', 'ended')),
    version            integer     not null default 1,
    admission          jsonb       not null,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now()
);

-- The merchant's listing pages by (created_at, id) descending with a keyset cursor;
-- the merchant id leads so one merchant's page never scans another's sales.
create index sales_merchant_listing on sales (merchant_id, created_at desc, id desc);
