//! A closed order's units leave `sold` in Redis: the script `lua/return_units.lua`
//! (its header has the rules) and its typed reply. It lives here, beside the other
//! scripts that move units, and is called by `crate::order_life` after the order's
//! status committed in Postgres.

use std::sync::LazyLock;

use redis::{Script, Value};

use super::Projection;
use crate::ids::ReservationId;
use crate::{Error, Result};

static RETURN_UNITS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../lua/common.lua"),
        include_str!("../lua/return_units.lua")
    ))
});

/// What returning a closed order's units did in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// The units moved now (how many).
    Moved(i64),
    /// Nothing to do: the hold was returned already, or Redis does not know it (its
    /// state was rebuilt from Postgres, which already counts the units where they are).
    Nothing,
}

impl Projection {
    /// Returns the units of the order made from hold `id`: back on their variants'
    /// free lists (`restock`) or out of the sale. Idempotent (see the script).
    pub async fn return_units(&self, id: ReservationId, restock: bool) -> Result<Returned> {
        let Some(stripe) = self.reservation_stripe(id).await? else {
            return Ok(Returned::Nothing);
        };
        let mode = if restock { "restock" } else { "retire" };
        let reply = self
            .invoke_varied(stripe, &RETURN_UNITS, |call| {
                call.arg(id.to_string()).arg(mode);
            })
            .await?;
        let unexpected = || {
            Error::Internal(anyhow::anyhow!(
                "script return_units gave a reply it does not define: {reply:?}"
            ))
        };
        let Value::Array(fields) = &reply else {
            return Err(unexpected());
        };
        let tag: String = fields
            .first()
            .and_then(|v| redis::from_redis_value(v).ok())
            .ok_or_else(unexpected)?;
        match tag.as_str() {
            "ok" => Ok(Returned::Moved(
                fields
                    .get(1)
                    .and_then(|v| redis::from_redis_value(v).ok())
                    .ok_or_else(unexpected)?,
            )),
            "no_state" | "missing" | "noop" => Ok(Returned::Nothing),
            _ => Err(unexpected()),
        }
    }
}
