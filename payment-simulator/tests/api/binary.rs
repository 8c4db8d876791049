//! The `payment-simulator` binary: flags from the environment, one JSON log line per
//! call without the secret key, a clean stop on SIGTERM, the journal kept across runs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::new_key;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn start(port: u16, journal: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_payment-simulator"))
        .env("PAYMENT_SIMULATOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("PAYMENT_SIMULATOR_SECRET_KEY", "sk_test_binary_secret")
        .env("PAYMENT_SIMULATOR_JOURNAL", journal)
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary")
}

async fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the simulator never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM, then the output of a process that stopped by itself.
fn terminate(child: Child) -> (std::process::ExitStatus, String) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status, logs)
}

#[tokio::test]
async fn the_binary_serves_logs_each_call_and_stops_on_sigterm() {
    let journal = std::env::temp_dir().join(format!("payment-sim-bin-{}.jsonl", new_key()));
    let port = free_port();
    let child = start(port, &journal);
    wait_until_listening(port).await;

    let client = reqwest::Client::new();
    let key = new_key();
    let created = client
        .post(format!("http://127.0.0.1:{port}/v1/payment_intents"))
        .bearer_auth("sk_test_binary_secret")
        .header("Idempotency-Key", &key)
        .form(&[
            ("amount", "100"),
            ("currency", "eur"),
            ("capture_method", "manual"),
            ("confirm", "true"),
            ("payment_method", "tok_ok"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, logs) = terminate(child);
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(!logs.contains("sk_test_binary_secret"), "{logs}");
    let call = logs
        .lines()
        .find(|line| line.contains("payment simulator call"))
        .unwrap_or_else(|| panic!("no call logged:\n{logs}"));
    let call: serde_json::Value = serde_json::from_str(call).expect("a JSON log line");
    assert_eq!(call["fields"]["method"], "POST");
    assert_eq!(call["fields"]["path"], "/v1/payment_intents");
    assert_eq!(call["fields"]["status"], 200);
    assert_eq!(call["fields"]["idempotency_key"], key.as_str());

    // A second run on the same journal knows the intent.
    let child = start(port, &journal);
    wait_until_listening(port).await;
    let fetched = client
        .get(format!("http://127.0.0.1:{port}/v1/payment_intents/{id}"))
        .bearer_auth("sk_test_binary_secret")
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    let (status, _) = terminate(child);
    assert!(status.success());
    let _ = std::fs::remove_file(&journal);
}
