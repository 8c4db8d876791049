//! Property test: random sequences of reserve, release, time and sweep against the real
//! Redis scripts, compared step by step with a simple model of holds. Needs the local
//! Redis (`scripts/stack up`; `REDIS_URL` overrides the address).

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use reservations::ids::{MerchantId, ReservationId, SaleId, ShopperId};
use reservations::projection::{Projection, Release, ReserveOutcome, Stripe};
use reservations::redis_conn::RedisTarget;
use reservations::sales::{Admission, Money, Sale, SaleState};

const TOTAL: i64 = 6;
const LIMIT: i64 = 3;
const TTL_MS: i64 = 60_000;
const SHOPPERS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Reserve {
        shopper: usize,
        quantity: i64,
        key: Option<u8>,
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

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..SHOPPERS, 1..=4i64, proptest::option::of(0..2u8))
            .prop_map(|(shopper, quantity, key)| Op::Reserve { shopper, quantity, key }),
        2 => (0..SHOPPERS, 0..8usize).prop_map(|(shopper, pick)| Op::Release { shopper, pick }),
        1 => (0..90i64).prop_map(|seconds| Op::Advance { seconds }),
        1 => Just(Op::Sweep),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelHold {
    owner: usize,
    quantity: i64,
    deadline: i64,
    status: &'static str,
}

/// What the scripts should do, written as plainly as possible.
#[derive(Default)]
struct Model {
    free: i64,
    now: i64,
    holds: Vec<(ReservationId, ModelHold)>,
    users: HashMap<usize, i64>,
    idem: HashMap<(usize, u8), usize>,
}

impl Model {
    fn held(&self) -> i64 {
        self.holds
            .iter()
            .filter(|(_, h)| h.status == "held")
            .map(|(_, h)| h.quantity)
            .sum()
    }

    fn reserve(
        &mut self,
        id: ReservationId,
        shopper: usize,
        quantity: i64,
        key: Option<u8>,
    ) -> ReserveOutcome {
        if let Some(key) = key {
            if let Some(&i) = self.idem.get(&(shopper, key)) {
                let (id, hold) = &self.holds[i];
                return if hold.quantity == quantity {
                    ReserveOutcome::Held {
                        id: *id,
                        stripe: 0,
                        deadline_ms: hold.deadline,
                    }
                } else {
                    ReserveOutcome::IdempotencyMismatch
                };
            }
        }
        let have = self.users.get(&shopper).copied().unwrap_or(0);
        if have + quantity > LIMIT {
            return ReserveOutcome::LimitExceeded(LIMIT);
        }
        if self.free < quantity {
            return ReserveOutcome::SoldOut;
        }
        self.free -= quantity;
        *self.users.entry(shopper).or_default() += quantity;
        let deadline = self.now + TTL_MS;
        self.holds.push((
            id,
            ModelHold {
                owner: shopper,
                quantity,
                deadline,
                status: "held",
            },
        ));
        if let Some(key) = key {
            self.idem.insert((shopper, key), self.holds.len() - 1);
        }
        ReserveOutcome::Held {
            id,
            stripe: 0,
            deadline_ms: deadline,
        }
    }

    fn end_hold(&mut self, i: usize, status: &'static str) {
        let hold = &mut self.holds[i].1;
        hold.status = status;
        self.free += hold.quantity;
        *self.users.get_mut(&hold.owner).unwrap() -= hold.quantity;
    }
}

fn sale(id: SaleId, base_ms: i64) -> Sale {
    Sale {
        id,
        merchant_id: MerchantId::new(),
        name: "model".into(),
        sku: "M".into(),
        description: String::new(),
        price: Money {
            amount_minor: 100,
            currency: "EUR".into(),
        },
        unit_count: TOTAL as i32,
        total: TOTAL as i32,
        per_user_limit: LIMIT as i32,
        hold_ttl_seconds: (TTL_MS / 1000) as i32,
        cancel_window_seconds: 900,
        starts_at: Utc.timestamp_millis_opt(base_ms - 1000).unwrap(),
        ends_at: Utc.timestamp_millis_opt(base_ms + 10 * 86_400_000).unwrap(),
        state: SaleState::Active,
        version: 1,
        admission: Admission::default(),
        access: Default::default(),
        message: None,
        created_at: Utc::now(),
        draw_beacon: None,
        variants: Vec::new(),
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    // REDIS_CLUSTER_URLS set: the same model check on a Redis Cluster.
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".into());
    let cluster = std::env::var("REDIS_CLUSTER_URLS").unwrap_or_default();
    let conn = RedisTarget::parse(&url, &cluster)
        .unwrap()
        .connect(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let projection = Projection::new(
        conn,
        format!("pt{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
    );
    let sale_id = SaleId::new();
    let mut model = Model {
        free: TOTAL,
        now: Utc::now().timestamp_millis(),
        ..Model::default()
    };
    projection
        .load(&sale(sale_id, model.now), &[], &[], &[], &[])
        .await
        .unwrap();
    let shoppers: Vec<ShopperId> = (0..SHOPPERS).map(|_| ShopperId::new()).collect();

    for op in ops {
        match op {
            Op::Reserve {
                shopper,
                quantity,
                key,
            } => {
                let id = ReservationId::new();
                let key_text = key.map(|k| format!("key-{k}"));
                let got = projection
                    .reserve(
                        sale_id,
                        model.now,
                        id,
                        shoppers[shopper],
                        quantity,
                        key_text.as_deref(),
                    )
                    .await
                    .unwrap();
                let want = model.reserve(id, shopper, quantity, key);
                prop_assert_eq!(got, want);
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
                    .expire(Stripe::first(sale_id), model.now, 2)
                    .await
                    .unwrap();
                let due: Vec<usize> = (0..model.holds.len())
                    .filter(|&i| {
                        model.holds[i].1.status == "held" && model.holds[i].1.deadline <= model.now
                    })
                    .collect();
                // A batch of 2: the oldest deadlines go first (ties by hold id, as a
                // sorted set orders equal scores), the rest wait for the next sweep.
                let mut due = due;
                due.sort_by_key(|&i| (model.holds[i].1.deadline, model.holds[i].0.to_string()));
                for &i in due.iter().take(2) {
                    model.end_hold(i, "expired");
                }
                prop_assert_eq!(got, due.len().min(2) as i64);
            }
        }
        let stock = projection.stock(sale_id).await.unwrap().unwrap();
        prop_assert_eq!(stock.available + stock.held + stock.sold, stock.total);
        prop_assert_eq!(
            (stock.available, stock.held, stock.sold, stock.total),
            (model.free, model.held(), 0, TOTAL)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn hold_scripts_behave_like_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops))?;
    }
}
