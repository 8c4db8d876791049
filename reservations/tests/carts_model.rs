//! The cart script against the real Redis: random sequences of cart reserves,
//! releases, time and sweeps over a four-variant sale, compared step by step with a
//! plain model; and thousands of concurrent carts with overlapping lines, after which
//! every unit is held at most once, every variant is conserved and no cart is partly
//! held. Needs the local Redis (`scripts/stack up`; `REDIS_URL` overrides the address).

use std::collections::{HashMap, HashSet};

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use reservations::ids::{MerchantId, ReservationId, SaleId, ShopperId, VariantId};
use reservations::projection::{Ask, Projection, Release, ReserveOutcome, Stripe};
use reservations::redis_conn::RedisTarget;
use reservations::sales::{Admission, Money, Sale, SaleState, UnitRange, Variant};

/// Units of each variant (variant k owns the next `STOCK[k]` unit numbers).
const STOCK: [i32; 4] = [5, 4, 3, 2];
/// Variant 3 has a per-shopper limit of its own.
const OWN_LIMIT: [Option<i32>; 4] = [None, None, None, Some(1)];
const LIMIT: i64 = 4;
const TTL_MS: i64 = 60_000;
const SHOPPERS: usize = 3;

fn sale(id: SaleId, base_ms: i64, stock: &[i32], limit: i64) -> Sale {
    let mut next = 1;
    let variants: Vec<Variant> = stock
        .iter()
        .enumerate()
        .map(|(k, &total)| {
            let range = UnitRange {
                first: next,
                last: next + total - 1,
            };
            next += total;
            Variant {
                id: VariantId::new(),
                ordinal: k as i32,
                sku: format!("V{k}"),
                name: format!("V{k}"),
                price: Money {
                    amount_minor: 100,
                    currency: "EUR".into(),
                },
                per_user_limit: OWN_LIMIT.get(k).copied().flatten(),
                total,
                units: vec![range],
            }
        })
        .collect();
    let units: i32 = stock.iter().sum();
    Sale {
        id,
        merchant_id: MerchantId::new(),
        name: "carts".into(),
        sku: "V0".into(),
        description: String::new(),
        price: Money {
            amount_minor: 100,
            currency: "EUR".into(),
        },
        unit_count: units,
        total: units,
        per_user_limit: limit as i32,
        hold_ttl_seconds: (TTL_MS / 1000) as i32,
        cancel_window_seconds: 900,
        starts_at: Utc.timestamp_millis_opt(base_ms - 1000).unwrap(),
        ends_at: Utc.timestamp_millis_opt(base_ms + 10 * 86_400_000).unwrap(),
        state: SaleState::Active,
        version: 1,
        admission: Admission::default(),
        created_at: Utc::now(),
        draw_beacon: None,
        access: Default::default(),
        message: None,
        variants,
    }
}

async fn projection() -> Projection {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".into());
    let cluster = std::env::var("REDIS_CLUSTER_URLS").unwrap_or_default();
    let conn = RedisTarget::parse(&url, &cluster)
        .unwrap()
        .connect(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    Projection::new(
        conn,
        format!("ct{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
    )
}

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        shopper: usize,
        lines: Vec<(u32, i64)>,
    },
    Release {
        shopper: usize,
        pick: usize,
    },
    Advance {
        seconds: i64,
    },
    Sweep,
}

/// 1–3 lines of distinct variants, 1–3 units each.
fn lines() -> impl Strategy<Value = Vec<(u32, i64)>> {
    proptest::collection::btree_map(0..4u32, 1..=3i64, 1..=3)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SHOPPERS, lines()).prop_map(|(shopper, lines)| Op::Reserve { shopper, lines }),
        2 => (0..SHOPPERS, 0..8usize).prop_map(|(shopper, pick)| Op::Release { shopper, pick }),
        1 => (0..90i64).prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Sweep),
    ]
}

#[derive(Debug, Clone)]
struct ModelHold {
    owner: usize,
    lines: Vec<(u32, i64)>,
    deadline: i64,
    status: &'static str,
}

/// The rules of `reserve_cart.lua`, written plainly: the sale's limit over the cart,
/// then each line's own limit, then every line's stock; all or none.
struct Model {
    free: [i64; 4],
    now: i64,
    holds: Vec<(ReservationId, ModelHold)>,
    users: HashMap<usize, i64>,
    users_by_variant: HashMap<(usize, u32), i64>,
}

impl Model {
    fn reserve(
        &mut self,
        id: ReservationId,
        shopper: usize,
        lines: &[(u32, i64)],
    ) -> ReserveOutcome {
        let qty: i64 = lines.iter().map(|&(_, q)| q).sum();
        if self.users.get(&shopper).copied().unwrap_or(0) + qty > LIMIT {
            return ReserveOutcome::LimitExceeded(LIMIT);
        }
        for &(v, q) in lines {
            if let Some(own) = OWN_LIMIT[v as usize] {
                let had = self
                    .users_by_variant
                    .get(&(shopper, v))
                    .copied()
                    .unwrap_or(0);
                if had + q > i64::from(own) {
                    return ReserveOutcome::VariantLimitExceeded(v, i64::from(own));
                }
            }
        }
        let short: Vec<(u32, i64)> = lines
            .iter()
            .filter(|&&(v, q)| self.free[v as usize] < q)
            .map(|&(v, _)| (v, self.free[v as usize]))
            .collect();
        if !short.is_empty() {
            return ReserveOutcome::SoldOutLines(short);
        }
        for &(v, q) in lines {
            self.free[v as usize] -= q;
            *self.users_by_variant.entry((shopper, v)).or_default() += q;
        }
        *self.users.entry(shopper).or_default() += qty;
        let deadline = self.now + TTL_MS;
        self.holds.push((
            id,
            ModelHold {
                owner: shopper,
                lines: lines.to_vec(),
                deadline,
                status: "held",
            },
        ));
        ReserveOutcome::Held {
            id,
            stripe: 0,
            deadline_ms: deadline,
        }
    }

    fn end_hold(&mut self, i: usize, status: &'static str) {
        let hold = &mut self.holds[i].1;
        hold.status = status;
        for &(v, q) in &hold.lines {
            self.free[v as usize] += q;
            *self.users_by_variant.get_mut(&(hold.owner, v)).unwrap() -= q;
            *self.users.get_mut(&hold.owner).unwrap() -= q;
        }
    }

    fn held(&self) -> [i64; 4] {
        let mut held = [0; 4];
        for (_, hold) in self.holds.iter().filter(|(_, h)| h.status == "held") {
            for &(v, q) in &hold.lines {
                held[v as usize] += q;
            }
        }
        held
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let projection = projection().await;
    let sale_id = SaleId::new();
    let now = Utc::now().timestamp_millis();
    let sale = sale(sale_id, now, &STOCK, LIMIT);
    projection.load(&sale, &[], &[], &[], &[]).await.unwrap();
    let mut model = Model {
        free: STOCK.map(i64::from),
        now,
        holds: Vec::new(),
        users: HashMap::new(),
        users_by_variant: HashMap::new(),
    };
    let shoppers: Vec<ShopperId> = (0..SHOPPERS).map(|_| ShopperId::new()).collect();
    for op in ops {
        match op {
            Op::Reserve { shopper, lines } => {
                let id = ReservationId::new();
                let ask = Ask::Cart {
                    lines: &lines,
                    variants: 4,
                };
                let got = projection
                    .reserve_ask(sale_id, model.now, id, shoppers[shopper], ask, None)
                    .await
                    .unwrap();
                prop_assert_eq!(got, model.reserve(id, shopper, &lines));
            }
            Op::Release { shopper, pick } => {
                if model.holds.is_empty() {
                    continue;
                }
                let i = pick % model.holds.len();
                let (id, hold) = model.holds[i].clone();
                let got = projection
                    .release(Stripe::first(sale_id), id, shoppers[shopper])
                    .await
                    .unwrap();
                let want = if hold.owner != shopper {
                    Release::NotFound
                } else if hold.status != "held" {
                    Release::NotHeld(hold.status.to_owned())
                } else {
                    model.end_hold(i, "released");
                    Release::Released
                };
                prop_assert_eq!(got, want);
            }
            Op::Advance { seconds } => model.now += seconds * 1000,
            Op::Sweep => {
                let (got, _, _) = projection
                    .expire(Stripe::first(sale_id), model.now, 100)
                    .await
                    .unwrap();
                let due: Vec<usize> = (0..model.holds.len())
                    .filter(|&i| {
                        model.holds[i].1.status == "held" && model.holds[i].1.deadline <= model.now
                    })
                    .collect();
                for &i in &due {
                    model.end_hold(i, "expired");
                }
                prop_assert_eq!(got, due.len() as i64);
            }
        }
        let (sum, per_variant) = projection.stock_by_variant(&sale).await.unwrap().unwrap();
        prop_assert_eq!(sum.available + sum.held + sum.sold, sum.total);
        let held = model.held();
        for k in 0..4 {
            let v = per_variant[k];
            prop_assert_eq!(
                (v.total, v.available, v.held, v.sold),
                (i64::from(STOCK[k]), model.free[k], held[k], 0),
                "variant {}",
                k
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_cart_script_behaves_like_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops))?;
    }
}

/// 5,000 concurrent carts of 1–3 lines over four variants (overlapping: most carts
/// share a variant with many others), every shopper different: afterwards every unit
/// is free or in exactly one hold, each held cart holds all of its lines with units of
/// the right variants, and every variant's counters add up.
#[tokio::test]
async fn five_thousand_concurrent_carts_hold_each_unit_once_and_never_part_of_a_cart() {
    const STOCK_BIG: [i32; 4] = [900, 700, 500, 300];
    let projection = projection().await;
    let sale_id = SaleId::new();
    let now = Utc::now().timestamp_millis();
    let sale = sale(sale_id, now, &STOCK_BIG, 100);
    projection.load(&sale, &[], &[], &[], &[]).await.unwrap();
    let carts: Vec<Vec<(u32, i64)>> = (0..5000u32)
        .map(|i| {
            let first = i % 4;
            let second = (first + 1 + (i / 4) % 3) % 4;
            match i % 3 {
                0 => vec![(first, 1)],
                1 => vec![(first, 1), (second, 2)],
                _ => vec![(second, 1), (first, 1), ((second + 1) % 4, 1)]
                    .into_iter()
                    .fold(Vec::new(), |mut acc: Vec<(u32, i64)>, l| {
                        if !acc.iter().any(|&(v, _)| v == l.0) {
                            acc.push(l);
                        }
                        acc
                    }),
            }
        })
        .collect();

    let outcomes = futures::future::join_all(carts.iter().map(|lines| {
        let projection = projection.clone();
        async move {
            let id = ReservationId::new();
            let ask = Ask::Cart { lines, variants: 4 };
            let got = projection
                .reserve_ask(sale_id, now, id, ShopperId::new(), ask, None)
                .await
                .unwrap();
            (id, lines.clone(), got)
        }
    }))
    .await;

    let mut held_lines = [0i64; 4];
    let mut seen = HashSet::new();
    let mut held_carts = 0;
    for (id, lines, outcome) in &outcomes {
        match outcome {
            ReserveOutcome::Held { .. } => {
                held_carts += 1;
                let hold = projection
                    .hold(Stripe::first(sale_id), *id)
                    .await
                    .unwrap()
                    .expect("a held cart has its record");
                let wanted: i64 = lines.iter().map(|&(_, q)| q).sum();
                assert_eq!(hold.units.len() as i64, wanted, "the whole cart is held");
                // Units are listed line by line; each belongs to its line's variant.
                let mut at = 0;
                for line in &hold.lines {
                    for &unit in &hold.units[at..at + line.quantity as usize] {
                        let owner =
                            reservations::sales::variant_of_unit(&sale.variants, unit as i32)
                                .unwrap();
                        assert_eq!(owner.ordinal as u32, line.ordinal, "unit {unit}");
                        assert!(seen.insert(unit), "unit {unit} held twice");
                    }
                    at += line.quantity as usize;
                    held_lines[line.ordinal as usize] += line.quantity;
                }
            }
            ReserveOutcome::SoldOutLines(short) => {
                assert!(!short.is_empty());
                for &(v, available) in short {
                    let asked = lines.iter().find(|&&(k, _)| k == v).unwrap().1;
                    assert!(available < asked, "a refused line had too little");
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(held_carts > 0);
    let (_, per_variant) = projection.stock_by_variant(&sale).await.unwrap().unwrap();
    for k in 0..4 {
        let v = per_variant[k];
        assert_eq!(v.held, held_lines[k], "variant {k} held");
        assert_eq!(
            v.available + v.held + v.sold,
            v.total,
            "variant {k} conserved"
        );
        assert_eq!(v.total, i64::from(STOCK_BIG[k]));
    }
    // Free units are exactly the units nobody holds.
    let keys = projection.varied_keys(Stripe::first(sale_id));
    let mut conn = projection.connection();
    for k in 0..4u32 {
        let free: Vec<i64> = redis::cmd("LRANGE")
            .arg(keys.variant_free(k))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        for unit in free {
            assert!(seen.insert(unit), "unit {unit} free and held");
        }
    }
    let all: i32 = STOCK_BIG.iter().sum();
    assert_eq!(seen.len() as i32, all, "every unit is free or held");
}
