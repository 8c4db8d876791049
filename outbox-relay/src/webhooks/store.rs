//! The merchants' endpoints and their delivery logs: what the admin API reads and
//! writes. Every call names the merchant; another merchant's endpoint is "not found".

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::signing::SigningSecret;
use super::ssrf::check_url;
use super::{EventType, MAX_ENDPOINTS_PER_MERCHANT};
use crate::error::{Error, Result};

/// How long a rotated-out secret keeps signing beside the new one.
const ROTATION_GRACE_SECONDS: f64 = 24.0 * 3600.0;

/// A registered endpoint (never its secret: that is shown once, by the call that
/// makes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint id.
    pub id: Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The event types it receives.
    pub events: Vec<EventType>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// One row of an endpoint's delivery log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLogItem {
    /// The message id (the `webhook-id` header the receiver saw).
    pub webhook_id: String,
    /// The event type name.
    pub event_type: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// The HTTP status of the last attempt; `None` before the first one, or when no
    /// answer came (a timeout, a refused connection).
    pub last_status: Option<i32>,
    /// When the next attempt is due; `None` once delivered or given up.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When a 2xx came back.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The endpoints' store, with the operator's rule on private addresses.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pool: PgPool,
    allow_private: bool,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: Uuid,
    url: String,
    events: Vec<String>,
    created_at: DateTime<Utc>,
}

impl From<EndpointRow> for Endpoint {
    fn from(row: EndpointRow) -> Self {
        Endpoint {
            id: row.id,
            url: row.url,
            events: row
                .events
                .iter()
                .filter_map(|e| EventType::parse(e))
                .collect(),
            created_at: row.created_at,
        }
    }
}

impl Endpoints {
    /// The store on `pool`; `allow_private` is `FLASHSALE_WEBHOOKS_ALLOW_PRIVATE`.
    pub fn new(pool: PgPool, allow_private: bool) -> Self {
        Self {
            pool,
            allow_private,
        }
    }

    /// Parses the subscription list: names from [`EventType`], at least one; repeats
    /// collapse. The error is the `invalid_field` detail.
    pub fn parse_events(names: &[String]) -> Result<Vec<EventType>> {
        if names.is_empty() {
            return Err(Error::InvalidWebhook(
                "events: name at least one event type".into(),
            ));
        }
        let mut events = Vec::new();
        for name in names {
            let t = EventType::parse(name).ok_or_else(|| {
                Error::InvalidWebhook(format!("events: unknown event type {name:?}"))
            })?;
            if !events.contains(&t) {
                events.push(t);
            }
        }
        Ok(events)
    }

    /// Registers an endpoint after the SSRF check; returns it with its secret (the only
    /// time the secret is shown). [`Error::WebhookLimit`] past the cap per merchant.
    pub async fn create(
        &self,
        merchant: Uuid,
        url: &str,
        events: &[EventType],
    ) -> Result<(Endpoint, SigningSecret)> {
        let url = check_url(url, self.allow_private)
            .await
            .map_err(Error::InvalidWebhook)?;
        let secret = SigningSecret::generate();
        let names: Vec<&str> = events.iter().map(|e| e.name()).collect();
        let mut tx = self.pool.begin().await?;
        // The cap is checked and the row inserted under one lock per merchant, so two
        // concurrent registrations cannot both take the last place.
        sqlx::query("select pg_advisory_xact_lock(hashtextextended($1::text, 18))")
            .bind(merchant)
            .execute(&mut *tx)
            .await?;
        let count: i64 =
            sqlx::query_scalar("select count(*) from webhook_endpoints where merchant_id = $1")
                .bind(merchant)
                .fetch_one(&mut *tx)
                .await?;
        if count >= MAX_ENDPOINTS_PER_MERCHANT {
            return Err(Error::WebhookLimit(MAX_ENDPOINTS_PER_MERCHANT));
        }
        let row: EndpointRow = sqlx::query_as(
            "insert into webhook_endpoints (id, merchant_id, url, events, secret) \
             values ($1, $2, $3, $4, $5) returning id, url, events, created_at",
        )
        .bind(Uuid::now_v7())
        .bind(merchant)
        .bind(url.as_str())
        .bind(&names)
        .bind(secret.expose())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((row.into(), secret))
    }

    /// The merchant's endpoints, oldest first (at most [`MAX_ENDPOINTS_PER_MERCHANT`]).
    pub async fn list(&self, merchant: Uuid) -> Result<Vec<Endpoint>> {
        let rows: Vec<EndpointRow> = sqlx::query_as(
            "select id, url, events, created_at from webhook_endpoints \
             where merchant_id = $1 order by created_at, id",
        )
        .bind(merchant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Endpoint::from).collect())
    }

    /// Deletes an endpoint and its deliveries; `false` if the merchant has no such one.
    pub async fn delete(&self, merchant: Uuid, id: Uuid) -> Result<bool> {
        let deleted =
            sqlx::query("delete from webhook_endpoints where id = $1 and merchant_id = $2")
                .bind(id)
                .bind(merchant)
                .execute(&self.pool)
                .await?;
        Ok(deleted.rows_affected() == 1)
    }

    /// Gives the endpoint a new secret; the old one keeps signing for 24 h. A second
    /// rotation within the 24 h drops the oldest secret. `None` if there is no such
    /// endpoint of this merchant.
    pub async fn rotate(&self, merchant: Uuid, id: Uuid) -> Result<Option<SigningSecret>> {
        let secret = SigningSecret::generate();
        let rotated = sqlx::query(
            "update webhook_endpoints set previous_secret = secret, \
                 previous_secret_until = now() + make_interval(secs => $3), secret = $4 \
             where id = $1 and merchant_id = $2",
        )
        .bind(id)
        .bind(merchant)
        .bind(ROTATION_GRACE_SECONDS)
        .bind(secret.expose())
        .execute(&self.pool)
        .await?;
        Ok((rotated.rows_affected() == 1).then_some(secret))
    }

    /// One page of the endpoint's delivery log, newest first: up to `limit` items after
    /// the cursor `before` (the last item's position of the previous page), and the
    /// cursor of the next page. `None` if there is no such endpoint of this merchant.
    pub async fn deliveries(
        &self,
        merchant: Uuid,
        id: Uuid,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Option<(Vec<DeliveryLogItem>, Option<i64>)>> {
        let owned: Option<Uuid> = sqlx::query_scalar(
            "select id from webhook_endpoints where id = $1 and merchant_id = $2",
        )
        .bind(id)
        .bind(merchant)
        .fetch_optional(&self.pool)
        .await?;
        if owned.is_none() {
            return Ok(None);
        }
        type Row = (
            i64,
            String,
            String,
            i32,
            Option<i32>,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
        );
        // One more than asked: its presence says there is a next page.
        let mut rows: Vec<Row> = sqlx::query_as(
            "select d.id, m.message_id, d.event_type, d.attempts, d.last_status, \
                    case when d.state = 'pending' then d.next_attempt_at end, d.delivered_at \
             from webhook_deliveries d join webhook_messages m on m.event_id = d.event_id \
             where d.endpoint_id = $1 and ($2::bigint is null or d.id < $2) \
             order by d.id desc limit $3",
        )
        .bind(id)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.0)
        } else {
            None
        };
        let items = rows
            .into_iter()
            .map(
                |(
                    _,
                    webhook_id,
                    event_type,
                    attempts,
                    last_status,
                    next_attempt_at,
                    delivered_at,
                )| {
                    DeliveryLogItem {
                        webhook_id,
                        event_type,
                        attempts,
                        last_status,
                        next_attempt_at,
                        delivered_at,
                    }
                },
            )
            .collect();
        Ok(Some((items, next)))
    }
}
