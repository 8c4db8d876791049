//! How the line survives Redis: noticing that Redis lost part of a sale's line and
//! rebuilding it, in the same order, from Postgres' marks and shoppers' statements.
//!
//! # What is kept where
//!
//! - Postgres (`marks`) records the ceiling of positions handed out (raised by a
//!   block before Redis may pass it), the serving position and the last position as of
//!   the controller's tick, and the draw's seed, commitment and drawn order.
//! - Each shopper holds a signed statement of their place (`place`), sent back on
//!   polls and rejoins.
//! - Each process remembers the highest position and serving position it has seen per
//!   sale (its floor), which an older Redis cannot take back.
//!
//! # How a loss is noticed (no Postgres read on a poll while nothing is lost)
//!
//! - Emptied: the line's `meta` has no `ceiling` (scripts answer `needs_marks`).
//! - Rolled back: a join finds fewer positions than this process handed out, or a
//!   statement states a place past Redis' last position (`behind`); a poll sees a
//!   serving position below this process's floor; or the controller, which records
//!   its view in Postgres every tick, finds Redis below what it recorded.
//!
//! # How it heals
//!
//! The `heal` script moves the line up to the marks: the serving position becomes the
//! greater of Redis' and Postgres', and after a loss the next position handed out is
//! past the recorded ceiling, so every new arrival comes after every place a shopper
//! may still claim. Shoppers come back one by one: a poll or rejoin with a valid
//! statement that Redis does not know is put back at its signed position (with its
//! admission time, so the admitted stay admitted and their window does not restart).
//! A pre-queued shopper whose place was drawn takes the place the recorded draw gives.
//!
//! A shopper Redis still knows, from an older copy that had not seen them admitted,
//! keeps the admission time their statement gives (the ticket script takes the earlier
//! one), so the window does not restart.
//!
//! # What it costs
//!
//! A join is one script, a poll one script and one HMAC signature (two with a
//! statement to check); Postgres is read only when a script says the line needs it.
//! Postgres is written once per [`CEILING_BLOCK`] joins (the ceiling, raised in the
//! background a block before joins reach it), once per sale
//! per controller tick (the marks) and once per draw. The price of the ceiling: while
//! Postgres is down, joins still get places up to the recorded ceiling, then fail
//! until it is back.
//!
//! # What it cannot do
//!
//! - Between a rollback and the first sign of it, positions past Redis' old count may
//!   be handed out again, by a process that had not handed out those positions itself
//!   (with one process the join itself notices, so never). The window is one
//!   controller tick at most.
//! - After a loss the line has up to two [`CEILING_BLOCK`]s of empty places (the
//!   ceiling runs up to two blocks ahead while the line fills); the controller admits
//!   through them like no-shows.
//! - A pre-queued shopper lost before the draw who comes back only after it is not in
//!   the published draw, and joins the back of the line.

use std::sync::atomic::Ordering;

use redis::Script;

use crate::marks::{Marks, CEILING_BLOCK};
use crate::place::Place;
use crate::queue::{LineState, Queue};
use crate::{Error, Result};
use reservations::ids::{SaleId, ShopperId};

/// The heal and restore scripts.
pub(crate) struct HealScripts {
    heal: Script,
    restore: Script,
}

impl HealScripts {
    pub(crate) fn new() -> Self {
        Self {
            heal: crate::queue::line_script!("lua/heal.lua"),
            restore: crate::queue::line_script!("lua/restore.lua"),
        }
    }
}

/// The highest position handed out and serving position a process has seen of a sale.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Floor {
    pub(crate) seq: i64,
    pub(crate) serving: i64,
    /// The ceiling this process last raised (so concurrent joins raise it once).
    pub(crate) ceiling: i64,
}

/// Tries of a script that may first need the line healed.
const TRIES: usize = 6;

impl Queue {
    /// This process's floor for `sale`.
    pub(crate) fn floor(&self, sale: SaleId) -> Floor {
        self.floors
            .lock()
            .expect("floors lock")
            .get(&sale)
            .copied()
            .unwrap_or_default()
    }

    /// Raises this process's floor for `sale` (never lowers it).
    pub(crate) fn see(&self, sale: SaleId, seq: i64, serving: i64) {
        let mut floors = self.floors.lock().expect("floors lock");
        let floor = floors.entry(sale).or_default();
        floor.seq = floor.seq.max(seq);
        floor.serving = floor.serving.max(serving);
    }

    /// Raises the line's ceiling a block further in the background once a join's
    /// `position` comes within a block of it, one raise at a time per process: joins
    /// at speed do not all stop at the ceiling to wait for Postgres (a join that
    /// reaches it anyway raises it itself, as before). The ceiling stays one to two
    /// blocks ahead of the line while it fills.
    pub(crate) fn raise_ahead(&self, sale: SaleId, position: i64, ceiling: i64) {
        if ceiling - position > CEILING_BLOCK || self.raising_ahead.swap(true, Ordering::AcqRel) {
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            if let Err(e) = queue.heal(sale, false, Some(ceiling)).await {
                tracing::warn!(sale_id = %sale, error = %e,
                    "raising the line's ceiling ahead failed; the join that reaches it raises it");
            }
            queue.raising_ahead.store(false, Ordering::Release);
        });
    }

    /// Brings the line up to Postgres' marks; with `raise_from`, first raises the
    /// recorded ceiling past that position; with `force`, treats the line as lost
    /// (other evidence says Redis is older). Returns whether Redis had lost part of it.
    pub(crate) async fn heal(
        &self,
        sale: SaleId,
        force: bool,
        raise_from: Option<i64>,
    ) -> Result<bool> {
        let (lost, drawn) = self.heal_once(sale, force, raise_from).await?;
        if lost {
            tracing::warn!(sale_id = %sale, "redis lost part of the line; rebuilt from the recorded marks");
            if drawn {
                // The draw Redis lost is run again from the recorded order.
                Box::pin(self.draw(sale)).await?;
            }
        }
        Ok(lost)
    }

    /// One heal under this process's lock; also says whether a draw is recorded.
    async fn heal_once(
        &self,
        sale: SaleId,
        force: bool,
        raise_from: Option<i64>,
    ) -> Result<(bool, bool)> {
        let _single = self.raising.lock().await;
        let mut marks = self.marks.get(sale).await?;
        let keep = match raise_from {
            // Another join of this process raised it meanwhile.
            Some(seq) if self.floor(sale).ceiling > seq && !force => self.floor(sale).ceiling,
            Some(seq) => {
                let raised = self
                    .marks
                    .raise_ceiling(sale, marks.ceiling.max(seq) + CEILING_BLOCK)
                    .await?;
                let ceiling = raised.ceiling;
                self.floors
                    .lock()
                    .expect("floors lock")
                    .entry(sale)
                    .or_default()
                    .ceiling = ceiling;
                ceiling
            }
            None => marks.ceiling,
        };
        // The process's floor is evidence as good as Postgres' record.
        let floor = self.floor(sale);
        marks.seq = marks.seq.max(floor.seq);
        marks.serving = marks.serving.max(floor.serving);
        let lost = self.heal_to(sale, &marks, keep, force).await?;
        Ok((lost, marks.drawn_tickets.is_some()))
    }

    /// Records what the controller sees of the line in Postgres and heals Redis if it
    /// is behind the record. Returns whether Redis had lost part of the line.
    pub async fn keep_marks(&self, sale: SaleId, line: &LineState) -> Result<bool> {
        let marks = self.marks.record(sale, line.seq, line.serving).await?;
        let lost = self.heal_to(sale, &marks, marks.ceiling, false).await?;
        if lost {
            tracing::warn!(sale_id = %sale, seq = line.seq, serving = line.serving,
                recorded_seq = marks.seq, recorded_serving = marks.serving,
                "redis lost part of the line; rebuilt from the recorded marks");
        }
        Ok(lost)
    }

    async fn heal_to(&self, sale: SaleId, marks: &Marks, keep: i64, force: bool) -> Result<bool> {
        let (lost, seq, serving): (i64, i64, i64) = self
            .invoke(sale, &self.heal_scripts.heal)
            .arg(marks.ceiling)
            .arg(keep)
            .arg(marks.seq)
            .arg(marks.serving)
            .arg(marks.seed.as_deref().unwrap_or_default())
            .arg(marks.commitment.as_deref().unwrap_or_default())
            .arg(i64::from(force))
            .invoke_async(&mut self.connection())
            .await?;
        self.see(sale, seq, serving);
        // The controllers visit the sales of this set; it goes with the line.
        let _: i64 = redis::cmd("SADD")
            .arg(self.lines_key())
            .arg(sale.to_string())
            .query_async(&mut self.connection())
            .await?;
        Ok(lost == 1)
    }

    /// Fixes the draw's seed in Postgres (first writer wins), then in Redis.
    pub(crate) async fn fix_seed(&self, sale: SaleId) -> Result<()> {
        let (seed, commitment) = crate::draw::new_seed();
        self.marks.fix_seed(sale, &seed, &commitment).await?;
        self.heal(sale, false, None).await?;
        Ok(())
    }

    /// Puts a shopper Redis forgot back at the place `place` states (checked by the
    /// caller). A shopper Redis knows keeps their ticket. Returns whether the shopper
    /// is in line now (not when they had left that place).
    pub(crate) async fn restore(
        &self,
        shopper: ShopperId,
        sale: SaleId,
        place: &Place,
    ) -> Result<bool> {
        let mut position = place.position;
        // A pre-queue place of a priority code's holder goes back among the priority
        // tickets: the use is recorded with the shopper in Postgres (`codes`).
        let priority =
            place.position == 0 && self.codes.recorded(sale, shopper).await? == Some(true);
        if position == 0 {
            // Pre-queued: the recorded draw, if there was one, gives the place.
            if let Some(order) = self.marks.get(sale).await?.drawn_tickets {
                if let Some(index) = order.iter().position(|t| *t == place.ticket_id) {
                    position = index as i64 + 1;
                }
            }
        }
        for _ in 0..TRIES {
            let reply: Vec<String> = self
                .invoke(sale, &self.heal_scripts.restore)
                .arg(shopper.to_string())
                .arg(&place.ticket_id)
                .arg(position)
                .arg(place.joined_ms)
                .arg(place.admitted_ms.map(|a| a.to_string()).unwrap_or_default())
                .arg(i64::from(priority))
                .invoke_async(&mut self.connection())
                .await?;
            match reply.first().map(String::as_str) {
                Some("existing") => return Ok(true),
                // A place left is not given back.
                Some("left") => return Ok(false),
                Some("restored") => {
                    tracing::debug!(sale_id = %sale, position, "place restored from its statement");
                    self.see(sale, position, 0);
                    return Ok(true);
                }
                Some("needs_marks") => self.heal(sale, false, None).await?,
                Some("behind") => self.heal(sale, true, None).await?,
                Some("needs_ceiling") => {
                    let seq = reply.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    self.heal(sale, false, Some(seq)).await?
                }
                _ => break,
            };
        }
        Err(Error::Internal(anyhow::anyhow!(
            "the restore script did not settle"
        )))
    }
}
