//! Sales in Postgres: the durable record the Redis projection is rebuilt from.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::ids::{MerchantId, SaleId, ShopperId};
use crate::sales::{
    Access, Admission, DrawBeacon, Money, Sale, SaleSpec, SaleState, StatusFilter, Variant,
};

mod variants;
use crate::{Error, Result};

#[derive(sqlx::FromRow)]
struct SaleRow {
    id: Uuid,
    merchant_id: Uuid,
    name: String,
    sku: String,
    description: String,
    price_minor: i64,
    currency: String,
    unit_count: i32,
    total: i32,
    per_user_limit: i32,
    hold_ttl_seconds: i32,
    cancel_window_seconds: i32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    state: String,
    version: i32,
    admission: sqlx::types::Json<Admission>,
    access: String,
    message: Option<String>,
    created_at: DateTime<Utc>,
    draw_beacon: Option<sqlx::types::Json<DrawBeacon>>,
    variants: sqlx::types::Json<Vec<Variant>>,
}

impl From<SaleRow> for Sale {
    fn from(r: SaleRow) -> Sale {
        Sale {
            id: SaleId(r.id),
            merchant_id: MerchantId(r.merchant_id),
            name: r.name,
            sku: r.sku,
            description: r.description,
            price: Money {
                amount_minor: r.price_minor,
                currency: r.currency,
            },
            unit_count: r.unit_count,
            total: r.total,
            per_user_limit: r.per_user_limit,
            hold_ttl_seconds: r.hold_ttl_seconds,
            cancel_window_seconds: r.cancel_window_seconds,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            state: SaleState::parse(&r.state),
            version: r.version,
            admission: r.admission.0,
            access: Access::parse(&r.access),
            message: r.message,
            created_at: r.created_at,
            draw_beacon: r.draw_beacon.map(|b| b.0),
            variants: r.variants.0,
        }
    }
}

// The variants ride along as one JSON column (a correlated subquery, also valid in
// `returning`), so reading a sale stays one round trip. `sales.` is spelled out: inside
// the subquery a bare `id` would be the variant's.
const COLUMNS: &str = "id, merchant_id, name, sku, description, price_minor, currency, unit_count, \
     total, per_user_limit, hold_ttl_seconds, cancel_window_seconds, starts_at, ends_at, state, version, admission, access, message, created_at, draw_beacon, \
     coalesce((select json_agg(json_build_object('id', v.id, 'ordinal', v.ordinal, 'sku', v.sku, \
       'name', v.name, 'price', json_build_object('amount_minor', v.price_minor, 'currency', sales.currency), \
       'per_user_limit', v.per_user_limit, 'total', v.total, \
       'units', coalesce((select json_agg(json_build_object('first', r.first_unit, 'last', r.last_unit) \
         order by r.first_unit) from variant_units r where r.variant_id = v.id), '[]'::json)) \
       order by v.ordinal) from sale_variants v where v.sale_id = sales.id), '[]'::json) as variants";

/// A position in a merchant's listing: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListCursor {
    /// `created_at` of the last row returned.
    pub created_at: DateTime<Utc>,
    /// `id` of the last row returned (ties on `created_at`).
    pub id: Uuid,
}

/// Reads and writes of the `sales` table and the unit tables.
#[derive(Clone)]
pub struct SaleStore {
    pool: PgPool,
}

impl SaleStore {
    /// A store on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool, for the projection's map of sale ordinals (`sales.ordinal`).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Inserts a new sale with units 1..=total and its variants (each owning the next
    /// `total` units, in order), in one transaction.
    pub async fn insert(&self, merchant: MerchantId, spec: &SaleSpec) -> Result<Sale> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "insert into sales (id, merchant_id, name, sku, description, price_minor, currency, \
             unit_count, total, per_user_limit, hold_ttl_seconds, starts_at, ends_at, state, admission, \
             draw_beacon, access, cancel_window_seconds) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, 'active', $13, $14, $15, $16) \
             returning {COLUMNS}"
        );
        let row: SaleRow = sqlx::query_as(&sql)
            .bind(Uuid::now_v7())
            .bind(merchant.0)
            .bind(&spec.name)
            .bind(&spec.sku)
            .bind(&spec.description)
            .bind(spec.price.amount_minor)
            .bind(&spec.price.currency)
            .bind(spec.total)
            .bind(spec.per_user_limit)
            .bind(spec.hold_ttl_seconds)
            .bind(spec.starts_at)
            .bind(spec.ends_at)
            .bind(sqlx::types::Json(&spec.admission))
            .bind(spec.draw_beacon.as_ref().map(sqlx::types::Json))
            .bind(spec.access.as_str())
            .bind(spec.cancel_window_seconds)
            .fetch_one(&mut *tx)
            .await?;
        let mut sale: Sale = row.into();
        sale.variants = variants::insert_all(&mut tx, sale.id, &spec.variants, spec.listed).await?;
        tx.commit().await?;
        Ok(sale)
    }

    /// Any sale by id (public pages, reservations).
    pub async fn get(&self, id: SaleId) -> Result<Sale> {
        let sql = format!("select {COLUMNS} from sales where id = $1");
        let row: Option<SaleRow> = sqlx::query_as(&sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Sale::from).ok_or(Error::SaleNotFound)
    }

    /// A sale of this merchant; another merchant's sale is indistinguishable from none.
    pub async fn get_owned(&self, merchant: MerchantId, id: SaleId) -> Result<Sale> {
        let sale = self.get(id).await?;
        if sale.merchant_id != merchant {
            return Err(Error::SaleNotFound);
        }
        Ok(sale)
    }

    /// One page of a merchant's sales, newest first.
    pub async fn list(
        &self,
        merchant: MerchantId,
        filter: Option<StatusFilter>,
        limit: i64,
        after: Option<ListCursor>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Sale>> {
        // The status filter is written in SQL over the stored state and the clock, so
        // pagination stays a keyset scan of the merchant's index.
        let status_clause = match filter {
            None => "true",
            Some(StatusFilter::Scheduled) => "state = 'active' and $2 < starts_at",
            Some(StatusFilter::Live | StatusFilter::SoldOut) => {
                "state = 'active' and $2 >= starts_at and $2 < ends_at"
            }
            Some(StatusFilter::Paused) => "state = 'paused' and $2 < ends_at",
            Some(StatusFilter::Ended) => "(state = 'ended' or $2 >= ends_at)",
        };
        let sql = format!(
            "select {COLUMNS} from sales where merchant_id = $1 and {status_clause} \
             and ($3::timestamptz is null or (created_at, id) < ($3, $4)) \
             order by created_at desc, id desc limit $5"
        );
        let rows: Vec<SaleRow> = sqlx::query_as(&sql)
            .bind(merchant.0)
            .bind(now)
            .bind(after.map(|c| c.created_at))
            .bind(after.map(|c| c.id))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Sale::from).collect())
    }

    /// Writes the editable fields and state of `sale`. With `expected`, only if the stored
    /// version is still that one (else `StaleVersion`): exactly one of two concurrent
    /// conditional updates wins.
    pub async fn update(&self, sale: &Sale, expected: Option<i32>) -> Result<Sale> {
        let sql = format!(
            "update sales set name = $3, sku = $4, description = $5, price_minor = $6, currency = $7, \
             per_user_limit = $8, hold_ttl_seconds = $9, starts_at = $10, ends_at = $11, state = $12, \
             admission = $13, draw_beacon = $14, access = $15, message = $16, cancel_window_seconds = $17, \
             version = version + 1, updated_at = now() \
             where id = $1 and ($2::int is null or version = $2) returning {COLUMNS}"
        );
        let row: Option<SaleRow> = sqlx::query_as(&sql)
            .bind(sale.id.0)
            .bind(expected)
            .bind(&sale.name)
            .bind(&sale.sku)
            .bind(&sale.description)
            .bind(sale.price.amount_minor)
            .bind(&sale.price.currency)
            .bind(sale.per_user_limit)
            .bind(sale.hold_ttl_seconds)
            .bind(sale.starts_at)
            .bind(sale.ends_at)
            .bind(sale.state.as_str())
            .bind(sqlx::types::Json(&sale.admission))
            .bind(sale.draw_beacon.as_ref().map(sqlx::types::Json))
            .bind(sale.access.as_str())
            .bind(&sale.message)
            .bind(sale.cancel_window_seconds)
            .fetch_optional(&self.pool)
            .await?;
        match (row, expected) {
            (Some(row), _) => self.follow_first_variant(row.into()).await,
            (None, Some(version)) => Err(Error::StaleVersion(version)),
            (None, None) => Err(Error::SaleNotFound),
        }
    }

    /// Creates `count` new units after the highest existing one; returns the sale and the
    /// first new unit number.
    pub async fn add_units(&self, id: SaleId, count: i32) -> Result<(Sale, i32)> {
        let sql = format!(
            "update sales set unit_count = unit_count + $2, total = total + $2, \
             version = version + 1, updated_at = now() where id = $1 returning {COLUMNS}"
        );
        let mut tx = self.pool.begin().await?;
        let row: SaleRow = sqlx::query_as(&sql)
            .bind(id.0)
            .bind(count)
            .fetch_one(&mut *tx)
            .await?;
        let mut sale: Sale = row.into();
        let first = sale.unit_count - count + 1;
        // The v1 delta is the one variant's (a sale with several changes a variant's
        // stock by its own route, see `variants`).
        if let Some(variant) = sale.variants.first_mut() {
            let range = crate::sales::UnitRange {
                first,
                last: sale.unit_count,
            };
            variants::record_units(&mut tx, id, variant.id, range).await?;
            variant.total += count;
            variant.units.push(range);
        }
        tx.commit().await?;
        Ok((sale, first))
    }

    /// Records `units` as retired (out of sale) and lowers the total.
    pub async fn retire_units(&self, id: SaleId, units: &[i32]) -> Result<Sale> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "insert into retired_units (sale_id, unit_no) select $1, unnest($2::int[]) \
             on conflict do nothing",
        )
        .bind(id.0)
        .bind(units)
        .execute(&mut *tx)
        .await?;
        // The v1 delta is the one variant's: its total follows the sale's.
        sqlx::query(
            "update sale_variants set total = (select unit_count from sales where id = $1) - \
             (select count(*) from retired_units where sale_id = $1) \
             where sale_id = $1 and ordinal = 0 \
             and (select count(*) from sale_variants where sale_id = $1) = 1",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "update sales set total = unit_count - (select count(*) from retired_units where sale_id = $1), \
             version = version + 1, updated_at = now() where id = $1 returning {COLUMNS}"
        );
        let row: SaleRow = sqlx::query_as(&sql).bind(id.0).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(row.into())
    }

    /// Unit numbers that are not for sale any more: sold or retired. Everything else in
    /// 1..=unit_count is free once Redis state is lost.
    pub async fn taken_units(&self, id: SaleId) -> Result<Vec<i32>> {
        let units: Vec<i32> = sqlx::query_scalar(
            "select unit_no from order_units where sale_id = $1 \
             union select unit_no from retired_units where sale_id = $1 order by 1",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(units)
    }

    /// Units sold per shopper, for the per-shopper limit after a rebuild.
    pub async fn bought_per_shopper(&self, id: SaleId) -> Result<Vec<(ShopperId, i64)>> {
        let rows: Vec<(Uuid, i64)> = sqlx::query_as(
            "select shopper_id, sum(quantity)::bigint from orders where sale_id = $1 group by shopper_id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(s, n)| (ShopperId(s), n)).collect())
    }

    /// Units sold, sorted: a rebuild counts them per stripe.
    pub async fn sold_units(&self, id: SaleId) -> Result<Vec<i32>> {
        let units: Vec<i32> = sqlx::query_scalar(
            "select unit_no from order_units where sale_id = $1 order by unit_no",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(units)
    }
}

impl SaleStore {
    /// Orders and revenue (minor units) of a sale.
    pub async fn order_totals(&self, id: SaleId) -> Result<(i64, i64)> {
        let row: (i64, i64) = sqlx::query_as(
            "select count(*), coalesce(sum(amount_minor), 0)::bigint from orders where sale_id = $1",
        )
        .bind(id.0)
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }
}

/// What Postgres knows of a sale, read in one snapshot for reconciling its Redis state
/// (see `service::reconcile`): one REPEATABLE READ transaction, so the units, the
/// orders and the per-shopper counts describe the same moment.
#[derive(Debug, Clone)]
pub struct SaleRecord {
    /// The sale.
    pub sale: Sale,
    /// Units sold or retired, sorted.
    pub taken: Vec<i32>,
    /// Every order: its reservation, shopper, quantity and units.
    pub orders: Vec<RecordedOrder>,
}

/// One order of a [`SaleRecord`].
#[derive(Debug, Clone)]
pub struct RecordedOrder {
    /// The hold it was placed from.
    pub reservation: crate::ids::ReservationId,
    /// Who bought.
    pub shopper: ShopperId,
    /// Units bought.
    pub quantity: i64,
    /// Their numbers.
    pub units: Vec<i32>,
}

impl SaleStore {
    /// Sales that still end after `after` (live, scheduled or paused; or ended less
    /// than a hold's lifetime ago): the ones whose Redis state is reconciled when
    /// Redis comes back older. Read once per Redis incarnation, not per request.
    pub async fn sales_ending_after(&self, after: DateTime<Utc>) -> Result<Vec<SaleId>> {
        let ids: Vec<Uuid> =
            sqlx::query_scalar("select id from sales where ends_at > $1 order by id")
                .bind(after)
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.into_iter().map(SaleId).collect())
    }

    /// The sale, its taken units and its orders, in one snapshot.
    pub async fn sale_record(&self, id: SaleId) -> Result<SaleRecord> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("set transaction isolation level repeatable read read only")
            .execute(&mut *tx)
            .await?;
        let sql = format!("select {COLUMNS} from sales where id = $1");
        let sale: Sale = sqlx::query_as::<_, SaleRow>(&sql)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?
            .map(Sale::from)
            .ok_or(Error::SaleNotFound)?;
        let taken: Vec<i32> = sqlx::query_scalar(
            "select unit_no from order_units where sale_id = $1 \
             union select unit_no from retired_units where sale_id = $1 order by 1",
        )
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?;
        let rows: Vec<(Uuid, Uuid, i32, Vec<i32>)> = sqlx::query_as(
            "select o.reservation_id, o.shopper_id, o.quantity, array_agg(u.unit_no order by u.unit_no) \
             from orders o join order_units u on u.order_id = o.id \
             where o.sale_id = $1 group by o.id",
        )
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let orders = rows
            .into_iter()
            .map(|(reservation, shopper, quantity, units)| RecordedOrder {
                reservation: crate::ids::ReservationId(reservation),
                shopper: ShopperId(shopper),
                quantity: quantity.into(),
                units,
            })
            .collect();
        Ok(SaleRecord {
            sale,
            taken,
            orders,
        })
    }
}
