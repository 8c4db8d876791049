//! A real simulator on 127.0.0.1:0 and a reqwest client speaking the contract to it.

use std::sync::Arc;

use payment_simulator::{serve, Latency, Settings, Simulator};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET_KEY: &str = "sk_test_simulator_tests";

/// Settings without latency, so tests wait only where they mean to.
pub fn instant() -> Settings {
    Settings {
        latency_ms: Latency { p50: 0, p99: 0 },
        ..Settings::default()
    }
}

/// A running simulator.
pub struct TestProvider {
    pub base: String,
    pub sim: Arc<Simulator>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub replayed: bool,
    pub raw: String,
    pub body: Value,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let raw = response.text().await.expect("a whole answer");
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            replayed,
            raw,
            body,
        }
    }

    /// `error.type`, `error.code`.
    pub fn error(&self) -> (&str, &str) {
        let error = &self.body["error"];
        (
            error["type"].as_str().unwrap_or(""),
            error["code"].as_str().unwrap_or(""),
        )
    }
}

/// A simulator with `settings`, in memory.
pub async fn spawn(settings: Settings) -> TestProvider {
    spawn_with(Simulator::new(SECRET_KEY, settings)).await
}

/// Serves `sim` on a free port.
pub async fn spawn_with(sim: Arc<Simulator>) -> TestProvider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, sim.clone(), async move {
        let _ = stopped.await;
    }));
    TestProvider {
        base,
        sim,
        client: reqwest::Client::new(),
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestProvider {
    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
    }

    /// A POST as the adapter sends it: form body, secret key, idempotency key.
    pub fn post_request(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(SECRET_KEY)
            .header("Idempotency-Key", key)
            .form(form)
    }

    pub async fn post(&self, path: &str, key: &str, form: &[(&str, &str)]) -> Reply {
        Reply::read(
            self.post_request(path, key, form)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    pub async fn get(&self, path_and_query: &str) -> Reply {
        let response = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .bearer_auth(SECRET_KEY)
            .send()
            .await
            .expect("send");
        Reply::read(response).await
    }

    /// Authorizes `amount` EUR cents with `token` for `attempt`.
    pub async fn create(&self, key: &str, amount: u64, token: &str, attempt: &str) -> Reply {
        let amount = amount.to_string();
        self.post(
            "/v1/payment_intents",
            key,
            &create_form(&amount, token, attempt),
        )
        .await
    }

    /// Creates an approved intent and returns its id.
    pub async fn authorized(&self, amount: u64) -> String {
        let reply = self.create(&new_key(), amount, "tok_ok", &new_key()).await;
        assert_eq!(reply.status, 200, "{}", reply.raw);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    pub async fn put_settings(&self, settings: &Value) -> Reply {
        let response = self
            .client
            .put(format!("{}/v1/simulator/settings", self.base))
            .bearer_auth(SECRET_KEY)
            .json(settings)
            .send()
            .await
            .expect("send");
        Reply::read(response).await
    }
}

pub fn create_form<'a>(
    amount: &'a str,
    token: &'a str,
    attempt: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("amount", amount),
        ("currency", "eur"),
        ("capture_method", "manual"),
        ("confirm", "true"),
        ("payment_method", token),
        ("metadata[attempt_id]", attempt),
    ]
}

pub fn new_key() -> String {
    uuid::Uuid::new_v4().to_string()
}
