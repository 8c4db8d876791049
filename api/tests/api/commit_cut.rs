//! A connection cut at the order transaction's COMMIT (issue #14): whether the commit
//! landed or not, the order and the payment agree. A proxy in front of Postgres cuts
//! the checkout's connection just before or just after the server ran the COMMIT.

use crate::helpers::{spawn_app_behind_postgres_proxy, CommitCut};

/// A statement only the order transaction runs: the cut is meant for its COMMIT, not
/// for the relay's or another task's.
const ORDER_TRANSACTION: &str = "insert into orders";

#[tokio::test]
async fn a_connection_cut_after_commit_landed_keeps_the_order_and_its_payment() {
    let (app, proxy) = spawn_app_behind_postgres_proxy().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;

    proxy.arm(CommitCut::After, ORDER_TRANSACTION);
    let first = app
        .checkout(&shopper, reservation, Some("k"), "tok_ok")
        .await;

    assert!(proxy.fired(), "the checkout's COMMIT was cut");
    let status = first.status().as_u16();
    assert!(
        status == 201 || status == 503,
        "the shopper hears the order or a retryable 503, got {status}"
    );
    let order = app
        .place_order(&shopper, reservation, "k", "tok_ok")
        .await
        .expect("a retry with the same key answers the order");
    assert_eq!(order.reservation_id, reservation);
    assert_eq!(app.orders_for(reservation).await, 1, "exactly one order");
    assert_eq!(
        app.payments_with_status("voided").await,
        0,
        "the committed order's payment is not voided"
    );
    assert_eq!(
        app.payments_with_status("authorized").await + app.payments_with_status("captured").await,
        1,
        "its payment stays authorized (or is captured)"
    );
    let view = app.reservation(&shopper, reservation).await.unwrap();
    assert_eq!(view.status, "checked_out");
}

#[tokio::test]
async fn a_connection_cut_before_commit_landed_leaves_no_order_and_voids_the_payment() {
    let (app, proxy) = spawn_app_behind_postgres_proxy().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    let reservation = app.hold(&shopper, sale, 1).await;

    proxy.arm(CommitCut::Before, ORDER_TRANSACTION);
    let first = app
        .checkout(&shopper, reservation, Some("k"), "tok_ok")
        .await;

    assert!(proxy.fired(), "the checkout's COMMIT was cut");
    assert_eq!(first.status(), 503, "nothing committed: a retryable 503");
    assert_eq!(app.orders_for(reservation).await, 0, "no order");
    assert_eq!(
        app.payments_with_status("voided").await,
        1,
        "the payment was voided"
    );
    assert_eq!(app.payments_with_status("authorized").await, 0);
    let view = app.reservation(&shopper, reservation).await.unwrap();
    assert_eq!(view.status, "held", "the shopper may pay again");

    let order = app
        .place_order(&shopper, reservation, "k", "tok_ok")
        .await
        .expect("a retry with the same key places the order");
    assert_eq!(order.reservation_id, reservation);
    assert_eq!(app.orders_for(reservation).await, 1, "exactly one order");
    assert_eq!(
        app.payments_with_status("authorized").await + app.payments_with_status("captured").await,
        1,
        "only the retry's payment is live"
    );
}
