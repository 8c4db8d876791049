//! The Lua scripts of `lua/` and their replies. Each script is loaded once and has one
//! reply type here, parsed by one function from the raw Redis value: a reply the
//! script's header does not list is an [`Error::Internal`], never read as some default
//! answer (an unknown tag once silently became "sold out").

use redis::{Script, Value};

use crate::ids::ReservationId;
use crate::{Error, Result};

macro_rules! hold_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("../lua/common.lua"),
            include_str!(concat!("../lua/", $file))
        ))
    };
}

/// The scripts, loaded once; `redis::Script` calls them by SHA and reloads on `NOSCRIPT`.
pub(super) struct Scripts {
    pub(super) load: Script,
    pub(super) sync_meta: Script,
    pub(super) add_units: Script,
    pub(super) retire_units: Script,
    pub(super) unretire_units: Script,
    pub(super) reserve: Script,
    pub(super) release: Script,
    pub(super) begin_checkout: Script,
    pub(super) finish_checkout: Script,
    pub(super) expire: Script,
    pub(super) stock: Script,
    pub(super) note_elsewhere: Script,
    pub(super) purge: Script,
    pub(super) reserve_cart: Script,
}

impl Scripts {
    /// Every script, with `common.lua` prepended.
    pub(super) fn new() -> Self {
        Self {
            load: hold_script!("load.lua"),
            sync_meta: hold_script!("sync_meta.lua"),
            add_units: hold_script!("add_units.lua"),
            retire_units: hold_script!("retire_units.lua"),
            unretire_units: hold_script!("unretire_units.lua"),
            reserve: hold_script!("reserve.lua"),
            release: hold_script!("release.lua"),
            begin_checkout: hold_script!("begin_checkout.lua"),
            finish_checkout: hold_script!("finish_checkout.lua"),
            expire: hold_script!("expire.lua"),
            stock: hold_script!("stock.lua"),
            note_elsewhere: hold_script!("note_elsewhere.lua"),
            purge: hold_script!("purge.lua"),
            reserve_cart: hold_script!("reserve_cart.lua"),
        }
    }
}

/// A script's array reply, read field by field; every read that does not find what the
/// script promises is an error naming the script and the whole reply.
pub(super) struct Fields {
    script: &'static str,
    values: Vec<Value>,
}

impl Fields {
    pub(super) fn new(script: &'static str, reply: Value) -> Result<Self> {
        match reply {
            Value::Array(values) => Ok(Self { script, values }),
            other => Err(unexpected(script, &other)),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    pub(super) fn text(&self, i: usize) -> Result<String> {
        self.values
            .get(i)
            .and_then(|v| redis::from_redis_value::<String>(v).ok())
            .ok_or_else(|| self.unexpected())
    }

    pub(super) fn int(&self, i: usize) -> Result<i64> {
        self.values
            .get(i)
            .and_then(|v| redis::from_redis_value::<i64>(v).ok())
            .ok_or_else(|| self.unexpected())
    }

    /// Fields `from..` as unit numbers.
    fn units(&self, from: usize) -> Result<Vec<i32>> {
        (from..self.len())
            .map(|i| {
                let unit = self.int(i)?;
                i32::try_from(unit).map_err(|_| self.unexpected())
            })
            .collect()
    }

    /// The tag: the first field, naming which of the script's replies this is.
    pub(super) fn tag(&self) -> Result<String> {
        self.text(0)
    }

    pub(super) fn unexpected(&self) -> Error {
        unexpected(self.script, &Value::Array(self.values.clone()))
    }
}

fn unexpected(script: &'static str, reply: &Value) -> Error {
    Error::Internal(anyhow::anyhow!(
        "script {script} gave a reply it does not define: {reply:?}"
    ))
}

fn int_reply(script: &'static str, reply: Value) -> Result<i64> {
    match reply {
        Value::Int(n) => Ok(n),
        other => Err(unexpected(script, &other)),
    }
}

/// What `load.lua` did to one stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoadReply {
    /// It wrote the stripe's state.
    Loaded,
    /// The state was there already (another process won).
    Present,
    /// The state is there with another stripe count than this process runs with.
    OtherStripeCount,
}

impl LoadReply {
    pub(super) fn parse(reply: Value) -> Result<Self> {
        match int_reply("load", reply)? {
            1 => Ok(Self::Loaded),
            0 => Ok(Self::Present),
            -1 => Ok(Self::OtherStripeCount),
            n => Err(unexpected("load", &Value::Int(n))),
        }
    }
}

/// `sync_meta.lua`: whether the stripe's state was there to update.
pub(super) fn parse_sync_meta(reply: Value) -> Result<bool> {
    match int_reply("sync_meta", reply)? {
        1 => Ok(true),
        0 => Ok(false),
        n => Err(unexpected("sync_meta", &Value::Int(n))),
    }
}

/// `add_units.lua`: units added to the stripe, or `None` when its state is missing.
pub(super) fn parse_add_units(reply: Value) -> Result<Option<i64>> {
    match int_reply("add_units", reply)? {
        -1 => Ok(None),
        n if n >= 0 => Ok(Some(n)),
        n => Err(unexpected("add_units", &Value::Int(n))),
    }
}

/// `unretire_units.lua`: how many units went back.
pub(super) fn parse_unretire_units(reply: Value) -> Result<i64> {
    match int_reply("unretire_units", reply)? {
        n if n >= 0 => Ok(n),
        n => Err(unexpected("unretire_units", &Value::Int(n))),
    }
}

/// What `retire_units.lua` did to one stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RetireReply {
    /// These units are out of sale now.
    Retired(Vec<i32>),
    /// Fewer free units than asked; this many are free.
    Insufficient(i64),
    /// The stripe's state is missing.
    NoState,
}

impl RetireReply {
    pub(super) fn parse(reply: Value) -> Result<Self> {
        let fields = Fields::new("retire_units", reply)?;
        match fields.tag()?.as_str() {
            "ok" => Ok(Self::Retired(fields.units(1)?)),
            "insufficient" => Ok(Self::Insufficient(fields.int(1)?)),
            "no_state" => Ok(Self::NoState),
            _ => Err(fields.unexpected()),
        }
    }
}

/// What `reserve.lua` answered for one stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReserveReply {
    /// A hold: new, or the first answer to this idempotency key.
    Held {
        /// The hold's id.
        id: ReservationId,
        /// Its deadline, ms since the epoch.
        deadline_ms: i64,
    },
    /// The stripe's state is not in Redis.
    NoState,
    /// The sale was loaded with this many stripes, not the caller's.
    Stripes(i64),
    /// The first answer to this idempotency key is a hold in that stripe.
    Elsewhere(u32),
    /// The key was used with another quantity.
    IdempotencyMismatch,
    /// Not between start and end, or paused/ended.
    NotLive,
    /// The per-shopper limit would be passed.
    Limit(i64),
    /// Fewer free units than asked in this stripe.
    SoldOut,
    /// The sale has several variants; a cart names them.
    VariantRequired,
}

impl ReserveReply {
    pub(super) fn parse(reply: Value) -> Result<Self> {
        let fields = Fields::new("reserve", reply)?;
        match fields.tag()?.as_str() {
            "ok" => Ok(Self::Held {
                id: fields
                    .text(1)?
                    .parse()
                    .map_err(|e| Error::Internal(anyhow::anyhow!("hold id: {e}")))?,
                deadline_ms: fields.int(2)?,
            }),
            "no_state" => Ok(Self::NoState),
            "stripes" => Ok(Self::Stripes(fields.int(1)?)),
            "elsewhere" => Ok(Self::Elsewhere(
                u32::try_from(fields.int(1)?).map_err(|_| fields.unexpected())?,
            )),
            "idem_mismatch" => Ok(Self::IdempotencyMismatch),
            "not_live" => Ok(Self::NotLive),
            "limit" => Ok(Self::Limit(fields.int(1)?)),
            "sold_out" => Ok(Self::SoldOut),
            "variant_required" => Ok(Self::VariantRequired),
            _ => Err(fields.unexpected()),
        }
    }
}

/// `note_elsewhere.lua`: true when the home stripe recorded the hold, false when a
/// concurrent request with the same key got there first.
pub(super) fn parse_note_elsewhere(reply: Value) -> Result<bool> {
    let fields = Fields::new("note_elsewhere", reply)?;
    match fields.tag()?.as_str() {
        "ok" => Ok(true),
        "taken" => Ok(false),
        _ => Err(fields.unexpected()),
    }
}

/// What `release.lua` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReleaseReply {
    /// The hold is released; its units are free.
    Released,
    /// No hold under this id.
    Missing,
    /// Another shopper's hold.
    NotFound,
    /// The hold had already ended in this status.
    NotHeld(String),
}

impl ReleaseReply {
    pub(super) fn parse(reply: Value) -> Result<Self> {
        let fields = Fields::new("release", reply)?;
        match fields.tag()?.as_str() {
            "ok" => Ok(Self::Released),
            "missing" => Ok(Self::Missing),
            "not_found" => Ok(Self::NotFound),
            "not_held" => Ok(Self::NotHeld(fields.text(1)?)),
            _ => Err(fields.unexpected()),
        }
    }
}

/// What `begin_checkout` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginCheckout {
    /// The hold is now `committing` for this attempt.
    Committing {
        /// Units held.
        quantity: i64,
        /// The hold's deadline, ms.
        deadline_ms: i64,
        /// The unit numbers.
        units: Vec<i32>,
    },
    /// No such hold in Redis.
    Missing,
    /// Another shopper's hold.
    NotFound,
    /// Another checkout of this hold is in flight.
    AlreadyCommitting,
    /// Ended: the status it ended in.
    NotHeld(String),
    /// Past its deadline.
    Expired,
}

impl BeginCheckout {
    pub(super) fn parse(reply: Value) -> Result<Self> {
        let fields = Fields::new("begin_checkout", reply)?;
        match fields.tag()?.as_str() {
            "ok" => Ok(Self::Committing {
                quantity: fields.int(1)?,
                deadline_ms: fields.int(2)?,
                units: fields.units(3)?,
            }),
            "missing" => Ok(Self::Missing),
            "not_found" => Ok(Self::NotFound),
            "committing" => Ok(Self::AlreadyCommitting),
            "not_held" => Ok(Self::NotHeld(fields.text(1)?)),
            "expired" => Ok(Self::Expired),
            _ => Err(fields.unexpected()),
        }
    }
}

/// What `finish_checkout.lua` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FinishReply {
    /// The hold moved as asked.
    Done,
    /// Nothing to do (already in that end state, or not committing).
    Noop,
    /// The stripe's state is missing.
    NoState,
}

impl FinishReply {
    pub(super) fn parse(reply: Value) -> Result<Self> {
        let fields = Fields::new("finish_checkout", reply)?;
        match fields.tag()?.as_str() {
            "ok" => Ok(Self::Done),
            "noop" => Ok(Self::Noop),
            "no_state" => Ok(Self::NoState),
            _ => Err(fields.unexpected()),
        }
    }
}

/// What `expire.lua` did to one stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ExpireReply {
    /// Holds expired by this call.
    pub(super) expired: i64,
    /// Holds still live (held or committing).
    pub(super) live: i64,
    /// When the sale ends, ms; 0 when the state is missing.
    pub(super) ends_ms: i64,
}

impl ExpireReply {
    pub(super) fn parse(reply: Value) -> Result<Self> {
        let fields = Fields::new("expire", reply)?;
        if fields.len() != 3 {
            return Err(fields.unexpected());
        }
        Ok(Self {
            expired: fields.int(0)?,
            live: fields.int(1)?,
            ends_ms: fields.int(2)?,
        })
    }
}

/// What `purge.lua` did to one stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// The stripe's keys are deleted.
    Purged,
    /// The stripe's state was not there.
    Gone,
    /// The sale is not over, or a hold is still live in the stripe: nothing deleted.
    Live,
}

impl Purge {
    pub(super) fn parse(reply: Value) -> Result<Self> {
        let fields = Fields::new("purge", reply)?;
        match fields.tag()?.as_str() {
            "purged" => Ok(Self::Purged),
            "gone" => Ok(Self::Gone),
            "live" => Ok(Self::Live),
            _ => Err(fields.unexpected()),
        }
    }
}

/// What `stock.lua` read from one stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StockReply {
    /// The stripe's counters and the stripe count its sale was loaded with.
    Counts {
        /// Units of the stripe not retired.
        total: i64,
        /// Free units.
        available: i64,
        /// Units in live holds.
        held: i64,
        /// Units sold.
        sold: i64,
        /// The stripe count the sale was loaded with.
        stripes: i64,
        /// Each variant's counters in this stripe (a multi-variant sale; else empty).
        variants: Vec<crate::sales::StockView>,
    },
    /// The stripe's state is missing.
    NoState,
}

impl StockReply {
    pub(super) fn parse(reply: Value) -> Result<Self> {
        let fields = Fields::new("stock", reply)?;
        match fields.len() {
            0 => Ok(Self::NoState),
            n if n >= 5 && (n - 5) % 4 == 0 => Ok(Self::Counts {
                total: fields.int(0)?,
                available: fields.int(1)?,
                held: fields.int(2)?,
                sold: fields.int(3)?,
                stripes: fields.int(4)?,
                variants: (5..n)
                    .step_by(4)
                    .map(|i| {
                        Ok(crate::sales::StockView {
                            total: fields.int(i)?,
                            available: fields.int(i + 1)?,
                            held: fields.int(i + 2)?,
                            sold: fields.int(i + 3)?,
                        })
                    })
                    .collect::<Result<_>>()?,
            }),
            _ => Err(fields.unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn an_unknown_reserve_reply_is_an_error_not_sold_out() {
        let reply = Value::Array(vec![bulk("surprise")]);
        assert!(matches!(
            ReserveReply::parse(reply),
            Err(Error::Internal(_))
        ));
        let sold_out = Value::Array(vec![bulk("sold_out"), Value::Int(0)]);
        assert_eq!(
            ReserveReply::parse(sold_out).unwrap(),
            ReserveReply::SoldOut
        );
    }

    #[test]
    fn malformed_replies_are_errors_not_defaults() {
        assert!(BeginCheckout::parse(Value::Array(vec![bulk("gone")])).is_err());
        assert!(ReleaseReply::parse(Value::Array(vec![])).is_err());
        assert!(ExpireReply::parse(Value::Array(vec![Value::Int(1)])).is_err());
        assert!(StockReply::parse(Value::Array(vec![Value::Int(1)])).is_err());
        assert!(LoadReply::parse(Value::Int(2)).is_err());
        assert!(parse_sync_meta(Value::Nil).is_err());
        let units = Value::Array(vec![bulk("ok"), bulk("3"), Value::Int(7)]);
        assert_eq!(
            RetireReply::parse(units).unwrap(),
            RetireReply::Retired(vec![3, 7])
        );
    }
}
