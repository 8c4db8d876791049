-- pgbench: every statement one HTTP checkout sends to Postgres, in the same order:
-- claim the idempotency key with its payment attempt (one statement, one commit), read
-- the sale's price, then the one transaction (the shopper's lock, the limit-checked
-- order, unit, outbox, attempt committed, stored answer). The provider is outside
-- Postgres now: its cost is the "provider" row.
-- Run with -M prepared and -D sale=<uuid of a sale row>.
select gen_random_uuid() as oid, gen_random_uuid() as shopper, nextval('bench_units')::int as unit \gset
with claimed as (
  insert into idempotency_keys (shopper_id, key, request_hash) values (:shopper::uuid, :oid::text, 'h')
  on conflict do nothing returning 1
)
insert into payment_attempts (id, reservation_id, shopper_id, state, next_check_at)
  select :oid::uuid, gen_random_uuid(), :shopper::uuid, 'authorizing', now() + interval '6 seconds' from claimed;
select price_minor, currency from sales where id = :sale::uuid;
begin;
select pg_advisory_xact_lock(hashtextextended(:sale::text || :shopper::text, 0));
insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id)
  select :oid::uuid, :sale::uuid, :shopper::uuid, gen_random_uuid(), 1, 12900, 'EUR', 'pi_bench'
  where (select coalesce(sum(quantity), 0) from orders where shopper_id = :shopper::uuid and sale_id = :sale::uuid) + 1 <= 100
  returning created_at, pg_backend_pid();
insert into order_units (sale_id, unit_no, order_id) select :sale::uuid, unnest(array[:unit::int]::int[]), :oid::uuid;
insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id)
  values (gen_random_uuid(), 'order', :oid::uuid, 'OrderPlaced',
          jsonb_build_object('order_id', :oid::text, 'sale_id', :sale::text, 'quantity', 1), 'pgbench');
update payment_attempts set state = 'committed', sale_id = :sale::uuid, amount_minor = 12900, currency = 'EUR', updated_at = now()
  where id = :oid::uuid and state = 'authorizing';
update idempotency_keys set response = '{}'::jsonb where shopper_id = :shopper::uuid and key = :oid::text;
commit;
