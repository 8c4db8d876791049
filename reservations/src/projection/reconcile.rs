//! Reconciling a sale's Redis state with Postgres after Redis came back older: the
//! script `lua/reconcile.lua` (one per stripe, atomic), its typed reply, and the
//! per-sale marker that says for which Redis incarnation the sale was reconciled (so a
//! process that arrives later skips it). The script's rules are in its header; the
//! design is in `service::reconcile`.

use std::sync::LazyLock;

use redis::{Script, Value};

use super::keys::Stripe;
use super::{stripe_mismatch, Projection};
use crate::ids::{ReservationId, SaleId, ShopperId};
use crate::sales::Sale;
use crate::{Error, Result};

/// The script, with `common.lua` prepended like every hold script. It lives here, not
/// in the shared registry, so that reconciliation is one module of its own.
static RECONCILE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../lua/common.lua"),
        include_str!("../lua/reconcile.lua")
    ))
});

/// How long the marker of a reconciled sale is kept: longer than any sale lives in
/// Redis after it ends; it only spares later processes a second, harmless pass.
const MARKER_TTL_SECS: u64 = 7 * 24 * 3600;

/// What Postgres says about one stripe, for [`Projection::reconcile_stripe`].
#[derive(Debug, Clone)]
pub struct StripeRecord<'a> {
    /// The sale as Postgres has it (definition, unit count, version).
    pub sale: &'a Sale,
    /// Units of the whole sale Postgres has neither sold nor retired, as
    /// [`super::free_ranges`] writes them.
    pub unsold_ranges: &'a str,
    /// Units of this stripe Postgres has sold.
    pub sold: i64,
    /// Reservations of Postgres' orders whose units are in this stripe.
    pub ordered: &'a [ReservationId],
    /// Units each shopper bought in the whole sale.
    pub bought: &'a [(ShopperId, i64)],
    /// A multi-variant sale: units of each variant (by ordinal) this stripe sold;
    /// empty otherwise.
    pub sold_by_variant: &'a [i64],
    /// A multi-variant sale: units bought per `<shopper>:<ordinal>`; empty otherwise.
    pub bought_by_variant: &'a [(String, i64)],
}

/// What reconciling one stripe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StripeReconciled {
    /// Whether anything in the stripe changed.
    pub changed: bool,
    /// Holds whose order Postgres has and Redis had lost: now `checked_out`.
    pub checked_out: i64,
    /// Live holds Postgres contradicts (a unit sold elsewhere or retired): ended.
    pub ended: i64,
    /// Free units before and after.
    pub free_before: i64,
    /// Free units after.
    pub free_after: i64,
}

/// The script's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReconcileReply {
    Done(StripeReconciled),
    NoState,
    Stripes(i64),
}

impl ReconcileReply {
    fn parse(reply: Value) -> Result<Self> {
        let unexpected = |reply: &Value| {
            Error::Internal(anyhow::anyhow!(
                "script reconcile gave a reply it does not define: {reply:?}"
            ))
        };
        let Value::Array(fields) = &reply else {
            return Err(unexpected(&reply));
        };
        let text = |i: usize| {
            fields
                .get(i)
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
                .ok_or_else(|| unexpected(&reply))
        };
        let int = |i: usize| {
            fields
                .get(i)
                .and_then(|v| redis::from_redis_value::<i64>(v).ok())
                .ok_or_else(|| unexpected(&reply))
        };
        match text(0)?.as_str() {
            "ok" if fields.len() == 6 => Ok(Self::Done(StripeReconciled {
                changed: int(1)? == 1,
                checked_out: int(2)?,
                ended: int(3)?,
                free_before: int(4)?,
                free_after: int(5)?,
            })),
            "no_state" => Ok(Self::NoState),
            "stripes" => Ok(Self::Stripes(int(1)?)),
            _ => Err(unexpected(&reply)),
        }
    }
}

impl Projection {
    /// Makes one stripe agree with Postgres (see `lua/reconcile.lua`); `None` when
    /// the stripe's state is missing (the ordinary rebuild loads it on demand).
    pub async fn reconcile_stripe(
        &self,
        stripe: Stripe,
        record: &StripeRecord<'_>,
    ) -> Result<Option<StripeReconciled>> {
        let sale = record.sale;
        self.know_variants(sale.id, sale.variants.len());
        let unsold = super::variants::free_ranges_by_variant(sale, record.unsold_ranges);
        let variants = match sale.has_variants() {
            true => serde_json::json!({
                "sold": record.sold_by_variant,
                "ranges": super::variants::ranges_arg(sale),
            })
            .to_string(),
            false => String::new(),
        };
        let keys = self
            .stripe_keys(stripe)
            .with_variants(sale.variants.len() as u32);
        let mut call = keys.invoke(&RECONCILE);
        call.arg(sale.state.as_str())
            .arg(sale.starts_at.timestamp_millis())
            .arg(sale.ends_at.timestamp_millis())
            .arg(sale.per_user_limit)
            .arg(i64::from(sale.hold_ttl_seconds) * 1000)
            .arg(sale.version)
            .arg(sale.unit_count)
            .arg(&unsold)
            .arg(record.sold)
            .arg(self.stripes)
            .arg(stripe.index)
            .arg(record.ordered.len());
        for id in record.ordered {
            call.arg(id.to_string());
        }
        call.arg(&variants);
        for (shopper, units) in record.bought {
            call.arg(shopper.to_string()).arg(units);
        }
        for (field, units) in record.bought_by_variant {
            call.arg(field).arg(units);
        }
        match ReconcileReply::parse(call.invoke_async(&mut self.conn.clone()).await?)? {
            ReconcileReply::Done(done) => Ok(Some(done)),
            ReconcileReply::NoState => Ok(None),
            ReconcileReply::Stripes(loaded) => {
                Err(stripe_mismatch(stripe.sale, loaded, self.stripes))
            }
        }
    }

    /// The Redis incarnation the sale was last reconciled (or loaded) for, if any.
    pub async fn reconciled_for(&self, sale: SaleId) -> Result<Option<String>> {
        Ok(redis::cmd("GET")
            .arg(self.reconciled_key(sale))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Records that the sale agrees with Postgres in Redis incarnation `incarnation`.
    pub async fn mark_reconciled(&self, sale: SaleId, incarnation: &str) -> Result<()> {
        let _: () = redis::cmd("SET")
            .arg(self.reconciled_key(sale))
            .arg(incarnation)
            .arg("EX")
            .arg(MARKER_TTL_SECS)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Under stripe 0's hash tag, beside the rebuild lock it is written under.
    fn reconciled_key(&self, sale: SaleId) -> String {
        format!("{}:{{sale:{sale}}}:reconciled", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reconcile_replies_are_typed_and_unknown_ones_are_errors() {
        let ok = Value::Array(vec![
            bulk("ok"),
            Value::Int(1),
            Value::Int(2),
            Value::Int(0),
            Value::Int(7),
            Value::Int(5),
        ]);
        assert_eq!(
            ReconcileReply::parse(ok).unwrap(),
            ReconcileReply::Done(StripeReconciled {
                changed: true,
                checked_out: 2,
                ended: 0,
                free_before: 7,
                free_after: 5,
            })
        );
        assert_eq!(
            ReconcileReply::parse(Value::Array(vec![bulk("no_state")])).unwrap(),
            ReconcileReply::NoState
        );
        assert!(ReconcileReply::parse(Value::Array(vec![bulk("ok")])).is_err());
        assert!(ReconcileReply::parse(Value::Int(1)).is_err());
    }
}
