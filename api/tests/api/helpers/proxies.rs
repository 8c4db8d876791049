//! Dependencies one test can take down on its own: a TCP proxy in front of Redis that
//! the test cuts, while every other test keeps the shared stack.

use std::net::SocketAddr;

use flashsale::config::{Config, Secret};
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

/// Like [`spawn_app`], with the app's Redis reached through a proxy the test can cut.
/// The app uses the single Redis (`REDIS_URL`) even when the suite runs on a cluster:
/// a cluster client learns every node's address from the cluster and would bypass a
/// proxy in front of one seed node.
pub async fn spawn_app_behind_redis_proxy() -> (TestApp, CuttableProxy) {
    let config = Config::from_env().expect("test configuration");
    let url = config.redis_url.expose().clone();
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a Redis URL");
    let redis::ConnectionAddr::Tcp(host, port) = &client.get_connection_info().addr else {
        panic!("REDIS_URL must be a plain TCP address for this test");
    };
    let upstream = format!("{host}:{port}");
    assert!(url.contains(&upstream), "REDIS_URL {url} names its port");
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
