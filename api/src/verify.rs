//! `flashsale verify <sale_id>`: the invariant checker a launch rehearsal ends with.
//!
//! It reads the sale's durable record (Postgres) and its hot state (Redis, under the
//! configured key prefix) and checks every promise of the design that can be checked
//! after the fact:
//!
//! - units: sold ≤ total, each sold unit is a real unit of the sale, sold once, and each
//!   order has exactly as many unit rows as its quantity;
//! - Redis: `available + held + sold = total` (summed over the sale's stock stripes),
//!   Redis `sold` equals Postgres' count of `order_units`, no hold left `committing`,
//!   every free or held unit in its own stripe and in one place only;
//! - the per-shopper limit, in Postgres (bought, exact) and in Redis (held + bought, in
//!   each stripe: striping makes the Redis side approximate across stripes);
//! - events: every order has exactly one `OrderPlaced` outbox row, published, and one
//!   `processed_events` row per consumer group; the sales ledger agrees; every order's
//!   confirmation was sent;
//! - money (the simulated provider's ledger, `sim_payments`): every order has a captured
//!   payment of its amount, and no payment is captured — or left authorized — for an
//!   order that does not exist.
//!
//! The asynchronous part (relay, workers, a checkout still committing) is given time to
//! drain first: the checker waits while work is still moving, up to a bound, so a run
//! that stopped a moment ago is not reported as broken. Everything it finds is listed
//! with the offending ids; the command exits non-zero when any check fails.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use outbox_relay::event::{ORDER_AGGREGATE, ORDER_PLACED};
use outbox_relay::worker::ConsumerKind;
use reservations::ids::SaleId;
use reservations::projection::{Projection, SaleKeys};
use reservations::redis_conn::RedisConn;
use reservations::sales::StockView;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// How many offending ids the text report prints per check (the JSON keeps more).
const SHOWN_OFFENDERS: usize = 20;
/// How many offending ids a check keeps at all.
const KEPT_OFFENDERS: usize = 1_000;
/// An authorization younger than this may belong to a checkout still in flight.
const AUTHORIZATION_GRACE_SECS: f64 = 10.0;

/// How long to wait for the asynchronous part to settle before judging.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Longest wait for the outbox, the consumers and committing holds to drain.
    pub drain_timeout: Duration,
    /// How often to look again while waiting.
    pub poll_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// One invariant and what the checker found.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name, e.g. `no_unit_sold_twice`.
    pub name: &'static str,
    /// The invariant in words.
    pub invariant: &'static str,
    /// Whether it holds.
    pub passed: bool,
    /// Figures behind the verdict.
    pub detail: String,
    /// How many offenders there are in all.
    pub offender_count: usize,
    /// The offending ids (orders, units, shoppers, holds, events), at most
    /// [`KEPT_OFFENDERS`].
    pub offenders: Vec<String>,
}

impl Check {
    /// A check that holds when `offenders` is empty.
    pub fn from_offenders(
        name: &'static str,
        invariant: &'static str,
        detail: impl Into<String>,
        offenders: Vec<String>,
    ) -> Check {
        let offender_count = offenders.len();
        let mut offenders = offenders;
        offenders.truncate(KEPT_OFFENDERS);
        Check {
            name,
            invariant,
            passed: offender_count == 0,
            detail: detail.into(),
            offender_count,
            offenders,
        }
    }

    /// A check decided by a condition, with no ids to list.
    pub fn from_condition(
        name: &'static str,
        invariant: &'static str,
        passed: bool,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            name,
            invariant,
            passed,
            detail: detail.into(),
            offender_count: 0,
            offenders: Vec::new(),
        }
    }
}

/// The checker's findings for one sale.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The sale.
    pub sale_id: Uuid,
    /// Its name.
    pub name: String,
    /// Sellable units (Postgres).
    pub total: i64,
    /// Orders in Postgres.
    pub orders: i64,
    /// Units in `order_units` (what was sold).
    pub units_sold: i64,
    /// Units above `total` that were sold (0 unless the sale was oversold).
    pub oversold: i64,
    /// Orders whose events were not all published and consumed, or whose payment was
    /// not captured: orders the pipeline lost track of.
    pub lost: i64,
    /// Redis' counters, when Redis has the sale's state.
    pub redis: Option<StockView>,
    /// Whether the asynchronous part settled before the checks ran.
    pub drained: bool,
    /// How long the checker waited for it.
    pub waited_ms: u64,
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when every check holds.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// The report as text: a header with the figures, one line per check, offenders
    /// under each failed check, and the verdict last.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "flashsale verify: sale {} ({})",
            self.sale_id, self.name
        );
        let redis = match &self.redis {
            Some(s) => format!(
                "available {} + held {} + sold {} = {} (total {})",
                s.available,
                s.held,
                s.sold,
                s.available + s.held + s.sold,
                s.total
            ),
            None => "no state".to_owned(),
        };
        let _ = writeln!(
            out,
            "  postgres: total {} · orders {} · units sold {} · oversold {} · lost {}",
            self.total, self.orders, self.units_sold, self.oversold, self.lost
        );
        let _ = writeln!(out, "  redis:    {redis}");
        let _ = writeln!(
            out,
            "  pipeline: {} after {:.1} s",
            if self.drained {
                "drained"
            } else {
                "NOT drained"
            },
            self.waited_ms as f64 / 1000.0
        );
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &self.checks {
            let verdict = if check.passed { "ok  " } else { "FAIL" };
            let _ = writeln!(
                out,
                "  {verdict} {:width$}  {}",
                check.name,
                check.detail,
                width = width
            );
            if !check.passed {
                let _ = writeln!(out, "         invariant: {}", check.invariant);
            }
            if check.offender_count > 0 {
                let shown: Vec<&str> = check
                    .offenders
                    .iter()
                    .take(SHOWN_OFFENDERS)
                    .map(String::as_str)
                    .collect();
                let more = check.offender_count - shown.len();
                let _ = writeln!(
                    out,
                    "         {} offender(s): {}{}",
                    check.offender_count,
                    shown.join(", "),
                    if more > 0 {
                        format!(", … and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
        }
        let failed = self.failures().count();
        if failed == 0 {
            let _ = writeln!(out, "PASS: {} checks hold", self.checks.len());
        } else {
            let _ = writeln!(
                out,
                "FAIL: {failed} of {} checks violated",
                self.checks.len()
            );
        }
        out
    }
}

/// `available + held + sold = total` in Redis, and Redis' total is the sale's total.
pub fn stock_conserved(stock: &StockView, postgres_total: i64) -> bool {
    stock.available + stock.held + stock.sold == stock.total && stock.total == postgres_total
}

/// What the sale row says.
#[derive(sqlx::FromRow)]
struct SaleRow {
    name: String,
    total: i32,
    unit_count: i32,
    per_user_limit: i32,
    created_at: DateTime<Utc>,
}

/// Work the asynchronous part still has to do for this sale.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pending {
    unpublished: i64,
    unconsumed: i64,
    committing: i64,
}

impl Pending {
    fn is_settled(&self) -> bool {
        self.unpublished == 0 && self.unconsumed == 0 && self.committing == 0
    }
}

/// Checks every invariant of `sale`, after giving the pipeline up to
/// `options.drain_timeout` to settle. Errors only when a store cannot be read or the
/// sale does not exist; violations are in the report.
pub async fn verify(
    db: &PgPool,
    projection: &Projection,
    sale: SaleId,
    options: Options,
) -> anyhow::Result<Report> {
    let row: Option<SaleRow> = sqlx::query_as(
        "select name, total, unit_count, per_user_limit, created_at from sales where id = $1",
    )
    .bind(sale.0)
    .fetch_optional(db)
    .await?;
    let Some(row) = row else {
        anyhow::bail!("sale {sale} not found in Postgres");
    };
    let mut redis = projection.connection();
    let stripes = projection.all_stripe_keys(sale);

    // Settle first: the relay and the workers may still be on the last orders.
    let started = tokio::time::Instant::now();
    let drained = loop {
        let pending = pending(db, &mut redis, sale, &stripes).await?;
        if pending.is_settled() {
            break true;
        }
        if started.elapsed() >= options.drain_timeout {
            tracing::warn!(?pending, "pipeline did not drain in time");
            break false;
        }
        tokio::time::sleep(options.poll_interval).await;
    };
    let waited_ms = started.elapsed().as_millis() as u64;

    let total = i64::from(row.total);
    let limit = i64::from(row.per_user_limit);
    let mut checks = Vec::new();

    // ---- units
    let (orders, units_sold): (i64, i64) = sqlx::query_as(
        "select (select count(*) from orders where sale_id = $1), \
                (select count(*) from order_units where sale_id = $1)",
    )
    .bind(sale.0)
    .fetch_one(db)
    .await?;
    let oversold = (units_sold - total).max(0);
    checks.push(Check::from_condition(
        "units_sold_within_total",
        "units sold (order_units) ≤ the sale's total",
        units_sold <= total,
        format!("{units_sold} sold of {total}"),
    ));
    let bogus: Vec<i32> = sqlx::query_scalar(
        "select u.unit_no from order_units u where u.sale_id = $1 \
         and (u.unit_no < 1 or u.unit_no > $2 \
              or exists (select 1 from retired_units r where r.sale_id = u.sale_id and r.unit_no = u.unit_no)) \
         order by u.unit_no",
    )
    .bind(sale.0)
    .bind(row.unit_count)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "sold_units_exist",
        "every sold unit is one of the sale's units 1..=unit_count and not retired",
        format!("units 1..={}", row.unit_count),
        ids(bogus),
    ));
    let twice: Vec<i32> = sqlx::query_scalar(
        "select unit_no from order_units where sale_id = $1 group by unit_no having count(*) > 1 order by unit_no",
    )
    .bind(sale.0)
    .fetch_all(db)
    .await?;
    let sold_twice = twice.len() as i64;
    checks.push(Check::from_offenders(
        "no_unit_sold_twice",
        "each unit appears in at most one order",
        format!("{units_sold} unit rows"),
        ids(twice),
    ));
    let mismatched: Vec<Uuid> = sqlx::query_scalar(
        "select o.id from orders o left join order_units u on u.order_id = o.id \
         where o.sale_id = $1 group by o.id, o.quantity \
         having count(u.unit_no) <> o.quantity or bool_or(u.sale_id <> o.sale_id) order by o.id",
    )
    .bind(sale.0)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "order_units_match_quantity",
        "every order has exactly `quantity` unit rows, all of its own sale",
        format!("{orders} orders"),
        ids(mismatched),
    ));

    // ---- Redis
    let stock = projection.stock(sale).await?;
    checks.push(match &stock {
        Some(s) => Check::from_condition(
            "redis_stock_conserved",
            "Redis available + held + sold = total, and Redis' total is Postgres' total",
            stock_conserved(s, total),
            format!(
                "{} + {} + {} = {} (Redis total {}, Postgres total {total})",
                s.available,
                s.held,
                s.sold,
                s.available + s.held + s.sold,
                s.total
            ),
        ),
        None => Check::from_condition(
            "redis_stock_conserved",
            "Redis available + held + sold = total, and Redis' total is Postgres' total",
            false,
            format!(
                "no Redis state for the sale under prefix {:?}",
                projection.prefix()
            ),
        ),
    });
    checks.push(Check::from_condition(
        "redis_sold_matches_postgres",
        "Redis `sold` equals the count of order_units in Postgres",
        stock.is_some_and(|s| s.sold == units_sold),
        format!(
            "Redis {} vs Postgres {units_sold}",
            stock.map_or("-".to_owned(), |s| s.sold.to_string())
        ),
    ));
    let mut committing = Vec::new();
    for keys in &stripes {
        committing.extend(committing_holds(&mut redis, keys.committing(), keys.holds()).await?);
    }
    checks.push(Check::from_offenders(
        "no_hold_committing",
        "no hold is left in `committing` once checkouts have finished",
        format!("{} committing", committing.len()),
        committing,
    ));
    let misplaced = misplaced_units(&mut redis, &stripes).await?;
    checks.push(Check::from_offenders(
        "units_in_one_place",
        "every free or held unit is in its own stock stripe ((unit - 1) mod stripes) and \
         in one place only: one free list entry or one live hold",
        format!("{} stripe(s)", stripes.len()),
        misplaced,
    ));

    // ---- per-shopper limit
    let mut over_limit: Vec<String> = sqlx::query_as::<_, (Uuid, i64)>(
        "select shopper_id, sum(quantity)::bigint from orders where sale_id = $1 \
         group by shopper_id having sum(quantity) > $2 order by shopper_id",
    )
    .bind(sale.0)
    .bind(limit)
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|(shopper, bought)| format!("{shopper} (bought {bought})"))
    .collect();
    for (index, keys) in stripes.iter().enumerate() {
        let redis_users = hash_entries(&mut redis, keys.users()).await?;
        over_limit.extend(
            redis_users
                .iter()
                .filter(|(_, units)| units.parse::<i64>().unwrap_or(0) > limit)
                .map(|(shopper, units)| {
                    format!("{shopper} (Redis holds + bought {units} in stripe {index})")
                }),
        );
    }
    checks.push(Check::from_offenders(
        "per_user_limit_respected",
        "no shopper bought (Postgres) more than per_user_limit, nor holds + bought more \
         than it in any one stripe (Redis)",
        format!("limit {limit}"),
        over_limit,
    ));

    // ---- events
    let event_counts: Vec<(Uuid, i64)> = sqlx::query_as(
        "select o.id, count(e.id) from orders o \
         left join outbox e on e.aggregate_id = o.id and e.aggregate_type = $2 and e.event_type = $3 \
         where o.sale_id = $1 group by o.id having count(e.id) <> 1 order by o.id",
    )
    .bind(sale.0)
    .bind(ORDER_AGGREGATE)
    .bind(ORDER_PLACED)
    .fetch_all(db)
    .await?;
    let mut event_offenders: Vec<String> = event_counts
        .iter()
        .map(|(order, n)| format!("order {order} ({n} events)"))
        .collect();
    let orphans: Vec<Uuid> = sqlx::query_scalar(
        "select e.id from outbox e where e.event_type = $2 and e.payload->>'sale_id' = $1::text \
         and not exists (select 1 from orders o where o.id = e.aggregate_id) order by e.id",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .fetch_all(db)
    .await?;
    event_offenders.extend(orphans.iter().map(|e| format!("event {e} (no such order)")));
    checks.push(Check::from_offenders(
        "one_event_per_order",
        "every order has exactly one OrderPlaced outbox row, and every such row an order",
        format!("{orders} orders"),
        event_offenders,
    ));
    let unpublished: Vec<Uuid> = sqlx::query_scalar(
        "select e.id from outbox e join orders o on o.id = e.aggregate_id \
         where o.sale_id = $1 and e.event_type = $2 and e.published_at is null order by e.id",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "events_published",
        "every OrderPlaced row of the sale is published (published_at set)",
        format!("{} unpublished", unpublished.len()),
        ids(unpublished),
    ));
    let consumers: Vec<&str> = ConsumerKind::ALL.iter().map(|k| k.group()).collect();
    let unconsumed: Vec<(String, Uuid, i64)> = sqlx::query_as(
        "select c.consumer, e.id, count(p.event_id) from outbox e \
         join orders o on o.id = e.aggregate_id \
         cross join unnest($3::text[]) as c(consumer) \
         left join processed_events p on p.event_id = e.id and p.consumer = c.consumer \
         where o.sale_id = $1 and e.event_type = $2 \
         group by c.consumer, e.id having count(p.event_id) <> 1 order by c.consumer, e.id",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .bind(&consumers)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "events_consumed_once",
        "every OrderPlaced event has exactly one processed_events row per consumer group",
        format!("consumers {}", consumers.join(", ")),
        unconsumed
            .iter()
            .map(|(consumer, event, n)| format!("{consumer}:{event} ({n})"))
            .collect(),
    ));
    let unconfirmed: Vec<Uuid> = sqlx::query_scalar(
        "select o.id from orders o where o.sale_id = $1 \
         and not exists (select 1 from notifications n where n.order_id = o.id) order by o.id",
    )
    .bind(sale.0)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "confirmations_sent",
        "every order's confirmation was sent (notifications)",
        format!("{} of {orders} sent", orders - unconfirmed.len() as i64),
        ids(unconfirmed),
    ));
    let (revenue,): (i64,) = sqlx::query_as(
        "select coalesce(sum(amount_minor), 0)::bigint from orders where sale_id = $1",
    )
    .bind(sale.0)
    .fetch_one(db)
    .await?;
    let ledger: Option<(i64, i64)> =
        sqlx::query_as("select units_sold, revenue_minor from sales_ledger where sale_id = $1")
            .bind(sale.0)
            .fetch_optional(db)
            .await?;
    let (ledger_units, ledger_revenue) = ledger.unwrap_or((0, 0));
    checks.push(Check::from_condition(
        "ledger_matches_orders",
        "the sales ledger (sales-ledger consumer) counts exactly the units and revenue of the orders",
        ledger_units == units_sold && ledger_revenue == revenue,
        format!(
            "ledger {ledger_units} units / {ledger_revenue} vs orders {units_sold} units / {revenue}"
        ),
    ));

    // ---- money (the simulated provider's ledger)
    let uncaptured: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "select o.id, p.status from orders o left join sim_payments p on p.order_id = o.id \
         where o.sale_id = $1 and (p.status is distinct from 'captured' \
               or p.amount_minor <> o.amount_minor or p.currency <> o.currency) order by o.id",
    )
    .bind(sale.0)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "orders_paid",
        "every order has a captured payment of its amount",
        format!("{} of {orders} captured", orders - uncaptured.len() as i64),
        uncaptured
            .iter()
            .map(|(order, status)| {
                format!("{order} ({})", status.as_deref().unwrap_or("no payment"))
            })
            .collect(),
    ));
    // sim_payments carries no sale id: payments are scoped to the sale's lifetime.
    let orphan_payments: Vec<(Uuid, String)> = sqlx::query_as(
        "select p.order_id, p.status from sim_payments p where p.authorized_at >= $1 \
         and (p.status = 'captured' \
              or (p.status = 'authorized' and p.authorized_at < now() - make_interval(secs => $2))) \
         and not exists (select 1 from orders o where o.id = p.order_id) order by p.order_id",
    )
    .bind(row.created_at)
    .bind(AUTHORIZATION_GRACE_SECS)
    .fetch_all(db)
    .await?;
    checks.push(Check::from_offenders(
        "no_payment_without_order",
        "no payment is captured, or left authorized, for an order that does not exist",
        "payments since the sale was created",
        orphan_payments
            .iter()
            .map(|(order, status)| format!("{order} ({status})"))
            .collect(),
    ));

    // Lost: a committed order that its event, its consumers or its payment did not
    // follow.
    let (lost,): (i64,) = sqlx::query_as(
        "select count(*) from orders o where o.sale_id = $1 and ( \
           not exists (select 1 from outbox e where e.aggregate_id = o.id and e.event_type = $2 \
                       and e.published_at is not null \
                       and (select count(*) from processed_events p \
                            where p.event_id = e.id and p.consumer = any($3)) = cardinality($3)) \
           or not exists (select 1 from notifications n where n.order_id = o.id) \
           or not exists (select 1 from sim_payments p where p.order_id = o.id and p.status = 'captured'))",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .bind(&consumers)
    .fetch_one(db)
    .await?;

    Ok(Report {
        sale_id: sale.0,
        name: row.name,
        total,
        orders,
        units_sold,
        oversold: oversold + sold_twice,
        lost,
        redis: stock,
        drained,
        waited_ms,
        checks,
    })
}

fn ids<T: ToString>(items: Vec<T>) -> Vec<String> {
    items.iter().map(T::to_string).collect()
}

/// What is still moving for this sale: unpublished events, published events some
/// consumer has not processed, holds in `committing` (in any stripe).
async fn pending(
    db: &PgPool,
    redis: &mut RedisConn,
    sale: SaleId,
    stripes: &[SaleKeys],
) -> anyhow::Result<Pending> {
    let consumers: Vec<&str> = ConsumerKind::ALL.iter().map(|k| k.group()).collect();
    let (unpublished, unconsumed): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where e.published_at is null), \
                coalesce(sum((select count(*) from unnest($3::text[]) c(consumer) \
                    where not exists (select 1 from processed_events p \
                                      where p.consumer = c.consumer and p.event_id = e.id))) \
                    filter (where e.published_at is not null), 0)::bigint \
         from outbox e join orders o on o.id = e.aggregate_id \
         where o.sale_id = $1 and e.event_type = $2",
    )
    .bind(sale.0)
    .bind(ORDER_PLACED)
    .bind(&consumers)
    .fetch_one(db)
    .await?;
    let mut committing = 0;
    for keys in stripes {
        committing += redis::cmd("ZCARD")
            .arg(keys.committing())
            .query_async::<i64>(redis)
            .await?;
    }
    Ok(Pending {
        unpublished,
        unconsumed,
        committing,
    })
}

/// Every field of a Redis hash, read in pages (a sale may have a million holds).
async fn hash_entries(redis: &mut RedisConn, key: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut cursor: u64 = 0;
    let mut entries = Vec::new();
    loop {
        let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await?;
        entries.extend(page);
        if next == 0 {
            return Ok(entries);
        }
        cursor = next;
    }
}

/// Units out of place, as "unit <n> (<why>)": a free or held unit in a stripe it does
/// not belong to, or one that is in two places (free twice, free and held, two holds).
/// Free lists are read in pages; a sale has at most a million units.
async fn misplaced_units(
    redis: &mut RedisConn,
    stripes: &[SaleKeys],
) -> anyhow::Result<Vec<String>> {
    const PAGE: i64 = 10_000;
    let count = stripes.len() as i64;
    // unit → every (stripe, place) it was found in
    let mut places: std::collections::HashMap<i64, Vec<(i64, String)>> =
        std::collections::HashMap::new();
    for (index, keys) in stripes.iter().enumerate() {
        let mut start = 0;
        loop {
            let page: Vec<i64> = redis::cmd("LRANGE")
                .arg(keys.free())
                .arg(start)
                .arg(start + PAGE - 1)
                .query_async(redis)
                .await?;
            for unit in &page {
                places
                    .entry(*unit)
                    .or_default()
                    .push((index as i64, format!("free in stripe {index}")));
            }
            if (page.len() as i64) < PAGE {
                break;
            }
            start += PAGE;
        }
        for (id, raw) in hash_entries(redis, keys.holds()).await? {
            let Ok(hold) = serde_json::from_str::<serde_json::Value>(&raw) else {
                continue;
            };
            let live = matches!(
                hold.get("s").and_then(|s| s.as_str()),
                Some("held" | "committing")
            );
            let units = hold.get("u").and_then(|u| u.as_array());
            for unit in units.into_iter().flatten().filter(|_| live) {
                if let Some(unit) = unit.as_i64() {
                    places
                        .entry(unit)
                        .or_default()
                        .push((index as i64, format!("hold {id} in stripe {index}")));
                }
            }
        }
    }
    let mut misplaced: Vec<(i64, String)> = places
        .into_iter()
        .filter(|(unit, at)| at.len() > 1 || at[0].0 != (unit - 1).rem_euclid(count))
        .map(|(unit, at)| {
            let at: Vec<String> = at.into_iter().map(|(_, place)| place).collect();
            (unit, format!("unit {unit} ({})", at.join(", ")))
        })
        .collect();
    misplaced.sort();
    Ok(misplaced.into_iter().map(|(_, text)| text).collect())
}

/// Holds in `committing`: those in the committing set, and any hold record whose
/// status says so (the two must agree; either is a violation once traffic stopped).
async fn committing_holds(
    redis: &mut RedisConn,
    committing_key: &str,
    holds_key: &str,
) -> anyhow::Result<Vec<String>> {
    let mut ids: std::collections::BTreeSet<String> = redis::cmd("ZRANGE")
        .arg(committing_key)
        .arg(0)
        .arg(-1)
        .query_async::<Vec<String>>(redis)
        .await?
        .into_iter()
        .collect();
    for (id, raw) in hash_entries(redis, holds_key).await? {
        let status = serde_json::from_str::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("s").and_then(|s| s.as_str()).map(str::to_owned));
        if status.as_deref() == Some("committing") {
            ids.insert(id);
        }
    }
    Ok(ids.into_iter().collect())
}

/// `flashsale verify`: connects with the configuration, checks, prints the report
/// (and writes it as JSON to `json_out` when given). Returns whether every check holds.
pub async fn run(
    config: &crate::config::Config,
    sale: Uuid,
    options: Options,
    json_out: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    let db = crate::startup::connect_postgres(config, 4).await?;
    let redis = crate::startup::connect_redis(config).await?;
    let projection =
        Projection::new(redis, config.redis_prefix.clone()).with_stripes(config.stock_stripes);
    let report = verify(&db, &projection, SaleId(sale), options).await?;
    print!("{}", report.render());
    if let Some(path) = json_out {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    Ok(report.passed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checks: Vec<Check>) -> Report {
        Report {
            sale_id: Uuid::nil(),
            name: "launch".into(),
            total: 10,
            orders: 3,
            units_sold: 3,
            oversold: 0,
            lost: 0,
            redis: Some(StockView {
                total: 10,
                available: 6,
                held: 1,
                sold: 3,
            }),
            drained: true,
            waited_ms: 0,
            checks,
        }
    }

    #[test]
    fn stock_is_conserved_only_when_the_parts_add_up_to_the_sale_total() {
        let stock = StockView {
            total: 10,
            available: 6,
            held: 1,
            sold: 3,
        };
        assert!(stock_conserved(&stock, 10));
        assert!(!stock_conserved(&StockView { held: 2, ..stock }, 10));
        assert!(
            !stock_conserved(&stock, 11),
            "Redis and Postgres disagree on total"
        );
    }

    #[test]
    fn a_check_with_offenders_fails_and_keeps_a_bounded_list() {
        let offenders: Vec<String> = (0..KEPT_OFFENDERS + 5).map(|i| i.to_string()).collect();
        let check = Check::from_offenders("x", "x holds", "", offenders);
        assert!(!check.passed);
        assert_eq!(check.offender_count, KEPT_OFFENDERS + 5);
        assert_eq!(check.offenders.len(), KEPT_OFFENDERS);
        assert!(Check::from_offenders("x", "x holds", "", Vec::new()).passed);
    }

    #[test]
    fn the_report_passes_only_when_every_check_holds() {
        let ok = Check::from_condition("a", "a", true, "");
        let bad = Check::from_condition("b", "b", false, "");
        assert!(report(vec![ok.clone()]).passed());
        assert!(!report(vec![ok, bad]).passed());
    }

    #[test]
    fn the_text_report_names_failed_checks_and_lists_offenders_truncated() {
        let offenders: Vec<String> = (0..25).map(|i| format!("order-{i}")).collect();
        let text = report(vec![
            Check::from_condition("units_sold_within_total", "sold ≤ total", true, "3 of 10"),
            Check::from_offenders("one_event_per_order", "one event", "3 orders", offenders),
        ])
        .render();
        assert!(text.contains("ok   units_sold_within_total"), "{text}");
        assert!(text.contains("FAIL one_event_per_order"), "{text}");
        assert!(text.contains("25 offender(s): order-0, order-1"), "{text}");
        assert!(text.contains("order-19, … and 5 more"), "{text}");
        assert!(!text.contains("order-20"), "{text}");
        assert!(
            text.trim_end().ends_with("FAIL: 1 of 2 checks violated"),
            "{text}"
        );
    }
}
