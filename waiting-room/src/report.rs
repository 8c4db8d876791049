//! What the line contributes to a sale's post-event report: how many joined, how many
//! of them in the pre-queue, how many were admitted and reached the reserve step, and
//! the admission wait each shopper was told at join against the one they had.
//!
//! # Decisions
//!
//! - **O(1) per shopper on the hot path.** The join script, when it creates a ticket,
//!   adds one to `joined` (and `prequeued`) and to the bucket of the
//!   `estimated_wait_seconds` the ticket states (no round trip of its own: the
//!   estimate is computed there as `render` computes it); the ticket script adds one
//!   to the bucket of the actual wait (admission time minus join time) in the same
//!   call that stamps the ticket's admission time, so each shopper is counted once.
//!   Nothing is scanned per shopper, at join, poll or report time.
//! - **Log-scaled buckets, quarter octaves.** Bucket 0 holds waits under one second;
//!   bucket `b >= 1` holds `[2^((b-1)/4), 2^(b/4))` seconds. A percentile is the
//!   bucket's geometric midpoint, so it is within about 9% of the exact nearest-rank
//!   value (and sub-second waits read as 0). A 24-hour wait is bucket 66: the hashes
//!   stay small whatever the line's size.
//! - **Pre-queued shoppers are told no wait at join** (their place is drawn at the
//!   start), so only shoppers who joined after the draw count in the estimated
//!   histogram; every admitted shopper counts in the actual one, a pre-queued one with
//!   the wait from their join, the time before the start included.
//! - **Kept in Postgres** (`line_reports`): the figures live in Redis while the sale
//!   runs, and the reserve step's set of shoppers goes with the sale's keys after the
//!   ended-sale retention. The controller snapshots them when it sees the sale over,
//!   and every report read while Redis has the line refreshes the row; a write never
//!   lowers a figure, so a report after Redis lost or purged the line reads the row.

use std::collections::{BTreeMap, HashMap};

use crate::queue::Queue;
use crate::Result;
use reservations::ids::SaleId;

/// Buckets of one wait histogram: bucket number → shoppers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaitHistogram(pub BTreeMap<i64, i64>);

/// The bucket of a wait of `seconds` (see the module's decisions; the scripts compute
/// the same with common.lua's `wait_bucket`).
pub fn bucket_of(seconds: f64) -> i64 {
    if seconds < 1.0 || !seconds.is_finite() {
        0
    } else {
        (4.0 * seconds.log2()).floor() as i64 + 1
    }
}

/// The value a bucket stands for: 0 for bucket 0, else its geometric midpoint.
fn bucket_value(bucket: i64) -> f64 {
    if bucket <= 0 {
        0.0
    } else {
        2f64.powf((2 * bucket - 1) as f64 / 8.0)
    }
}

impl WaitHistogram {
    /// Shoppers counted.
    pub fn count(&self) -> i64 {
        self.0.values().sum()
    }

    /// The nearest-rank `q` quantile (0 < q ≤ 1) in seconds, rounded to a tenth; `None`
    /// when nobody was counted.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as i64).clamp(1, n);
        let mut seen = 0;
        for (&bucket, &count) in &self.0 {
            seen += count;
            if seen >= rank {
                return Some((bucket_value(bucket) * 10.0).round() / 10.0);
            }
        }
        None
    }

    fn from_fields(fields: &HashMap<String, i64>, prefix: &str) -> Self {
        Self(
            fields
                .iter()
                .filter_map(|(k, &v)| Some((k.strip_prefix(prefix)?.parse().ok()?, v)))
                .filter(|&(_, v)| v > 0)
                .collect(),
        )
    }

    fn to_json(&self) -> serde_json::Value {
        self.0
            .iter()
            .map(|(b, n)| (b.to_string(), serde_json::Value::from(*n)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    fn from_json(value: &serde_json::Value) -> Self {
        Self(
            value
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_i64()?)))
                .collect(),
        )
    }
}

/// The line's figures for the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineReport {
    /// Shoppers who were given a ticket.
    pub joined: i64,
    /// Of them, those who joined the pre-queue (before the draw).
    pub prequeued: i64,
    /// Positions admitted (handed out and reached by the serving position).
    pub admitted: i64,
    /// Shoppers who reached the reserve step (held, or were told sold out).
    pub reserved: i64,
    /// Admitted shoppers who never reached the reserve step.
    pub no_shows: i64,
    /// What shoppers were told at join.
    pub estimated: WaitHistogram,
    /// How long admitted shoppers waited from join to admission.
    pub actual: WaitHistogram,
}

type ReportRow = (i64, i64, i64, i64, String, String);

impl Queue {
    /// The key of the sale's report counters and wait histograms (the line's hash tag).
    pub(crate) fn waits_key(&self, sale: SaleId) -> String {
        let [meta, ..] = self.keys(sale).0;
        format!("{}:waits", meta.trim_end_matches(":meta"))
    }

    /// The line's report figures, from Redis while it has them (kept in Postgres on
    /// the way, never lowering what was kept) and from Postgres after.
    pub async fn line_report(&self, sale: SaleId) -> Result<LineReport> {
        let fields: HashMap<String, i64> = redis::cmd("HGETALL")
            .arg(self.waits_key(sale))
            .query_async(&mut self.connection())
            .await?;
        let line = self.line_state(sale).await?;
        let marks = self.marks.get(sale).await?;
        let admitted = line.serving.min(line.seq).max(marks.serving.min(marks.seq));
        let reserved = self.sales().reserved_shoppers(sale).await?;
        let int = |k: &str| fields.get(k).copied().unwrap_or(0);
        let live = LineReport {
            joined: int("joined"),
            prequeued: int("prequeued"),
            admitted,
            reserved,
            no_shows: 0,
            estimated: WaitHistogram::from_fields(&fields, "e:"),
            actual: WaitHistogram::from_fields(&fields, "a:"),
        };
        self.keep_report(sale, &live).await
    }

    /// Records the line's report figures in Postgres now (the controller calls this
    /// when it sees the sale over, before the reserve step's keys may go).
    pub async fn snapshot_report(&self, sale: SaleId) -> Result<()> {
        self.line_report(sale).await.map(drop)
    }

    /// Merges `live` into the kept row (figures only move forward, a histogram is
    /// replaced only by one counting at least as many) and answers the merged row.
    async fn keep_report(&self, sale: SaleId, live: &LineReport) -> Result<LineReport> {
        let row: ReportRow = sqlx::query_as(
            "insert into line_reports as r \
               (sale_id, joined, prequeued, admitted, reserved, estimated_waits, actual_waits) \
             values ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb) \
             on conflict (sale_id) do update set \
               joined = greatest(r.joined, excluded.joined), \
               prequeued = greatest(r.prequeued, excluded.prequeued), \
               admitted = greatest(r.admitted, excluded.admitted), \
               reserved = greatest(r.reserved, excluded.reserved), \
               estimated_waits = case when $8 >= (select coalesce(sum(v::bigint), 0) \
                 from jsonb_each_text(r.estimated_waits) e(k, v)) \
                 then excluded.estimated_waits else r.estimated_waits end, \
               actual_waits = case when $9 >= (select coalesce(sum(v::bigint), 0) \
                 from jsonb_each_text(r.actual_waits) a(k, v)) \
                 then excluded.actual_waits else r.actual_waits end, \
               updated_at = now() \
             returning joined, prequeued, admitted, reserved, estimated_waits::text, actual_waits::text",
        )
        .bind(sale.0)
        .bind(live.joined)
        .bind(live.prequeued)
        .bind(live.admitted)
        .bind(live.reserved)
        .bind(live.estimated.to_json().to_string())
        .bind(live.actual.to_json().to_string())
        .bind(live.estimated.count())
        .bind(live.actual.count())
        .fetch_one(self.marks.pool())
        .await
        .map_err(anyhow::Error::from)?;
        let (joined, prequeued, admitted, reserved, estimated, actual) = row;
        Ok(LineReport {
            joined,
            prequeued,
            admitted,
            reserved,
            no_shows: (admitted - reserved).max(0),
            estimated: WaitHistogram::from_json(
                &serde_json::from_str(&estimated).unwrap_or_default(),
            ),
            actual: WaitHistogram::from_json(&serde_json::from_str(&actual).unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_quarter_octaves_and_percentiles_land_within_a_tenth() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(0.9), 0);
        assert_eq!(bucket_of(1.0), 1);
        assert_eq!(bucket_of(2.0), 5);
        assert_eq!(bucket_of(86_400.0), 66);
        // Waits of 1..=100 s: the p50 and p95 are within 10% of the exact ones.
        let mut h = WaitHistogram::default();
        for s in 1..=100 {
            *h.0.entry(bucket_of(f64::from(s))).or_default() += 1;
        }
        assert_eq!(h.count(), 100);
        let p50 = h.quantile(0.5).unwrap();
        let p95 = h.quantile(0.95).unwrap();
        assert!((p50 - 50.0).abs() / 50.0 < 0.1, "{p50}");
        assert!((p95 - 95.0).abs() / 95.0 < 0.1, "{p95}");
        assert_eq!(WaitHistogram::default().quantile(0.5), None);
    }
}
