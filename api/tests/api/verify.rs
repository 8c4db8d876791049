//! The invariant checker (`flashsale verify`): it passes on a sale the real system sold
//! through the API with the relay and the workers running, and it fails — naming the
//! offender — once the state is corrupted behind the system's back.

use std::time::Duration;

use flashsale::verify::{self, Options, Report};
use outbox_relay::mailer::SimulatedMailer;
use outbox_relay::relay::{self, RelayConfig};
use outbox_relay::worker::{self, WorkerConfig};
use reservations::ids::SaleId;
use reservations::projection::Projection;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{answer, spawn_app, spawn_app_with, Order, TestApp, TestShopper};

/// Reserves `quantity` units and checks them out with tok_ok; returns the order id.
pub(crate) async fn buy(app: &TestApp, shopper: &TestShopper, sale: Uuid, quantity: i64) -> Uuid {
    let held = app
        .reserve(shopper, sale, quantity)
        .await
        .expect("units are free");
    let key = Uuid::new_v4().to_string();
    let response = app
        .checkout(shopper, held.reservation_id, Some(&key), "tok_ok")
        .await;
    assert_eq!(response.status(), 201);
    let order: Order = answer(response).await.expect("an order");
    order.order_id
}

/// The relay and the event workers of `app`'s deployment, in this process.
pub(crate) struct Pipeline {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pipeline {
    pub(crate) async fn start(app: &TestApp) -> Pipeline {
        let pool = PgPoolOptions::new()
            .max_connections(6)
            .connect(app.config.database_url.expose())
            .await
            .unwrap();
        let redis = flashsale::startup::redis_target(&app.config).unwrap();
        let stop = CancellationToken::new();
        let mut relay_config = RelayConfig::new(app.prefix.clone());
        relay_config.poll_interval = Duration::from_millis(200);
        let mut worker_config = WorkerConfig::new(app.prefix.clone());
        worker_config.block = Duration::from_millis(500);
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
                std::sync::Arc::new(SimulatedMailer::new()),
                worker_config,
                stop.clone(),
            )),
        ];
        Pipeline { stop, tasks }
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("stops on shutdown")
                .expect("did not panic");
        }
    }
}

pub(crate) async fn check(app: &TestApp, sale: Uuid, drain: Duration) -> Report {
    let projection = Projection::new(app.app_state.redis.clone(), app.prefix.clone())
        .with_stripes(app.config.stock_stripes);
    let options = Options {
        drain_timeout: drain,
        poll_interval: Duration::from_millis(100),
    };
    verify::verify(
        &app.db,
        &projection,
        app.provider.gateway.as_ref(),
        SaleId(sale),
        options,
    )
    .await
    .expect("the checker reads both stores")
}

/// The offenders one check of `report` names, joined by spaces.
fn offenders(report: &Report, name: &str) -> String {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
        .offenders
        .join(" ")
}

fn failed(report: &Report, name: &str) -> bool {
    report.failures().any(|c| c.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_passes_a_sale_sold_through_the_api_and_fails_once_an_order_is_forged() {
    // Arrange: two shoppers buy 3 of 10 units, a third keeps a hold; events flow.
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let (alice, bob, carol) = (
        app.shopper().await,
        app.shopper().await,
        app.shopper().await,
    );
    let pipeline = Pipeline::start(&app).await;
    let alices_order = buy(&app, &alice, sale, 2).await;
    buy(&app, &bob, sale, 1).await;
    assert_eq!(
        app.reserve_request(&carol, sale, 1, None).await.status(),
        201
    );

    // Act
    let clean = check(&app, sale, Duration::from_secs(30)).await;

    // Assert: drained, every check holds, the figures are the sale's.
    assert!(clean.passed(), "{}", clean.render());
    assert!(clean.drained);
    assert_eq!((clean.orders, clean.units_sold), (2, 3));
    assert_eq!((clean.oversold, clean.lost), (0, 0));
    let stock = clean.redis.expect("Redis has the sale");
    assert_eq!((stock.available, stock.held, stock.sold), (6, 1, 3));

    // Arrange: a duplicate-ish order of Alice's written behind the system's back — a
    // free unit sold in Postgres only, no outbox row, no payment.
    pipeline.stop().await;
    let forged = Uuid::new_v4();
    sqlx::query(
        "insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, currency, payment_auth_id) \
         select $1, sale_id, shopper_id, $2, 1, 12900, currency, 'forged' from orders where id = $3",
    )
    .bind(forged)
    .bind(Uuid::new_v4())
    .bind(alices_order)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "insert into order_units (sale_id, unit_no, order_id) \
         select $1, min(g), $2 from generate_series(1, 10) g \
         where g not in (select unit_no from order_units where sale_id = $1)",
    )
    .bind(sale)
    .bind(forged)
    .execute(&app.db)
    .await
    .unwrap();

    // Act
    let corrupt = check(&app, sale, Duration::from_secs(1)).await;

    // Assert: it fails, and each broken promise names the forged order or its owner.
    assert!(!corrupt.passed(), "{}", corrupt.render());
    let offenders = |name: &str| offenders(&corrupt, name);
    assert!(offenders("one_event_per_order").contains(&forged.to_string()));
    assert!(offenders("orders_paid").contains(&forged.to_string()));
    assert!(offenders("confirmations_sent").contains(&forged.to_string()));
    assert!(offenders("per_user_limit_respected").contains(&alice.id.to_string()));
    assert!(failed(&corrupt, "redis_sold_matches_postgres"));
    assert!(failed(&corrupt, "ledger_matches_orders"));
    assert!(
        !failed(&corrupt, "no_unit_sold_twice"),
        "the forged unit was free"
    );
    assert_eq!(corrupt.lost, 1);
    let text = corrupt.render();
    assert!(text.contains(&forged.to_string()), "{text}");
    assert!(text.trim_end().starts_with("flashsale verify") && text.contains("FAIL:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_covers_every_stripe_and_names_a_unit_found_in_the_wrong_one() {
    // Arrange: a sale striped four ways; shoppers buy and hold in several stripes.
    let app = spawn_app_with(|c| c.stock_stripes = 4).await;
    let sale = app.live_sale(12, 2).await;
    let pipeline = Pipeline::start(&app).await;
    for _ in 0..4 {
        buy(&app, &app.direct_shopper(), sale, 1).await;
    }
    for _ in 0..3 {
        assert_eq!(
            app.reserve_request(&app.direct_shopper(), sale, 1, None)
                .await
                .status(),
            201
        );
    }
    let clean = check(&app, sale, Duration::from_secs(30)).await;
    pipeline.stop().await;
    assert!(clean.passed(), "{}", clean.render());
    let stock = clean.redis.expect("Redis has every stripe");
    assert_eq!((stock.available, stock.held, stock.sold), (5, 3, 4));

    // Act: a free unit is moved to the next stripe's free list behind the system's
    // back. The summed counters still add up.
    let keys = app
        .app_state
        .sales
        .hot_state_for_tests()
        .all_stripe_keys(SaleId(sale));
    let mut redis = app.app_state.redis.clone();
    let mut moved = None;
    for (from, to) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        let unit: Option<i64> = redis::cmd("LPOP")
            .arg(keys[from].free())
            .query_async(&mut redis)
            .await
            .unwrap();
        if let Some(unit) = unit {
            let _: i64 = redis::cmd("RPUSH")
                .arg(keys[to].free())
                .arg(unit)
                .query_async(&mut redis)
                .await
                .unwrap();
            moved = Some((unit, to));
            break;
        }
    }
    let (moved, to) = moved.expect("5 units are free somewhere");
    let corrupt = check(&app, sale, Duration::from_secs(1)).await;

    // Assert: the unit is named; the sum alone would not have seen it.
    assert!(!failed(&corrupt, "redis_stock_conserved"));
    assert!(
        failed(&corrupt, "units_in_one_place"),
        "{}",
        corrupt.render()
    );
    let check = corrupt
        .checks
        .iter()
        .find(|c| c.name == "units_in_one_place")
        .unwrap();
    assert_eq!(
        check.offenders,
        vec![format!("unit {moved} (free in stripe {to})")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_fails_a_payment_attempt_left_in_doubt_and_a_reservation_authorized_twice() {
    // Arrange: one shopper buys through the API while the pipeline runs: clean.
    let app = spawn_app().await;
    let sale = app.live_sale(10, 2).await;
    let pipeline = Pipeline::start(&app).await;
    buy(&app, &app.shopper().await, sale, 1).await;
    let clean = check(&app, sale, Duration::from_secs(30)).await;
    assert!(clean.passed(), "{}", clean.render());
    pipeline.stop().await;

    // Arrange: behind the system's back, a reservation with two live authorizations,
    // one of them an attempt nobody settled for a minute (and the completer will not
    // look at it for an hour).
    let reservation = Uuid::new_v4();
    let shopper = Uuid::new_v4();
    let (stuck, second) = (Uuid::new_v4(), Uuid::new_v4());
    for (attempt, state) in [(stuck, "void_pending"), (second, "authorizing")] {
        sqlx::query(
            "insert into payment_attempts (id, reservation_id, shopper_id, state, next_check_at, updated_at) \
             values ($1, $2, $3, $4, now() + interval '1 hour', now() - interval '1 minute')",
        )
        .bind(attempt)
        .bind(reservation)
        .bind(shopper)
        .bind(state)
        .execute(&app.db)
        .await
        .unwrap();
        app.provider.authorize(attempt, 12_900).await;
    }

    // Act: the attempts keep the checker waiting (work in doubt) until its bound.
    let corrupt = check(&app, sale, Duration::from_secs(1)).await;

    // Assert
    assert!(!corrupt.drained, "attempts in doubt are work still moving");
    let offenders = |name: &str| offenders(&corrupt, name);
    assert!(offenders("payment_attempts_settled").contains(&stuck.to_string()));
    assert!(offenders("one_live_authorization_per_reservation").contains(&reservation.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_passes_a_sale_of_variants_sold_in_carts_and_fails_a_unit_under_another_variant(
) {
    // Arrange: one cart of two variants bought, another held; events flow.
    let app = spawn_app().await;
    let sale = crate::variants::variant_sale(&app, &[("A", 4, 100), ("B", 3, 200)], 5).await;
    let sale_id: Uuid = sale["id"].as_str().unwrap().parse().unwrap();
    let (variant_a, variant_b) = (
        crate::variants::variant_id(&sale, 0),
        crate::variants::variant_id(&sale, 1),
    );
    let pipeline = Pipeline::start(&app).await;
    let (buyer, holder) = (app.direct_shopper(), app.direct_shopper());
    let cart = serde_json::json!([
        { "variant_id": variant_a, "quantity": 2 }, { "variant_id": variant_b, "quantity": 1 }
    ]);
    let held = crate::carts::reserve_cart(&app, &buyer, sale_id, &cart, None).await;
    let held: serde_json::Value = held.json().await.unwrap();
    let reservation: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();
    let key = Uuid::new_v4().to_string();
    let paid = app
        .checkout(&buyer, reservation, Some(&key), "tok_ok")
        .await;
    assert_eq!(paid.status(), 201);
    let other = serde_json::json!([{ "variant_id": variant_b, "quantity": 1 }]);
    let kept = crate::carts::reserve_cart(&app, &holder, sale_id, &other, None).await;
    assert_eq!(kept.status(), 201);

    // Act
    let clean = check(&app, sale_id, Duration::from_secs(30)).await;

    // Assert: every check holds, per variant too, and each variant's figures are its own.
    assert!(clean.passed(), "{}", clean.render());
    assert_eq!((clean.orders, clean.units_sold), (1, 3));
    assert_eq!(variant_figures(&clean), [(4, 2, 0), (3, 1, 0)]);

    // A free unit of B filed under A: the per-variant checks see it.
    let projection = Projection::new(app.app_state.redis.clone(), app.prefix.clone());
    let keys = projection
        .stripe_keys(reservations::projection::Stripe::first(SaleId(sale_id)))
        .with_variants(2);
    let mut conn = app.app_state.redis.clone();
    let unit: i64 = redis::cmd("RPOP")
        .arg(keys.variant_free(1))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("RPUSH")
        .arg(keys.variant_free(0))
        .arg(unit)
        .query_async(&mut conn)
        .await
        .unwrap();
    let corrupt = check(&app, sale_id, Duration::from_secs(30)).await;
    assert!(
        failed(&corrupt, "free_units_in_their_variant"),
        "{}",
        corrupt.render()
    );
    assert!(
        failed(&corrupt, "variant_stock_conserved"),
        "{}",
        corrupt.render()
    );

    // The unit put back where it belongs; then B's free unit retired, then an order forged over B's unsold units: B (now 2 units)
    // is oversold by one, A is not.
    let _: i64 = redis::cmd("RPOP")
        .arg(keys.variant_free(0))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("RPUSH")
        .arg(keys.variant_free(1))
        .arg(unit)
        .query_async(&mut conn)
        .await
        .unwrap();
    let retired = app
        .admin_sale(
            reqwest::Method::POST,
            sale_id,
            &format!("/variants/{variant_b}/stock"),
        )
        .json(&serde_json::json!({ "delta": -1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(retired.status(), 200);
    let sold: Vec<i32> = sqlx::query_scalar("select unit_no from order_units where sale_id = $1")
        .bind(sale_id)
        .fetch_all(&app.db)
        .await
        .unwrap();
    let b_unsold: Vec<i32> = (5..=7).filter(|u| !sold.contains(u)).collect();
    crate::reservations::insert_order(&app, sale_id, Uuid::new_v4(), &b_unsold)
        .await
        .unwrap();
    let oversold = check(&app, sale_id, Duration::from_secs(30)).await;
    assert_eq!(variant_figures(&oversold), [(4, 2, 0), (2, 3, 1)]);
    assert!(oversold
        .render()
        .contains("variant B: total 2 · units sold 3 · oversold 1"));
    pipeline.stop().await;
}

/// Each variant's (total, units sold, oversold) in a report.
fn variant_figures(report: &Report) -> Vec<(i64, i64, i64)> {
    report
        .variants
        .iter()
        .map(|v| (v.total, v.units_sold, v.oversold))
        .collect()
}
