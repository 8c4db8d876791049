-- Variants: a sale sells one or more variants (sizes, tiers, bundles), each with its own
-- SKU, name, price, optional per-shopper limit and numbered stock.
--
-- Decisions:
-- * Units stay numbered sale-wide (1..=sales.unit_count) and each unit belongs to
--   exactly one variant, by unit-number ranges (`variant_units`). So the oversell guard
--   stays the primary key of `order_units (sale_id, unit_no)`, and the checkout's order
--   + units + outbox statement stays one statement: a unit number names its variant, it
--   need not be written again on every sold unit. The alternative (variant_id in the
--   guard's key) would rewrite order_units and retired_units for no stronger guarantee.
-- * A range is written when units are created (at create, on a positive stock delta of
--   a variant, when a variant is added) and never changed: new units are always
--   numbered after the highest existing one, so ranges never overlap. The exclusion is
--   checked by the writer under the sale's row lock (`update sales ... unit_count`).
-- * The sales row keeps describing the first variant (sku, price) and the whole sale
--   (unit_count, total): every v1 reader of a one-variant sale sees exactly what it saw.
-- * A one-variant sale's variant has the sale's id (ordinal 0). Existing sales get that
--   variant here, with all their units; new sales give their first variant the sale's
--   id too, so a v1 client needs no lookup to name it.
-- * `total` per variant is the sellable count (its units minus retired ones); it
--   changes only on a merchant's stock delta, never on checkout (no hot row).
create table sale_variants (
    id             uuid        primary key,
    sale_id        uuid        not null references sales (id),
    ordinal        integer     not null check (ordinal between 0 and 99),
    sku            text        not null,
    name           text        not null,
    price_minor    bigint      not null check (price_minor >= 0),
    per_user_limit integer     check (per_user_limit between 1 and 100),
    total          integer     not null check (total >= 0),
    created_at     timestamptz not null default now(),
    constraint sale_variants_ordinal_unique unique (sale_id, ordinal),
    -- A SKU names one variant of a sale (422 invalid_field on a duplicate).
    constraint sale_variants_sku_unique unique (sale_id, sku)
);

create table variant_units (
    sale_id    uuid    not null references sales (id),
    variant_id uuid    not null references sale_variants (id),
    first_unit integer not null check (first_unit >= 1),
    last_unit  integer not null check (last_unit >= first_unit),
    primary key (sale_id, first_unit)
);

insert into sale_variants (id, sale_id, ordinal, sku, name, price_minor, per_user_limit, total)
select id, id, 0, sku, name, price_minor, null, total from sales;

insert into variant_units (sale_id, variant_id, first_unit, last_unit)
select id, id, 1, unit_count from sales where unit_count >= 1;
