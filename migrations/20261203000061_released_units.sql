-- The order's life (issue #18): what a cancel or refund did, durably.
--
-- `released_units`: the history of units that left `order_units` when their order was
-- cancelled or refunded (the unit guard then lets them be sold again, or they moved to
-- `retired_units` when `restocked` is false). Kept so the audit and a merchant can say
-- where each unit of a closed order went.
create table released_units (
    sale_id     uuid        not null references sales (id),
    unit_no     integer     not null,
    order_id    uuid        not null references orders (id),
    restocked   boolean     not null,
    released_at timestamptz not null default now(),
    primary key (order_id, unit_no)
);
create index released_units_sale on released_units (sale_id, unit_no);

-- `payment_releases`: the durable attempt to give a closed order's money back, one
-- per order (the primary key is the "exactly once"). Written in the transaction that
-- closes the order, before the provider is called; `pending` until the provider says
-- the payment is voided or refunded, then `voided` or `refunded`. A process that dies
-- between leaves it `pending` and the completer finishes it.
create table payment_releases (
    order_id    uuid        primary key references orders (id),
    payment_ref text        not null,
    state       text        not null default 'pending'
        check (state in ('pending', 'voided', 'refunded')),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
create index payment_releases_pending on payment_releases (updated_at) where state = 'pending';
