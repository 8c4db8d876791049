//! Webhooks (API.md v1.1): registration and its SSRF guard, and deliveries to a real
//! HTTP receiver in the test — every event at least once, each signature checked by the
//! Standard Webhooks reference library (Python `standardwebhooks`, installed by
//! `scripts/test`; a missing library fails the test, it never skips), retries after
//! 500s and timeouts, the delivery log agreeing with what the receiver saw, and a
//! receiver that was down getting everything once it is back.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use outbox_relay::mailer::SimulatedMailer;
use outbox_relay::relay::{self, RelayConfig};
use outbox_relay::webhooks::Schedule;
use outbox_relay::worker::{self, WorkerConfig};
use reqwest::Method;
use serde_json::{json, Value};
use test_support::eventually;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{
    answer, assert_invalid_field, assert_problem, spawn_app_with, Order, TestApp,
};

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_url_on_a_private_address_is_refused_with_422_invalid_field_when_not_allowed() {
    // Arrange
    let strict = spawn_app_with(|c| c.webhooks_allow_private = false).await;
    let open = spawn_app_with(|c| c.webhooks_allow_private = true).await;

    // Act + assert
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://[::1]/hook",
        "http://[fd00::1]/hook",
        "http://0.0.0.0/hook",
    ] {
        let refused = register(&strict, url, &["order.placed"]).await;
        assert_invalid_field(refused, "url").await;
    }
    for url in [
        "ftp://example.com/hook",
        "not a url",
        "http://user:pw@example.com/",
    ] {
        assert_invalid_field(register(&open, url, &["order.placed"]).await, "url").await;
    }
    assert_invalid_field(
        register(&open, "http://127.0.0.1:9/h", &["order.shipped"]).await,
        "events",
    )
    .await;
    assert_invalid_field(register(&open, "http://127.0.0.1:9/h", &[]).await, "events").await;
    let allowed = register(&open, "http://127.0.0.1:9000/hook", &["order.placed"]).await;
    assert_eq!(
        allowed.status(),
        201,
        "allowed where the operator allows private addresses"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_registered_listed_rotated_and_deleted_and_the_secret_is_shown_once() {
    // Arrange
    let app = spawn_app_with(|c| c.webhooks_allow_private = true).await;
    let every = [
        "order.placed",
        "order.cancelled",
        "order.refunded",
        "sale.started",
        "sale.sold_out",
        "sale.ended",
    ];

    // Act
    let created: Value = answer(register(&app, "https://hooks.example/a", &every).await)
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let listed: Value = answer(
        app.merchant(Method::GET, "/v1/admin/webhooks")
            .send()
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let rotated: Value = answer(
        app.merchant(
            Method::POST,
            &format!("/v1/admin/webhooks/{id}/rotate-secret"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(created["url"], "https://hooks.example/a");
    assert_eq!(created["events"], json!(every));
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["id"], created["id"]);
    assert!(
        listed["items"][0].get("secret").is_none(),
        "the secret is shown once"
    );
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    let log: Value = answer(
        app.merchant(
            Method::GET,
            &format!("/v1/admin/webhooks/{id}/deliveries?limit=5"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(log, json!({ "items": [], "next_cursor": null }));

    // Another merchant sees none of it.
    let other = app
        .app_state
        .auth
        .issue_admin(
            Uuid::new_v4().to_string(),
            flashsale::auth::Role::Merchant,
            Duration::from_secs(60),
        )
        .unwrap();
    let theirs: Value = answer(
        app.request(Method::GET, "/v1/admin/webhooks", Some(&other))
            .send()
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(theirs["items"], json!([]));
    let not_theirs = app
        .request(
            Method::DELETE,
            &format!("/v1/admin/webhooks/{id}"),
            Some(&other),
        )
        .send()
        .await
        .unwrap();
    assert_problem(not_theirs, 404, "webhook_not_found").await;

    let deleted = app
        .merchant(Method::DELETE, &format!("/v1/admin/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let again = app
        .merchant(Method::DELETE, &format!("/v1/admin/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_problem(again, 404, "webhook_not_found").await;

    // The cap per merchant.
    for i in 0..20 {
        let ok = register(
            &app,
            &format!("https://hooks.example/{i}"),
            &["order.placed"],
        )
        .await;
        assert_eq!(ok.status(), 201);
    }
    let over = register(&app, "https://hooks.example/21", &["order.placed"]).await;
    assert_problem(over, 409, "webhook_limit_reached").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_gets_every_event_signed_and_retried_after_500s_and_timeouts_and_the_log_matches(
) {
    // Arrange: a receiver that answers each message's first attempt 500, its second
    // only after the delivery timeout, and its third 200.
    let app = spawn_app_with(|c| c.webhooks_allow_private = true).await;
    let receiver = Receiver::start(None, Behaviour::FailTwiceThenAccept).await;
    let created: Value = answer(
        register(
            &app,
            &receiver.url(),
            &[
                "order.placed",
                "sale.started",
                "sale.sold_out",
                "sale.ended",
            ],
        )
        .await,
    )
    .await
    .unwrap();
    let endpoint = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let pipeline = Pipeline::start(&app).await;
    let sale = app.live_sale(5, 1).await;

    // Act: five orders sell the sale out; then the merchant ends it.
    let mut orders = HashSet::new();
    for _ in 0..5 {
        orders.insert(buy(&app, sale).await);
    }
    eventually("sale.sold_out reaches the receiver", || async {
        receiver
            .delivered_types()
            .contains(&"sale.sold_out".to_owned())
    })
    .await;
    assert_eq!(app.transition(sale, "end").await.status(), 200);
    eventually("all eight messages are delivered", || async {
        let log = delivery_log(&app, &endpoint).await;
        log.len() == 8 && log.iter().all(|d| !d["delivered_at"].is_null())
    })
    .await;

    // Assert: every event once or more, of the right type, with a body per the contract.
    let mut types = receiver.delivered_types();
    types.sort();
    assert_eq!(
        types,
        [
            vec!["order.placed"; 5],
            vec!["sale.ended", "sale.sold_out", "sale.started"]
        ]
        .concat()
    );
    let bodies = receiver.delivered_bodies();
    let placed: HashSet<Uuid> = bodies
        .iter()
        .filter(|b| b["type"] == "order.placed")
        .map(|b| b["data"]["order_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(placed, orders, "one order.placed per order");
    for body in &bodies {
        assert!(body["timestamp"].is_string(), "{body}");
        let data = &body["data"];
        assert_eq!(
            data["sale_id"].as_str().unwrap(),
            sale.to_string(),
            "{body}"
        );
        if body["type"] == "order.placed" {
            assert_eq!(data["quantity"], 1);
            assert_eq!(data["amount"]["currency"], "EUR");
            assert_eq!(data["status"], "confirmed");
        }
    }
    // Every attempt, the failed ones too, verifies under the reference library.
    let attempts = receiver.all();
    assert_eq!(verify_with_reference(&[&secret], &attempts), attempts.len());
    // The log matches what the receiver saw: three attempts each, the last a 200.
    let log = delivery_log(&app, &endpoint).await;
    let seen = receiver.attempts_by_id();
    for item in &log {
        let id = item["webhook_id"].as_str().unwrap();
        assert_eq!(item["attempts"], 3, "{item}");
        assert_eq!(item["last_status"], 200, "{item}");
        assert!(item["next_attempt_at"].is_null(), "{item}");
        assert_eq!(seen.get(id), Some(&3), "the receiver saw {id} three times");
    }
    assert_eq!(seen.len(), 8);
    // One sale's messages go out in order: none is tried before the one before it was
    // delivered (its three attempts all come after the earlier one's acceptance).
    let position = |pick: &dyn Fn(&Received) -> bool| attempts.iter().position(pick).unwrap();
    let accepted = |kind: &'static str| {
        move |r: &Received| r.accepted && r.body.contains(&format!("\"type\":\"{kind}\""))
    };
    let first_try =
        |kind: &'static str| move |r: &Received| r.body.contains(&format!("\"type\":\"{kind}\""));
    assert!(position(&accepted("sale.started")) < position(&first_try("sale.sold_out")));
    assert!(position(&accepted("sale.sold_out")) < position(&first_try("sale.ended")));
    pipeline.stop().await;

    // `flashsale verify`'s webhooks audit passes, and names a delivery gone missing.
    let audit = |db: sqlx::PgPool| async move {
        outbox_relay::webhooks::audit::audit(&db, reservations::ids::SaleId(sale))
            .await
            .unwrap()
            .checks
    };
    let checks = audit(app.db.clone()).await;
    assert_eq!(checks.len(), 2);
    assert!(checks.iter().all(|c| c.passed), "{checks:?}");
    let lost: Uuid = sqlx::query_scalar(
        "delete from webhook_deliveries where id = (select min(id) from webhook_deliveries \
         where event_type = 'order.placed') returning event_id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let checks = audit(app.db.clone()).await;
    let fanned = checks
        .iter()
        .find(|c| c.name == "webhooks_fanned_out")
        .unwrap();
    assert!(!fanned.passed);
    assert!(
        fanned
            .offenders
            .iter()
            .any(|o| o.contains(&lost.to_string())),
        "{fanned:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sale_moment_is_written_once_however_many_processes_notice_it() {
    use outbox_relay::webhooks::lifecycle::notice_once;
    use reservations::events::{SALE_ENDED, SALE_SOLD_OUT, SALE_STARTED};

    // Arrange: a subscriber, and a live sale (the app's own loop notices it too).
    let app = spawn_app_with(|c| c.webhooks_allow_private = true).await;
    let subscribed = register(
        &app,
        "http://127.0.0.1:9/hook",
        &["sale.started", "sale.ended"],
    )
    .await;
    assert_eq!(subscribed.status(), 201);
    let sale = app.live_sale(10, 1).await;

    // Act: eight "processes" notice the start at once, then the end at once.
    let notice_together = || async {
        let calls = (0..8).map(|_| notice_once(&app.db));
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("a tick runs"))
            .sum::<usize>()
    };
    notice_together().await;
    assert_eq!(app.transition(sale, "end").await.status(), 200);
    notice_together().await;
    tokio::time::sleep(Duration::from_millis(1200)).await; // one more tick of the app's loop

    // Assert
    let count = |event_type: &'static str| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from outbox where aggregate_id = $1 and event_type = $2",
            )
            .bind(sale)
            .bind(event_type)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    assert_eq!(count(SALE_STARTED).await, 1);
    assert_eq!(count(SALE_ENDED).await, 1);
    assert_eq!(
        count(SALE_SOLD_OUT).await,
        0,
        "not sold out, and not subscribed to"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_was_down_receives_everything_after_it_returns() {
    // Arrange: the receiver's port, with nothing listening on it yet. "Down for a
    // minute" is shortened to three seconds: the test's schedule is the standard one
    // scaled by 1/1000 (5 ms, 30 ms, 120 ms, 600 ms, 1.8 s, 3.6 s, …), so those three
    // seconds cover six attempts, as a minute covers three of the standard schedule.
    let app = spawn_app_with(|c| c.webhooks_allow_private = true).await;
    let addr = free_port().await;
    let created: Value =
        answer(register(&app, &format!("http://{addr}/hook"), &["order.placed"]).await)
            .await
            .unwrap();
    let endpoint = created["id"].as_str().unwrap().to_owned();
    let old_secret = created["secret"].as_str().unwrap().to_owned();
    let pipeline = Pipeline::start(&app).await;
    let sale = app.live_sale(100, 1).await;
    let started = tokio::time::Instant::now();
    let mut orders = HashSet::new();
    for _ in 0..3 {
        orders.insert(buy(&app, sale).await);
    }

    // Act: the deliveries fail while it is down; the secret is rotated meanwhile.
    eventually("every delivery has failed at least twice", || async {
        let log = delivery_log(&app, &endpoint).await;
        log.len() == 3
            && log.iter().all(|d| {
                d["attempts"].as_i64().unwrap() >= 2
                    && d["delivered_at"].is_null()
                    && d["last_status"].is_null()
                    && !d["next_attempt_at"].is_null()
            })
    })
    .await;
    let rotated: Value = answer(
        app.merchant(
            Method::POST,
            &format!("/v1/admin/webhooks/{endpoint}/rotate-secret"),
        )
        .send()
        .await
        .unwrap(),
    )
    .await
    .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    tokio::time::sleep_until(started + Duration::from_secs(3)).await;
    let receiver = Receiver::start(Some(addr), Behaviour::Accept).await;

    // Assert: everything arrives, signed with the new secret and the old one.
    eventually(
        "every delivery arrives once the receiver is back",
        || async {
            let log = delivery_log(&app, &endpoint).await;
            log.len() == 3 && log.iter().all(|d| !d["delivered_at"].is_null())
        },
    )
    .await;
    let placed: HashSet<Uuid> = receiver
        .delivered_bodies()
        .iter()
        .map(|b| b["data"]["order_id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(placed, orders);
    let received = receiver.all();
    for attempt in &received {
        let signatures = attempt.headers["webhook-signature"].split(' ').count();
        assert_eq!(signatures, 2, "both secrets sign during the rotation");
    }
    assert_eq!(
        verify_with_reference(&[&old_secret, &new_secret], &received),
        received.len()
    );
    for item in delivery_log(&app, &endpoint).await {
        assert!(item["attempts"].as_i64().unwrap() >= 3, "{item}");
        assert_eq!(item["last_status"], 200);
    }
    let stored: i64 = sqlx::query_scalar("select count(*) from webhook_messages")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, 3, "a message only for what some endpoint receives");
    pipeline.stop().await;
}

// ---------------------------------------------------------------- helpers

/// `POST /v1/admin/webhooks` as the app's merchant.
async fn register(app: &TestApp, url: &str, events: &[&str]) -> reqwest::Response {
    app.merchant(Method::POST, "/v1/admin/webhooks")
        .json(&json!({ "url": url, "events": events }))
        .send()
        .await
        .unwrap()
}

/// Every item of the endpoint's delivery log (pages of 3, so the cursor is used).
async fn delivery_log(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/admin/webhooks/{endpoint}/deliveries?limit=3");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = answer(app.merchant(Method::GET, &path).send().await.unwrap())
            .await
            .unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// A new shopper reserves one unit and checks it out; the order id.
async fn buy(app: &TestApp, sale: Uuid) -> Uuid {
    let shopper = app.shopper().await;
    let held = app
        .reserve(&shopper, sale, 1)
        .await
        .expect("units are free");
    let key = Uuid::new_v4().to_string();
    let response = app
        .checkout(&shopper, held.reservation_id, Some(&key), "tok_ok")
        .await;
    assert_eq!(response.status(), 201);
    let order: Order = answer(response).await.expect("an order");
    order.order_id
}

/// An address on loopback nothing listens on (bound, then let go).
async fn free_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// Checks `attempts` with the Python reference library under every one of `secrets`;
/// returns how many verified (it fails the test on any that does not).
fn verify_with_reference(secrets: &[&str], attempts: &[Received]) -> usize {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/verify_webhooks.py");
    let input = json!({
        "secrets": secrets,
        "deliveries": attempts.iter().map(|a| json!({ "headers": a.headers, "body": a.body })).collect::<Vec<_>>(),
    });
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test installs the standardwebhooks package for it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Standard Webhooks reference library refused a delivery (or is missing: \
         python3 -m pip install 'standardwebhooks>=1,<2'): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The relay and the workers (the webhook delivery loop included) of `app`, in this
/// process, with the test's webhook settings: private addresses allowed, a 500 ms
/// timeout and the standard schedule scaled by 1/1000.
struct Pipeline {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pipeline {
    async fn start(app: &TestApp) -> Pipeline {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect(app.config.database_url.expose())
            .await
            .unwrap();
        let redis = flashsale::startup::redis_target(&app.config).unwrap();
        let stop = CancellationToken::new();
        let mut relay_config = RelayConfig::new(app.prefix.clone());
        relay_config.poll_interval = Duration::from_millis(100);
        let mut worker_config = WorkerConfig::new(app.prefix.clone());
        worker_config.block = Duration::from_millis(200);
        worker_config.webhooks.allow_private = true;
        worker_config.webhooks.timeout = Duration::from_millis(500);
        worker_config.webhooks.schedule = Schedule::scaled(0.001);
        worker_config.webhooks.poll = Duration::from_millis(20);
        let tasks = vec![
            tokio::spawn(relay::run(
                pool.clone(),
                redis.clone(),
                relay_config,
                stop.clone(),
            )),
            tokio::spawn(worker::run(
                pool,
                redis,
                app.app_state.checkout.payments(),
                Arc::new(SimulatedMailer::new()),
                worker_config,
                stop.clone(),
            )),
        ];
        Pipeline { stop, tasks }
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("stops on shutdown")
                .expect("did not panic");
        }
    }
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// 200 at once.
    Accept,
    /// A message's first attempt 500, its second after 1.5 s (past the timeout), then 200.
    FailTwiceThenAccept,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    /// The Standard Webhooks headers and the content type.
    headers: HashMap<String, String>,
    body: String,
    /// Whether it was answered 2xx in time to count.
    accepted: bool,
}

/// A webhook receiver: a real HTTP server on loopback recording every request.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(addr: Option<SocketAddr>, behaviour: Behaviour) -> Receiver {
        let listener =
            tokio::net::TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
                .await
                .unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
        };
        let seen = receiver.seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let seen = seen.clone();
                async move {
                    let text = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let id = text("webhook-id");
                    let mut recorded: HashMap<String, String> = HashMap::new();
                    for name in [
                        "webhook-id",
                        "webhook-timestamp",
                        "webhook-signature",
                        "content-type",
                    ] {
                        recorded.insert(name.to_owned(), text(name));
                    }
                    let earlier = {
                        let seen = seen.lock().unwrap();
                        seen.iter()
                            .filter(|r| r.headers["webhook-id"] == id)
                            .count()
                    };
                    let (status, delay, accepted) = match (behaviour, earlier) {
                        (Behaviour::FailTwiceThenAccept, 0) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, None, false)
                        }
                        (Behaviour::FailTwiceThenAccept, 1) => {
                            (StatusCode::OK, Some(Duration::from_millis(1500)), false)
                        }
                        _ => (StatusCode::OK, None, true),
                    };
                    seen.lock().unwrap().push(Received {
                        headers: recorded,
                        body,
                        accepted,
                    });
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                    }
                    status
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        receiver
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn all(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    /// The bodies of the accepted requests, one per message.
    fn delivered_bodies(&self) -> Vec<Value> {
        let mut ids = HashSet::new();
        self.all()
            .into_iter()
            .filter(|r| r.accepted && ids.insert(r.headers["webhook-id"].clone()))
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect()
    }

    fn delivered_types(&self) -> Vec<String> {
        self.delivered_bodies()
            .iter()
            .map(|b| b["type"].as_str().unwrap().to_owned())
            .collect()
    }

    fn attempts_by_id(&self) -> HashMap<String, i64> {
        let mut counts = HashMap::new();
        for r in self.all() {
            *counts.entry(r.headers["webhook-id"].clone()).or_default() += 1;
        }
        counts
    }
}
