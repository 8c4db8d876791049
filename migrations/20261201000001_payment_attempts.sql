-- Payment attempts: every authorization checkout asks for is recorded here BEFORE the
-- provider is called, so no outcome is ever left to a log line. A lost answer, a cut
-- COMMIT or a dead process leaves a row that the completer resolves by asking Postgres
-- (is there an order with this id?) and the provider (retrieve the payment).
--
-- Why a table of its own and not columns on idempotency_keys: a failed attempt
-- deletes its idempotency row (the key may be retried), but its authorization may
-- still need a void; the attempt must outlive the claim. The row is written by the
-- same statement as the claim (one commit, not a new one), and the order transaction
-- marks it `committed` (the same commit as the order).
--
-- `id` is the attempt id: derived from (reservation, shopper, idempotency key), so a
-- retry with the same key reuses it; it is the order id and the provider's idempotency
-- key. Sale and amount are not known when the key is claimed (the price is read after
-- the hold is taken); they are filled by the order transaction, and are null for
-- attempts that never became orders (the provider's ledger knows the amount).
--
-- States:
--   authorizing   claimed; the request may be in flight (not judged before next_check_at)
--   committed     the order committed with this id: nothing to void
--   void_pending  the authorization may exist without an order: the completer voids it,
--                 retried with exponential backoff (next_check_at, checks)
--   voided        the provider confirmed the void
--   done          the provider never authorized it
--   orphaned      captured without an order: needs a refund (an operator's case today)
create table payment_attempts (
    id              uuid        primary key,
    reservation_id  uuid        not null,
    shopper_id      uuid        not null,
    sale_id         uuid,
    amount_minor    bigint,
    currency        char(3),
    state           text        not null check (state in
                        ('authorizing', 'committed', 'void_pending', 'voided', 'done', 'orphaned')),
    next_check_at   timestamptz not null,
    checks          integer     not null default 0,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

-- The completer's work queue: only unsettled attempts, soonest due first. Partial, so it
-- stays as small as the attempts in doubt however many checkouts ran.
create index payment_attempts_due on payment_attempts (next_check_at)
    where state in ('authorizing', 'void_pending');
