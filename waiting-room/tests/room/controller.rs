//! The admission controllers ([`waiting_room::runner`]): one controller admits per
//! sale, and another takes over when it dies.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use reservations::ids::{SaleId, ShopperId};
use tokio_util::sync::CancellationToken;
use waiting_room::runner::{self, ControllerConfig, Measured, SignalSource};
use waiting_room::Queue;

use crate::Room;

/// Signals of an idle deployment: nothing measured yet (a fixed-rate sale ignores them).
struct Quiet;

impl SignalSource for Quiet {
    fn measure(&self) -> BoxFuture<'_, anyhow::Result<Measured>> {
        Box::pin(async { Ok(Measured::default()) })
    }
}

/// One process's controllers, as the app runs them: a 500 ms tick and a 3 s lease.
fn start_controllers(queue: &Queue, holder: &str) -> CancellationToken {
    let stop = CancellationToken::new();
    let config = ControllerConfig {
        tick: Duration::from_millis(500),
        lease: Duration::from_secs(3),
        holder: holder.to_owned(),
    };
    tokio::spawn(runner::run(
        queue.clone(),
        Arc::new(Quiet),
        config,
        stop.clone(),
    ));
    stop
}

async fn serving(room: &Room, sale: SaleId) -> i64 {
    room.queue.line_state(sale).await.unwrap().serving
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_controller_admits_per_sale_and_another_takes_over_when_it_dies() {
    // A fixed rate of 20 shoppers a second: two controllers admitting at once would
    // show as about 40 a second.
    let room = Room::fresh().await;
    let fixed = serde_json::json!({
        "mode": "fixed", "max_admit_per_second": 20.0, "checkout_p95_target_ms": 300,
    });
    let sale = room
        .sale_with(100000, -chrono::Duration::minutes(1), fixed)
        .await;
    let first = start_controllers(&room.queue, "first");
    let shoppers: Vec<ShopperId> = (0..600).map(|_| ShopperId::new()).collect();
    futures::stream::iter(&shoppers)
        .for_each_concurrent(64, |s| async {
            room.queue.join(*s, sale).await.unwrap();
        })
        .await;
    let second = start_controllers(&room.queue, "second");
    let _stop_second = second.drop_guard();

    let start = serving(&room, sale).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let with_two = serving(&room, sale).await - start;
    first.cancel(); // the lease holder (or not) stops; the lease expires within 3 s
    let before = serving(&room, sale).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after_takeover = serving(&room, sale).await - before;

    assert!(
        (40..=80).contains(&with_two),
        "3 s at 20/s with two processes admitted {with_two}"
    );
    assert!(
        after_takeover >= 40,
        "the survivor keeps admitting: {after_takeover} in 6 s"
    );
}
