-- The order's life after purchase (API.md v1.1, "after the purchase"): a shopper may
-- cancel within the sale's window, a merchant may refund; an order's status moves once,
-- from confirmed to cancelled or refunded, and `closed_at` says when.
alter table orders
    add column status text not null default 'confirmed'
        check (status in ('confirmed', 'cancelled', 'refunded')),
    add column closed_at timestamptz;

alter table sales
    add column cancel_window_seconds integer not null default 900
        check (cancel_window_seconds between 0 and 86400);
