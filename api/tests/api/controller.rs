//! The admission controller over HTTP, with real checkouts: it slows admission when
//! *our* part of checkout slows (here: a lock on the orders table, so each checkout's
//! transaction queues), and holds it when only the payment provider is slow — admitting
//! fewer shoppers cannot shorten the provider's latency. The law itself is unit-tested
//! in `waiting-room/src/controller.rs`.

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use test_support::eventually_within;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{sale_body_with, spawn_app_with, TestApp, TestShopper};

async fn stats(app: &TestApp, sale: Uuid) -> Value {
    app.merchant(Method::GET, &format!("/v1/admin/sales/{sale}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn rate(app: &TestApp, sale: Uuid) -> f64 {
    stats(app, sale).await["admission"]["rate_per_second"]
        .as_f64()
        .unwrap()
}

/// A relay for the outbox (an old backlog would slow admission by itself) and a long
/// line of shoppers who joined.
async fn line(app: &TestApp, sale: Uuid) -> CancellationToken {
    let relay = CancellationToken::new();
    tokio::spawn(outbox_relay::relay::run(
        app.db.clone(),
        flashsale::startup::redis_target(&app.config).unwrap(),
        outbox_relay::relay::RelayConfig::new(app.prefix.clone()),
        relay.clone(),
    ));
    let shoppers: Vec<TestShopper> = (0..3000).map(|_| app.direct_shopper()).collect();
    futures::stream::iter(&shoppers)
        .for_each_concurrent(64, |s| async {
            let joined = app
                .request(
                    Method::POST,
                    &format!("/v1/sales/{sale}/queue"),
                    Some(&s.token),
                )
                .send()
                .await
                .unwrap();
            assert!(joined.status().is_success(), "join: {}", joined.status());
        })
        .await;
    relay
}

/// `count` buyers holding and checking out in a loop until `stop`.
async fn buyers(app: &TestApp, sale: Uuid, count: usize, stop: CancellationToken) {
    futures::future::join_all((0..count).map(|_| {
        let stop = stop.clone();
        async move {
            while !stop.is_cancelled() {
                let buyer = app.direct_shopper();
                let hold = app.hold(&buyer, sale, 1).await;
                app.checkout(&buyer, hold, Some("k"), "tok_ok").await;
            }
        }
    }))
    .await;
}

async fn set_provider_latency(app: &TestApp, p50: u64, p99: u64) {
    let token = app
        .app_state
        .auth
        .issue_admin(
            "operator".into(),
            flashsale::auth::Role::Operator,
            Duration::from_secs(600),
        )
        .unwrap();
    let answer = app
        .request(Method::PUT, "/v1/ops/payment-simulator", Some(&token))
        .json(&json!({ "latency_ms": { "p50": p50, "p99": p99 }, "failure_rate": 0.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

/// Holds the orders table in turns of `hold`: every checkout's transaction waits for it.
async fn lock_orders(app: &TestApp, hold: Duration, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let mut tx = app.db.begin().await.unwrap();
        sqlx::query("lock table orders in exclusive mode")
            .execute(&mut *tx)
            .await
            .unwrap();
        tokio::time::sleep(hold).await;
        tx.commit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_controller_slows_admission_when_checkout_slows_and_recovers_after() {
    // Arrange: a long line and a steady stream of buyers checking out.
    let app = spawn_app_with(|c| c.controller_tick = Duration::from_millis(200)).await;
    let sale = app.live_sale(100_000, 1).await;
    let _stop_relay = line(&app, sale).await.drop_guard();
    let stop = CancellationToken::new();
    let locking = CancellationToken::new();

    let scenario = async {
        // Healthy: the rate climbs.
        assert!(
            eventually_within(Duration::from_secs(10), || async {
                rate(&app, sale).await > 20.0
            })
            .await,
            "rate climbs while healthy"
        );
        let healthy_peak = rate(&app, sale).await;
        // Our part slows: each checkout's transaction waits ~600 ms for the orders
        // table. Our p95 passes the 300 ms target, the rate falls.
        let slowed = async {
            assert!(
                eventually_within(Duration::from_secs(15), || async {
                    rate(&app, sale).await < healthy_peak / 2.0
                })
                .await,
                "rate falls under half its peak ({healthy_peak}) when our checkout is slow"
            );
            assert_eq!(
                stats(&app, sale).await["admission"]["last_change_reason"],
                "checkout_p95 above target"
            );
            locking.cancel();
        };
        tokio::join!(
            lock_orders(&app, Duration::from_millis(600), locking.clone()),
            slowed
        );
        let slow_floor = rate(&app, sale).await;
        // The lock is gone: once the slow samples leave the 10 s window, p95 is back
        // under target and the rate climbs again.
        assert!(
            eventually_within(Duration::from_secs(30), || async {
                let s = stats(&app, sale).await;
                s["signals"]["checkout_p95_ms"].as_f64().unwrap() < 300.0
                    && s["admission"]["rate_per_second"].as_f64().unwrap() > slow_floor * 2.0
            })
            .await,
            "rate climbs again after recovery"
        );
        stop.cancel();
    };
    tokio::join!(scenario, buyers(&app, sale, 4, stop.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_provider_with_capacity_to_spare_does_not_cut_admission() {
    // A line admitted at the merchant's ceiling of 20 a second, buyers checking out.
    let app = spawn_app_with(|c| c.controller_tick = Duration::from_millis(200)).await;
    let now = app.clock_now();
    let created = app
        .create_sale(sale_body_with(json!({
            "stock": { "total": 100_000 }, "per_user_limit": 1,
            "starts_at": now - chrono::Duration::minutes(1),
            "ends_at": now + chrono::Duration::hours(2),
            "admission": { "mode": "auto", "max_admit_per_second": 20.0,
                           "checkout_p95_target_ms": 300 },
        })))
        .await;
    let sale: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let _stop_relay = line(&app, sale).await.drop_guard();
    let stop = CancellationToken::new();

    let scenario = async {
        assert!(
            eventually_within(Duration::from_secs(10), || async {
                rate(&app, sale).await >= 20.0
            })
            .await,
            "rate reaches the ceiling while healthy"
        );
        // The provider slows to ~600 ms: checkout as shoppers see it is far over the
        // 300 ms target, our part of it is not.
        set_provider_latency(&app, 600, 900).await;
        let mut lowest = f64::MAX;
        let mut slow_seen = false;
        let until = tokio::time::Instant::now() + Duration::from_secs(8);
        while tokio::time::Instant::now() < until {
            let s = stats(&app, sale).await;
            lowest = lowest.min(s["admission"]["rate_per_second"].as_f64().unwrap());
            slow_seen |= s["signals"]["checkout_p95_ms"].as_f64().unwrap() > 300.0;
            assert_ne!(
                s["admission"]["last_change_reason"], "checkout_p95 above target",
                "the provider's latency is not ours to cut {s}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            slow_seen,
            "checkout p95 as shoppers see it passed the target"
        );
        assert!(
            lowest >= 10.0,
            "the rate held at least half: lowest {lowest}"
        );
        set_provider_latency(&app, 5, 20).await;
        stop.cancel();
    };
    tokio::join!(scenario, buyers(&app, sale, 8, stop.clone()));
}
