-- The payment provider is reached over HTTP (a Stripe PaymentIntents subset) and keeps
-- its own ledger: the simulator is a service of its own, with its own storage, so
-- flashsale's database no longer holds a provider's table.
drop table if exists sim_payments;

-- `orders.payment_auth_id` now holds the provider's payment id (Stripe: `pi_…`); it
-- held the order id before, which is still the attempt id and the provider's
-- idempotency key. Nothing to migrate: old rows keep working, the capture worker finds
-- their payment by the attempt id.

-- An attempt captured without an order is now refunded by the completer (`refunded`);
-- `orphaned` stays valid for rows written before refunds existed.
alter table payment_attempts drop constraint payment_attempts_state_check;
alter table payment_attempts add constraint payment_attempts_state_check check (state in
    ('authorizing', 'committed', 'void_pending', 'voided', 'done', 'orphaned', 'refunded'));
