-- Webhooks (API.md v1.1 "after the purchase"): merchants' endpoints, the messages the
-- webhook consumer fans out to them, one delivery per (endpoint, event), and the marks
-- that make each sale lifecycle event happen once.
--
-- Decisions:
-- * The secret is stored as the merchant will use it (`whsec_<base64>`), not hashed: the
--   delivery loop needs the key itself to compute the HMAC. Encrypting it with a key
--   held by the same processes that read this table would protect nothing that a read
--   of the table does not already expose with that key; a deployment that wants it
--   encrypted at rest gets that from the database's storage. It is never logged.
-- * `previous_secret` keeps signing beside the new one until `previous_secret_until`
--   (rotation: 24 h), so a receiver can switch keys without losing a message.
-- * `lease_until` / `lease_holder` are the per-endpoint "one delivery in flight" lock:
--   the delivery loop takes an endpoint's lease in a short transaction and keeps no
--   transaction open over the HTTP call (up to 10 s). A process that dies with a lease
--   loses it when it expires, and another process carries on; renewing and handing
--   back name the holder, so a process whose lease ran out never clears its
--   successor's. A handed-back lease keeps its (past) time: the loop serves the
--   endpoints served longest ago first.
-- * Endpoints are deleted for real; their deliveries go with them (cascade).
create table webhook_endpoints (
    id                    uuid        primary key,
    merchant_id           uuid        not null,
    url                   text        not null check (length(url) between 1 and 2048),
    events                text[]      not null check (cardinality(events) > 0),
    secret                text        not null,
    previous_secret       text,
    previous_secret_until timestamptz,
    lease_until           timestamptz,
    lease_holder          uuid,
    created_at            timestamptz not null default now()
);

-- The merchant's listing, and the fan-out's "which endpoints of this merchant": the
-- merchant id leads, so one merchant's lookup never scans another's endpoints.
create index webhook_endpoints_merchant on webhook_endpoints (merchant_id, created_at, id);

-- One message per event: the body is built once by the fan-out (the receiver's
-- `webhook-id` is the same on every endpoint and every retry), and a delivery only
-- points at it. The body is stored as text, byte for byte what is signed and sent.
create table webhook_messages (
    event_id     uuid        primary key,
    message_id   text        not null unique,
    event_type   text        not null,
    aggregate_id uuid        not null,
    body         text        not null,
    occurred_at  timestamptz not null
);

-- One delivery per (endpoint, event): the unique key makes the fan-out idempotent on
-- top of `processed_events`, and a slow endpoint owns only its own rows.
-- * `id` is an identity only for the keyset cursor of the delivery log and a tie-break;
--   nothing polls "after the last id".
-- * `occurred_at` and `aggregate_id` (the order or the sale) are copied from the
--   message so "is an earlier delivery of the same order still pending?" is one index
--   probe: an order's `order.placed` goes out before its `order.cancelled`.
-- * `state`: `pending` (retried at `next_attempt_at`), `delivered`, or `failed` (the
--   schedule ran out; `next_attempt_at` is then null).
create table webhook_deliveries (
    id              bigint      generated always as identity primary key,
    endpoint_id     uuid        not null references webhook_endpoints (id) on delete cascade,
    event_id        uuid        not null references webhook_messages (event_id),
    event_type      text        not null,
    aggregate_id    uuid        not null,
    occurred_at     timestamptz not null,
    state           text        not null default 'pending'
                                check (state in ('pending', 'delivered', 'failed')),
    attempts        integer     not null default 0,
    last_status     integer,
    last_error      text,
    next_attempt_at timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz not null default now(),
    unique (endpoint_id, event_id)
);

-- "Has this endpoint a due delivery?": one probe per endpoint when the delivery loop
-- looks for work. Partial (pending rows only), so the index is as small as the work
-- outstanding, not as the history.
create index webhook_deliveries_due on webhook_deliveries (endpoint_id, next_attempt_at)
    where state = 'pending';
-- An endpoint's queue, oldest event first: the next delivery to send.
create index webhook_deliveries_queue on webhook_deliveries (endpoint_id, occurred_at, id)
    where state = 'pending';
-- The per-order ordering probe (pending rows only, same reason).
create index webhook_deliveries_order on webhook_deliveries (endpoint_id, aggregate_id, occurred_at)
    where state = 'pending';
-- The delivery log of one endpoint, newest first, keyset by id.
create index webhook_deliveries_log on webhook_deliveries (endpoint_id, id desc);

-- Retention: the log keeps finished deliveries for a while (30 days by default), then
-- the delivery loop deletes them, and the messages no delivery points at any more.
create index webhook_deliveries_finished on webhook_deliveries (created_at)
    where state <> 'pending';
create index webhook_deliveries_event on webhook_deliveries (event_id);
create index webhook_messages_age on webhook_messages (occurred_at);

-- Sale lifecycle events (sale.started, sale.sold_out, sale.ended) are noticed by a loop
-- that every API process runs; the primary key makes each happen once per sale however
-- many processes notice it, and the outbox row commits with the mark.
create table sale_lifecycle_marks (
    sale_id   uuid        not null references sales (id),
    event     text        not null check (event in ('started', 'sold_out', 'ended')),
    event_id  uuid        not null,
    marked_at timestamptz not null default now(),
    primary key (sale_id, event)
);

-- The lifecycle loop looks only at sales that have not ended long ago: by end time,
-- so its cost follows the live and recent sales, not every sale ever run.
create index sales_by_end on sales (ends_at);
