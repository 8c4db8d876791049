//! Joining a sale's line: the sale's state and access codes first, then one script
//! that hands out the place (or says what the line needs first: its marks, its seed,
//! the draw, a higher ceiling), retried until it settles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codes::Pass;
use crate::draw::address_group;
use crate::queue::{LineView, Queue, StoredTicket, Ticket};
use crate::{Error, Result};
use reservations::ids::{SaleId, ShopperId};
use reservations::sales::{Access, Sale, SaleState};

/// How often a process re-adds a sale with joins to the set of lines.
const LINE_REGISTRATION: Duration = Duration::from_secs(1);

impl Queue {
    /// The sale, if its definition lets a join in now: active and not ended (from the
    /// cached sale; no Redis call). The join script refuses a sold-out line itself.
    pub async fn open_sale(&self, sale_id: SaleId) -> Result<Arc<Sale>> {
        let sale = self.sale(sale_id).await?;
        if sale.state != SaleState::Active || self.sales().now() >= sale.ends_at {
            return Err(Error::SaleClosed);
        }
        Ok(sale)
    }

    /// The sale, if a join may enter its line now (API.md v1.1: "joining a paused,
    /// ended or sold-out sale answers `409 sale_closed`"): [`Queue::open_sale`], and
    /// not sold out. Asked before a proof of work is asked or checked, so nobody
    /// solves a challenge for a closed sale. Sold out is the controller's verdict in
    /// the line's meta (one HGET): no free units and no holds that could come back.
    pub async fn check_open(&self, sale_id: SaleId) -> Result<Arc<Sale>> {
        let sale = self.open_sale(sale_id).await?;
        let sold_out: Option<i64> = redis::cmd("HGET")
            .arg(&self.keys(sale_id).0[0])
            .arg("sold_out")
            .query_async(&mut self.connection())
            .await?;
        if sold_out == Some(1) {
            return Err(Error::SaleClosed);
        }
        Ok(sale)
    }

    /// Puts the shopper in line (or returns their ticket). The bool is true when the
    /// ticket was created now.
    pub async fn join(&self, shopper: ShopperId, sale_id: SaleId) -> Result<(Ticket, bool)> {
        self.join_with(shopper, sale_id, None).await
    }

    /// Like [`Queue::join`], with the statement of the shopper's place they hold (the
    /// `X-Place-Token` header): a place Redis lost is given back instead of a new one.
    pub async fn join_with(
        &self,
        shopper: ShopperId,
        sale_id: SaleId,
        place_token: Option<&str>,
    ) -> Result<(Ticket, bool)> {
        self.join_coded(shopper, sale_id, place_token, None, None)
            .await
    }

    /// Like [`Queue::join_with`], with the access code the shopper sent (the join
    /// body's `access_code`): a `codes` sale needs one, a priority code moves its
    /// holder ahead of the public pre-queue (see `codes`). A shopper who holds a
    /// ticket, or a statement of one, rejoins without a code.
    pub async fn join_coded(
        &self,
        shopper: ShopperId,
        sale_id: SaleId,
        place_token: Option<&str>,
        access_code: Option<&str>,
        address: Option<std::net::IpAddr>,
    ) -> Result<(Ticket, bool)> {
        let sale = self.open_sale(sale_id).await?;
        self.join_open(shopper, &sale, place_token, access_code, address)
            .await
    }

    /// [`Queue::join_coded`] of a sale [`Queue::open_sale`] (or `check_open`) just let
    /// through (the join handler asks before the proof of work, and need not ask twice).
    pub async fn join_open(
        &self,
        shopper: ShopperId,
        sale: &Sale,
        place_token: Option<&str>,
        access_code: Option<&str>,
        address: Option<std::net::IpAddr>,
    ) -> Result<(Ticket, bool)> {
        let sale_id = sale.id;
        let group = address.map_or(0, |ip| address_group(&self.group_key, sale_id, ip));
        let now = self.sales().now();
        if let Some(place) = self.stated(shopper, sale_id, place_token) {
            if self.restore(shopper, sale_id, &place).await? {
                return Ok((self.ticket(shopper, sale_id).await?, false));
            }
        }
        // A public sale's join without a code is never a priority one: no need to ask
        // whether the shopper holds a ticket (one round trip less on the common join).
        let public = sale.access == Access::Public && access_code.is_none();
        let holds_ticket = !public && {
            let holds: bool = redis::cmd("HEXISTS")
                .arg(&self.keys(sale_id).0[1])
                .arg(shopper.to_string())
                .query_async(&mut self.connection())
                .await?;
            holds
        };
        let priority = if public || holds_ticket {
            false
        } else {
            let pass = self
                .codes
                .pass(sale_id, sale.access, shopper, access_code)
                .await?;
            pass == Pass::Priority
        };
        // The position of the last ceiling this join waited for another join to raise.
        let mut waited_for: Option<i64> = None;
        let mut waited_for_marks = false;
        // While the draw waits for its beacon round the pre-queue stays open (`beacon`).
        let mut prequeue_until = sale.starts_at.timestamp_millis();
        loop {
            // What this process had seen before the script (see `ticket_with`).
            let seen_before = self.floor(sale_id).serving;
            let report = self.waits_key(sale_id);
            let reply: Vec<String> = self
                .evalsha(sale_id, &self.scripts.join, &[&report], |call| {
                    call.arg(shopper.to_string())
                        .arg(uuid::Uuid::new_v4().to_string())
                        .arg(now.timestamp_millis())
                        .arg(prequeue_until)
                        .arg(self.cap)
                        .arg(self.floor(sale_id).seq)
                        .arg(i64::from(priority))
                        .arg(group);
                })
                .await?;
            match reply.first().map(String::as_str) {
                Some("needs_draw") => {
                    if !self.draw(sale_id).await? {
                        prequeue_until = i64::MAX;
                    }
                    continue;
                }
                Some("needs_marks") => {
                    // Joins that find the line unmarked together (a new sale's first
                    // second) wait for the heal under way and try again, instead of
                    // each reading Postgres in turn; the second time, they heal.
                    if !waited_for_marks {
                        waited_for_marks = true;
                        drop(self.raising.lock().await);
                        continue;
                    }
                    self.heal(sale_id, false, None).await?;
                    continue;
                }
                Some("needs_seed") => {
                    self.fix_seed(sale_id).await?;
                    continue;
                }
                Some("behind") => {
                    self.heal(sale_id, true, None).await?;
                    continue;
                }
                Some("needs_ceiling") => {
                    let seq = reply.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    // Joins that reach the ceiling together wait for the one raising it
                    // (it holds `raising` until Redis has the new ceiling) and try
                    // again, instead of each reading Postgres in turn; a join that
                    // meets the same ceiling twice heals in full.
                    if waited_for != Some(seq) {
                        waited_for = Some(seq);
                        drop(self.raising.lock().await);
                        if self.floor(sale_id).ceiling > seq {
                            continue;
                        }
                    }
                    self.heal(sale_id, false, Some(seq)).await?;
                    continue;
                }
                Some("full") => return Err(Error::QueueFull),
                Some("sold_out") => return Err(Error::SaleClosed),
                Some("existing") => return Ok((self.ticket(shopper, sale_id).await?, false)),
                Some("created") => {
                    self.register_line(sale_id).await?;
                    let [_, raw, serving, rate, ceiling] =
                        <[String; 5]>::try_from(reply).map_err(|_| {
                            anyhow::anyhow!("join script: a created ticket without the line")
                        })?;
                    let stored = StoredTicket::parse(&raw)?;
                    let serving: i64 = serving.parse().unwrap_or(0);
                    self.raise_ahead(sale_id, stored.position, ceiling.parse().unwrap_or(0));
                    // A place the serving position already passed is admitted: the
                    // ticket script stamps when; so does a Redis that admits fewer than
                    // this process saw (an older copy: `ticket_with` heals it).
                    let ticket = if serving < seen_before
                        || (stored.position > 0 && stored.position <= serving)
                    {
                        self.ticket(shopper, sale_id).await?
                    } else {
                        let line = LineView {
                            serving,
                            sold_out: false,
                            rate: rate.parse().unwrap_or(0.0),
                        };
                        self.render(shopper, sale_id, now, stored, line).await?
                    };
                    return Ok((ticket, true));
                }
                _ => {
                    return Err(Error::Internal(anyhow::anyhow!(
                        "join script answered {:?}",
                        reply.first()
                    )))
                }
            }
        }
    }

    /// Adds the sale to the set of lines the controllers visit, at most once a second
    /// per process (a Redis that lost the set has it back within a second of a join).
    async fn register_line(&self, sale_id: SaleId) -> Result<()> {
        let due = {
            let mut registered = self.registered.lock().expect("registered lock");
            let due = registered
                .get(&sale_id)
                .is_none_or(|at| at.elapsed() >= LINE_REGISTRATION);
            if due {
                registered.insert(sale_id, Instant::now());
            }
            due
        };
        if due {
            let _: i64 = redis::cmd("SADD")
                .arg(self.lines_key())
                .arg(sale_id.to_string())
                .query_async(&mut self.connection())
                .await?;
        }
        Ok(())
    }
}
