//! The delivery loop: sends due deliveries to their endpoints, one in flight per
//! endpoint, and records each attempt (see the module docs of [`crate::webhooks`]).
//!
//! Each look takes leases on endpoints with due deliveries (`FOR UPDATE SKIP LOCKED`,
//! so processes share endpoints instead of sending the same delivery twice at once)
//! and starts one task per leased endpoint. The task sends that endpoint's due
//! deliveries oldest first, renewing the lease before each attempt, stops at the first
//! failure (a failing receiver gets one attempt per look, not a burst) or after
//! `per_lease` deliveries, and hands the lease back. A process that dies mid-attempt
//! leaves its lease to expire: the delivery is then attempted again, which at-least-
//! once allows (the receiver deduplicates by `webhook-id`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::Url;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::signing::{signature_header, SigningSecret};
use super::ssrf::{literal_allowed, GuardedResolver};
use super::WebhookConfig;
use crate::backoff::sleep_or_shutdown;
use crate::error::Result;

/// Longest error text kept in the log of an attempt.
const MAX_ERROR_CHARS: usize = 500;

/// An endpoint under this process's lease.
struct Leased {
    id: Uuid,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_until: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct LeasedRow {
    id: Uuid,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_until: Option<DateTime<Utc>>,
}

/// A due delivery with its message.
#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    attempts: i32,
    message_id: String,
    body: String,
}

/// What one attempt came to.
#[derive(Debug)]
enum Attempt {
    /// A 2xx within the timeout.
    Delivered(u16),
    /// Another status.
    Refused(u16),
    /// No answer: a timeout, a refused connection, a refused address.
    NoAnswer(String),
}

/// The HTTP client of deliveries: the timeout, no redirects (a redirect could point
/// anywhere, the SSRF guard included), no proxy from the environment, and the guarded
/// resolver.
pub fn client(config: &WebhookConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: config.allow_private,
        }))
        .user_agent("flashsale-webhooks/1")
        .build()
}

/// Runs the delivery loop until `shutdown`, then waits for the attempts in flight.
/// Errors never end it: a failed look is logged and retried at the next one.
pub async fn run(pool: PgPool, config: WebhookConfig, shutdown: CancellationToken) {
    let http = match client(&config) {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook HTTP client; no webhooks delivered");
            return;
        }
    };
    let config = Arc::new(config);
    // This process's name on its leases.
    let holder = Uuid::new_v4();
    let mut tasks = JoinSet::new();
    let mut next_prune = tokio::time::Instant::now();
    while !shutdown.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        if tokio::time::Instant::now() >= next_prune {
            next_prune = tokio::time::Instant::now() + config.retention_interval;
            if let Err(e) = prune(&pool, config.retention).await {
                tracing::warn!(error = %e, "webhook retention pass failed");
            }
        }
        let room = config.max_endpoints_in_flight.saturating_sub(tasks.len());
        if room > 0 {
            match lease(&pool, &config, holder, room).await {
                Ok(endpoints) => {
                    for endpoint in endpoints {
                        let (pool, http, config) = (pool.clone(), http.clone(), config.clone());
                        let stop = shutdown.clone();
                        tasks.spawn(async move {
                            if let Err(e) = serve_endpoint(&pool, &http, &config, &endpoint, holder, &stop).await {
                                tracing::warn!(endpoint = %endpoint.id, error = %e, "webhook round failed");
                            }
                            if let Err(e) = release(&pool, endpoint.id, holder).await {
                                tracing::warn!(endpoint = %endpoint.id, error = %e, "cannot hand a webhook lease back; it expires");
                            }
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot look for due webhook deliveries"),
            }
        }
        sleep_or_shutdown(config.poll, &shutdown).await;
    }
    while tasks.join_next().await.is_some() {}
}

/// Most rows one retention statement deletes (a long backlog goes over several passes).
const PRUNE_CHUNK: i64 = 10_000;

/// Deletes finished deliveries older than `retention`, then the messages no delivery
/// points at any more that are as old.
async fn prune(pool: &PgPool, retention: std::time::Duration) -> Result<()> {
    sqlx::query(
        "delete from webhook_deliveries where id in ( \
             select id from webhook_deliveries \
             where state <> 'pending' and created_at < now() - make_interval(secs => $1) limit $2)",
    )
    .bind(retention.as_secs_f64())
    .bind(PRUNE_CHUNK)
    .execute(pool)
    .await?;
    sqlx::query(
        "delete from webhook_messages where event_id in ( \
             select m.event_id from webhook_messages m \
             where m.occurred_at < now() - make_interval(secs => $1) \
               and not exists (select 1 from webhook_deliveries d where d.event_id = m.event_id) \
             limit $2)",
    )
    .bind(retention.as_secs_f64())
    .bind(PRUNE_CHUNK)
    .execute(pool)
    .await?;
    Ok(())
}

/// Leases up to `room` endpoints that have due deliveries and no live lease, the ones
/// served longest ago first (a handed-back lease keeps its past time; never-served
/// endpoints come first of all), so a busy endpoint cannot starve the others.
async fn lease(
    pool: &PgPool,
    config: &WebhookConfig,
    holder: Uuid,
    room: usize,
) -> Result<Vec<Leased>> {
    // One probe of webhook_deliveries_due per endpoint.
    let rows: Vec<LeasedRow> = sqlx::query_as(
        "update webhook_endpoints set lease_until = now() + make_interval(secs => $1), \
             lease_holder = $3 \
         where id in ( \
             select e.id from webhook_endpoints e \
             where (e.lease_until is null or e.lease_until < now()) \
               and exists (select 1 from webhook_deliveries d \
                           where d.endpoint_id = e.id and d.state = 'pending' \
                             and d.next_attempt_at <= now()) \
             order by e.lease_until nulls first \
             limit $2 for update of e skip locked) \
         returning id, url, secret, previous_secret, previous_secret_until",
    )
    .bind(config.lease().as_secs_f64())
    .bind(room as i64)
    .bind(holder)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Leased {
            id: r.id,
            url: r.url,
            secret: r.secret,
            previous_secret: r.previous_secret,
            previous_secret_until: r.previous_secret_until,
        })
        .collect())
}

/// Hands the lease back (if it is still this process's), keeping the time it ran to.
async fn release(pool: &PgPool, endpoint: Uuid, holder: Uuid) -> Result<()> {
    sqlx::query(
        "update webhook_endpoints set lease_until = least(lease_until, now()), lease_holder = null \
         where id = $1 and lease_holder = $2",
    )
    .bind(endpoint)
    .bind(holder)
    .execute(pool)
    .await?;
    Ok(())
}

/// Sends the endpoint's due deliveries, oldest first, until none is due, one fails, or
/// `per_lease` went out.
async fn serve_endpoint(
    pool: &PgPool,
    http: &reqwest::Client,
    config: &WebhookConfig,
    endpoint: &Leased,
    holder: Uuid,
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut secrets = Vec::new();
    secrets.extend(SigningSecret::parse(&endpoint.secret));
    if endpoint
        .previous_secret_until
        .is_some_and(|until| until > Utc::now())
    {
        secrets.extend(
            endpoint
                .previous_secret
                .as_deref()
                .and_then(SigningSecret::parse),
        );
    }
    if secrets.is_empty() {
        tracing::error!(endpoint = %endpoint.id, "webhook endpoint has no usable secret");
        return Ok(());
    }
    for _ in 0..config.per_lease {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let Some(due) = next_due(pool, endpoint.id, holder, config).await? else {
            return Ok(());
        };
        let attempt = send(http, config, &endpoint.url, &secrets, &due).await;
        let delivered = matches!(attempt, Attempt::Delivered(_));
        record(pool, config, &due, &attempt).await?;
        metrics::counter!(
            "flashsale_webhook_attempts_total",
            "outcome" => if delivered { "delivered" } else { "failed" }
        )
        .increment(1);
        if !delivered {
            return Ok(());
        }
    }
    Ok(())
}

/// The endpoint's oldest due delivery whose order (or sale) has no earlier delivery
/// still pending to this endpoint, after renewing the lease; `None` when nothing is
/// due or the lease is no longer this process's (it ran out and another took it).
async fn next_due(
    pool: &PgPool,
    endpoint: Uuid,
    holder: Uuid,
    config: &WebhookConfig,
) -> Result<Option<Due>> {
    let renewed = sqlx::query(
        "update webhook_endpoints set lease_until = now() + make_interval(secs => $3) \
         where id = $1 and lease_holder = $2",
    )
    .bind(endpoint)
    .bind(holder)
    .bind(config.lease().as_secs_f64())
    .execute(pool)
    .await?;
    if renewed.rows_affected() == 0 {
        return Ok(None);
    }
    // Walks webhook_deliveries_queue in event order; the probe is webhook_deliveries_order.
    let due: Option<Due> = sqlx::query_as(
        "select d.id, d.attempts, m.message_id, m.body \
         from webhook_deliveries d join webhook_messages m on m.event_id = d.event_id \
         where d.endpoint_id = $1 and d.state = 'pending' and d.next_attempt_at <= now() \
           and not exists (select 1 from webhook_deliveries p \
                           where p.endpoint_id = d.endpoint_id and p.aggregate_id = d.aggregate_id \
                             and p.state = 'pending' and (p.occurred_at, p.id) < (d.occurred_at, d.id)) \
         order by d.occurred_at, d.id limit 1",
    )
    .bind(endpoint)
    .fetch_optional(pool)
    .await?;
    Ok(due)
}

/// One POST, signed with every live secret.
async fn send(
    http: &reqwest::Client,
    config: &WebhookConfig,
    url: &str,
    secrets: &[SigningSecret],
    due: &Due,
) -> Attempt {
    let url = match Url::parse(url) {
        Ok(url) => url,
        Err(e) => return Attempt::NoAnswer(format!("the stored URL does not parse: {e}")),
    };
    if !literal_allowed(&url, config.allow_private) {
        return Attempt::NoAnswer("the URL's address is loopback, private or link-local".into());
    }
    let timestamp = Utc::now().timestamp();
    let signature = signature_header(secrets, &due.message_id, timestamp, &due.body);
    let sent = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &due.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(due.body.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => {
            Attempt::Delivered(response.status().as_u16())
        }
        Ok(response) => Attempt::Refused(response.status().as_u16()),
        Err(e) => {
            use std::error::Error as _;
            // The source chain says why (timed out, connection refused, address refused).
            let mut why = e.to_string();
            let mut source = e.source();
            while let Some(inner) = source {
                why = format!("{why}: {inner}");
                source = inner.source();
            }
            Attempt::NoAnswer(why.chars().take(MAX_ERROR_CHARS).collect())
        }
    }
}

/// Records an attempt: delivered, scheduled again, or failed for good.
async fn record(pool: &PgPool, config: &WebhookConfig, due: &Due, attempt: &Attempt) -> Result<()> {
    let attempts = due.attempts.saturating_add(1);
    let (status, error) = match attempt {
        Attempt::Delivered(status) | Attempt::Refused(status) => (Some(i32::from(*status)), None),
        Attempt::NoAnswer(why) => (None, Some(why.as_str())),
    };
    let wait = match attempt {
        Attempt::Delivered(_) => None,
        _ => config.schedule.next_wait(attempts as u32),
    };
    let state = match (attempt, wait) {
        (Attempt::Delivered(_), _) => "delivered",
        (_, Some(_)) => "pending",
        (_, None) => "failed",
    };
    sqlx::query(
        "update webhook_deliveries set attempts = $2, state = $3, last_status = $4, last_error = $5, \
             next_attempt_at = case when $6::float8 is null then null \
                                    else now() + make_interval(secs => $6) end, \
             delivered_at = case when $3 = 'delivered' then now() end \
         where id = $1",
    )
    .bind(due.id)
    .bind(attempts)
    .bind(state)
    .bind(status)
    .bind(error)
    .bind(wait.map(|w| w.as_secs_f64()))
    .execute(pool)
    .await?;
    if state == "failed" {
        tracing::warn!(delivery = due.id, webhook_id = %due.message_id, attempts, "webhook delivery gave up after its last attempt");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_delivery_client_never_connects_to_a_name_that_resolves_to_loopback() {
        // Arrange: a listener on loopback, reached by name (as after a DNS rebinding).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://localhost:{}/hook",
            listener.local_addr().unwrap().port()
        );
        let strict = client(&WebhookConfig::new()).unwrap();

        // Act
        let sent = strict.post(&url).body("{}").send().await;

        // Assert: refused by the resolver, before any connection.
        assert!(sent.is_err(), "a loopback address is not delivered to");
        let reached = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(reached.is_err(), "nothing connected to the listener");

        // With the operator's leave, the same URL is reached.
        let open = client(&WebhookConfig {
            allow_private: true,
            ..WebhookConfig::new()
        })
        .unwrap();
        let request = tokio::spawn(async move { open.post(&url).body("{}").send().await });
        let reached = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(
            reached.is_ok(),
            "allowed private addresses are connected to"
        );
        request.abort();
    }
}
