-- pgbench: the physical limit of a checkout — its one durable commit, the order
-- transaction as reservations/src/checkout/transaction.rs writes it: one order, its unit
-- row, its OrderPlaced outbox row (the outbox trigger's NOTIFY included) and the stored
-- idempotency answer. Unit numbers come from a sequence, as Redis hands out distinct
-- units. Run with -M prepared (sqlx prepares too) and -D sale=<uuid of a sale row>.
begin;
select gen_random_uuid() as oid, gen_random_uuid() as shopper, nextval('bench_units')::int as unit \gset
insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id)
  values (:oid::uuid, :sale::uuid, :shopper::uuid, gen_random_uuid(), 1, 12900, 'EUR', 'pi_bench') returning created_at;
insert into order_units (sale_id, unit_no, order_id) select :sale::uuid, unnest(array[:unit::int]::int[]), :oid::uuid;
insert into outbox (id, aggregate_type, aggregate_id, event_type, payload, correlation_id)
  values (gen_random_uuid(), 'order', :oid::uuid, 'OrderPlaced',
          jsonb_build_object('order_id', :oid::text, 'sale_id', :sale::text, 'quantity', 1), 'pgbench');
insert into idempotency_keys (shopper_id, key, request_hash, response)
  values (:shopper::uuid, :oid::text, 'h', '{}'::jsonb);
commit;
