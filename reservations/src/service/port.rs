//! What the waiting room reads of sales, and nothing more: a sale's definition, its
//! stock, and how many shoppers reached the reserve step. The waiting room depends on
//! this port instead of the catalogue's internals, so neither Postgres nor Redis keys
//! of a sale are reachable from it.

use chrono::{DateTime, Utc};

use super::Sales;
use crate::ids::SaleId;
use crate::sales::{Sale, StockView};
use crate::Result;

/// The waiting room's view of sales.
#[derive(Clone)]
pub struct WaitingRoomPort {
    sales: Sales,
}

impl WaitingRoomPort {
    pub(super) fn new(sales: Sales) -> Self {
        Self { sales }
    }

    /// The current time by the sales' clock (the waiting room keeps the same time).
    pub fn now(&self) -> DateTime<Utc> {
        self.sales.now()
    }

    /// The sale's definition and state, from Postgres.
    pub async fn sale(&self, id: SaleId) -> Result<Sale> {
        self.sales.store.get(id).await
    }

    /// The sale's stock, rebuilding its Redis state first if it is missing. Of a sale
    /// with variants it is the sum over them, so "expected buyers vs free units" counts
    /// every variant's free units, and the sale is sold out (nothing free, nothing held)
    /// exactly when every variant is.
    pub async fn stock(&self, sale: &Sale) -> Result<StockView> {
        self.sales.stock(sale).await
    }

    /// Shoppers who reached the reserve step (held at least once, or were told sold
    /// out): the admitted shoppers not among them are still to come, or no-shows.
    pub async fn reserved_shoppers(&self, id: SaleId) -> Result<i64> {
        self.sales.projection.reserved_shoppers(id).await
    }
}
