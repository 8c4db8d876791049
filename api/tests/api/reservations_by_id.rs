//! A reservation id says where its hold lives (sale ordinal and stripe), so a reserve is
//! one Redis round trip and nothing is stranded between two writes: a reserve whose
//! reply is lost leaves a hold reachable by its id, or none; a hold Redis lost answers
//! `410 reservation_expired`; an id that names no sale, or no stripe of it, is not found;
//! reserve, read and release of a hold each send Redis one command about it.

use std::sync::{Arc, Mutex};

use flashsale::config::Secret;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::helpers::{
    answer, assert_problem, single_redis, spawn_app, spawn_app_with, TestApp, TestShopper,
};
use crate::reservations::{assert_stock_conserved, holds_by_stripe};
use reservations::ids::{HoldAddress, ReservationId, SaleId, SaleOrdinal, ShopperId};
use reservations::projection::home_stripe;

/// Runs a reserve as the server does (the id chosen first, then the script) and drops
/// its answer, as when the process dies or the connection breaks before the reply
/// reaches the shopper. Returns the id the server chose, which the shopper never saw.
async fn reserve_losing_the_reply(
    app: &TestApp,
    shopper: &TestShopper,
    sale: Uuid,
    key: &str,
) -> ReservationId {
    let projection = app.app_state.sales.hot_state_for_tests();
    let id = projection
        .new_reservation_id(SaleId(sale), ShopperId(shopper.id))
        .await
        .unwrap();
    let _lost = projection
        .reserve(
            SaleId(sale),
            app.clock_now().timestamp_millis(),
            id,
            ShopperId(shopper.id),
            1,
            Some(key),
        )
        .await;
    id
}

/// The reservation's problem answers to GET, DELETE and checkout, in that order.
async fn assert_every_route_answers(
    app: &TestApp,
    shopper: &TestShopper,
    id: Uuid,
    status: u16,
    code: &str,
) {
    let path = format!("/v1/reservations/{id}");
    assert_problem(app.get(&path, Some(&shopper.token)).await, status, code).await;
    assert_problem(app.release(shopper, id).await, status, code).await;
    let checkout = app.checkout(shopper, id, Some("k-lost"), "tok_ok").await;
    assert_problem(checkout, status, code).await;
}

#[tokio::test]
async fn a_reserve_whose_reply_is_lost_leaves_a_hold_reachable_by_its_id() {
    // Arrange: four stripes, and a shopper at home in stripe 2, so the id must name
    // the stripe (stripe 0 would be found by accident).
    let app = spawn_app_with(|c| c.stock_stripes = 4).await;
    let sale = app.live_sale(8, 2).await;
    let shopper = loop {
        let shopper = app.shopper().await;
        if home_stripe(ShopperId(shopper.id), 4) == 2 {
            break shopper;
        }
    };

    // Act: two reserves whose replies are lost.
    let bought = reserve_losing_the_reply(&app, &shopper, sale, "k-1").await;
    let released = reserve_losing_the_reply(&app, &shopper, sale, "k-2").await;

    // Assert: each hold is in the stripe its id names, under that id.
    for id in [bought, released] {
        let address = id.address().expect("an addressed id");
        assert_eq!(address.stripe, 2);
        let in_stripes = holds_by_stripe(&app, sale).await;
        assert!(in_stripes[2].contains_key(&id.to_string()), "hold {id}");
    }
    // The shopper's retry with the same key meets it; GET, checkout and DELETE by id
    // reach it.
    let (status, retried) = app
        .reserve_with_key(&shopper, sale, 1, "k-1")
        .await
        .unwrap();
    assert_eq!((status.as_u16(), retried.reservation_id), (200, bought.0));
    assert_eq!(
        app.reservation(&shopper, bought.0).await.unwrap().status,
        "held"
    );
    let order = app
        .checkout(&shopper, bought.0, Some("pay"), "tok_ok")
        .await;
    assert_eq!(order.status(), 201);
    assert_eq!(app.release(&shopper, released.0).await.status(), 204);
    let stock = assert_stock_conserved(&app, sale).await;
    assert_eq!((stock.available, stock.held, stock.sold), (7, 0, 1));
}

#[tokio::test]
async fn a_reserve_lost_before_its_script_ran_never_held_anything() {
    // Arrange: the server chose an id, and the request died before Redis ran the
    // script (nothing was held).
    let app = spawn_app().await;
    let sale = app.live_sale(4, 2).await;
    let shopper = app.shopper().await;
    let projection = app.app_state.sales.hot_state_for_tests();
    let never = projection
        .new_reservation_id(SaleId(sale), ShopperId(shopper.id))
        .await
        .unwrap();

    // Assert: its sale exists, its hold does not: an expired hold, on every route, and
    // every unit is still free; a retry makes a new hold.
    assert_every_route_answers(&app, &shopper, never.0, 410, "reservation_expired").await;
    assert_eq!(assert_stock_conserved(&app, sale).await.available, 4);
    let (status, _) = app.reserve_with_key(&shopper, sale, 1, "k").await.unwrap();
    assert_eq!(status.as_u16(), 201);
}

#[tokio::test]
async fn a_hold_redis_lost_answers_410_on_read_release_and_checkout() {
    // Arrange: a hold, then Redis loses it (its field of the holds hash is gone, as
    // after a rollback to a copy from before the reserve).
    let app = spawn_app().await;
    let sale = app.live_sale(4, 2).await;
    let shopper = app.shopper().await;
    let id = app.hold(&shopper, sale, 1).await;
    let keys = app.app_state.sales.hot_state_for_tests().keys(SaleId(sale));
    let removed: i64 = redis::cmd("HDEL")
        .arg(keys.holds())
        .arg(id.to_string())
        .query_async(&mut app.app_state.redis.clone())
        .await
        .unwrap();
    assert_eq!(removed, 1);

    // Act / Assert: not "not found" — the shopper learns the hold is gone.
    assert_every_route_answers(&app, &shopper, id, 410, "reservation_expired").await;
    assert_eq!(app.payments_with_status("authorized").await, 0);
}

#[tokio::test]
async fn an_id_that_names_no_sale_or_no_stripe_of_it_is_404() {
    let app = spawn_app().await;
    let sale = app.live_sale(4, 2).await;
    let shopper = app.shopper().await;
    let held = ReservationId(app.hold(&shopper, sale, 1).await);
    let address = held.address().expect("an addressed id");

    let no_sale = ReservationId::mint(SaleOrdinal::new(SaleOrdinal::MAX as i64).unwrap(), 0);
    let no_stripe = held.in_stripe(5);
    assert_eq!(
        no_stripe.address(),
        Some(HoldAddress {
            sale: address.sale,
            stripe: 5
        })
    );
    for id in [no_sale, no_stripe, ReservationId::new()] {
        assert_every_route_answers(&app, &shopper, id.0, 404, "reservation_not_found").await;
    }
    // The hold itself is untouched.
    let path = format!("/v1/reservations/{held}");
    let read = app.request(Method::GET, &path, Some(&shopper.token));
    assert_eq!(read.send().await.unwrap().status(), 200);
}

/// Every command the app sent Redis, each as its arguments, in order.
type CommandLog = Arc<Mutex<Vec<Vec<String>>>>;

/// One RESP command (an array of bulk strings, as every client sends) at the start of
/// `buf`, and its length; `None` until the whole command has arrived.
fn take_command(buf: &[u8]) -> Option<(Vec<String>, usize)> {
    fn line(buf: &[u8], at: usize, tag: u8) -> Option<(usize, usize)> {
        if *buf.get(at)? != tag {
            panic!("not a RESP array of bulk strings: {:?}", &buf[at..]);
        }
        let end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
        Some((n, end + 2))
    }
    let (count, mut at) = line(buf, 0, b'*')?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, start) = line(buf, at, b'$')?;
        let end = start + len;
        if buf.len() < end + 2 {
            return None;
        }
        args.push(String::from_utf8_lossy(&buf[start..end]).into_owned());
        at = end + 2;
    }
    Some((args, at))
}

/// The app, with its Redis reached through a proxy that logs every command it sends.
async fn spawn_app_logging_redis_commands() -> (TestApp, CommandLog) {
    let (url, upstream) = single_redis();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxied = url.replacen(&upstream, &listener.local_addr().unwrap().to_string(), 1);
    let log = CommandLog::default();
    let commands = log.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                return;
            };
            let (mut from_app, mut to_app) = inbound.into_split();
            let (mut from_redis, mut to_redis) = outbound.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut from_redis, &mut to_app).await });
            let commands = commands.clone();
            tokio::spawn(async move {
                let (mut pending, mut chunk) = (Vec::new(), [0u8; 16384]);
                while let Ok(n @ 1..) = from_app.read(&mut chunk).await {
                    pending.extend_from_slice(&chunk[..n]);
                    while let Some((args, used)) = take_command(&pending) {
                        commands.lock().unwrap().push(args);
                        pending.drain(..used);
                    }
                    if to_redis.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    // A single Redis, also when the suite runs on a cluster (a cluster client would
    // learn the nodes' own addresses and bypass the proxy).
    let app = spawn_app_with(|c| {
        c.redis_url = Secret::new(proxied);
        c.redis_cluster_urls = Secret::new(String::new());
    })
    .await;
    (app, log)
}

/// The commands logged since `from` that name `id`.
fn commands_naming(log: &CommandLog, from: usize, id: Uuid) -> Vec<Vec<String>> {
    let id = id.to_string();
    log.lock().unwrap()[from..]
        .iter()
        .filter(|args| args.iter().any(|a| a.contains(&id)))
        .cloned()
        .collect()
}

#[tokio::test]
async fn reserve_read_and_release_each_send_redis_one_command_about_the_hold() {
    // Arrange: one reserve first, so the scripts are loaded and the sale's ordinal is
    // known to the process (both happen once, not per reserve).
    let (app, log) = spawn_app_logging_redis_commands().await;
    let sale = app.live_sale(10, 2).await;
    let shopper = app.shopper().await;
    app.hold(&shopper, sale, 1).await;

    // Act / Assert: the script alone; no index key written or read.
    let before = log.lock().unwrap().len();
    let response = app.reserve_request(&shopper, sale, 1, None).await;
    assert_eq!(response.status(), 201);
    let id = answer::<crate::helpers::Reservation>(response)
        .await
        .unwrap()
        .reservation_id;
    let sent = commands_naming(&log, before, id);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0][0], "EVALSHA");

    let before = log.lock().unwrap().len();
    assert_eq!(app.reservation(&shopper, id).await.unwrap().status, "held");
    let sent = commands_naming(&log, before, id);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0][0], "HGET");

    let before = log.lock().unwrap().len();
    assert_eq!(app.release(&shopper, id).await.status(), 204);
    let sent = commands_naming(&log, before, id);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0][0], "EVALSHA");
    assert!(
        !log.lock()
            .unwrap()
            .iter()
            .flatten()
            .any(|a| a.contains(":resv:")),
        "no reservation index key is ever touched"
    );
}
