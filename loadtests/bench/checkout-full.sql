-- pgbench: every statement one HTTP checkout sends to Postgres, in the same order:
-- claim the idempotency key, authorize (the simulated provider's ledger row), read the
-- sale's price, then the one transaction (order, unit, outbox, stored answer).
-- Run with -M prepared and -D sale=<uuid of a sale row>.
select gen_random_uuid() as oid, gen_random_uuid() as shopper, nextval('bench_units')::int as unit \gset
insert into idempotency_keys (shopper_id, key, request_hash) values (:shopper::uuid, :oid::text, 'h') on conflict do nothing;
insert into sim_payments (order_id, amount_minor, currency, status) values (:oid::uuid, 12900, 'EUR', 'authorized') on conflict (order_id) do nothing;
select price_minor, currency from sales where id = :sale::uuid;
begin;
insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id)
  values (:oid::uuid, :sale::uuid, :shopper::uuid, gen_random_uuid(), 1, 12900, 'EUR', :oid::text) returning created_at;
insert into order_units (sale_id, unit_no, order_id) select :sale::uuid, unnest(array[:unit::int]::int[]), :oid::uuid;
insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id)
  values (gen_random_uuid(), 'order', :oid::uuid, 'OrderPlaced',
          jsonb_build_object('order_id', :oid::text, 'sale_id', :sale::text, 'quantity', 1), 'pgbench');
update idempotency_keys set status_code = 201, response = '{}'::jsonb where shopper_id = :shopper::uuid and key = :oid::text;
commit;
