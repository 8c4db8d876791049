//! Dependencies one test can take down on its own: a TCP proxy in front of Redis that
//! the test cuts, while every other test keeps the shared stack, and one in front of
//! Postgres that cuts a connection exactly at a transaction's COMMIT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use flashsale::config::{Config, Secret};
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::spawn::{spawn_app_with, TestApp};

/// A TCP proxy in front of a dependency, so a test can make it unreachable for its own
/// app without stopping the stack every other test uses.
pub struct CuttableProxy {
    /// The loopback address the app connects to instead of the dependency.
    pub addr: SocketAddr,
    cut: CancellationToken,
}

impl CuttableProxy {
    /// Forwards every connection on a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            // Returning drops the listener: new connections are refused.
            while let Some(Ok((mut inbound, _))) = stop.run_until_cancelled(listener.accept()).await
            {
                let (stop, upstream) = (stop.clone(), upstream.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let forward = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let _ = stop.run_until_cancelled(forward).await;
                });
            }
        });
        CuttableProxy { addr, cut }
    }

    /// Closes every forwarded connection and stops listening: the dependency is down.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut.cancel();
    }
}

/// The single Redis of the suite (`REDIS_URL`, also when the suite runs on a cluster):
/// its URL and its `host:port`, for a proxy to stand in front of.
pub fn single_redis() -> (String, String) {
    let config = Config::from_env().expect("test configuration");
    let url = config.redis_url.expose().clone();
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a Redis URL");
    let redis::ConnectionAddr::Tcp(host, port) = &client.get_connection_info().addr else {
        panic!("REDIS_URL must be a plain TCP address for this test");
    };
    let upstream = format!("{host}:{port}");
    assert!(url.contains(&upstream), "REDIS_URL {url} names its port");
    (url, upstream)
}

/// Like [`spawn_app`], with the app's Redis reached through a proxy the test can cut.
/// The app uses the single Redis (`REDIS_URL`) even when the suite runs on a cluster:
/// a cluster client learns every node's address from the cluster and would bypass a
/// proxy in front of one seed node.
pub async fn spawn_app_behind_redis_proxy() -> (TestApp, CuttableProxy) {
    let (url, upstream) = single_redis();
    let proxy = CuttableProxy::start(upstream.clone()).await;
    let proxied = url.replacen(&upstream, &proxy.addr.to_string(), 1);
    // A cluster client follows the nodes' own addresses, past any proxy: these tests
    // cut a single server's connection, also when the suite runs on a cluster.
    let app = spawn_app_with(|c| {
        c.redis_url = Secret::new(proxied);
        c.redis_cluster_urls = Secret::new(String::new());
    })
    .await;
    (app, proxy)
}

/// Where a [`PgCommitProxy`] cuts the COMMIT it is armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitCut {
    /// Drops both connections instead of forwarding the COMMIT: nothing committed,
    /// and the app sees its connection die.
    Before,
    /// Forwards the COMMIT, waits for the server's answer (up to ReadyForQuery) and
    /// drops the app's connection without passing it on: the commit landed, the app
    /// only sees its connection die.
    After,
}

/// A cut waiting for its COMMIT.
struct Armed {
    cut: CommitCut,
    /// Only the COMMIT of a transaction that ran a statement containing this text.
    marker: String,
}

/// What the proxy's connections share: the armed cut (taken by the first COMMIT
/// that matches, so only one is ever cut) and whether it has been done.
#[derive(Default)]
struct CommitCutState {
    armed: Mutex<Option<Armed>>,
    fired: AtomicBool,
}

/// A loopback TCP proxy in front of Postgres that, once armed, cuts one connection
/// exactly at a COMMIT, before or after the server ran it. It reads the client's
/// protocol messages to know which transaction it is in; everything else is passed on
/// untouched. The app's other pools and tasks (sweeper, reconciler, signals, relay)
/// talk through it too, which is why a cut names a statement of the transaction it
/// is meant for.
pub struct PgCommitProxy {
    /// The loopback address the app connects to instead of Postgres.
    pub addr: SocketAddr,
    state: Arc<CommitCutState>,
    stop: CancellationToken,
}

impl PgCommitProxy {
    /// Forwards every connection on a free loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> PgCommitProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(CommitCutState::default());
        let stop = CancellationToken::new();
        let (shared, stopped) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            while let Some(Ok((inbound, _))) = stopped.run_until_cancelled(listener.accept()).await
            {
                let (state, upstream, stopped) =
                    (shared.clone(), upstream.clone(), stopped.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = stopped
                        .run_until_cancelled(forward_watching_commits(inbound, outbound, &state))
                        .await;
                });
            }
        });
        PgCommitProxy { addr, state, stop }
    }

    /// Arms a cut: the next COMMIT (sent as the simple query `COMMIT`, as sqlx's
    /// `Transaction::commit` does) of a transaction that ran a statement containing
    /// `marker` is cut as `cut` says. Later COMMITs pass.
    pub fn arm(&self, cut: CommitCut, marker: &str) {
        *self.state.armed.lock().unwrap() = Some(Armed {
            cut,
            marker: marker.to_lowercase(),
        });
    }

    /// Whether the armed cut has happened.
    pub fn fired(&self) -> bool {
        self.state.fired.load(Ordering::SeqCst)
    }
}

impl Drop for PgCommitProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What one connection's client side has said: its prepared statements by name and
/// the statements of its current transaction.
#[derive(Default)]
struct Session {
    prepared: HashMap<String, String>,
    transaction: Vec<String>,
}

/// What to do with one client message.
enum Verdict {
    Forward,
    Cut(CommitCut),
}

impl Session {
    /// Follows one typed client message (`tag`, then the payload after the length).
    fn observe(&mut self, tag: u8, payload: &[u8], state: &CommitCutState) -> Verdict {
        let field = |n: usize| {
            payload
                .split(|b| *b == 0)
                .nth(n)
                .map(|f| String::from_utf8_lossy(f).to_lowercase())
                .unwrap_or_default()
        };
        match tag {
            // Query: simple protocol; BEGIN, COMMIT and ROLLBACK arrive this way.
            b'Q' => {
                let text = field(0);
                let text = text.trim().trim_end_matches(';');
                if text == "commit" {
                    let statements = std::mem::take(&mut self.transaction);
                    let mut armed = state.armed.lock().unwrap();
                    let matches = armed
                        .as_ref()
                        .is_some_and(|a| statements.iter().any(|s| s.contains(&a.marker)));
                    if matches {
                        let cut = armed.take().unwrap().cut;
                        state.fired.store(true, Ordering::SeqCst);
                        return Verdict::Cut(cut);
                    }
                } else if text == "begin" || text == "rollback" {
                    self.transaction.clear();
                } else {
                    self.transaction.push(text.to_owned());
                }
            }
            // Parse: statement name, then its text.
            b'P' => {
                self.prepared.insert(field(0), field(1));
            }
            // Bind: portal name, then the statement it runs.
            b'B' => {
                if let Some(text) = self.prepared.get(&field(1)) {
                    self.transaction.push(text.clone());
                }
            }
            _ => {}
        }
        Verdict::Forward
    }
}

/// Reads one whole message whose 4-byte big-endian length (counting itself) comes
/// first; returns the message's bytes, length included.
async fn read_framed(from: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len < 4 {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut message = len_prefixed(len);
    from.read_exact(&mut message[4..]).await?;
    Ok(message)
}

fn len_prefixed(len: usize) -> Vec<u8> {
    let mut message = vec![0u8; len];
    message[..4].copy_from_slice(&(len as u32).to_be_bytes());
    message
}

/// The SSL and GSS encryption requests a client may send before its startup message
/// (the server answers each with one byte, passed on like any other).
const ENCRYPTION_REQUESTS: [u32; 2] = [80_877_103, 80_877_104];

/// Passes one connection's bytes both ways, cutting it where the armed cut says.
/// Returns when either side closes or the cut is done; dropping the sockets then
/// closes both.
async fn forward_watching_commits(inbound: TcpStream, outbound: TcpStream, state: &CommitCutState) {
    let (client_rx, client_tx) = inbound.into_split();
    let (server_rx, server_tx) = outbound.into_split();
    // Set just before a cut-after COMMIT goes to the server: from then on the server's
    // bytes are that COMMIT's answer (the client waits for each answer before sending
    // more, so everything before it was passed on already).
    let swallow = AtomicBool::new(false);
    tokio::select! {
        _ = client_to_server(client_rx, server_tx, state, &swallow) => {}
        _ = server_to_client(server_rx, client_tx, &swallow) => {}
    }
}

/// The client's messages, followed and passed on; returns where a cut ends the
/// connection (a cut-after waits here for the other direction to end it).
async fn client_to_server(
    mut client: OwnedReadHalf,
    mut server: OwnedWriteHalf,
    state: &CommitCutState,
    swallow: &AtomicBool,
) -> std::io::Result<()> {
    // The startup message (and any encryption request before it) has no type byte.
    loop {
        let message = read_framed(&mut client).await?;
        server.write_all(&message).await?;
        let code = message
            .get(4..8)
            .map(|c| u32::from_be_bytes(c.try_into().unwrap()));
        if !code.is_some_and(|c| ENCRYPTION_REQUESTS.contains(&c)) {
            break;
        }
    }
    let mut session = Session::default();
    loop {
        let tag = client.read_u8().await?;
        let mut message = vec![tag];
        message.extend(read_framed(&mut client).await?);
        match session.observe(tag, &message[5..], state) {
            Verdict::Forward => server.write_all(&message).await?,
            Verdict::Cut(CommitCut::Before) => return Ok(()),
            Verdict::Cut(CommitCut::After) => {
                swallow.store(true, Ordering::SeqCst);
                server.write_all(&message).await?;
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The server's bytes, passed on untouched until a cut-after COMMIT is answered.
async fn server_to_client(
    mut server: OwnedReadHalf,
    mut client: OwnedWriteHalf,
    swallow: &AtomicBool,
) -> std::io::Result<()> {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = server.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        if swallow.load(Ordering::SeqCst) {
            return swallow_until_ready(&chunk[..n], &mut server).await;
        }
        client.write_all(&chunk[..n]).await?;
    }
}

/// Reads the server's messages, starting with the first bytes of `head`, until
/// ReadyForQuery (`Z`): the COMMIT has been answered.
async fn swallow_until_ready(
    head: &[u8],
    rest: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<()> {
    let mut from = head.chain(rest);
    loop {
        let tag = from.read_u8().await?;
        read_framed(&mut from).await?;
        if tag == b'Z' {
            return Ok(());
        }
    }
}

/// Like [`spawn_app`], with every connection the app (and the test's own pool) makes
/// to Postgres going through a [`PgCommitProxy`]. The fresh database is created
/// directly, before the app starts.
pub async fn spawn_app_behind_postgres_proxy() -> (TestApp, PgCommitProxy) {
    let config = Config::from_env().expect("test configuration");
    let url = config.database_url.expose().clone();
    let options: PgConnectOptions = url.parse().expect("DATABASE_URL is a Postgres URL");
    let upstream = format!("{}:{}", options.get_host(), options.get_port());
    assert!(
        url.contains(&upstream),
        "DATABASE_URL names its host and port"
    );
    let proxy = PgCommitProxy::start(upstream.clone()).await;
    let through = proxy.addr.to_string();
    let app = spawn_app_with(|c| {
        let proxied = c.database_url.expose().replacen(&upstream, &through, 1);
        c.database_url = Secret::new(proxied);
    })
    .await;
    (app, proxy)
}
