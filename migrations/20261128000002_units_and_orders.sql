-- Units, orders and the record of what is sold. Postgres is the last line against
-- overselling: Redis hands out unit numbers and may, after losing writes, hand one out
-- twice; the primary key of order_units lets each unit be sold once, whatever Redis did.
--
-- Why no "sold" counter row: a per-sale counter updated by every checkout is a hot row.
-- Every checkout of the sale would queue on its row lock, turning a parallel insert
-- workload into a serial one (measured on 2 cores with pgbench, 16 clients: order +
-- unit rows + outbox ≈ 11.5k tx/s; the same plus one counter update ≈ 3.3k tx/s).
-- The number sold is `count(*)` over order_units of the sale, served from the sales
-- ledger (updated in batches by a worker) or from Redis for display.

create table orders (
    id              uuid        primary key,
    sale_id         uuid        not null references sales (id),
    shopper_id      uuid        not null,
    reservation_id  uuid        not null,
    quantity        integer     not null check (quantity > 0),
    amount_minor    bigint      not null check (amount_minor >= 0),
    currency        char(3)     not null,
    payment_auth_id text        not null,
    created_at      timestamptz not null default now(),
    -- One order per hold: a second checkout of the same hold (another idempotency key,
    -- a reconciler racing the original request) hits this key instead of selling twice.
    constraint orders_reservation_unique unique (reservation_id)
);

-- The shopper's history and the merchant's listing, both paged by (created_at, id).
create index orders_by_shopper on orders (shopper_id, created_at desc, id desc);
create index orders_by_sale on orders (sale_id, created_at desc, id desc);

create table order_units (
    sale_id  uuid    not null,
    unit_no  integer not null,
    order_id uuid    not null references orders (id),
    -- The oversell guard. A duplicate is SQLSTATE 23505 on this constraint name, which
    -- checkout maps to 409 and which retires the unit from Redis.
    constraint order_units_pkey primary key (sale_id, unit_no)
);

-- Units a merchant took out of sale (a negative stock delta). Kept apart from
-- order_units so that "sold" stays exactly the units somebody paid for.
create table retired_units (
    sale_id    uuid        not null references sales (id),
    unit_no    integer     not null,
    retired_at timestamptz not null default now(),
    primary key (sale_id, unit_no)
);
