//! Building and running the application: connections, background tasks and the HTTP
//! server, all stopped by one shutdown token. Tests call [`Application::build`] with
//! port 0 and talk to the real thing.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use reservations::redis_conn::{RedisConn, RedisTarget};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Auth;
use crate::config::Config;
use crate::http::proof::Door;
use crate::http::shed::{ClientCap, Shedder, ShopperLimiter};
use crate::http::{self, AppParts, AppState};
use crate::signals::{self, ProcessSignals, RedisSignals};
use reservations::checkout::Checkout;
use reservations::clock::Clock;
use reservations::payment::{GuardedGateway, PaymentGateway, ProviderConfig, StripePayments};
use reservations::projection::Projection;
use reservations::service::{RedisWatcher, WATCH_INTERVAL};
use reservations::store::SaleStore;
use reservations::Sales;
use waiting_room::runner::{self, ControllerConfig};
use waiting_room::{AdmissionTokens, Queue};

/// Consecutive payment failures that open the circuit breaker.
const PAYMENT_BREAKER_FAILURES: u32 = 5;
/// How long an open breaker refuses calls before a trial.
const PAYMENT_BREAKER_OPEN_FOR: Duration = Duration::from_secs(5);

/// How long a controller lease lasts unrenewed: a dead holder is replaced after this.
const CONTROLLER_LEASE: Duration = Duration::from_secs(3);

/// The embedded migrations (`migrations/` at the workspace root).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The process-wide Prometheus recorder (one per process, however many apps a test
/// binary starts).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&latency)
                .expect("static buckets are valid")
                .install_recorder()
                .expect("the metrics recorder is installed once")
        })
        .clone()
}

fn guard(config: &Config, provider: Arc<dyn PaymentGateway>) -> Arc<dyn PaymentGateway> {
    Arc::new(GuardedGateway::new(
        provider,
        config.payment_timeout,
        PAYMENT_BREAKER_FAILURES,
        PAYMENT_BREAKER_OPEN_FOR,
    ))
}

/// The payment gateway of a process without the HTTP role (a worker): the provider at
/// `FLASHSALE_PAYMENT_URL` behind the same timeout and circuit breaker as checkout's.
pub fn guarded_payments(config: &Config) -> anyhow::Result<Arc<dyn PaymentGateway>> {
    let url = config.payment_url.clone().context(
        "FLASHSALE_PAYMENT_URL must name the payment provider: only `flashsale all` and `serve` start a simulator of their own",
    )?;
    Ok(guard(config, Arc::new(provider(config, url))))
}

fn provider(config: &Config, base_url: String) -> StripePayments {
    StripePayments::new(ProviderConfig {
        base_url,
        secret_key: config.payment_secret_key.expose().clone(),
    })
}

/// The payment provider of a process with the HTTP role: the one configured, or — when
/// `FLASHSALE_PAYMENT_URL` is unset — a simulator started in this process on a loopback
/// port of its own, served until `shutdown`.
async fn payment_provider(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<(
    Arc<StripePayments>,
    Option<Arc<payment_simulator::Simulator>>,
)> {
    if let Some(url) = &config.payment_url {
        return Ok((Arc::new(provider(config, url.clone())), None));
    }
    let simulator = payment_simulator::Simulator::new(
        config.payment_secret_key.expose().clone(),
        config.payment_simulator,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the in-process payment simulator")?;
    let url = format!("http://{}", listener.local_addr()?);
    tracing::info!(%url, "payment simulator started in this process");
    let stop = shutdown.clone();
    tokio::spawn(payment_simulator::serve(
        listener,
        simulator.clone(),
        async move { stop.cancelled().await },
    ));
    Ok((Arc::new(provider(config, url)), Some(simulator)))
}

/// Opens a Postgres pool of `size` connections for the service's work. Each connection
/// bounds what a request that went away can hold: a statement or an idle transaction
/// longer than `FLASHSALE_DB_STATEMENT_TIMEOUT_MS` is ended by the server (a checkout
/// cancelled mid-transaction cannot pin a checkout-pool connection), the server probes a
/// silent client with TCP keepalives and frees its backend when the socket is dead, and
/// waiting for a free connection gives up after two seconds (the caller answers 503).
pub async fn connect_postgres(config: &Config, size: u32) -> anyhow::Result<PgPool> {
    connect(config, size, Some(config.db_statement_timeout)).await
}

/// A pool without the statement timeout, for migrations: building an index on a large
/// table may rightly take longer than any request.
async fn connect_for_migrations(config: &Config) -> anyhow::Result<PgPool> {
    connect(config, 2, None).await
}

async fn connect(
    config: &Config,
    size: u32,
    statement_timeout: Option<Duration>,
) -> anyhow::Result<PgPool> {
    let mut options = PgConnectOptions::from_str(config.database_url.expose())
        .context("DATABASE_URL: not a Postgres URL")?;
    // Server-side keepalives: a backend whose client vanished (no FIN) is found dead
    // after about idle + interval × count seconds instead of holding its locks.
    options = options.options([
        ("tcp_keepalives_idle", "10"),
        ("tcp_keepalives_interval", "5"),
        ("tcp_keepalives_count", "3"),
    ]);
    if let Some(limit) = statement_timeout {
        let ms = limit.as_millis().to_string();
        options = options.options([
            ("statement_timeout", ms.as_str()),
            ("idle_in_transaction_session_timeout", ms.as_str()),
        ]);
    }
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(2))
        // Recycled now and then, so a connection that went bad unnoticed does not live
        // for ever; idle ones beyond need are closed.
        .max_lifetime(Duration::from_secs(30 * 60))
        .idle_timeout(Duration::from_secs(10 * 60))
        .connect_with(options)
        .await
        .context("DATABASE_URL: cannot connect to Postgres")
}

/// Applies every migration.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let pool = connect_for_migrations(config).await?;
    MIGRATOR.run(&pool).await.context("migrations failed")?;
    pool.close().await;
    Ok(())
}

/// Where Redis is: `REDIS_CLUSTER_URLS` when set, else `REDIS_URL`.
pub fn redis_target(config: &Config) -> anyhow::Result<RedisTarget> {
    RedisTarget::parse(
        config.redis_url.expose(),
        config.redis_cluster_urls.expose(),
    )
    .context("REDIS_URL / REDIS_CLUSTER_URLS: not Redis URLs")
}

/// Opens the shared Redis connection (multiplexed, reconnects by itself).
pub async fn connect_redis(config: &Config) -> anyhow::Result<RedisConn> {
    redis_target(config)?
        .connect(Duration::from_secs(2))
        .await
        .context("cannot connect to Redis")
}

/// A running application.
pub struct Application {
    addr: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<anyhow::Result<()>>,
}

impl Application {
    /// Connects, binds and starts serving and sweeping. Returns once the port is bound.
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Application> {
        let db = connect_postgres(&config, config.db_pool_size).await?;
        let checkout_pool = connect_postgres(&config, config.checkout_pool_size).await?;
        let redis = connect_redis(&config).await?;
        let auth = Arc::new(Auth::from_config(&config)?);
        let admission = Arc::new(AdmissionTokens::new(auth.hmac_secret(), auth.issuer()));
        let sales = Sales::new(
            SaleStore::new(db.clone()),
            Projection::new(redis.clone(), config.redis_prefix.clone())
                .with_stripes(config.stock_stripes),
            clock,
        )
        .with_ended_sale_retention(config.ended_sale_retention)
        .with_proof_difficulty_default(config.proof_difficulty_bits.into());
        let (provider, simulator) = payment_provider(&config, &shutdown).await?;
        let signals = Arc::new(ProcessSignals::default());
        // Timed outside the guard: a provider timeout is the provider's time.
        let payments: Arc<dyn PaymentGateway> = Arc::new(signals::timed_payments(
            guard(&config, provider.clone()),
            signals.clone(),
        ));
        let checkout = Checkout::new(sales.clone(), checkout_pool.clone(), db.clone(), payments)
            .with_attempt_grace(attempt_grace(&config));
        let process = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let tokens = AdmissionTokens::new(auth.hmac_secret(), auth.issuer());
        let queue = Queue::new(
            redis.clone(),
            config.redis_prefix.clone(),
            sales.waiting_room_port(),
            tokens,
            waiting_room::LineMarks::new(db.clone()),
            config.admission_window,
            config.queue_cap,
        )
        .with_drand(config.drand_url.clone());
        let door = Arc::new(Door::new(
            auth.hmac_secret(),
            auth.issuer(),
            redis.clone(),
            config.redis_prefix.clone(),
            config.client_ip_header.clone(),
            config.proof_difficulty_bits.into(),
        ));
        let webhooks =
            outbox_relay::webhooks::Endpoints::new(db.clone(), config.webhooks_allow_private);
        let state = AppState::new(AppParts {
            queue,
            signals,
            checkout,
            provider,
            simulator,
            sales,
            auth,
            admission,
            db,
            redis: redis.clone(),
            metrics: metrics_handle(),
            shedder: Arc::new(Shedder::new(config.max_in_flight)),
            queue_limiter: Arc::new(ShopperLimiter::new(
                config.queue_rate.0,
                config.queue_rate.1,
            )),
            client_cap: config.client_cap.map(|(rate, burst)| {
                Arc::new(ClientCap::new(rate, burst, config.client_ip_header.clone()))
            }),
            door,
            request_timeout: config.request_timeout,
            static_dir: config.static_dir.clone(),
            webhooks,
        });
        let tasks = vec![
            tokio::spawn(sweep_holds(
                state.clone(),
                config.sweep_interval,
                shutdown.clone(),
            )),
            tokio::spawn(reconcile_checkouts(
                state.checkout.clone(),
                config.reconcile_after,
                shutdown.clone(),
            )),
            tokio::spawn(complete_payments(
                state.checkout.clone(),
                config.completer_interval,
                shutdown.clone(),
            )),
            tokio::spawn(watch_redis(state.sales.clone(), shutdown.clone())),
            tokio::spawn(announce_sale_moments(state.db.clone(), shutdown.clone())),
            tokio::spawn(signals::publish(
                state.signals.clone(),
                redis.clone(),
                checkout_pool,
                state.db.clone(),
                config.redis_prefix.clone(),
                process.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(runner::run(
                state.queue.clone(),
                Arc::new(RedisSignals::new(
                    redis.clone(),
                    state.db.clone(),
                    config.redis_prefix.clone(),
                )),
                ControllerConfig {
                    tick: config.controller_tick,
                    lease: CONTROLLER_LEASE,
                    holder: process,
                },
                shutdown.clone(),
            )),
        ];

        let listener = tokio::net::TcpListener::bind(config.bind_addr)
            .await
            .with_context(|| format!("FLASHSALE_BIND_ADDR: cannot bind {}", config.bind_addr))?;
        let addr = listener.local_addr()?;
        let app = http::router(state.clone());
        let stop = shutdown.clone();
        let grace = config.shutdown_grace;
        // The request timeout also bounds reading the request head (see `serve_http`).
        let head_timeout = config.request_timeout;
        let server = tokio::spawn(async move {
            let serve = serve_http(listener, app, head_timeout, stop.clone());
            tokio::pin!(serve);
            tokio::select! {
                result = &mut serve => result,
                // Keep-alive connections can hold a graceful drain open forever: bound it.
                _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(grace_ms = grace.as_millis() as u64, "drain timed out; closing remaining connections");
                    Ok(())
                }
            }
        });
        tracing::info!(%addr, "listening");
        Ok(Application {
            addr,
            state,
            shutdown,
            tasks,
            server,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared state (tests reach the services directly through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The token that stops everything.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the shutdown token fires, then waits for the drain and the tasks.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.server.await.context("server task panicked")?;
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        result
    }
}

/// Serves HTTP/1.1 on `listener` until `stop`, then waits for open connections to
/// finish their requests (the caller bounds that wait).
///
/// Not `axum::serve`: it gives hyper no timer, so hyper's header read timeout never
/// fires and a client that sends half a request head and then nothing (slow-loris)
/// holds its connection and task forever; the request timeout middleware cannot help,
/// as no request exists yet. Here a connection must deliver each request head within
/// `head_timeout` (an idle keep-alive connection is closed after it too), and a head
/// over [`http::MAX_HEADER_BYTES`] is refused with `431` before it is buffered further.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    head_timeout: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .max_header_size(http::MAX_HEADER_BYTES);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // The peer address, for the cap per client address (axum's ConnectInfo).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    // New connections are refused from here; open ones finish their current request.
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

/// Runs `tick` every `interval` until shutdown; a failed tick is logged as `what`
/// and retried at the next one. A tick that runs long delays the next instead of
/// piling ticks up behind it. The background tasks of `serve` are all this loop.
async fn every<F, Fut, E>(interval: Duration, shutdown: CancellationToken, what: &str, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(e) = tick().await {
                    tracing::warn!(error = %e, "{what} failed; retrying next tick");
                }
            }
        }
    }
}

/// Finishes checkouts left in `committing` by dead processes, every few seconds.
async fn reconcile_checkouts(
    checkout: Checkout,
    stale_after: Duration,
    shutdown: CancellationToken,
) {
    let interval = (stale_after / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    every(interval, shutdown, "checkout reconciliation", || async {
        checkout.reconcile_once(stale_after).await.map(drop)
    })
    .await
}

/// How long a payment attempt is presumed in flight: the configured grace, never less
/// than twice the payment timeout (a request still waiting for the provider must not
/// be judged dead and its authorization voided under it).
fn attempt_grace(config: &Config) -> Duration {
    config.completer_grace.max(config.payment_timeout * 2)
}

/// Settles payment attempts in doubt (an answer lost, a failed order transaction, a
/// dead process): every `interval`, until shutdown. Everything it needs is in
/// Postgres, so another process or a restart picks up where this one stopped.
async fn complete_payments(checkout: Checkout, interval: Duration, shutdown: CancellationToken) {
    every(interval, shutdown, "payment completer", || async {
        checkout.complete_once(interval).await.map(drop)
    })
    .await
}

/// Notices when Redis comes back older (a restart that lost its last second, a
/// failover) and reconciles the live sales from Postgres (`reservations`'s
/// `service::reconcile`).
async fn watch_redis(sales: Sales, shutdown: CancellationToken) {
    let watcher = RedisWatcher::new(sales);
    every(WATCH_INTERVAL, shutdown, "Redis identity watch", || async {
        watcher.tick().await.map(drop)
    })
    .await
}

/// Writes each sale's start, sell-out and end to the outbox once, every second, for the
/// webhooks (`outbox_relay::webhooks::lifecycle`).
async fn announce_sale_moments(db: PgPool, shutdown: CancellationToken) {
    every(
        Duration::from_secs(1),
        shutdown,
        "sale lifecycle announcement",
        || async {
            outbox_relay::webhooks::lifecycle::notice_once(&db)
                .await
                .map(drop)
        },
    )
    .await
}

/// Returns expired holds to the free units, every `interval`, until shutdown; also
/// forgets rate-limit state of shoppers not seen lately.
async fn sweep_holds(state: AppState, interval: Duration, shutdown: CancellationToken) {
    every(interval, shutdown, "hold sweep", || async {
        state.queue_limiter.prune();
        if let Some(cap) = &state.client_cap {
            cap.prune();
        }
        state.sales.sweep_once(500).await.map(drop)
    })
    .await
}
