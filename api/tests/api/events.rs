//! Event delivery through crashes of the real `flashsale` binary: a relay process and a
//! worker process killed with SIGKILL mid-flight, and every event still applied once.
//! These stay with the binary (`CARGO_BIN_EXE_flashsale`); the in-process delivery tests
//! are the relay's own (`outbox-relay/tests/relay`). The outbox views are shared through
//! `test_support::outbox`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flashsale::config::Config;
use outbox_relay::consumer::ConsumerKind;
use redis::AsyncCommands;
use test_support::outbox::{scalar, Deliveries};
use test_support::{eventually, PATIENCE};
use tokio::time::Instant;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp};

// ---------------------------------------------------------------- the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_killed_mid_batch_republishes_and_each_consumer_applies_every_event_once() {
    // Arrange
    let app = spawn_app().await;
    let events = deliveries(&app).await;
    let url = events.url.clone();
    let sale = app.live_sale(10_000, 5).await;
    let orders = events.place_orders(sale, 3_000).await;
    let stream = events.stream();
    let mut redis = app.app_state.redis.clone();

    // Act: kill the relay process once it has committed a batch and has appended the
    // next one without committing it yet (the stream is read before the table: the
    // stream only grows, so more entries than committed rows means a batch in flight).
    let mut first = spawn_role(&app, &url, "relay");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let appended: usize = redis.xlen(&stream).await.unwrap();
        let committed = 3_000 - events.unpublished().await as usize;
        if committed > 0 && appended > committed {
            break;
        }
        assert!(
            committed < 3_000,
            "the relay finished before a batch could be caught in flight"
        );
        assert!(
            Instant::now() < deadline,
            "the relay process never published"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    first.kill();
    let appended: usize = redis.xlen(&stream).await.unwrap();
    let left = events.unpublished().await;
    eprintln!(
        "relay killed: {appended} entries appended, {} rows marked published",
        3_000 - left
    );
    assert!(
        left > 0,
        "the relay was killed before it had published everything"
    );

    let mut second = spawn_role(&app, &url, "relay");
    eventually("the restarted relay publishes the rest", || async {
        events.unpublished().await == 0
    })
    .await;
    second.kill();
    let workers = events.start_workers(events.worker_config()).await;

    // Assert: at least once in the stream, exactly once in effect.
    events.wait_until_applied(&orders).await;
    let published = events.stream_event_ids().await;
    let distinct: HashSet<Uuid> = published.iter().copied().collect();
    assert_eq!(distinct, orders.iter().map(|o| o.event_id).collect());
    eprintln!(
        "{} entries for {} events ({} duplicates)",
        published.len(),
        distinct.len(),
        published.len() - distinct.len()
    );

    workers.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_with_pending_entries_has_them_claimed_and_applied_once_by_another() {
    // Arrange: a worker process that has set up its groups.
    let app = spawn_app().await;
    let events = deliveries(&app).await;
    let url = events.url.clone();
    let sale = app.live_sale(10_000, 5).await;
    let mut doomed = spawn_role(&app, &url, "worker");
    eventually("the worker process creates its groups", || async {
        events.groups().await.len() == ConsumerKind::ALL.len()
    })
    .await;
    let orders = events.place_orders(sale, 1_500).await;
    let relay = events.start_relay(events.relay_config()).await;
    // Every consumer until the survivor starts is the doomed process's.
    let survivor_name = format!("survivor-{}", Uuid::new_v4().simple());

    // Act: SIGKILL the worker while it holds entries it has not acknowledged.
    let deadline = Instant::now() + PATIENCE;
    let started = || async {
        let processed = scalar(&app.db, "select count(*) from processed_events").await;
        processed > 0 && events.pending_except(&survivor_name).await > 0
    };
    while !started().await {
        assert!(
            Instant::now() < deadline,
            "the worker process never got going"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    doomed.kill();
    let orphaned = events.pending_except(&survivor_name).await;
    eprintln!("worker killed holding {orphaned} unacknowledged entries");
    assert!(orphaned > 0, "the dead worker left entries pending");
    let mut config = events.worker_config();
    config.consumer_name = survivor_name.clone();
    let survivor = events.start_workers(config).await;

    // Assert: claimed (nothing else could move them), applied once.
    events.wait_until_applied(&orders).await;
    assert_eq!(
        events.pending_except(&survivor_name).await,
        0,
        "the dead worker's entries were claimed"
    );

    survivor.stop().await;
    relay.stop().await;
}

/// `flashsale <role>` running as a child process. Killed with SIGKILL when dropped, so a
/// failing test leaves no process behind. (`std::process`: the workspace's tokio is built
/// without its `process` feature; `Child::kill` is SIGKILL all the same.)
struct RoleProcess(Child);

impl RoleProcess {
    /// SIGKILL, and reap the process.
    fn kill(&mut self) {
        self.0.kill().expect("SIGKILL the process");
        self.0.wait().expect("reap the process");
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `flashsale <role>` against this app's database and Redis prefix.
fn spawn_role(app: &TestApp, database_url: &str, role: &str) -> RoleProcess {
    let config = Config::from_env().expect("test configuration");
    let data_dir: PathBuf =
        std::env::temp_dir().join(format!("flashsale-events-{}", Uuid::new_v4().simple()));
    let child = Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .arg(role)
        .env("DATABASE_URL", database_url)
        .env("REDIS_URL", config.redis_url.expose())
        .env("FLASHSALE_REDIS_PREFIX", &app.prefix)
        .env("FLASHSALE_DATA_DIR", &data_dir)
        .env("FLASHSALE_PAYMENT_URL", &app.provider.url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the flashsale binary starts");
    RoleProcess(child)
}

// ---------------------------------------------------------------- small things

/// The app's stores as the outbox views see them: its database, prefix and Redis.
async fn deliveries(app: &TestApp) -> Deliveries {
    Deliveries {
        url: database_url(app).await,
        db: app.db.clone(),
        prefix: app.prefix.clone(),
        redis: app.app_state.redis.clone(),
        provider: app.provider.clone(),
    }
}

/// The URL of the app's own database (the app keeps its configuration to itself).
async fn database_url(app: &TestApp) -> String {
    let name: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let base = Config::from_env().expect("test configuration").database_url;
    test_support::database_url_with(base.expose(), &name)
}
