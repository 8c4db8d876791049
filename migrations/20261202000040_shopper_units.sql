-- Units each shopper bought of each sale: the per-shopper limit, checked by Postgres in
-- the order statement (reservations/src/checkout/transaction.rs). One row per (sale,
-- shopper), grown by each order within the limit in the same statement that inserts
-- the order; its row lock serialises two checkouts of one shopper in one sale, which a
-- transaction advisory lock and a sum over the shopper's orders did before (a statement
-- and a round trip more per checkout). Every order counts here: Redis' per-shopper
-- counts are an accelerator, not the record (a Redis that comes back older has
-- forgotten some orders until it is reconciled).
--
-- An order cancelled later (the order-life issue) gives its units back here in the
-- statement that cancels it.
create table shopper_units (
    sale_id     uuid    not null references sales (id),
    shopper_id  uuid    not null,
    units       integer not null check (units >= 0),
    primary key (sale_id, shopper_id)
);

insert into shopper_units (sale_id, shopper_id, units)
select sale_id, shopper_id, sum(quantity) from orders group by sale_id, shopper_id;
