//! Back-pressure through real HTTP: a flooding shopper gets 429 without hurting
//! others, and under overload the buy path keeps its capacity while others get 503.

use std::time::Duration;

use reqwest::Method;

use crate::helpers::{assert_problem, spawn_app_with, TestShopper};

#[tokio::test]
async fn a_shopper_polling_in_a_loop_gets_429_while_another_is_served() {
    let app = spawn_app_with(|c| c.queue_rate = (1, 3)).await;
    let sale = app.live_sale(10, 1).await;
    let (flooder, neighbour) = (app.direct_shopper(), app.direct_shopper());
    let poll = |who: &TestShopper| {
        app.request(
            Method::GET,
            &format!("/v1/sales/{sale}/queue/me"),
            Some(&who.token),
        )
        .send()
    };
    app.request(
        Method::POST,
        &format!("/v1/sales/{sale}/queue"),
        Some(&flooder.token),
    )
    .send()
    .await
    .unwrap();
    app.request(
        Method::POST,
        &format!("/v1/sales/{sale}/queue"),
        Some(&neighbour.token),
    )
    .send()
    .await
    .unwrap();

    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(poll(&flooder).await.unwrap());
    }

    let limited = statuses
        .into_iter()
        .find(|r| r.status() == 429)
        .expect("the flood is limited");
    assert!(limited.headers().contains_key("retry-after"));
    assert_problem(limited, 429, "rate_limited").await;
    assert_eq!(
        poll(&neighbour).await.unwrap().status(),
        200,
        "others are unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_overload_other_traffic_is_shed_first_and_the_buy_path_still_serves() {
    // Eight slots: other traffic may fill 60% (4), the buy path all of them.
    let app = spawn_app_with(|c| c.max_in_flight = 8).await;
    let sale = app.live_sale(20, 1).await;
    let mut holds = Vec::new();
    for _ in 0..5 {
        let shopper = app.direct_shopper();
        let hold = app.hold(&shopper, sale, 1).await;
        holds.push((shopper, hold));
    }
    // Five slow checkouts (the simulator's tok_slow takes 1.5 s) occupy five slots.
    let slow = futures::future::join_all(
        holds
            .iter()
            .map(|(shopper, id)| app.checkout(shopper, *id, Some("k"), "tok_slow")),
    );
    let probe = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let listing = app
            .merchant(Method::GET, "/v1/admin/sales")
            .send()
            .await
            .unwrap();
        let buyer = app.direct_shopper();
        let reserve = app.reserve(&buyer, sale, 1, None).await;
        (listing, reserve)
    };

    let (checkouts, (listing, reserve)) = tokio::join!(slow, probe);

    assert!(listing.headers().contains_key("retry-after"));
    assert_problem(listing, 503, "overloaded").await;
    assert_eq!(reserve.status(), 201, "the buy path keeps its capacity");
    assert!(checkouts.into_iter().all(|r| r.status() == 201));
}
