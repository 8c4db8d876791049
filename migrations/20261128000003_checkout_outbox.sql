-- Checkout, the transactional outbox, and what the event workers record.

-- Idempotency keys of checkout, stored with the answer. A retry with the same key and
-- body returns the stored answer; the row is inserted before the payment is authorized,
-- so twenty concurrent retries produce one authorization (the others wait for the
-- answer). Failed attempts delete their row: the key may be used again.
create table idempotency_keys (
    shopper_id    uuid        not null,
    key           text        not null,
    request_hash  text        not null,
    status_code   integer,
    response      jsonb,
    created_at    timestamptz not null default now(),
    primary key (shopper_id, key)
);

-- The outbox: one row per event, written in the transaction that causes it, so an
-- order and its OrderPlaced event commit or roll back together. The relay claims rows
-- with FOR UPDATE SKIP LOCKED (several relays never block on each other) and marks
-- them published in the same transaction as it reads them; published rows are deleted
-- after a retention period.
create table outbox (
    id              uuid        primary key,
    aggregate_type  text        not null,
    aggregate_id    uuid        not null,
    event_type      text        not null,
    payload         jsonb       not null,
    correlation_id  text        not null,
    occurred_at     timestamptz not null default now(),
    published_at    timestamptz
);

-- The relay's work queue: only unpublished rows, oldest first. Partial, so it stays as
-- small as the backlog however long the retention.
create index outbox_unpublished on outbox (occurred_at) where published_at is null;

-- Wakes the relay at commit time. Statement-level and payload-free: one notification
-- per transaction is enough, and the relay also polls (notifications are lost while
-- it is disconnected).
create function outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('outbox', '');
    return null;
end;
$$;
create trigger outbox_notify after insert on outbox
    for each statement execute function outbox_notify();

-- Consumer-side deduplication: each worker inserts (consumer, event id) in the same
-- transaction as its effect, so a redelivered event changes nothing.
create table processed_events (
    consumer      text        not null,
    event_id      uuid        not null,
    processed_at  timestamptz not null default now(),
    primary key (consumer, event_id)
);

-- Order confirmations "sent" by the mailer port (fills `confirmation` in the order).
create table notifications (
    order_id  uuid        primary key references orders (id),
    event_id  uuid        not null,
    sent_at   timestamptz not null default now()
);

-- Captured payments, written by the payment-capture worker.
create table payment_captures (
    order_id     uuid        primary key references orders (id),
    captured_at  timestamptz not null default now()
);

-- Per-sale totals for /stats, updated by the sales-ledger worker in batches: a hot row,
-- deliberately off the checkout path, touched once per batch of events.
create table sales_ledger (
    sale_id        uuid        primary key references sales (id),
    units_sold     bigint      not null default 0,
    revenue_minor  bigint      not null default 0,
    updated_at     timestamptz not null default now()
);

-- The simulated payment provider's own ledger (a real provider keeps this on its side).
-- One payment per order id: authorize, capture and void are idempotent by order.
create table sim_payments (
    order_id       uuid        primary key,
    amount_minor   bigint      not null,
    currency       char(3)     not null,
    status         text        not null check (status in ('authorized', 'captured', 'voided')),
    authorized_at  timestamptz not null default now(),
    captured_at    timestamptz,
    voided_at      timestamptz
);
