//! v1.1 variants: a sale of several variants, each with its own SKU, price and stock;
//! merchants add variants before the start and change one variant's stock at any time;
//! every stock read lists the variants; a Redis loss rebuilds every variant.

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_invalid_field, assert_problem, sale_body_with, spawn_app, TestApp};

/// A create body with one variant per `(sku, stock, price minor)` instead of the
/// top-level sku/price/stock; live now when `live`.
pub fn variants_body(
    app: &TestApp,
    variants: &[(&str, i64, i64)],
    limit: i64,
    live: bool,
) -> Value {
    let now = app.clock_now();
    let (starts, ends) = if live {
        (
            now - chrono::Duration::minutes(1),
            now + chrono::Duration::hours(2),
        )
    } else {
        (
            now + chrono::Duration::hours(1),
            now + chrono::Duration::hours(3),
        )
    };
    let mut body = sale_body_with(json!({
        "per_user_limit": limit, "starts_at": starts, "ends_at": ends,
        "variants": variants.iter().map(|(sku, total, price)| json!({
            "sku": sku, "name": format!("Size {sku}"),
            "price": { "amount_minor": price, "currency": "EUR" },
            "stock": { "total": total },
        })).collect::<Vec<_>>(),
    }));
    let object = body.as_object_mut().unwrap();
    for field in ["sku", "price", "stock"] {
        object.remove(field);
    }
    body
}

/// Creates a live sale of these variants; its JSON.
pub async fn variant_sale(app: &TestApp, variants: &[(&str, i64, i64)], limit: i64) -> Value {
    app.create_sale(variants_body(app, variants, limit, true))
        .await
}

/// The id of variant `k` of a sale's JSON.
pub fn variant_id(sale: &Value, k: usize) -> Uuid {
    sale["variants"][k]["variant_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn id(sale: &Value) -> Uuid {
    sale["id"].as_str().unwrap().parse().unwrap()
}

/// `(total, available, held, sold)` of each variant of a sale's JSON.
pub fn variant_stock(sale: &Value) -> Vec<(i64, i64, i64, i64)> {
    sale["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let s = &v["stock"];
            let n = |f: &str| s[f].as_i64().unwrap();
            (n("total"), n("available"), n("held"), n("sold"))
        })
        .collect()
}

async fn admin_sale_json(app: &TestApp, sale: Uuid) -> Value {
    let response = app.admin_sale(Method::GET, sale, "").send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_sale_created_with_variants_lists_each_with_its_own_stock() {
    let app = spawn_app().await;

    let sale = app
        .create_sale(variants_body(
            &app,
            &[("EU-41", 5, 12900), ("EU-42", 7, 13900)],
            2,
            false,
        ))
        .await;

    let variants = sale["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    assert_eq!(variants[1]["sku"], "EU-42");
    assert_eq!(variants[1]["name"], "Size EU-42");
    assert_eq!(variants[1]["price"]["amount_minor"], 13900);
    assert_eq!(variants[0]["per_user_limit"], Value::Null);
    assert_eq!(variant_stock(&sale), [(5, 5, 0, 0), (7, 7, 0, 0)]);
    // The top-level fields describe the first variant and the whole sale.
    assert_eq!(sale["sku"], "EU-41");
    assert_eq!(sale["price"]["amount_minor"], 12900);
    assert_eq!(sale["stock"]["total"], 12);
    assert_ne!(
        variant_id(&sale, 0),
        id(&sale),
        "listed variants have ids of their own"
    );
}

#[tokio::test]
async fn a_v1_sale_answers_without_variants() {
    let app = spawn_app().await;

    let sale = app.create_sale(sale_body_with(json!({}))).await;

    assert!(sale.get("variants").is_none(), "{sale}");
}

#[tokio::test]
async fn the_variant_rules_name_their_field() {
    let app = spawn_app().await;
    let body = |variants: &[(&str, i64, i64)]| variants_body(&app, variants, 1, false);
    let mut mixed = body(&[("A", 1, 100), ("B", 1, 100)]);
    mixed["variants"][1]["price"]["currency"] = json!("USD");
    let mut disagreeing = body(&[("A", 1, 100)]);
    disagreeing["sku"] = json!("B");
    let cases = [
        ("variants.sku", body(&[("A", 1, 100), ("A", 1, 100)])),
        ("variants.price.currency", mixed),
        (
            "variants.stock.total",
            body(&[("A", 600_000, 1), ("B", 400_001, 1)]),
        ),
        ("variants", body(&[])),
        ("sku", disagreeing),
    ];
    for (field, body) in cases {
        let response = app
            .merchant(Method::POST, "/v1/admin/sales")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_invalid_field(response, field).await;
    }
}

#[tokio::test]
async fn a_variant_added_before_the_start_is_listed_and_after_the_start_is_locked() {
    let app = spawn_app().await;
    let scheduled = app
        .create_sale(variants_body(&app, &[("A", 3, 100)], 1, false))
        .await;
    let variant = json!({ "sku": "B", "price": { "amount_minor": 200, "currency": "EUR" },
                          "stock": { "total": 4 }, "per_user_limit": 1 });

    let response = app
        .admin_sale(Method::POST, id(&scheduled), "/variants")
        .json(&variant)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 201);
    let sale: Value = response.json().await.unwrap();
    assert_eq!(variant_stock(&sale), [(3, 3, 0, 0), (4, 4, 0, 0)]);
    assert_eq!(sale["variants"][1]["per_user_limit"], 1);
    assert_eq!(sale["stock"]["total"], 7);

    let live = variant_sale(&app, &[("A", 3, 100)], 1).await;
    let response = app
        .admin_sale(Method::POST, id(&live), "/variants")
        .json(&variant)
        .send()
        .await
        .unwrap();
    assert_problem(response, 409, "sale_locked").await;
}

#[tokio::test]
async fn a_variants_stock_change_moves_only_that_variant() {
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 3, 100), ("B", 4, 200)], 2).await;
    let path = |k: usize| format!("/variants/{}/stock", variant_id(&sale, k));

    let added = app
        .admin_sale(Method::POST, id(&sale), &path(1))
        .json(&json!({ "delta": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let retired = app
        .admin_sale(Method::POST, id(&sale), &path(0))
        .json(&json!({ "delta": -2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(retired.status(), 200);
    let after: Value = retired.json().await.unwrap();
    assert_eq!(variant_stock(&after), [(1, 1, 0, 0), (9, 9, 0, 0)]);
    assert_eq!(after["stock"]["total"], 10);

    let too_many = app
        .admin_sale(Method::POST, id(&sale), &path(0))
        .json(&json!({ "delta": -2 }))
        .send()
        .await
        .unwrap();
    assert_problem(too_many, 409, "insufficient_free_stock").await;
    let v1_route = app.change_stock(id(&sale), 1).await;
    assert_problem(v1_route, 422, "variant_required").await;
    let unknown = app
        .admin_sale(
            Method::POST,
            id(&sale),
            &format!("/variants/{}/stock", Uuid::new_v4()),
        )
        .json(&json!({ "delta": 1 }))
        .send()
        .await
        .unwrap();
    assert_problem(unknown, 404, "variant_not_found").await;
}

#[tokio::test]
async fn stats_and_the_public_page_list_each_variants_stock() {
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 3, 100), ("B", 4, 200)], 2).await;

    let stats = app
        .admin_sale(Method::GET, id(&sale), "/stats")
        .send()
        .await
        .unwrap();
    let stats: Value = stats.json().await.unwrap();
    let public: Value = app
        .get(&format!("/v1/sales/{}", id(&sale)), None)
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(variant_stock(&stats), [(3, 3, 0, 0), (4, 4, 0, 0)]);
    let public_variants = public["variants"].as_array().unwrap();
    assert_eq!(
        public_variants[1]["stock"],
        json!({ "total": 4, "available": 4 })
    );
    assert_eq!(public_variants[1]["sku"], "B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_wiped_mid_run_every_variant_is_rebuilt_once_from_postgres() {
    // Arrange: three variants; a cart of A and C bought (in Postgres), a hold of B that
    // lives only in Redis.
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 40, 100), ("B", 40, 200), ("C", 20, 300)], 5).await;
    let (a, b, c) = (
        variant_id(&sale, 0),
        variant_id(&sale, 1),
        variant_id(&sale, 2),
    );
    let buyer = app.direct_shopper();
    let lines = json!([{ "variant_id": a, "quantity": 2 }, { "variant_id": c, "quantity": 1 }]);
    let held = crate::carts::reserve_cart(&app, &buyer, id(&sale), &lines, None).await;
    assert_eq!(held.status(), 201);
    let held: Value = held.json().await.unwrap();
    let reservation: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();
    app.place_order(&buyer, reservation, "k1", "tok_ok")
        .await
        .expect("an order");
    let lost = json!([{ "variant_id": b, "quantity": 3 }]);
    let lost =
        crate::carts::reserve_cart(&app, &app.direct_shopper(), id(&sale), &lost, None).await;
    assert_eq!(lost.status(), 201);
    assert_eq!(app.rebuilds(id(&sale)).await, 0);

    // Act: Redis loses everything; then, all at once, 30 carts of A and B, 10 carts of
    // B and C (the lines overlap on B, which they empty) and 20 stock reads, each of
    // which finds the state missing.
    app.wipe_redis().await;
    let sale_id = id(&sale);
    let ab = json!([{ "variant_id": a, "quantity": 1 }, { "variant_id": b, "quantity": 1 }]);
    let bc = json!([{ "variant_id": b, "quantity": 1 }, { "variant_id": c, "quantity": 1 }]);
    let carts = (0..40).map(|k| {
        let lines = if k % 4 == 3 { bc.clone() } else { ab.clone() };
        let app = &app;
        async move {
            let shopper = app.direct_shopper();
            crate::carts::reserve_cart(app, &shopper, sale_id, &lines, None)
                .await
                .status()
                .as_u16()
        }
    });
    let reads = (0..20).map(|_| async {
        app.admin_sale(Method::GET, sale_id, "")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    let (carts, reads) = tokio::join!(
        futures::future::join_all(carts),
        futures::future::join_all(reads)
    );

    // Assert: the state was written once, for every variant at once (one script per
    // stripe writes all of them): sold stays sold, the hold that lived only in Redis is
    // gone, every cart was served from the one rebuilt state.
    assert!(carts.iter().all(|&s| s == 201), "{carts:?}");
    assert!(reads.iter().all(|&s| s == 200), "{reads:?}");
    assert_eq!(
        app.rebuilds(id(&sale)).await,
        1,
        "the sale's state was rebuilt more than once"
    );
    let after = admin_sale_json(&app, id(&sale)).await;
    assert_eq!(
        variant_stock(&after),
        [(40, 8, 30, 2), (40, 0, 40, 0), (20, 9, 10, 1)]
    );
    // Each variant's free list: its own units, each once, none sold or held.
    let sold: Vec<i32> = sqlx::query_scalar("select unit_no from order_units where sale_id = $1")
        .bind(id(&sale))
        .fetch_all(&app.db)
        .await
        .unwrap();
    for (k, units, available) in [(0, 1..=40, 8), (1, 41..=80, 0), (2, 81..=100, 9)] {
        let mut free = variant_free(&app, id(&sale), k, 3).await;
        let listed = free.len();
        free.sort_unstable();
        free.dedup();
        assert_eq!(
            (listed, free.len()),
            (available, available),
            "variant {k}: {free:?}"
        );
        assert!(
            free.iter().all(|u| units.contains(u) && !sold.contains(u)),
            "variant {k}: {free:?}"
        );
    }
}

#[tokio::test]
async fn the_top_level_sku_and_price_of_a_sale_with_several_variants_are_not_editable() {
    let app = spawn_app().await;
    let sale = app
        .create_sale(variants_body(
            &app,
            &[("A", 3, 100), ("B", 4, 200)],
            1,
            false,
        ))
        .await;

    let sku = app.patch_sale(id(&sale), json!({ "sku": "C" }), None).await;
    let price = app
        .patch_sale(
            id(&sale),
            json!({ "price": { "amount_minor": 1, "currency": "EUR" } }),
            None,
        )
        .await;
    let name = app
        .patch_sale(id(&sale), json!({ "name": "Renamed" }), None)
        .await;

    assert_invalid_field(sku, "sku").await;
    assert_invalid_field(price, "price").await;
    assert_eq!(name.status(), 200);
    let after: Value = name.json().await.unwrap();
    assert_eq!(
        after["variants"][0]["name"], "Size A",
        "a variant keeps its own name"
    );
}

/// The free list of variant `k` of a (one-stripe) sale, read from Redis.
async fn variant_free(app: &TestApp, sale: Uuid, k: u32, variants: u32) -> Vec<i32> {
    let keys = app
        .app_state
        .sales
        .hot_state_for_tests()
        .stripe_keys(reservations::projection::Stripe::first(
            reservations::ids::SaleId(sale),
        ))
        .with_variants(variants);
    redis::cmd("LRANGE")
        .arg(keys.variant_free(k))
        .arg(0)
        .arg(-1)
        .query_async(&mut app.app_state.redis.clone())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciling_a_sale_of_variants_puts_each_unit_back_in_its_own_variant() {
    // Arrange: as after a Redis rollback: a cart holding a B unit Postgres sold to
    // another order, an order of B Redis never saw, and a free A unit filed under B.
    let app = spawn_app().await;
    let mut body = variants_body(&app, &[("A", 4, 100), ("B", 3, 200)], 5, true);
    body["variants"][1]["per_user_limit"] = json!(2);
    let sale = app.create_sale(body).await;
    let sale_id = id(&sale);
    let holder = app.direct_shopper();
    let cart = json!([
        { "variant_id": variant_id(&sale, 0), "quantity": 1 },
        { "variant_id": variant_id(&sale, 1), "quantity": 1 }
    ]);
    let held: Value = crate::carts::reserve_cart(&app, &holder, sale_id, &cart, None)
        .await
        .json()
        .await
        .unwrap();
    let hold_id: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();
    let projection = app.app_state.sales.hot_state_for_tests();
    let record = projection
        .hold(
            reservations::projection::Stripe::first(reservations::ids::SaleId(sale_id)),
            reservations::ids::ReservationId(hold_id),
        )
        .await
        .unwrap()
        .expect("the cart's record");
    let held_b = record.units[1] as i32;
    crate::reservations::insert_order(&app, sale_id, Uuid::new_v4(), &[held_b])
        .await
        .unwrap();
    let lost_buyer = app.direct_shopper();
    let free_b = variant_free(&app, sale_id, 1, 2).await;
    crate::reservations::insert_order(&app, sale_id, lost_buyer.id, &[free_b[0]])
        .await
        .unwrap();
    let mut conn = app.app_state.redis.clone();
    let keys = projection
        .stripe_keys(reservations::projection::Stripe::first(
            reservations::ids::SaleId(sale_id),
        ))
        .with_variants(2);
    let misfiled: i32 = redis::cmd("RPOP")
        .arg(keys.variant_free(0))
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("RPUSH")
        .arg(keys.variant_free(1))
        .arg(misfiled)
        .query_async(&mut conn)
        .await
        .unwrap();

    // Act
    let reconciled = app
        .app_state
        .sales
        .reconcile(reservations::ids::SaleId(sale_id), "test-incarnation")
        .await
        .unwrap();

    // Assert: the contradicted cart ended whole (its A unit is free again), each list
    // holds only its own variant's units, the counters agree with Postgres, and the
    // buyer Redis never saw counts against B's own limit.
    assert!(reconciled);
    let after = admin_sale_json(&app, sale_id).await;
    assert_eq!(variant_stock(&after), [(4, 4, 0, 0), (3, 1, 0, 2)]);
    let mut free_a = variant_free(&app, sale_id, 0, 2).await;
    free_a.sort();
    assert_eq!(free_a, [1, 2, 3, 4]);
    let free_b = variant_free(&app, sale_id, 1, 2).await;
    assert!(free_b.iter().all(|u| (5..=7).contains(u)), "{free_b:?}");
    let over = json!([{ "variant_id": variant_id(&sale, 1), "quantity": 2 }]);
    let over = crate::carts::reserve_cart(&app, &lost_buyer, sale_id, &over, None).await;
    let problem = assert_problem(over, 409, "per_user_limit_exceeded").await;
    assert_eq!(problem["limit"]["scope"], "variant");
}
