//! The post-event report (API.md v1.1, "after the purchase"): its counts are what the
//! shoppers did and what `flashsale verify` counts; the orders CSV streams a 20,000-order
//! sale without holding it in memory; another merchant's sale is not found.

use std::time::Duration;

use chrono::{DateTime, Utc};
use flashsale::verify::{self, Options};
use reqwest::Method;
use reservations::ids::SaleId;
use reservations::projection::Projection;
use serde_json::{json, Value};
use test_support::eventually_within;
use uuid::Uuid;

use crate::carts::reserve_cart;
use crate::helpers::{
    answer, assert_keys, assert_problem, sale_body_with, sale_id, spawn_app, Order, TestApp,
    TestShopper,
};
use crate::variants::{variant_id, variant_sale};

async fn report(app: &TestApp, sale: Uuid) -> Value {
    let response = app
        .merchant(Method::GET, &format!("/v1/admin/sales/{sale}/report"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Joins the line of `sale` and waits until the controller admits the shopper.
async fn join_and_wait(app: &TestApp, shopper: &TestShopper, sale: Uuid) {
    let (status, ticket) = app.join_queue(shopper, sale).await.expect("joins");
    assert_eq!(status, 201);
    assert!(ticket.estimated_wait_seconds.is_some(), "{ticket:?}");
    let admitted = eventually_within(Duration::from_secs(15), || async {
        app.my_ticket(shopper, sale).await.unwrap().state == "admitted"
    })
    .await;
    assert!(admitted, "the controller admits the shopper");
}

async fn buy(app: &TestApp, shopper: &TestShopper, sale: Uuid, quantity: i64) -> Order {
    let held = app
        .reserve(shopper, sale, quantity)
        .await
        .expect("free units");
    let key = Uuid::new_v4().to_string();
    answer(
        app.checkout(shopper, held.reservation_id, Some(&key), "tok_ok")
            .await,
    )
    .await
    .expect("an order")
}

fn vm_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_counts_are_what_shoppers_did_and_agree_with_verify() {
    // Arrange: four shoppers join a live sale of 4 units and are admitted; three buy
    // (2 + 1 + 1: sold out), one never reserves; one order is then cancelled (by its
    // shopper, through the API: its unit goes back on sale).
    let app = spawn_app().await;
    let sale = app.live_sale(4, 2).await;
    let shoppers: Vec<TestShopper> = (0..4).map(|_| app.direct_shopper()).collect();
    for shopper in &shoppers {
        join_and_wait(&app, shopper, sale).await;
    }
    let alices = buy(&app, &shoppers[0], sale, 2).await;
    let bobs = buy(&app, &shoppers[1], sale, 1).await;
    let carols = buy(&app, &shoppers[2], sale, 1).await;
    let sold_out_report = report(&app, sale).await;
    let cancelled = app
        .request(
            Method::POST,
            &format!("/v1/orders/{}/cancel", bobs.order_id),
            Some(&shoppers[1].token),
        )
        .header("idempotency-key", format!("cancel-{}", bobs.order_id))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);

    // Act
    let body = report(&app, sale).await;

    // Assert: the contract's shape, and each figure what was done.
    assert_keys(
        &body,
        &[
            "joined",
            "prequeued",
            "admitted",
            "no_shows",
            "reserved",
            "orders",
            "cancelled",
            "refunded",
            "units_sold",
            "variants",
            "revenue",
            "sold_out_at",
            "admission_wait_seconds",
        ],
    );
    let figures: Vec<i64> = [
        "joined",
        "prequeued",
        "admitted",
        "no_shows",
        "reserved",
        "orders",
        "cancelled",
        "refunded",
        "units_sold",
    ]
    .iter()
    .map(|k| body[k].as_i64().unwrap_or_else(|| panic!("{k}: {body}")))
    .collect();
    assert_eq!(figures, [4, 0, 4, 1, 3, 3, 1, 0, 3], "{body}");
    let revenue = alices.amount.amount_minor + carols.amount.amount_minor;
    assert_eq!(body["revenue"]["amount_minor"], revenue);
    assert_eq!(body["revenue"]["currency"], "EUR");
    // Sold out with the last order, until the cancel put a unit back on sale.
    assert_eq!(body["sold_out_at"], Value::Null, "{body}");
    let body_sold_out = &sold_out_report;
    let sold_out: DateTime<Utc> = body_sold_out["sold_out_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let last: DateTime<Utc> = sqlx::query_scalar("select created_at from orders where id = $1")
        .bind(carols.order_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(sold_out, last, "sold out with the last order");
    let variants = body["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 1);
    assert_eq!(variants[0]["variant_id"], sale.to_string());
    assert_eq!(variants[0]["units_sold"], 3);
    assert_eq!(variants[0]["sold_out_at"], Value::Null);
    let before = body_sold_out["variants"].as_array().unwrap();
    assert_eq!(before[0]["sold_out_at"], body_sold_out["sold_out_at"]);
    let waits = &body["admission_wait_seconds"];
    assert_keys(
        waits,
        &["estimated_p50", "actual_p50", "estimated_p95", "actual_p95"],
    );
    for k in ["estimated_p50", "actual_p50", "estimated_p95", "actual_p95"] {
        let seconds = waits[k].as_f64().unwrap_or_else(|| panic!("{k}: {waits}"));
        assert!((0.0..60.0).contains(&seconds), "{k}: {waits}");
    }

    // Assert: `flashsale verify` counts the same orders and units.
    let projection = Projection::new(app.app_state.redis.clone(), app.prefix.clone())
        .with_stripes(app.config.stock_stripes);
    let options = Options {
        drain_timeout: Duration::from_millis(200),
        poll_interval: Duration::from_millis(100),
    };
    let verified = verify::verify(
        &app.db,
        &projection,
        app.provider.gateway.as_ref(),
        SaleId(sale),
        options,
    )
    .await
    .expect("the checker reads both stores");
    // verify counts the orders that stand (confirmed); the report counts every order
    // placed and, apart, those cancelled or refunded since.
    let standing = body["orders"].as_i64().unwrap()
        - body["cancelled"].as_i64().unwrap()
        - body["refunded"].as_i64().unwrap();
    assert_eq!(
        (standing, body["units_sold"].as_i64()),
        (verified.orders, Some(verified.units_sold)),
    );

    // Assert: the CSV has each order's line with its status.
    let csv = app
        .merchant(Method::GET, &format!("/v1/admin/sales/{sale}/orders.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let line_of = |order: Uuid| {
        csv.lines()
            .find(|l| l.starts_with(&order.to_string()))
            .unwrap_or_else(|| panic!("{order} in {csv}"))
            .to_owned()
    };
    assert!(line_of(bobs.order_id).contains(",cancelled,"), "{csv}");
    let alices_line = line_of(alices.order_id);
    assert!(alices_line.contains(",confirmed,"), "{csv}");
    assert!(
        alices_line.ends_with(",TR-LE-42,2,12900,25800,EUR"),
        "{csv}"
    );

    // Arrange: the line's Redis keys and the reserve step's set are gone (purged or
    // lost) after the report was read once.
    app.wipe_redis().await;

    // Act
    let after = report(&app, sale).await;

    // Assert: the figures kept in Postgres answer the same.
    for k in [
        "joined",
        "admitted",
        "no_shows",
        "reserved",
        "orders",
        "units_sold",
    ] {
        assert_eq!(after[k], body[k], "{k}: {after}");
    }
    assert_eq!(
        after["admission_wait_seconds"],
        body["admission_wait_seconds"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_csv_of_a_20000_order_sale_streams_without_holding_it_in_memory() {
    // Arrange: a sale of 20,000 units, each sold in its own order (written with SQL).
    let app = spawn_app().await;
    let sale = app.live_sale(20_000, 2).await;
    sqlx::query(
        "insert into orders (id, sale_id, shopper_id, reservation_id, quantity, amount_minor, \
                             currency, payment_auth_id, created_at) \
         select md5($1::text || g)::uuid, $1, gen_random_uuid(), gen_random_uuid(), 1, \
                v.price_minor, s.currency, 'bulk', now() + g * interval '1 millisecond' \
         from generate_series(1, 20000) g, sales s, sale_variants v \
         where s.id = $1 and v.id = $1",
    )
    .bind(sale)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "insert into order_units (sale_id, unit_no, order_id) \
         select $1, g, md5($1::text || g)::uuid from generate_series(1, 20000) g",
    )
    .bind(sale)
    .execute(&app.db)
    .await
    .unwrap();
    report(&app, sale).await; // the routes, pools and statements warmed up

    // Act: download, counting the bytes and lines as they come, keeping none.
    let before_kib = vm_rss_kib();
    let mut peak_kib = before_kib;
    let mut response = app
        .merchant(Method::GET, &format!("/v1/admin/sales/{sale}/orders.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let (mut bytes, mut lines, mut chunks) = (0usize, 0usize, 0usize);
    let mut first_line = String::new();
    let mut tail = String::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        if first_line.is_empty() {
            let text = String::from_utf8_lossy(&chunk);
            first_line = text.lines().next().unwrap_or_default().to_owned();
        }
        bytes += chunk.len();
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunks += 1;
        tail = String::from_utf8_lossy(&chunk[chunk.len().saturating_sub(300)..]).into_owned();
        peak_kib = peak_kib.max(vm_rss_kib());
    }
    let growth_kib = peak_kib - before_kib;
    println!(
        "orders.csv: {bytes} bytes in {chunks} chunks, {lines} lines; VmRSS {before_kib} kB \
         before, {peak_kib} kB at peak (+{growth_kib} kB)"
    );

    // Assert: every order line, the contract's type, streamed in pieces, and the
    // process grew by far less than the file.
    assert!(content_type.starts_with("text/csv"), "{content_type}");
    assert_eq!(
        first_line,
        "order_id,created_at,status,shopper_id,reservation_id,variant_id,sku,quantity,\
         unit_price_minor,amount_minor,currency"
    );
    assert_eq!(lines, 20_001, "a header and one line per order line");
    assert!(chunks > 10, "streamed in pieces, not one body: {chunks}");
    let last = tail.trim_end().lines().last().unwrap().to_owned();
    let last_order: Uuid = sqlx::query_scalar(
        "select id from orders where sale_id = $1 order by created_at desc, id desc limit 1",
    )
    .bind(sale)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        last.starts_with(&last_order.to_string()),
        "oldest first: {last}"
    );
    assert!(
        last.ends_with(&format!(",{sale},TR-LE-42,1,12900,12900,EUR")),
        "{last}"
    );
    assert!(
        growth_kib * 1024 < (bytes as i64) / 2,
        "VmRSS grew {growth_kib} kB for a {bytes}-byte CSV"
    );
}

#[tokio::test]
async fn before_the_start_the_report_so_far_counts_the_pre_queue_and_no_waits() {
    // Arrange: two shoppers join a sale that starts in five minutes.
    let app = spawn_app().await;
    let now = app.clock_now();
    let created = app
        .create_sale(sale_body_with(json!({
            "stock": { "total": 5 },
            "starts_at": now + chrono::Duration::minutes(5),
            "ends_at": now + chrono::Duration::hours(1),
        })))
        .await;
    let sale = sale_id(&created);
    for _ in 0..2 {
        let (status, ticket) = app.join_queue(&app.direct_shopper(), sale).await.unwrap();
        assert_eq!((status.as_u16(), ticket.state.as_str()), (201, "prequeue"));
    }

    // Act
    let body = report(&app, sale).await;

    // Assert: joined and pre-queued, nobody admitted yet, nothing told or waited.
    for (k, v) in [
        ("joined", 2),
        ("prequeued", 2),
        ("admitted", 0),
        ("no_shows", 0),
        ("orders", 0),
    ] {
        assert_eq!(body[k], v, "{k}: {body}");
    }
    assert_eq!(body["revenue"]["amount_minor"], 0);
    assert!(body["sold_out_at"].is_null());
    let waits = body["admission_wait_seconds"].as_object().unwrap();
    assert!(waits.values().all(Value::is_null), "{waits:?}");
}

#[tokio::test]
async fn a_cart_is_one_order_of_two_csv_lines_and_each_variant_sells_out_on_its_own() {
    // Arrange: variants A (1 unit) and B (3 units); one cart of one of each.
    let app = spawn_app().await;
    let created = variant_sale(&app, &[("A", 1, 100), ("B", 3, 200)], 5).await;
    let sale = sale_id(&created);
    let shopper = app.direct_shopper();
    let lines = json!([
        { "variant_id": variant_id(&created, 0), "quantity": 1 },
        { "variant_id": variant_id(&created, 1), "quantity": 1 },
    ]);
    let held: Value = reserve_cart(&app, &shopper, sale, &lines, None)
        .await
        .json()
        .await
        .unwrap();
    let reservation: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();
    let key = Uuid::new_v4().to_string();
    let order: Order = answer(
        app.checkout(&shopper, reservation, Some(&key), "tok_ok")
            .await,
    )
    .await
    .expect("an order");

    // Act
    let body = report(&app, sale).await;
    let csv = app
        .merchant(Method::GET, &format!("/v1/admin/sales/{sale}/orders.csv"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Assert: A sold out with the order, B did not, so the sale did not.
    let at: DateTime<Utc> = sqlx::query_scalar("select created_at from orders where id = $1")
        .bind(order.order_id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let variants = body["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2, "{body}");
    assert_eq!(variants[0]["units_sold"], 1);
    let a_sold_out: DateTime<Utc> = variants[0]["sold_out_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(a_sold_out, at);
    assert_eq!(variants[1]["units_sold"], 1);
    assert!(variants[1]["sold_out_at"].is_null(), "{body}");
    assert!(body["sold_out_at"].is_null(), "{body}");
    assert_eq!(
        (body["orders"].as_i64(), body["units_sold"].as_i64()),
        (Some(1), Some(2))
    );
    assert_eq!(body["revenue"]["amount_minor"], 300);
    // One line per order line, in variant order.
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(
        rows.iter()
            .all(|r| r.starts_with(&order.order_id.to_string())),
        "{csv}"
    );
    assert!(rows[0].ends_with(",A,1,100,100,EUR"), "{csv}");
    assert!(rows[1].ends_with(",B,1,200,200,EUR"), "{csv}");
}

#[tokio::test]
async fn another_merchants_sale_has_no_report_and_no_csv() {
    let app = spawn_app().await;
    let sale = app.live_sale(5, 1).await;
    let stranger = app.other_merchant_token();
    for suffix in ["report", "orders.csv"] {
        let path = format!("/v1/admin/sales/{sale}/{suffix}");
        assert_problem(app.get(&path, Some(&stranger)).await, 404, "sale_not_found").await;
        let missing = format!("/v1/admin/sales/{}/{suffix}", Uuid::new_v4());
        let response = app.merchant(Method::GET, &missing).send().await.unwrap();
        assert_problem(response, 404, "sale_not_found").await;
    }
}
