//! A Redis server of one test's own: a `redis-server` process on a free loopback port
//! with its own directory, configured as the stack's (AOF, `appendfsync everysec`, no
//! RDB saves), which the test may crash, copy and restart at will. The shared Redis
//! of the suite is never restarted by a test; tests about Redis coming back older use
//! this instead.
//!
//! A crash image ([`PrivateRedis::crash_image`]) is a copy of the AOF directory taken
//! while the server runs: what a crash at that moment would leave on disk (the copy
//! reads the page cache, so it holds every write made so far). Restarting from it
//! after [`PrivateRedis::kill`] is a Redis that lost everything written after the copy.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reservations::redis_conn::{RedisConn, RedisTarget};
use uuid::Uuid;

/// A private `redis-server`, killed and its directory removed on drop.
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    images: u32,
}

impl PrivateRedis {
    /// Starts a server on a free port in a fresh directory; returns once it answers.
    pub async fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("flashsale-redis-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the server's directory");
        let mut redis = PrivateRedis {
            port,
            dir,
            child: None,
            images: 0,
        };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection of its own to this server.
    pub async fn conn(&self) -> RedisConn {
        RedisTarget::parse(&self.url(), "")
            .expect("a Redis URL")
            .connect(Duration::from_secs(2))
            .await
            .expect("the private Redis answers")
    }

    /// Copies the AOF directory now, while the server runs: a crash image.
    pub fn crash_image(&mut self) -> PathBuf {
        self.images += 1;
        let image = self.dir.join(format!("image-{}", self.images));
        copy_dir(&self.dir.join("appendonlydir"), &image);
        image
    }

    /// Kills the server (SIGKILL): it stops without saving or flushing anything.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server cleanly (SHUTDOWN: the AOF is flushed and kept).
    pub async fn shutdown(&mut self) {
        let _ = redis::cmd("SHUTDOWN")
            .query_async::<()>(&mut self.conn().await)
            .await;
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port: from `image` when given (its AOF
    /// replaces the current one), else from its own AOF. The server must be stopped.
    pub async fn restart(&mut self, image: Option<&Path>) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        if let Some(image) = image {
            let aof = self.dir.join("appendonlydir");
            let _ = std::fs::remove_dir_all(&aof);
            copy_dir(image, &aof);
        }
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "yes"])
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/stack up installs it)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("a Redis URL");
        for _ in 0..200 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the private redis-server on port {} did not start",
            self.port
        );
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("the copy's directory");
    for entry in std::fs::read_dir(from).expect("the AOF directory") {
        let entry = entry.expect("an AOF file");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy an AOF file");
    }
}
