-- pgbench: checkout.sql with the per-shopper limit check striped sales add
-- (reservations/src/checkout.rs `commit`): the advisory lock on (sale, shopper), then
-- the order insert guarded by the shopper's ordered quantity. Compare with checkout.sql
-- in the same run; -M prepared -D sale=<uuid of a sale row>.
begin;
select gen_random_uuid() as oid, gen_random_uuid() as shopper, nextval('bench_units')::int as unit \gset
select pg_advisory_xact_lock(hashtextextended(:sale::uuid::text || :shopper::uuid::text, 0));
insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id)
  select :oid::uuid, :sale::uuid, :shopper::uuid, gen_random_uuid(), 1, 12900, 'EUR', :oid::text
  where (select coalesce(sum(quantity), 0) from orders where shopper_id = :shopper::uuid and sale_id = :sale::uuid) + 1 <= 100
  returning created_at;
insert into order_units (sale_id, unit_no, order_id) select :sale::uuid, unnest(array[:unit::int]::int[]), :oid::uuid;
insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id)
  values (gen_random_uuid(), 'order', :oid::uuid, 'OrderPlaced',
          jsonb_build_object('order_id', :oid::text, 'sale_id', :sale::text, 'quantity', 1), 'pgbench');
commit;
