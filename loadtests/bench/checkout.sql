-- pgbench: the checkout transaction's SQL alone — one order, its unit row, its
-- OrderPlaced outbox row (the outbox trigger's NOTIFY included) — as
-- reservations/src/checkout.rs `commit` writes it. Unit numbers come from a sequence,
-- as Redis hands out distinct units. Run with -M prepared (sqlx prepares too) and
-- -D sale=<uuid of a sale row>.
begin;
select gen_random_uuid() as oid, nextval('bench_units')::int as unit \gset
insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id)
  values (:oid::uuid, :sale::uuid, gen_random_uuid(), gen_random_uuid(), 1, 12900, 'EUR', :oid::text) returning created_at;
insert into order_units (sale_id, unit_no, order_id) select :sale::uuid, unnest(array[:unit::int]::int[]), :oid::uuid;
insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id)
  values (gen_random_uuid(), 'order', :oid::uuid, 'OrderPlaced',
          jsonb_build_object('order_id', :oid::text, 'sale_id', :sale::text, 'quantity', 1), 'pgbench');
commit;
