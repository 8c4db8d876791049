//! A payment provider of the test's own: the simulator (crate `payment-simulator`)
//! served on a loopback port from the test's process, with the adapter flashsale uses
//! to reach it. Each test starts its own, so its ledger holds that test's payments only
//! and outlives any app or binary the test restarts.

use std::sync::Arc;

use payment_simulator::{Latency, Settings, Simulator};
use reservations::ids::OrderId;
use reservations::payment::{PaymentGateway, PaymentRef, ProviderConfig, StripePayments};
use reservations::sales::Money;
use tokio_util::sync::CancellationToken;

/// A simulator running in the test's process, and the adapter to it.
pub struct TestProvider {
    /// The simulator: settings and ledger, for arranging faults and reading what
    /// happened.
    pub simulator: Arc<Simulator>,
    /// Its base URL (`FLASHSALE_PAYMENT_URL` of an app or binary the test starts).
    pub url: String,
    /// The adapter, unguarded.
    pub gateway: Arc<StripePayments>,
    stop: CancellationToken,
}

impl TestProvider {
    /// A simulator that answers at once and never fails: tests that are not about
    /// payment latency.
    pub async fn instant() -> TestProvider {
        TestProvider::start(Settings {
            latency_ms: Latency { p50: 0, p99: 0 },
            ..Settings::default()
        })
        .await
    }

    /// A simulator with `settings`, on a free loopback port.
    pub async fn start(settings: Settings) -> TestProvider {
        let simulator = Simulator::new(payment_simulator::DEFAULT_SECRET_KEY, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(payment_simulator::serve(
            listener,
            simulator.clone(),
            async move { stopped.cancelled().await },
        ));
        let gateway = Arc::new(StripePayments::new(ProviderConfig {
            base_url: url.clone(),
            secret_key: payment_simulator::DEFAULT_SECRET_KEY.into(),
        }));
        TestProvider {
            simulator,
            url,
            gateway,
            stop,
        }
    }

    /// Authorizes `amount_minor` EUR for `order` (its attempt id), as checkout does.
    pub async fn authorize(&self, order: uuid::Uuid, amount_minor: i64) -> PaymentRef {
        let amount = Money {
            amount_minor,
            currency: "EUR".into(),
        };
        self.gateway
            .authorize(OrderId(order), &amount, "tok_ok")
            .await
            .expect("the test provider authorizes")
    }

    /// From now on every POST's answer is lost after the work is done (reads still
    /// answer); returns the settings before, to restore with `set_settings`.
    pub fn lose_every_answer(&self) -> Settings {
        let before = self.simulator.settings();
        self.simulator.set_settings(Settings {
            lost_answer_rate: 1.0,
            ..before
        });
        before
    }

    /// How many of the ledger's payments are in `status` (`requires_capture`,
    /// `succeeded`, `canceled`, `requires_payment_method`).
    pub fn count(&self, status: &str) -> usize {
        self.simulator
            .intents()
            .iter()
            .filter(|intent| intent.status.as_str() == status)
            .count()
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
