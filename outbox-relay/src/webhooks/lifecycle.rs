//! Noticing a sale's lifecycle moments — started, sold out, ended — once per sale, and
//! writing each as an event to the outbox (`SaleStarted`, `SaleSoldOut`, `SaleEnded`).
//!
//! Nothing flips a column when a sale starts (its status is derived from the clock),
//! so a loop in every API process ([`notice_once`], about every second) asks Postgres
//! which sales passed a moment without its mark in `sale_lifecycle_marks`. The mark and
//! the outbox row commit in one transaction; the mark's primary key makes a second
//! process that noticed the same moment roll back, so each moment is one event however
//! many processes run the loop.
//!
//! Cost: only sales ending in the future or within [`LOOKBACK_SECONDS`] are looked at
//! (index `sales_by_end`), so a tick follows the live and scheduled sales, not every
//! sale ever run. A moment missed for longer than the lookback (every process down for
//! a day) is not announced late.
//!
//! Only moments some endpoint of the sale's merchant subscribes to are written: the
//! events exist for the webhooks alone, and a deployment without webhooks writes
//! none. A merchant who subscribes while a sale is live hears of its start then (the
//! event's `at` says when it was).
//!
//! Sold out is read from the sales ledger (the `sales-ledger` consumer's count of units
//! sold): it lags the last checkout by the pipeline's delay, and a sale that sells out,
//! gets units back and sells out again announces it once.

use chrono::{DateTime, Utc};
use reservations::events::{self, DomainEvent, SaleMoment};
use reservations::ids::SaleId;
use sqlx::PgPool;
use uuid::Uuid;

use super::EventType;
use crate::error::{Error, Result};

/// How far back a tick looks for sales whose moments were missed.
pub const LOOKBACK_SECONDS: f64 = 24.0 * 3600.0;

/// Most sales one tick announces per moment (a backlog is worked off over ticks).
const TICK_LIMIT: i64 = 500;

/// A moment of a sale's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    Started,
    SoldOut,
    Ended,
}

impl Moment {
    const ALL: [Moment; 3] = [Moment::Started, Moment::SoldOut, Moment::Ended];

    /// The `sale_lifecycle_marks.event` value.
    fn mark(self) -> &'static str {
        match self {
            Moment::Started => "started",
            Moment::SoldOut => "sold_out",
            Moment::Ended => "ended",
        }
    }

    /// Which sales passed this moment (the `where` of the candidates query).
    fn condition(self) -> &'static str {
        match self {
            // A sale the merchant ended before its start never started.
            Moment::Started => "s.starts_at <= now() and s.state <> 'ended'",
            Moment::SoldOut => {
                "s.state = 'active' and s.starts_at <= now() and s.ends_at > now() \
                 and s.total > 0 \
                 and exists (select 1 from sales_ledger l where l.sale_id = s.id and l.units_sold >= s.total)"
            }
            Moment::Ended => "(s.ends_at <= now() or s.state = 'ended')",
        }
    }

    /// The webhook type merchants subscribe to for this moment.
    fn webhook(self) -> EventType {
        match self {
            Moment::Started => EventType::SaleStarted,
            Moment::SoldOut => EventType::SaleSoldOut,
            Moment::Ended => EventType::SaleEnded,
        }
    }

    fn event(self, moment: SaleMoment) -> DomainEvent {
        match self {
            Moment::Started => DomainEvent::SaleStarted(moment),
            Moment::SoldOut => DomainEvent::SaleSoldOut(moment),
            Moment::Ended => DomainEvent::SaleEnded(moment),
        }
    }
}

/// Announces every moment passed since the last tick; returns how many events were
/// written.
pub async fn notice_once(pool: &PgPool) -> Result<usize> {
    let mut written = 0;
    for moment in Moment::ALL {
        let candidates: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(&format!(
            "select s.id, s.starts_at, s.ends_at from sales s \
             where s.ends_at > now() - make_interval(secs => $1) and {} \
               and not exists (select 1 from sale_lifecycle_marks m \
                               where m.sale_id = s.id and m.event = $2) \
               and exists (select 1 from webhook_endpoints w \
                           where w.merchant_id = s.merchant_id and $4 = any(w.events)) \
             order by s.ends_at limit $3",
            moment.condition()
        ))
        .bind(LOOKBACK_SECONDS)
        .bind(moment.mark())
        .bind(TICK_LIMIT)
        .bind(moment.webhook().name())
        .fetch_all(pool)
        .await?;
        for (sale, starts_at, ends_at) in candidates {
            if announce(pool, moment, sale, starts_at, ends_at).await? {
                written += 1;
            }
        }
    }
    Ok(written)
}

/// Writes one moment's event and mark in one transaction; `false` if another process
/// announced it first.
async fn announce(
    pool: &PgPool,
    moment: Moment,
    sale: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Result<bool> {
    let at = match moment {
        // The scheduled time when it is the one that passed; "now" for a sell-out or a
        // merchant's early end, which the schedule does not say.
        Moment::Started => starts_at,
        Moment::Ended if ends_at <= Utc::now() => ends_at,
        _ => Utc::now(),
    };
    let event = moment.event(SaleMoment {
        sale_id: SaleId(sale),
        starts_at,
        ends_at,
        at,
    });
    let mut tx = pool.begin().await?;
    let event_id = events::append(&mut tx, &event, "sale-lifecycle")
        .await
        .map_err(|e| Error::MalformedEvent(format!("cannot write a sale lifecycle event: {e}")))?;
    let marked = sqlx::query(
        "insert into sale_lifecycle_marks (sale_id, event, event_id) values ($1, $2, $3) \
         on conflict do nothing",
    )
    .bind(sale)
    .bind(moment.mark())
    .bind(event_id)
    .execute(&mut *tx)
    .await?;
    if marked.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}
