//! `flashsale verify <sale_id>`: the invariant checker a launch rehearsal ends with.
//!
//! It reads the sale's durable record (Postgres) and its hot state (Redis, under the
//! configured key prefix) and checks every promise of the design that can be checked
//! after the fact. The checks are not written here: each domain audits the tables and
//! keys it owns, and this module merges their findings into one [`Report`]:
//!
//! - units, Redis stock and holds, the per-shopper limit: `reservations::audit::stock`
//!   (sold ≤ total, each sold unit real and sold once, `available + held + sold =
//!   total` over the stripes, Redis `sold` = Postgres, no hold left `committing`, every
//!   unit in one place of its own stripe, the limit in Postgres and in each stripe);
//! - events and consumers: `outbox_relay::audit` (one published `OrderPlaced` row per
//!   order, one `processed_events` row per consumer group, the sales ledger agrees,
//!   every confirmation sent);
//! - money: `reservations::audit::payments` (the provider asked through the payment
//!   port, the same adapter checkout uses: every order captured for its amount, no
//!   payment for an order that does not exist; every payment attempt settled as the
//!   provider says, no reservation authorized twice);
//! - webhooks: `outbox_relay::webhooks::audit` (every order's event fanned out to each
//!   subscribed endpoint, every delivery's record consistent).
//!
//! What stays here: the asynchronous part (relay, workers, a checkout still
//! committing) is given time to drain first: the checker waits while work is still
//! moving, up to a bound, so a run that stopped a moment ago is not reported as broken.
//! Then it runs the audits in a fixed order, merges their checks and figures, and
//! renders the report (text in the `render` submodule, or JSON with `--json`).
//! Everything found is listed with the offending ids; the command exits non-zero when
//! any check fails.

use std::collections::BTreeSet;
use std::time::Duration;

use outbox_relay::audit::Backlog;
use reservations::audit::variants::VariantSold;
use reservations::audit::{payments, stock, AuditedSale};
use reservations::ids::SaleId;
use reservations::payment::PaymentGateway;
use reservations::projection::Projection;
use reservations::sales::StockView;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

pub use reservations::audit::Check;

mod render;

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
    /// Per variant, in ordinal order: its total, units sold and oversold (one entry,
    /// the sale's own, for a one-variant sale).
    pub variants: Vec<VariantSold>,
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
}

/// Work the asynchronous part still has to do for this sale.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Pending {
    unpublished: i64,
    unconsumed: i64,
    committing: i64,
    attempts_in_doubt: i64,
}

impl Pending {
    fn is_settled(&self) -> bool {
        self.unpublished == 0
            && self.unconsumed == 0
            && self.committing == 0
            && self.attempts_in_doubt == 0
    }
}

/// Checks every invariant of `sale`, after giving the pipeline up to
/// `options.drain_timeout` to settle. Errors only when a store cannot be read or the
/// sale does not exist; violations are in the report.
pub async fn verify(
    db: &PgPool,
    projection: &Projection,
    provider: &dyn PaymentGateway,
    sale: SaleId,
    options: Options,
) -> anyhow::Result<Report> {
    let Some(row) = AuditedSale::load(db, sale).await? else {
        anyhow::bail!("sale {sale} not found in Postgres");
    };

    // Settle first: the relay and the workers may still be on the last orders.
    let started = tokio::time::Instant::now();
    let drained = loop {
        let pending = pending(db, projection, &row).await?;
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

    // The audits, in report order: stock and holds, events and consumers, money,
    // webhooks.
    let stock = stock::audit(db, projection, &row).await?;
    let sold = stock.figures.sold;
    let events = outbox_relay::audit::audit(db, sale, &sold).await?;
    let payments = payments::audit(db, provider, &row, &sold).await?;
    let webhooks = outbox_relay::webhooks::audit::audit(db, sale).await?;

    // Lost: a committed order that its event, its consumers or its payment did not
    // follow.
    let lost: BTreeSet<Uuid> = events
        .figures
        .iter()
        .chain(payments.figures.iter())
        .copied()
        .collect();
    let mut checks = stock.checks;
    checks.extend(events.checks);
    checks.extend(payments.checks);
    checks.extend(webhooks.checks);

    Ok(Report {
        sale_id: sale.0,
        name: row.name,
        total: row.total,
        orders: sold.orders,
        units_sold: sold.units_sold,
        oversold: stock.figures.oversold,
        variants: stock.figures.variants,
        lost: lost.len() as i64,
        redis: stock.figures.redis,
        drained,
        waited_ms,
        checks,
    })
}

/// What is still moving for this sale: unpublished events, published events some
/// consumer has not processed (the events audit's backlog), holds in `committing` in
/// any stripe (the stock audit's count), payment attempts the completer has yet to
/// settle (the payments audit's count).
async fn pending(
    db: &PgPool,
    projection: &Projection,
    row: &AuditedSale,
) -> anyhow::Result<Pending> {
    let sale = row.id;
    let Backlog {
        unpublished,
        unconsumed,
    } = outbox_relay::audit::backlog(db, sale).await?;
    let stripes = projection.all_stripe_keys(sale);
    let committing = stock::committing_count(&mut projection.connection(), &stripes).await?;
    let attempts_in_doubt = payments::attempts_in_doubt(db, row).await?;
    Ok(Pending {
        unpublished,
        unconsumed,
        committing,
        attempts_in_doubt,
    })
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
    let provider = crate::startup::guarded_payments(config)?;
    let report = verify(&db, &projection, provider.as_ref(), SaleId(sale), options).await?;
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
            variants: Vec::new(),
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
