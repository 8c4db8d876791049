//! `payment-simulator`: the simulated payment provider as a process of its own.
//!
//! ```text
//! payment-simulator --listen 127.0.0.1:8099 --secret-key <key> [--journal <file>]
//! ```
//! Each flag also from the environment (`PAYMENT_SIMULATOR_LISTEN`,
//! `PAYMENT_SIMULATOR_SECRET_KEY`, `PAYMENT_SIMULATOR_JOURNAL`); logs JSON when
//! `LOG_FORMAT=json`; stops on SIGTERM or ctrl-c.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use payment_simulator::{run, Settings};
use tracing_subscriber::EnvFilter;

/// The simulated payment provider (Stripe PaymentIntents subset).
#[derive(Parser)]
#[command(name = "payment-simulator", version)]
struct Args {
    /// Address to listen on.
    #[arg(
        long,
        env = "PAYMENT_SIMULATOR_LISTEN",
        default_value = "127.0.0.1:8099"
    )]
    listen: SocketAddr,
    /// The secret key callers must present (`Authorization: Bearer …`).
    #[arg(
        long,
        env = "PAYMENT_SIMULATOR_SECRET_KEY",
        default_value = payment_simulator::DEFAULT_SECRET_KEY,
        hide_default_value = true,
        hide_env_values = true
    )]
    secret_key: String,
    /// JSON-lines journal that keeps the ledger across restarts (memory only if absent).
    #[arg(long, env = "PAYMENT_SIMULATOR_JOURNAL")]
    journal: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    init_logging();
    let args = Args::parse();
    run(
        args.listen,
        args.secret_key,
        Settings::default(),
        args.journal.as_deref(),
        shutdown_signal(),
    )
    .await
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
