-- pgbench: every statement one HTTP checkout sends to Postgres, in the same order:
-- claim the idempotency key with its payment attempt (one statement, one commit), then
-- the order transaction: BEGIN, the one order statement (the shopper's units within
-- the limit, order, unit, outbox, attempt committed, stored answer), COMMIT. The
-- sale's price and limit are read once per process; the provider is outside Postgres
-- (its cost is the "provider" row).
-- Run with -M prepared and -D sale=<uuid of a sale row>.
select gen_random_uuid() as oid, gen_random_uuid() as shopper, nextval('bench_units')::int as unit \gset
with claimed as (
  insert into idempotency_keys (shopper_id, key, request_hash) values (:shopper::uuid, :oid::text, 'h')
  on conflict do nothing returning 1
)
insert into payment_attempts (id, reservation_id, shopper_id, state, next_check_at)
  select :oid::uuid, gen_random_uuid(), :shopper::uuid, 'authorizing', now() + interval '6 seconds' from claimed;
begin;
with counted as (
  insert into shopper_units (sale_id, shopper_id, units) select :sale::uuid, :shopper::uuid, 1 where 1 <= 100
  on conflict (sale_id, shopper_id) do update set units = shopper_units.units + excluded.units
  where shopper_units.units + excluded.units <= 100 returning 1
), placed as (
  insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id)
  select :oid::uuid, :sale::uuid, :shopper::uuid, gen_random_uuid(), 1, 12900, 'EUR', 'pi_bench' from counted
  returning created_at
), units as (
  insert into order_units (sale_id, unit_no, order_id) select :sale::uuid, unnest(array[:unit::int]::int[]), :oid::uuid from placed
), event as (
  insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id)
  select gen_random_uuid(), 'order', :oid::uuid, 'OrderPlaced',
         jsonb_build_object('order_id', :oid::text, 'sale_id', :sale::text, 'quantity', 1), 'pgbench' from placed
), attempt as (
  update payment_attempts set state = 'committed', sale_id = :sale::uuid, amount_minor = 12900, currency = 'EUR', updated_at = now()
  where id = :oid::uuid and state = 'authorizing' and exists (select 1 from placed) returning 1
), answer as (
  update idempotency_keys set response = jsonb_set('{}'::jsonb, '{created_at}', to_jsonb(placed.created_at))
  from placed where shopper_id = :shopper::uuid and key = :oid::text
)
select (select created_at from placed), exists (select 1 from attempt), pg_backend_pid();
commit;
