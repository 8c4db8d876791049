//! What Postgres records of each sale's line (`line_marks`): the ceiling of positions
//! handed out, the serving position, and the draw's seed, commitment and drawn order.
//! Redis holds the line; this is what the line is rebuilt from when Redis loses it
//! (see `heal`). Every write only moves a mark forward (`greatest`, first writer wins).

use sqlx::PgPool;

use crate::Result;
use reservations::ids::SaleId;

/// How many positions one raise of the ceiling covers: one Postgres write per this
/// many joins, and at most twice this many empty places after a loss (the ceiling is
/// raised a block ahead of the joins; the controller admits through them like
/// no-shows).
pub const CEILING_BLOCK: i64 = 256;

/// A sale's marks as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// No position above this was ever handed out.
    pub ceiling: i64,
    /// The last position handed out, as of the controller's last tick.
    pub seq: i64,
    /// Positions up to this were admitted.
    pub serving: i64,
    /// The draw's seed (hex), fixed before its commitment was published.
    pub seed: Option<String>,
    /// SHA-256 of the seed (hex).
    pub commitment: Option<String>,
    /// The pre-queued ticket ids in drawn order, once drawn.
    pub drawn_tickets: Option<Vec<String>>,
}

type Row = (
    i64,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
);

fn marks(row: Row) -> Marks {
    let (ceiling, seq, serving, seed, commitment, drawn_tickets) = row;
    Marks {
        ceiling,
        seq,
        serving,
        seed,
        commitment,
        drawn_tickets,
    }
}

const COLUMNS: &str = "ceiling, seq, serving, seed, commitment, drawn_tickets";

/// The `line_marks` table.
#[derive(Clone)]
pub struct LineMarks {
    db: PgPool,
}

impl LineMarks {
    /// The marks in `db`.
    pub fn new(db: PgPool) -> Self {
        Self { db }
    }

    /// The database the marks live in (the draw's beacon and the access codes live
    /// in it too).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.db
    }

    /// The sale's marks (all zero when nothing was recorded yet).
    pub async fn get(&self, sale: SaleId) -> Result<Marks> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "select {COLUMNS} from line_marks where sale_id = $1"
        ))
        .bind(sale.0)
        .fetch_optional(&self.db)
        .await
        .map_err(anyhow::Error::from)?;
        Ok(row.map(marks).unwrap_or_default())
    }

    /// Raises the ceiling to at least `at_least`; returns the marks after.
    pub async fn raise_ceiling(&self, sale: SaleId, at_least: i64) -> Result<Marks> {
        self.upsert(
            sale,
            "ceiling = greatest(line_marks.ceiling, excluded.ceiling)",
            (at_least, 0, 0, None, None),
        )
        .await
    }

    /// Records what the controller saw this tick (never lowering a mark); returns the
    /// marks after, so a line behind them is noticed in the same round trip.
    pub async fn record(&self, sale: SaleId, seq: i64, serving: i64) -> Result<Marks> {
        self.upsert(
            sale,
            "seq = greatest(line_marks.seq, excluded.seq), \
             serving = greatest(line_marks.serving, excluded.serving)",
            (0, seq, serving, None, None),
        )
        .await
    }

    /// Fixes the draw's seed unless one is fixed already; returns the one that counts.
    pub async fn fix_seed(&self, sale: SaleId, seed: &str, commitment: &str) -> Result<Marks> {
        self.upsert(
            sale,
            "seed = coalesce(line_marks.seed, excluded.seed), \
             commitment = coalesce(line_marks.commitment, excluded.commitment)",
            (0, 0, 0, Some(seed), Some(commitment)),
        )
        .await
    }

    /// Records the drawn order unless one is recorded already; returns the one that
    /// counts (a draw recomputed after a loss never replaces the published one).
    pub async fn record_draw(
        &self,
        sale: SaleId,
        order: &[String],
        groups: &[String],
    ) -> Result<Vec<String>> {
        let (recorded,): (Vec<String>,) = sqlx::query_as(
            "insert into line_marks (sale_id, drawn_tickets, drawn_groups) values ($1, $2, $3) \
             on conflict (sale_id) do update set \
             drawn_groups = case when line_marks.drawn_tickets is null \
               then excluded.drawn_groups else line_marks.drawn_groups end, \
             drawn_tickets = coalesce(line_marks.drawn_tickets, excluded.drawn_tickets), \
             updated_at = now() \
             returning drawn_tickets",
        )
        .bind(sale.0)
        .bind(order)
        .bind(groups)
        .fetch_one(&self.db)
        .await
        .map_err(anyhow::Error::from)?;
        Ok(recorded)
    }

    /// The address group of each drawn ticket, in drawn order (`None`: not drawn, or
    /// drawn before groups were recorded).
    pub async fn drawn_groups(&self, sale: SaleId) -> Result<Option<Vec<String>>> {
        let row: Option<(Option<Vec<String>>,)> =
            sqlx::query_as("select drawn_groups from line_marks where sale_id = $1")
                .bind(sale.0)
                .fetch_optional(&self.db)
                .await
                .map_err(anyhow::Error::from)?;
        Ok(row.and_then(|(groups,)| groups))
    }

    async fn upsert(
        &self,
        sale: SaleId,
        set: &str,
        (ceiling, seq, serving, seed, commitment): (i64, i64, i64, Option<&str>, Option<&str>),
    ) -> Result<Marks> {
        let row: Row = sqlx::query_as(&format!(
            "insert into line_marks (sale_id, ceiling, seq, serving, seed, commitment) \
             values ($1, $2, $3, $4, $5, $6) \
             on conflict (sale_id) do update set {set}, updated_at = now() \
             returning {COLUMNS}"
        ))
        .bind(sale.0)
        .bind(ceiling)
        .bind(seq)
        .bind(serving)
        .bind(seed)
        .bind(commitment)
        .fetch_one(&self.db)
        .await
        .map_err(anyhow::Error::from)?;
        Ok(marks(row))
    }
}
