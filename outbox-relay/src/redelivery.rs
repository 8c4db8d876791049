//! The redelivery rule: an event that every consumer group has not settled within a
//! bound is published again, whatever Redis lost and however it lost it.
//!
//! The marker key (see [`crate::relay::marker_key`]) notices a Redis that lost the whole
//! order stream, within a poll interval. It cannot notice a *partial* loss: a Redis
//! that crashed and came back from an AOF missing its last second, or a replica
//! promoted before it had every entry, keeps the marker and loses entries. This rule
//! does not care how: Postgres knows what was published (`outbox`) and what each group
//! processed (`processed_events`) or gave up on (`dead_lettered_events`), so
//!
//! - the **settle** pass stamps `settled_at` on published events every group has
//!   settled, so later passes never look at them again;
//! - the **redeliver** pass marks events published longer than the bound ago and still
//!   unsettled as unpublished, and the relay appends them once more. Consumers
//!   deduplicate by event id, so an event that was merely slow is applied once anyway.
//!
//! Both read only the partial index `outbox_unsettled`: their cost follows the events
//! in flight, not the history the outbox keeps. The bound must exceed the time a
//! healthy pipeline takes, including a dead worker's entries being claimed by another
//! (`claim_idle`, 30 s): redelivering those early costs duplicates, not correctness.

use std::time::Duration;

use sqlx::PgPool;

use crate::consumer::ConsumerKind;
use crate::error::Result;
use crate::event::ORDER_PLACED;

/// Most rows one pass touches: a pass never holds a long statement against checkout.
const PASS_LIMIT: i64 = 5_000;

/// Stamps `settled_at` on up to [`PASS_LIMIT`] published `OrderPlaced` rows that every
/// consumer group processed or dead-lettered; returns how many.
pub async fn settle_processed(pool: &PgPool) -> Result<u64> {
    let groups: Vec<&str> = ConsumerKind::ALL.iter().map(|k| k.group()).collect();
    let settled = sqlx::query(
        "update outbox set settled_at = now() where id in ( \
             select e.id from outbox e \
             where e.settled_at is null and e.published_at is not null and e.event_type = $1 \
               and (select count(*) from processed_events p \
                    where p.event_id = e.id and p.consumer = any($2)) \
                 + (select count(*) from dead_lettered_events d \
                    where d.event_id = e.id and d.consumer = any($2)) >= $3 \
             order by e.published_at limit $4)",
    )
    .bind(ORDER_PLACED)
    .bind(&groups)
    .bind(groups.len() as i64)
    .bind(PASS_LIMIT)
    .execute(pool)
    .await?;
    Ok(settled.rows_affected())
}

/// Marks up to [`PASS_LIMIT`] `OrderPlaced` rows published more than `bound` ago and
/// still not settled by every group as unpublished, so the relay appends them again;
/// returns how many. Rows another relay is publishing right now are skipped.
pub async fn redeliver_overdue(pool: &PgPool, bound: Duration) -> Result<u64> {
    let groups: Vec<&str> = ConsumerKind::ALL.iter().map(|k| k.group()).collect();
    let reset = sqlx::query(
        "update outbox set published_at = null where id in ( \
             select e.id from outbox e \
             where e.settled_at is null and e.published_at is not null and e.event_type = $1 \
               and e.published_at < now() - make_interval(secs => $2) \
               and (select count(*) from processed_events p \
                    where p.event_id = e.id and p.consumer = any($3)) \
                 + (select count(*) from dead_lettered_events d \
                    where d.event_id = e.id and d.consumer = any($3)) < $4 \
             order by e.published_at limit $5 for update skip locked)",
    )
    .bind(ORDER_PLACED)
    .bind(bound.as_secs_f64())
    .bind(&groups)
    .bind(groups.len() as i64)
    .bind(PASS_LIMIT)
    .execute(pool)
    .await?;
    Ok(reset.rows_affected())
}

/// Settle passes until the unsettled rows are caught up (at most ten chunks, so a long
/// backlog is worked off over several passes, never in one long burst), then one
/// redelivery pass; logs and counts what was redelivered.
pub async fn pass(pool: &PgPool, bound: Duration) -> Result<u64> {
    for _ in 0..10 {
        if settle_processed(pool).await? < PASS_LIMIT as u64 {
            break;
        }
    }
    let redelivered = redeliver_overdue(pool, bound).await?;
    if redelivered > 0 {
        metrics::counter!("flashsale_outbox_republished_total").increment(redelivered);
        tracing::warn!(
            redelivered,
            bound_ms = bound.as_millis() as u64,
            "events not settled by every consumer within the bound are published again"
        );
    }
    Ok(redelivered)
}
