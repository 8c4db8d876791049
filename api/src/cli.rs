//! The subcommands: one binary, several roles.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::auth::{Auth, Role};
use crate::config::Config;
use crate::startup::{connect_postgres, Application, MIGRATOR};
use reservations::clock::SystemClock;

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
            serve(config).await
        }
        Command::Serve => serve(config).await,
        Command::Relay | Command::Worker => {
            anyhow::bail!(
                "this role is not available yet: run `flashsale serve` or `flashsale all`"
            )
        }
        Command::Migrate => migrate(&config).await,
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
            };
            println!("{token}");
            Ok(())
        }
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    let pool = connect_postgres(config).await?;
    MIGRATOR.run(&pool).await.context("migrations failed")?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config, Arc::new(SystemClock)).await?;
    let stop = app.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; draining");
        stop.cancel();
    });
    app.run_until_stopped().await
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
