//! A payment provider of its own: the Stripe PaymentIntents subset flashsale speaks,
//! served over HTTP exactly as the wire contract describes it (the "Stripe
//! PaymentIntents subset" document shared by this crate, the server, and flashsale's
//! Stripe adapter in `reservations/src/payment/stripe.rs`, the client; every field is
//! Stripe's own, <https://docs.stripe.com/api/payment_intents>). Served: create with
//! `capture_method=manual` and `confirm=true`, retrieve, capture, cancel, refund, list
//! and metadata search, with `Idempotency-Key` replay, and the test tokens of API.md
//! (`tok_ok`, `tok_declined`, `tok_slow`, `tok_error`; Stripe's `pm_card_visa` and
//! `pm_card_chargeDeclined`).
//!
//! Besides latency it has the faults real providers have, set through
//! `GET`/`PUT /v1/simulator/settings` ([`Settings`]): plain failures before any work
//! (`failure_rate`), **answers lost after the work is done** (`lost_answer_rate`: the
//! result is stored under its idempotency key, then the connection is dropped), voids and
//! captures failing the next N times (`fail_voids`, `fail_captures`), and an outage
//! (`outage_ms`: every call `503`).
//!
//! Its storage is its own: maps in memory behind one mutex, optionally journaled to a
//! JSON-lines file ([`Simulator::with_journal`]) so a restarted simulator keeps its
//! ledger and its idempotent answers. It never touches flashsale's database.
//!
//! # Layout
//!
//! - `settings`: the knobs and their bounds ([`Settings`]).
//! - `faults`: the faults in force (outage deadline, countdowns, dice).
//! - `ledger`: intents, charges, refunds and their state machine.
//! - `idempotency`: claim, store, replay of idempotency keys.
//! - `journal`: the append-only JSON-lines file, replay and compaction.
//! - `http`: the axum router — auth, the call pipeline, Stripe's JSON and errors.
//! - `main.rs`: the `payment-simulator` binary.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod faults;
mod http;
mod idempotency;
mod journal;
mod ledger;
mod settings;

pub use http::router;
pub use ledger::IntentStatus;
pub use settings::{Latency, Settings, SettingsError};

/// The secret key a simulator accepts when none is configured (a test key: it guards
/// nothing but a simulator on loopback).
pub const DEFAULT_SECRET_KEY: &str = "sk_test_flashsale_simulator";

/// The simulator's control route (not Stripe's): `GET`/`PUT` the [`Settings`].
pub const SETTINGS_PATH: &str = "/v1/simulator/settings";

use faults::Faults;
use idempotency::{Idempotency, Stored};
use journal::{Answer, Entry, Journal};
use ledger::{Intent, Ledger};

/// The provider: its settings and faults, its ledger, its idempotency keys and its
/// journal. Shared by every connection as an `Arc`.
pub struct Simulator {
    secret_key: SecretKey,
    faults: Faults,
    store: Mutex<Store>,
}

/// The secret key callers must present; never printed.
struct SecretKey(String);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("secret_key", &self.secret_key)
            .field("settings", &self.settings())
            .finish_non_exhaustive()
    }
}

/// Everything behind the one mutex. Nothing awaits while holding it: every method of
/// the ledger and the keys is synchronous, and the journal write is a buffered write
/// and a flush.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) ledger: Ledger,
    pub(crate) keys: Idempotency,
    journal: Option<Journal>,
}

impl Store {
    /// Journals a change made to the ledger and/or the answer stored under `key`.
    /// A failed write is logged and serving goes on: the state in memory stays right,
    /// only a restart would lose it.
    pub(crate) fn record(&mut self, intent: Option<&Intent>, answer: Option<(&str, &Stored)>) {
        let Some(journal) = self.journal.as_mut() else {
            return;
        };
        let entry = Entry {
            intent: intent.cloned(),
            answer: answer.map(|(key, stored)| Answer {
                key: key.to_owned(),
                stored: stored.clone(),
            }),
        };
        if let Err(e) = journal.append(&entry) {
            tracing::error!(error = %e, "payment simulator journal write failed");
        }
    }
}

/// A snapshot of one intent, for tests and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentView {
    /// `pi_…`.
    pub id: String,
    /// `metadata[attempt_id]`, if given.
    pub attempt_id: Option<String>,
    /// Minor units.
    pub amount: u64,
    /// Lowercase ISO code.
    pub currency: String,
    /// Where it stands.
    pub status: IntentStatus,
    /// Refunded so far, minor units.
    pub amount_refunded: u64,
}

impl Simulator {
    /// A simulator keeping its ledger in memory only.
    pub fn new(secret_key: impl Into<String>, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            secret_key: SecretKey(secret_key.into()),
            faults: Faults::new(settings),
            store: Mutex::new(Store::default()),
        })
    }

    /// A simulator whose ledger and idempotent answers live in the journal at `path`:
    /// replays it (creating it if absent), compacts it, then appends every change.
    pub fn with_journal(
        secret_key: impl Into<String>,
        settings: Settings,
        path: &Path,
    ) -> std::io::Result<Arc<Self>> {
        let now = unix_now();
        let mut store = Store::default();
        for entry in journal::read(path)? {
            if let Some(intent) = entry.intent {
                store.ledger.restore(intent);
            }
            if let Some(answer) = entry.answer {
                store.keys.restore(answer.key, answer.stored, now);
            }
        }
        let intents = store.ledger.all().map(|intent| Entry {
            intent: Some(intent.clone()),
            answer: None,
        });
        let answers = store.keys.answers(now).map(|(key, stored)| Entry {
            intent: None,
            answer: Some(Answer {
                key: key.clone(),
                stored: stored.clone(),
            }),
        });
        let compacted: Vec<Entry> = intents.chain(answers).collect();
        store.journal = Some(Journal::rewrite(path, compacted.into_iter())?);
        let sim = Self::new(secret_key, settings);
        *sim.store() = store;
        Ok(sim)
    }

    /// The settings in force (countdowns and outage as still left).
    pub fn settings(&self) -> Settings {
        self.faults.settings()
    }

    /// Replaces the settings; a non-zero `outage_ms` starts an outage now. Callers
    /// validate first ([`Settings::validate`]).
    pub fn set_settings(&self, settings: Settings) {
        self.faults.set(settings);
    }

    /// Every intent, oldest first.
    pub fn intents(&self) -> Vec<IntentView> {
        self.store()
            .ledger
            .all()
            .map(|intent| IntentView {
                id: intent.id.clone(),
                attempt_id: intent.metadata.get("attempt_id").cloned(),
                amount: intent.amount,
                currency: intent.currency.clone(),
                status: intent.status,
                amount_refunded: intent.amount_refunded(),
            })
            .collect()
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves consistent plain data (every change is
        // made by one synchronous method); keep serving.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    pub(crate) fn secret_key(&self) -> &str {
        &self.secret_key.0
    }
}

/// How long a shutdown waits for calls in flight before closing their connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the simulator on `listener` until `shutdown` completes, then drains calls in
/// flight for at most 10 s (`DRAIN_TIMEOUT`): idle keep-alive connections close at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Arc<Simulator>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut graceful = stop_rx.clone();
    let server = axum::serve(listener, router(sim)).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|stop| *stop).await;
    });
    let mut deadline = stop_rx;
    tokio::select! {
        served = server => served,
        _ = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => {
            tracing::warn!("payment simulator: calls still in flight after the drain timeout, closing");
            Ok(())
        }
    }
}

/// The simulator as a process of its own (the `payment-simulator` binary, `flashsale
/// payment-simulator`): its ledger in `journal` (replayed first) or in memory, served
/// on `listen` until `shutdown`.
pub async fn run(
    listen: std::net::SocketAddr,
    secret_key: String,
    settings: Settings,
    journal: Option<&Path>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sim = match journal {
        Some(path) => Simulator::with_journal(secret_key, settings, path)?,
        None => Simulator::new(secret_key, settings),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        journal = journal.map(|p| p.display().to_string()),
        "payment simulator serving"
    );
    serve(listener, sim, shutdown).await?;
    tracing::info!("payment simulator stopped");
    Ok(())
}

/// Now, in unix seconds (Stripe's timestamps).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
