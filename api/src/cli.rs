//! The subcommands: one binary, several roles.

use std::sync::Arc;
use std::time::Duration;

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::auth::{Auth, Role};
use crate::config::Config;
use crate::startup::{connect_postgres, guarded_payments, Application};
use outbox_relay::mailer::SimulatedMailer;
use outbox_relay::{relay, worker};
use reservations::clock::SystemClock;
use reservations::payment::PaymentGateway;
use tokio_util::sync::CancellationToken;
use waiting_room::AdmissionTokens;

/// Flash-sale reservation backend.
#[derive(Debug, Parser)]
#[command(name = "flashsale", version, about)]
pub struct Cli {
    /// The role to run (default: all).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A role or a tool.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every role in one process (migrates first): the default for a laptop.
    All,
    /// The HTTP API (and the hold sweeper).
    Serve,
    /// The outbox relay (Postgres outbox → Redis Streams).
    Relay,
    /// The event workers.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// The payment provider simulator as a process of its own: the Stripe
    /// PaymentIntents subset flashsale speaks, with its own storage (the journal) and
    /// faults. Point `FLASHSALE_PAYMENT_URL` of every other process at it.
    PaymentSimulator {
        /// Where to listen.
        #[arg(
            long,
            env = "PAYMENT_SIMULATOR_LISTEN",
            default_value = "127.0.0.1:8099"
        )]
        listen: std::net::SocketAddr,
        /// The secret key callers must present (default: `FLASHSALE_PAYMENT_SECRET_KEY`,
        /// or the simulator's default key).
        #[arg(long, env = "PAYMENT_SIMULATOR_SECRET_KEY", hide_env_values = true)]
        secret_key: Option<String>,
        /// Keep the ledger in this JSON-lines file, replayed at start (default: memory only).
        #[arg(long, env = "PAYMENT_SIMULATOR_JOURNAL")]
        journal: Option<std::path::PathBuf>,
    },
    /// Check a sale's invariants in Postgres and Redis (stock, units, events, payments)
    /// after a load run; prints a report and exits non-zero on any violation.
    Verify {
        /// The sale.
        sale_id: uuid::Uuid,
        /// Longest wait for the outbox and the consumers to drain first, e.g. 30s.
        #[arg(long, default_value = "30s", value_parser = parse_ttl)]
        wait: Duration,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Print a signed token.
    Token {
        /// Which kind.
        #[command(subcommand)]
        kind: TokenKind,
    },
}

/// Kinds of token `flashsale token` prints.
#[derive(Debug, Subcommand)]
pub enum TokenKind {
    /// A merchant token (EdDSA).
    Merchant {
        /// The merchant id (a UUID).
        merchant_id: uuid::Uuid,
        /// Lifetime, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// A shopper token (HS256).
    Shopper {
        /// The shopper id (default: a new one).
        shopper_id: Option<uuid::Uuid>,
    },
    /// Fresh shoppers admitted to a sale, one per line: `<shopper token> <admission
    /// token>` (rehearsals and benchmarks that skip the waiting room).
    Admission {
        /// The sale.
        sale_id: uuid::Uuid,
        /// How many shoppers.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        count: u32,
        /// How long the admission lasts, e.g. 10m, 1h.
        #[arg(long, default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// An operator token (EdDSA), for the operations endpoints.
    Operator {
        /// Lifetime, e.g. 30m, 24h.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
    },
}

/// Parses `90s`, `30m`, `24h`, `7d`.
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let (number, unit) = raw.split_at(raw.trim_end_matches(char::is_alphabetic).len());
    let n: u64 = number
        .parse()
        .map_err(|_| format!("not a duration: {raw}"))?;
    let seconds = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("unknown unit in {raw}: use s, m, h or d")),
    };
    if seconds == 0 || seconds > 365 * 86400 {
        return Err("must be between 1s and 365d".into());
    }
    Ok(Duration::from_secs(seconds))
}

/// Runs the chosen command.
pub async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::All) {
        Command::All => {
            migrate(&config).await?;
            serve(
                config,
                Roles {
                    http: true,
                    relay: true,
                    workers: true,
                },
            )
            .await
        }
        Command::Serve => {
            serve(
                config,
                Roles {
                    http: true,
                    relay: false,
                    workers: false,
                },
            )
            .await
        }
        Command::Relay => {
            serve(
                config,
                Roles {
                    http: false,
                    relay: true,
                    workers: false,
                },
            )
            .await
        }
        Command::Worker => {
            serve(
                config,
                Roles {
                    http: false,
                    relay: false,
                    workers: true,
                },
            )
            .await
        }
        Command::Migrate => migrate(&config).await,
        Command::PaymentSimulator {
            listen,
            secret_key,
            journal,
        } => {
            let key = secret_key.unwrap_or_else(|| config.payment_secret_key.expose().clone());
            payment_simulator::run(
                listen,
                key,
                config.payment_simulator,
                journal.as_deref(),
                shutdown_signal(),
            )
            .await
            .context("the payment simulator")
        }
        Command::Verify {
            sale_id,
            wait,
            json,
        } => {
            let options = crate::verify::Options {
                drain_timeout: wait,
                ..Default::default()
            };
            if crate::verify::run(&config, sale_id, options, json.as_deref()).await? {
                Ok(())
            } else {
                anyhow::bail!("invariant violations in sale {sale_id}")
            }
        }
        Command::Token { kind } => {
            let auth = Auth::from_config(&config)?;
            let token = match kind {
                TokenKind::Merchant { merchant_id, ttl } => {
                    auth.issue_admin(merchant_id.to_string(), Role::Merchant, ttl)?
                }
                TokenKind::Operator { ttl } => {
                    auth.issue_admin("operator".into(), Role::Operator, ttl)?
                }
                TokenKind::Shopper { shopper_id } => {
                    let id = shopper_id.unwrap_or_else(uuid::Uuid::new_v4);
                    auth.issue_shopper(id, chrono::Utc::now()).0
                }
                TokenKind::Admission {
                    sale_id,
                    count,
                    ttl,
                } => {
                    let admission = AdmissionTokens::new(auth.hmac_secret(), auth.issuer());
                    let now = chrono::Utc::now();
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    for _ in 0..count {
                        let shopper = uuid::Uuid::new_v4();
                        let (pass, _) = admission.issue(shopper, sale_id, now, ttl);
                        writeln!(out, "{} {pass}", auth.issue_shopper(shopper, now).0)?;
                    }
                    return Ok(out.flush()?);
                }
            };
            println!("{token}");
            Ok(())
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    crate::startup::migrate(config).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Which roles one process runs.
#[derive(Debug, Clone, Copy)]
struct Roles {
    /// The HTTP API, the hold sweeper and the checkout reconciler.
    http: bool,
    /// The outbox relay.
    relay: bool,
    /// The event workers.
    workers: bool,
}

/// Runs `roles` until SIGTERM or Ctrl-C, then drains them all.
async fn serve(config: Config, roles: Roles) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut payments: Option<Arc<dyn PaymentGateway>> = None;
    let app = if roles.http {
        let app = Application::build(config.clone(), Arc::new(SystemClock), stop.clone()).await?;
        // In one process the workers capture through the same simulator and breaker as
        // checkout, so the operator's simulator settings apply to both.
        payments = Some(app.state().checkout.payments());
        Some(app)
    } else {
        None
    };
    if roles.relay || roles.workers {
        let pool = connect_postgres(&config, config.db_pool_size).await?;
        let redis = crate::startup::redis_target(&config)?;
        let prefix = config.redis_prefix.clone();
        if roles.relay {
            let settings = relay::RelayConfig::new(prefix.clone());
            tasks.push(tokio::spawn(relay::run(
                pool.clone(),
                redis.clone(),
                settings,
                stop.clone(),
            )));
        }
        if roles.workers {
            let payments = match payments {
                Some(payments) => payments,
                None => guarded_payments(&config)?,
            };
            let mailer = Arc::new(SimulatedMailer::new());
            let mut settings = worker::WorkerConfig::new(prefix);
            settings.webhooks.allow_private = config.webhooks_allow_private;
            tasks.push(tokio::spawn(worker::run(
                pool,
                redis,
                payments,
                mailer,
                settings,
                stop.clone(),
            )));
        }
    }
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; draining");
        signal.cancel();
    });
    let served = match app {
        Some(app) => app.run_until_stopped().await,
        None => {
            stop.cancelled().await;
            Ok(())
        }
    };
    for task in tasks {
        task.await.context("a background role panicked")?;
    }
    served
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
