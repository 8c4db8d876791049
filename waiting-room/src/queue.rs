//! The line of one sale, in Redis: join once, read your ticket, leave; and the counters
//! the controller and the stats read (the pre-queue draw is in `draw`). Every answer
//! carries a signed statement of the shopper's place (`place`); what happens when Redis
//! loses the line is in `heal`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use redis::Script;
use reservations::redis_conn::RedisConn;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admission::AdmissionTokens;
use crate::beacon::Beacons;
use crate::codes::AccessCodes;
pub use crate::draw::DrawInfo;
use crate::heal::{Floor, HealScripts};
use crate::marks::LineMarks;
use crate::place::{Place, PlaceStatements};
use crate::{Error, Result};
use reservations::ids::{SaleId, ShopperId};
use reservations::sales::{Sale, SaleState};
use reservations::WaitingRoomPort;

macro_rules! line_script {
    ($file:literal) => {
        redis::Script::new(concat!(include_str!("lua/common.lua"), include_str!($file)))
    };
}
pub(crate) use line_script;

pub(crate) struct Scripts {
    pub(crate) join: Script,
    pub(crate) draw: Script,
    ticket: Script,
    leave: Script,
    advance: Script,
}

/// How long a sale definition is reused before it is read again: joins and polls of a
/// 100k-person line must not each read Postgres.
const SALE_CACHE_TTL: Duration = Duration::from_secs(1);
/// Shortest and longest poll interval handed to shoppers.
const POLL_MS: std::ops::RangeInclusive<i64> = 1_000..=30_000;

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    /// Joined before the start; placed by the draw at the start.
    Prequeue,
    /// In line.
    Waiting,
    /// Admitted: the admission token is set.
    Admitted,
    /// Nothing left to buy.
    SoldOut,
    /// Admitted, but the admission window passed.
    Expired,
    /// The sale ended or is paused.
    Closed,
}

/// A shopper's place in line (API.md "ticket").
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ticket {
    /// The ticket's random id (published in the draw; names no shopper).
    pub ticket_id: String,
    /// The sale.
    pub sale_id: SaleId,
    /// Where it stands.
    pub state: TicketState,
    /// 1-based place in line; null in the pre-queue.
    pub position: Option<i64>,
    /// Places ahead that are not yet admitted.
    pub ahead: Option<i64>,
    /// Estimated wait from the measured admission rate.
    pub estimated_wait_seconds: Option<i64>,
    /// When to ask again; grows with the distance to the front.
    pub poll_after_ms: i64,
    /// Set when admitted: present it as `X-Admission-Token` to reserve.
    pub admission_token: Option<String>,
    /// When the admission window closes.
    pub admission_expires_at: Option<DateTime<Utc>>,
    /// A signed statement of this place: send the latest as `X-Place-Token` on polls
    /// and rejoins, and the place is kept even if the line's store loses it.
    pub place_token: String,
    /// The merchant's message to the line (null when none), read with the cached sale.
    pub message: Option<String>,
}

/// A ticket as the line stores it (common.lua, `tickets`).
#[derive(Debug, Deserialize)]
pub(crate) struct StoredTicket {
    #[serde(rename = "i")]
    id: String,
    #[serde(rename = "p")]
    pub(crate) position: i64,
    #[serde(rename = "j", default)]
    joined_ms: i64,
    #[serde(rename = "a", default)]
    admitted_ms: Option<i64>,
}

impl StoredTicket {
    pub(crate) fn parse(raw: &str) -> Result<Self> {
        Ok(serde_json::from_str(raw).map_err(|e| anyhow::anyhow!("ticket record: {e}"))?)
    }
}

/// What a ticket is rendered against: the line as the script that read the ticket saw it.
pub(crate) struct LineView {
    pub(crate) serving: i64,
    pub(crate) sold_out: bool,
    pub(crate) rate: f64,
}

/// The line's counters (stats, controller).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineState {
    /// Shoppers in the pre-queue (before the draw).
    pub prequeue: i64,
    /// Last position handed out.
    pub seq: i64,
    /// Positions up to this are admitted.
    pub serving: i64,
    /// The controller's rate.
    pub rate: f64,
    /// Why.
    pub reason: Option<String>,
    /// Active shoppers at the last tick.
    pub active: i64,
    /// No-show rate at the last tick.
    pub no_show: f64,
    /// Whether everyone is told "sold out".
    pub sold_out: bool,
    /// Whether the draw happened.
    pub drawn: bool,
    /// The signals of the last tick (JSON).
    pub signals: Option<String>,
}

impl LineState {
    /// Shoppers in line and not yet admitted: positions handed out past the serving
    /// position, never negative (what the admin stats report as `waiting`).
    pub fn waiting(&self) -> i64 {
        (self.seq - self.serving).max(0)
    }
}

/// A sale definition as the queue caches it (`Queue::sale`).
struct CachedSale {
    at: Instant,
    sale: Arc<Sale>,
    /// A request is reading it again from Postgres.
    refreshing: bool,
}

/// The key names of a sale's line.
pub(crate) struct LineKeys(pub(crate) [String; 5]);

/// The waiting room of every sale.
#[derive(Clone)]
pub struct Queue {
    conn: RedisConn,
    prefix: String,
    pub(crate) scripts: Arc<Scripts>,
    sales: WaitingRoomPort,
    /// Behind `Arc`s: a queue is cloned with the app's state for every request, and
    /// each signer holds keys and a validation of its own.
    tokens: Arc<AdmissionTokens>,
    window: Duration,
    pub(crate) cap: i64,
    cache: Arc<Mutex<HashMap<SaleId, CachedSale>>>,
    pub(crate) marks: LineMarks,
    places: Arc<PlaceStatements>,
    pub(crate) heal_scripts: Arc<HealScripts>,
    pub(crate) floors: Arc<Mutex<HashMap<SaleId, Floor>>>,
    /// One raise of a ceiling (or heal) at a time in this process.
    pub(crate) raising: Arc<tokio::sync::Mutex<()>>,
    /// A raise of a ceiling ahead of the joins is under way (`heal`, `raise_ahead`).
    pub(crate) raising_ahead: Arc<std::sync::atomic::AtomicBool>,
    /// The draw's beacon rounds (see `beacon`).
    pub(crate) beacons: Arc<Beacons>,
    /// The sales' access codes (`codes`).
    pub(crate) codes: AccessCodes,
    /// The key of the address groups the draw takes its rounds by (`draw`).
    pub(crate) group_key: Arc<[u8]>,
    /// One draw at a time in this process: joins in the start second wait for it
    /// instead of each reading the whole pre-queue (`draw`).
    pub(crate) drawing: Arc<tokio::sync::Mutex<()>>,
    /// The published draw of each drawn sale, rendered once (`draw`).
    pub(crate) drawn_bodies: Arc<Mutex<HashMap<SaleId, Arc<str>>>>,
    /// When this process last added each sale to the set of lines (`join`).
    pub(crate) registered: Arc<Mutex<HashMap<SaleId, Instant>>>,
}

impl Queue {
    /// A waiting room over `conn`, issuing admission tokens valid for `window`, with at
    /// most `cap` shoppers waiting per sale, and recording in `marks` what the line is
    /// rebuilt from when Redis loses it.
    pub fn new(
        conn: RedisConn,
        prefix: impl Into<String>,
        sales: WaitingRoomPort,
        tokens: AdmissionTokens,
        marks: LineMarks,
        window: Duration,
        cap: i64,
    ) -> Self {
        let places = Arc::new(tokens.place_statements());
        let beacons = Arc::new(Beacons::new(marks.pool().clone(), None));
        let codes = AccessCodes::new(marks.pool().clone(), tokens.access_code_key());
        // Derived from the codes' key (itself from the HMAC secret) under its own label.
        let group_key: Arc<[u8]> = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(b"flashsale line address groups\0");
            h.update(tokens.access_code_key());
            h.finalize().to_vec().into()
        };
        Self {
            conn,
            prefix: prefix.into(),
            scripts: Arc::new(Scripts {
                join: line_script!("lua/join.lua"),
                draw: line_script!("lua/draw.lua"),
                ticket: line_script!("lua/ticket.lua"),
                leave: line_script!("lua/leave.lua"),
                advance: line_script!("lua/advance.lua"),
            }),
            sales,
            tokens: Arc::new(tokens),
            window,
            cap,
            cache: Arc::new(Mutex::new(HashMap::new())),
            marks,
            places,
            heal_scripts: Arc::new(HealScripts::new()),
            floors: Arc::new(Mutex::new(HashMap::new())),
            raising: Arc::new(tokio::sync::Mutex::new(())),
            raising_ahead: Arc::default(),
            beacons,
            codes,
            group_key,
            drawing: Arc::new(tokio::sync::Mutex::new(())),
            drawn_bodies: Arc::new(Mutex::new(HashMap::new())),
            registered: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same waiting room, fetching the draw's beacon rounds from the drand HTTP
    /// endpoint at `url` (none: the merchant posts them).
    pub fn with_drand(mut self, url: Option<String>) -> Self {
        self.beacons = Arc::new(Beacons::new(self.marks.pool().clone(), url));
        self
    }

    /// The draw's beacon rounds.
    pub fn beacons(&self) -> &Beacons {
        &self.beacons
    }

    pub(crate) fn keys(&self, sale: SaleId) -> LineKeys {
        let tag = format!("{}:{{sale:{sale}}}:q", self.prefix);
        LineKeys(["meta", "tickets", "pre", "owners", "log"].map(|k| format!("{tag}:{k}")))
    }

    pub(crate) fn invoke<'a>(
        &self,
        sale: SaleId,
        script: &'a Script,
    ) -> redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        for key in self.keys(sale).0 {
            call.key(key);
        }
        call
    }

    /// Runs `script` by EVALSHA with the line's five keys and `more_keys`, then the
    /// arguments `args` adds ([`reservations::redis_conn::evalsha`]).
    pub(crate) async fn evalsha<T: redis::FromRedisValue>(
        &self,
        sale: SaleId,
        script: &Script,
        more_keys: &[&str],
        args: impl FnOnce(&mut redis::Cmd),
    ) -> redis::RedisResult<T> {
        let line = self.keys(sale).0;
        let keys: Vec<&str> = line
            .iter()
            .map(String::as_str)
            .chain(more_keys.iter().copied())
            .collect();
        reservations::redis_conn::evalsha(&mut self.connection(), script, &keys, args).await
    }

    /// The key of the set of sales that have a line (the controllers visit them).
    pub fn lines_key(&self) -> String {
        format!("{}:lines", self.prefix)
    }

    /// The admission window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// What the waiting room reads of sales: definition, stock, who reached reserve.
    pub fn sales(&self) -> &WaitingRoomPort {
        &self.sales
    }

    /// The sales' access codes (upload, listing; joins use them through `join_coded`).
    pub fn codes(&self) -> &AccessCodes {
        &self.codes
    }

    /// The Redis connection.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The sale, from a one-second cache; shared, so a join (which reads it up to four
    /// times) copies no strings. When the copy is a second old, one request reads
    /// Postgres while the others keep it (up to a second more), instead of every
    /// request in flight reading it at once.
    pub async fn sale(&self, id: SaleId) -> Result<Arc<Sale>> {
        {
            let mut cache = self.cache.lock().expect("cache lock");
            if let Some(entry) = cache.get_mut(&id) {
                let age = entry.at.elapsed();
                if age < SALE_CACHE_TTL || (entry.refreshing && age < 2 * SALE_CACHE_TTL) {
                    return Ok(entry.sale.clone());
                }
                // This request refreshes it (again, if a refresh went quiet).
                entry.refreshing = true;
            }
        }
        let read = self.sales.sale(id).await;
        let mut cache = self.cache.lock().expect("cache lock");
        match read {
            Ok(sale) => {
                let sale = Arc::new(sale);
                cache.insert(
                    id,
                    CachedSale {
                        at: Instant::now(),
                        sale: sale.clone(),
                        refreshing: false,
                    },
                );
                Ok(sale)
            }
            Err(e) => {
                if let Some(entry) = cache.get_mut(&id) {
                    entry.refreshing = false;
                }
                Err(e.into())
            }
        }
    }

    /// The shopper's ticket, with an admission token when admitted.
    pub async fn ticket(&self, shopper: ShopperId, sale_id: SaleId) -> Result<Ticket> {
        self.ticket_with(shopper, sale_id, None).await
    }

    /// Like [`Queue::ticket`], with the statement of the shopper's place they hold:
    /// when Redis lost the shopper, the statement puts them back at their place.
    pub async fn ticket_with(
        &self,
        shopper: ShopperId,
        sale_id: SaleId,
        place_token: Option<&str>,
    ) -> Result<Ticket> {
        let mut restored = false;
        let mut healed = false;
        let stated = self.stated(shopper, sale_id, place_token);
        let (stated_ticket, stated_admitted) = match &stated {
            Some(place) => (
                place.ticket_id.as_str(),
                place.admitted_ms.map(|a| a.to_string()).unwrap_or_default(),
            ),
            None => ("", String::new()),
        };
        let (now, raw, serving, sold_out, rate) = loop {
            let now = self.sales.now();
            // What this process had seen before the read: a serving position seen after
            // it (the controller advancing meanwhile) is no evidence of an older Redis.
            let seen_before = self.floor(sale_id).serving;
            let waits = self.waits_key(sale_id);
            let reply: Vec<String> = self
                .evalsha(sale_id, &self.scripts.ticket, &[&waits], |call| {
                    call.arg(shopper.to_string())
                        .arg(now.timestamp_millis())
                        .arg(stated_ticket)
                        .arg(&stated_admitted);
                })
                .await?;
            let Ok([raw, serving, _drawn, sold_out, rate]) = <[String; 5]>::try_from(reply) else {
                match &stated {
                    // An ended sale's line is not rebuilt: nothing is left to wait for.
                    Some(place) if !restored && !self.ended(sale_id).await? => {
                        self.restore(shopper, sale_id, place).await?;
                        restored = true;
                        continue;
                    }
                    _ => return Err(Error::NotInQueue),
                }
            };
            let serving: i64 = serving.parse().unwrap_or(0);
            if serving < seen_before && !healed {
                // Redis admits fewer than it once did: an older copy.
                self.heal(sale_id, true, None).await?;
                healed = true;
                continue;
            }
            break (now, raw, serving, sold_out, rate);
        };
        let stored = StoredTicket::parse(&raw)?;
        let rate: f64 = rate.parse().unwrap_or(0.0);
        let line = LineView {
            serving,
            sold_out: sold_out == "1",
            rate,
        };
        self.render(shopper, sale_id, now, stored, line).await
    }

    /// The ticket a shopper is shown, from their stored ticket and the line's serving
    /// position, sold-out verdict and rate read with it (the join and ticket scripts).
    pub(crate) async fn render(
        &self,
        shopper: ShopperId,
        sale_id: SaleId,
        now: DateTime<Utc>,
        stored: StoredTicket,
        line: LineView,
    ) -> Result<Ticket> {
        let LineView {
            serving,
            sold_out,
            rate,
        } = line;
        self.see(sale_id, stored.position, serving);
        let sale = self.sale(sale_id).await?;
        let place_token = self.places.sign(&Place {
            shopper: shopper.0,
            sale: sale_id.0,
            ticket_id: stored.id.clone(),
            position: stored.position,
            joined_ms: stored.joined_ms,
            admitted_ms: stored.admitted_ms,
        });
        let mut ticket = Ticket {
            ticket_id: stored.id,
            sale_id,
            state: TicketState::Waiting,
            position: (stored.position > 0).then_some(stored.position),
            ahead: None,
            estimated_wait_seconds: None,
            poll_after_ms: *POLL_MS.start(),
            admission_token: None,
            admission_expires_at: None,
            place_token,
            message: sale.message.clone(),
        };
        let closed = sale.state != SaleState::Active || now >= sale.ends_at;
        ticket.state = if closed {
            TicketState::Closed
        } else if sold_out {
            TicketState::SoldOut
        } else if stored.position == 0 {
            // Poll around the start, when the draw places the ticket.
            let until_start = (sale.starts_at - now).num_milliseconds();
            ticket.poll_after_ms = until_start.clamp(*POLL_MS.start(), *POLL_MS.end());
            TicketState::Prequeue
        } else if stored.position <= serving {
            let admitted = stored.admitted_ms.unwrap_or(now.timestamp_millis());
            let expires = Utc.timestamp_millis_opt(admitted).single().unwrap_or(now)
                + chrono::Duration::from_std(self.window).unwrap_or_default();
            if now >= expires {
                TicketState::Expired
            } else {
                let remaining = (expires - now).to_std().unwrap_or_default();
                let (token, expires_at) = self.tokens.issue(shopper.0, sale_id.0, now, remaining);
                ticket.admission_token = Some(token);
                ticket.admission_expires_at = Some(expires_at);
                ticket.ahead = Some(0);
                ticket.estimated_wait_seconds = Some(0);
                ticket.poll_after_ms = *POLL_MS.end();
                TicketState::Admitted
            }
        } else {
            let ahead = stored.position - serving - 1;
            let wait = (ahead as f64 / rate.max(0.1)).ceil() as i64;
            ticket.ahead = Some(ahead);
            ticket.estimated_wait_seconds = Some(wait);
            // A fifth of the expected wait: the front polls every second, the back of a
            // 100k line about every 30 s.
            ticket.poll_after_ms = (wait * 1000 / 5).clamp(*POLL_MS.start(), *POLL_MS.end());
            TicketState::Waiting
        };
        Ok(ticket)
    }

    async fn ended(&self, sale_id: SaleId) -> Result<bool> {
        let sale = self.sale(sale_id).await?;
        Ok(sale.state == SaleState::Ended || self.sales.now() >= sale.ends_at)
    }

    /// The place `token` states for `shopper` in `sale`, if it is a valid statement.
    pub(crate) fn stated(
        &self,
        shopper: ShopperId,
        sale: SaleId,
        token: Option<&str>,
    ) -> Option<Place> {
        let place = self.places.verify(token?, shopper.0, sale.0);
        if place.is_none() {
            tracing::debug!(sale_id = %sale, "a place statement that is not valid was ignored");
        }
        place
    }

    /// Takes the shopper out of line.
    pub async fn leave(&self, shopper: ShopperId, sale: SaleId) -> Result<()> {
        let left: i64 = self
            .invoke(sale, &self.scripts.leave)
            .arg(shopper.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        if left == 0 {
            return Err(Error::NotInQueue);
        }
        Ok(())
    }

    /// The line's counters.
    pub async fn line_state(&self, sale: SaleId) -> Result<LineState> {
        let [meta, ..] = self.keys(sale).0;
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&meta)
            .query_async(&mut self.conn.clone())
            .await?;
        let int = |k: &str| fields.get(k).and_then(|v| v.parse().ok()).unwrap_or(0i64);
        let float = |k: &str| fields.get(k).and_then(|v| v.parse().ok()).unwrap_or(0f64);
        Ok(LineState {
            prequeue: if int("drawn") == 1 {
                0
            } else {
                int("prequeue")
            },
            seq: int("seq"),
            serving: int("serving"),
            rate: float("rate"),
            reason: fields.get("reason").cloned(),
            active: int("active"),
            no_show: float("no_show"),
            sold_out: int("sold_out") == 1,
            drawn: int("drawn") == 1,
            signals: fields.get("signals").cloned(),
        })
    }

    /// The serving position at `at_ms` (0 before the first tick).
    pub async fn serving_at(&self, sale: SaleId, at_ms: i64) -> Result<i64> {
        let [_, _, _, _, log] = self.keys(sale).0;
        let entries: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
            .arg(&log)
            .arg(at_ms)
            .arg("-inf")
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(entries
            .first()
            .and_then(|e| e.split_once(':'))
            .and_then(|(_, serving)| serving.parse().ok())
            .unwrap_or(0))
    }

    /// Publishes a controller decision and admits `admit` more positions.
    #[allow(clippy::too_many_arguments)]
    pub async fn advance(
        &self,
        sale: SaleId,
        now_ms: i64,
        admit: i64,
        rate: f64,
        reason: &str,
        sold_out: bool,
        active: i64,
        no_show: f64,
        signals_json: &str,
    ) -> Result<i64> {
        let serving: i64 = self
            .invoke(sale, &self.scripts.advance)
            .arg(now_ms)
            .arg(admit)
            .arg(format!("{rate:.2}"))
            .arg(reason)
            .arg(i64::from(sold_out))
            .arg(active)
            .arg(format!("{no_show:.3}"))
            .arg(signals_json)
            .invoke_async(&mut self.conn.clone())
            .await?;
        self.see(sale, 0, serving);
        Ok(serving)
    }
}
