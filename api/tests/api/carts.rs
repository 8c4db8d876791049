//! v1.1 carts: one reserve of several lines, held all or none; the answer of a refused
//! cart names its lines; per-shopper limits of the sale and of a variant; checkout of a
//! cart is one order with lines and one payment for the total.

use reqwest::{Method, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_problem, spawn_app, TestApp, TestShopper};
use crate::variants::{variant_id, variant_sale, variant_stock};

/// `POST /v1/sales/{sale}/reservations` with `{ "lines": lines }` as an admitted
/// shopper; the response.
pub async fn reserve_cart(
    app: &TestApp,
    shopper: &TestShopper,
    sale: Uuid,
    lines: &Value,
    key: Option<&str>,
) -> Response {
    let mut request = app
        .request(
            Method::POST,
            &format!("/v1/sales/{sale}/reservations"),
            Some(&shopper.token),
        )
        .header("x-admission-token", app.admission_token(shopper.id, sale))
        .json(&json!({ "lines": lines }));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

fn id(sale: &Value) -> Uuid {
    sale["id"].as_str().unwrap().parse().unwrap()
}

async fn sale_json(app: &TestApp, sale: Uuid) -> Value {
    let response = app.admin_sale(Method::GET, sale, "").send().await.unwrap();
    response.json().await.unwrap()
}

fn line(sale: &Value, k: usize, quantity: i64) -> Value {
    json!({ "variant_id": variant_id(sale, k), "quantity": quantity })
}

#[tokio::test]
async fn a_cart_is_held_whole_and_its_reservation_lists_its_lines() {
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 3, 100), ("B", 4, 200), ("C", 5, 300)], 5).await;
    let shopper = app.direct_shopper();
    let lines = json!([line(&sale, 0, 1), line(&sale, 2, 3)]);

    let response = reserve_cart(&app, &shopper, id(&sale), &lines, None).await;

    assert_eq!(response.status(), 201);
    let held: Value = response.json().await.unwrap();
    assert_eq!(held["quantity"], 4);
    assert_eq!(held["lines"], lines);
    let read = app
        .get(
            &format!(
                "/v1/reservations/{}",
                held["reservation_id"].as_str().unwrap()
            ),
            Some(&shopper.token),
        )
        .await;
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["lines"], lines);
    let after = sale_json(&app, id(&sale)).await;
    assert_eq!(
        variant_stock(&after),
        [(3, 2, 1, 0), (4, 4, 0, 0), (5, 2, 3, 0)]
    );
}

#[tokio::test]
async fn a_cart_whose_second_line_is_sold_out_holds_nothing_and_names_that_line() {
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 3, 100), ("B", 1, 200)], 5).await;
    let shopper = app.direct_shopper();
    let lines = json!([line(&sale, 0, 2), line(&sale, 1, 2)]);

    let response = reserve_cart(&app, &shopper, id(&sale), &lines, None).await;

    let problem = assert_problem(response, 409, "sold_out").await;
    assert_eq!(
        problem["lines"],
        json!([{ "variant_id": variant_id(&sale, 1), "requested": 2, "available": 1 }])
    );
    let after = sale_json(&app, id(&sale)).await;
    assert_eq!(
        variant_stock(&after),
        [(3, 3, 0, 0), (1, 1, 0, 0)],
        "nothing held: {after}"
    );
}

#[tokio::test]
async fn a_quantity_reserve_of_a_sale_with_several_variants_is_variant_required() {
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 3, 100), ("B", 1, 200)], 5).await;
    let shopper = app.direct_shopper();

    let response = app.reserve_request(&shopper, id(&sale), 1, None).await;

    assert_problem(response, 422, "variant_required").await;
}

#[tokio::test]
async fn the_sale_limit_counts_across_lines_and_a_variants_own_limit_within_it() {
    let app = spawn_app().await;
    let mut body = crate::variants::variants_body(&app, &[("A", 9, 100), ("B", 9, 200)], 4, true);
    body["variants"][1]["per_user_limit"] = json!(1);
    let sale = app.create_sale(body).await;
    let shopper = app.direct_shopper();

    let over_sale = json!([line(&sale, 0, 2), line(&sale, 1, 1)]);
    let held = reserve_cart(&app, &shopper, id(&sale), &over_sale, None).await;
    assert_eq!(held.status(), 201, "{}", held.text().await.unwrap());
    let more = reserve_cart(&app, &shopper, id(&sale), &json!([line(&sale, 0, 1)]), None).await;
    assert_eq!(more.status(), 201);
    let past_sale =
        reserve_cart(&app, &shopper, id(&sale), &json!([line(&sale, 0, 1)]), None).await;
    let problem = assert_problem(past_sale, 409, "per_user_limit_exceeded").await;
    assert_eq!(problem["limit"]["scope"], "sale");

    let other = app.direct_shopper();
    let past_variant = json!([line(&sale, 1, 2)]);
    let response = reserve_cart(&app, &other, id(&sale), &past_variant, None).await;
    let problem = assert_problem(response, 409, "per_user_limit_exceeded").await;
    assert_eq!(problem["limit"]["scope"], "variant");
    assert_eq!(problem["limit"]["variant_id"], json!(variant_id(&sale, 1)));
    assert_eq!(problem["limit"]["per_user_limit"], 1);
}

#[tokio::test]
async fn a_cart_with_a_repeated_or_foreign_variant_or_no_lines_is_refused() {
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 3, 100), ("B", 1, 200)], 5).await;
    let shopper = app.direct_shopper();
    let foreign = json!([{ "variant_id": Uuid::new_v4(), "quantity": 1 }]);
    for lines in [
        json!([line(&sale, 0, 1), line(&sale, 0, 1)]),
        foreign,
        json!([]),
    ] {
        let response = reserve_cart(&app, &shopper, id(&sale), &lines, None).await;
        assert_problem(response, 422, "invalid_field").await;
    }
    let zero = reserve_cart(&app, &shopper, id(&sale), &json!([line(&sale, 0, 0)]), None).await;
    assert_problem(zero, 422, "invalid_quantity").await;
}

#[tokio::test]
async fn a_cart_retried_with_its_key_replays_and_other_lines_are_refused() {
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 3, 100), ("B", 4, 200)], 5).await;
    let shopper = app.direct_shopper();
    let lines = json!([line(&sale, 0, 1), line(&sale, 1, 1)]);

    let first = reserve_cart(&app, &shopper, id(&sale), &lines, Some("cart-1")).await;
    let again = reserve_cart(&app, &shopper, id(&sale), &lines, Some("cart-1")).await;
    let other = json!([line(&sale, 0, 1), line(&sale, 1, 2)]);
    let changed = reserve_cart(&app, &shopper, id(&sale), &other, Some("cart-1")).await;

    assert_eq!(first.status(), 201);
    assert_eq!(again.status(), 200);
    let (first, again): (Value, Value) = (first.json().await.unwrap(), again.json().await.unwrap());
    assert_eq!(first["reservation_id"], again["reservation_id"]);
    assert_problem(changed, 422, "idempotency_key_reused").await;
    let after = sale_json(&app, id(&sale)).await;
    assert_eq!(
        variant_stock(&after),
        [(3, 2, 1, 0), (4, 3, 1, 0)],
        "held once"
    );
}

#[tokio::test]
async fn releasing_a_cart_frees_every_line_at_once() {
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 3, 100), ("B", 4, 200)], 5).await;
    let shopper = app.direct_shopper();
    let lines = json!([line(&sale, 0, 2), line(&sale, 1, 3)]);
    let held: Value = reserve_cart(&app, &shopper, id(&sale), &lines, None)
        .await
        .json()
        .await
        .unwrap();

    let released = app
        .release(
            &shopper,
            held["reservation_id"].as_str().unwrap().parse().unwrap(),
        )
        .await;

    assert_eq!(released.status(), 204);
    let after = sale_json(&app, id(&sale)).await;
    assert_eq!(variant_stock(&after), [(3, 3, 0, 0), (4, 4, 0, 0)]);
}

#[tokio::test]
async fn checkout_of_a_cart_is_one_order_with_its_lines_and_one_payment_of_the_total() {
    let app = spawn_app().await;
    let sale = variant_sale(&app, &[("A", 3, 1000), ("B", 4, 2500)], 5).await;
    let shopper = app.direct_shopper();
    let lines = json!([line(&sale, 1, 2), line(&sale, 0, 1)]);
    let held: Value = reserve_cart(&app, &shopper, id(&sale), &lines, None)
        .await
        .json()
        .await
        .unwrap();
    let reservation: Uuid = held["reservation_id"].as_str().unwrap().parse().unwrap();

    let response = app
        .checkout(&shopper, reservation, Some("pay-1"), "tok_ok")
        .await;

    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["quantity"], 3);
    assert_eq!(
        order["amount"],
        json!({ "amount_minor": 6000, "currency": "EUR" })
    );
    assert_eq!(
        order["lines"],
        json!([
            { "variant_id": variant_id(&sale, 0), "sku": "A", "quantity": 1,
              "unit_price": { "amount_minor": 1000, "currency": "EUR" },
              "amount": { "amount_minor": 1000, "currency": "EUR" } },
            { "variant_id": variant_id(&sale, 1), "sku": "B", "quantity": 2,
              "unit_price": { "amount_minor": 2500, "currency": "EUR" },
              "amount": { "amount_minor": 5000, "currency": "EUR" } }
        ])
    );
    let read = app
        .get(
            &format!("/v1/orders/{}", order["order_id"].as_str().unwrap()),
            Some(&shopper.token),
        )
        .await;
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["lines"], order["lines"]);
    let after = sale_json(&app, id(&sale)).await;
    assert_eq!(variant_stock(&after), [(3, 2, 0, 1), (4, 2, 0, 2)]);
}

#[tokio::test]
async fn concurrent_carts_with_overlapping_lines_never_sell_a_variant_past_its_stock() {
    let app = spawn_app().await;
    let sale = variant_sale(
        &app,
        &[
            ("A", 20, 100),
            ("B", 15, 100),
            ("C", 10, 100),
            ("D", 5, 100),
        ],
        100,
    )
    .await;
    let carts: Vec<Value> = (0..400)
        .map(|i| {
            let a = i % 4;
            let b = (i / 4 + 1 + a) % 4;
            if a == b {
                json!([line(&sale, a, 1)])
            } else {
                json!([line(&sale, a, 1), line(&sale, b, 1 + (i % 2) as i64)])
            }
        })
        .collect();

    let held: Vec<Option<Value>> = futures::future::join_all(carts.iter().map(|lines| async {
        let shopper = app.direct_shopper();
        // A shed request (503) is retried under the same key: its answer, whenever it
        // comes, is the one cart it stands for.
        let key = Uuid::new_v4().to_string();
        for _ in 0..20 {
            let response = reserve_cart(&app, &shopper, id(&sale), lines, Some(&key)).await;
            match response.status().as_u16() {
                200 | 201 => return Some(lines.clone()),
                409 => return None,
                503 => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
                other => panic!("unexpected {other}"),
            }
        }
        panic!("shed twenty times")
    }))
    .await;

    // Whatever was held is exactly the sum of whole carts: no partial cart, and no
    // variant past its stock.
    let mut per_variant = [0i64; 4];
    for lines in held.iter().flatten() {
        for l in lines.as_array().unwrap() {
            let k = (0..4)
                .find(|&k| l["variant_id"] == json!(variant_id(&sale, k)))
                .unwrap();
            per_variant[k] += l["quantity"].as_i64().unwrap();
        }
    }
    let after = sale_json(&app, id(&sale)).await;
    let stock = variant_stock(&after);
    for k in 0..4 {
        let (total, available, held, sold) = stock[k];
        assert_eq!(held, per_variant[k], "variant {k}");
        assert_eq!(available + held + sold, total, "variant {k} conserved");
        assert!(held <= total);
    }
}

#[tokio::test]
async fn with_four_stripes_each_cart_lives_in_one_stripe_and_the_last_units_still_sell() {
    // 8 units of each variant over 4 stripes: every stripe has 2 of A and 2 of B.
    let app = crate::helpers::spawn_app_with(|c| c.stock_stripes = 4).await;
    let sale = variant_sale(&app, &[("A", 8, 100), ("B", 8, 100)], 10).await;
    let lines = json!([line(&sale, 0, 2), line(&sale, 1, 2)]);

    // Four carts of 2 + 2 fill the four stripes, wherever their shoppers live.
    let mut held = Vec::new();
    for _ in 0..4 {
        let shopper = app.direct_shopper();
        let response = reserve_cart(&app, &shopper, id(&sale), &lines, None).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        held.push((
            shopper,
            body["reservation_id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap(),
        ));
    }
    let fifth = reserve_cart(&app, &app.direct_shopper(), id(&sale), &lines, None).await;
    let problem = assert_problem(fifth, 409, "sold_out").await;
    assert_eq!(problem["lines"].as_array().unwrap().len(), 2);

    let after = sale_json(&app, id(&sale)).await;
    assert_eq!(variant_stock(&after), [(8, 0, 8, 0), (8, 0, 8, 0)]);
    let (shopper, reservation) = &held[3];
    let paid = app
        .checkout(shopper, *reservation, Some("k"), "tok_ok")
        .await;
    assert_eq!(paid.status(), 201);
    let after = sale_json(&app, id(&sale)).await;
    assert_eq!(variant_stock(&after), [(8, 0, 6, 2), (8, 0, 6, 2)]);
}
