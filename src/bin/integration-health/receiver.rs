//! The demo's alert receiver: one local HTTP server standing in for a webhook endpoint, a Slack
//! channel and PagerDuty, printing what each receives, so the alerts' deliveries can be seen
//! without an account anywhere. The first delivery of each kind is printed whole.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use integration_health::config::{DestinationKind, DestinationSettings};
use rand::RngCore;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub struct DemoReceiver {
    pub addr: SocketAddr,
    /// Where the destinations' secret files are; removed with the receiver.
    dir: PathBuf,
    /// The webhook's signing secret, `whsec_…`: fresh for each demo.
    secret: String,
}

/// What the receiver remembers: the kinds it printed whole, and the secret it verifies with.
struct Inbox {
    shown: Mutex<HashSet<String>>,
    secret: String,
}

impl Drop for DemoReceiver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves until `shutdown`.
pub async fn start(shutdown: CancellationToken) -> std::io::Result<DemoReceiver> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    let secret = format!("whsec_{}", STANDARD.encode(key));
    let inbox = Arc::new(Inbox {
        shown: Mutex::default(),
        secret: secret.clone(),
    });
    let app = axum::Router::new().fallback(receive).with_state(inbox);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    let dir = std::env::temp_dir().join(format!("ih-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(DemoReceiver { addr, dir, secret })
}

impl DemoReceiver {
    /// A signed webhook, a Slack channel and a PagerDuty service, all here; the webhook's
    /// secret is a fresh one in a file the demo prints.
    pub fn destinations(&self) -> std::io::Result<Vec<DestinationSettings>> {
        let secret = self.write("webhook.secret", &self.secret)?;
        let slack_url = self.write("slack.url", &format!("http://{}/slack", self.addr))?;
        let routing_key = self.write("pagerduty.key", "demo-routing-key")?;
        Ok(vec![
            DestinationSettings {
                url: Some(format!("http://{}/webhook", self.addr)),
                secret_file: Some(secret),
                ..DestinationSettings::new("demo-webhook", DestinationKind::Webhook)
            },
            DestinationSettings {
                url_file: Some(slack_url),
                ..DestinationSettings::new("demo-slack", DestinationKind::Slack)
            },
            DestinationSettings {
                url: Some(format!("http://{}/pagerduty", self.addr)),
                secret_file: Some(routing_key),
                ..DestinationSettings::new("demo-pagerduty", DestinationKind::Pagerduty)
            },
        ])
    }

    pub fn webhook_secret_file(&self) -> PathBuf {
        self.dir.join("webhook.secret")
    }

    fn write(&self, name: &str, text: &str) -> std::io::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

async fn receive(
    State(inbox): State<Arc<Inbox>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let kind = uri.path().trim_start_matches('/').to_owned();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    // As a receiver should: a webhook that does not verify is refused.
    if kind == "webhook" {
        let verified = integration_health::notify::verify_webhook(
            &inbox.secret,
            header("webhook-id"),
            header("webhook-timestamp"),
            &body,
            header("webhook-signature"),
        );
        if !verified {
            println!("demo receiver: a webhook whose signature does not verify; refused");
            return StatusCode::UNAUTHORIZED;
        }
    }
    let first = inbox
        .shown
        .lock()
        .map(|mut s| s.insert(kind.clone()))
        .unwrap_or(false);
    if first {
        println!("demo receiver: the first {kind} delivery, whole:");
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
                println!("  {name}: {value}");
            }
        }
        let pretty = serde_json::to_string_pretty(&json).unwrap_or_default();
        for line in pretty.lines() {
            println!("  {line}");
        }
    } else {
        println!("demo receiver: {kind} {}", one_line(&kind, &json));
    }
    if kind == "webhook" {
        println!(
            "demo receiver: webhook {}: signature verified",
            header("webhook-id")
        );
    }
    StatusCode::OK
}

fn one_line(kind: &str, json: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    match kind {
        "slack" => text(&json["text"]),
        "pagerduty" => format!(
            "{} {} (dedup_key {})",
            text(&json["event_action"]),
            text(&json["payload"]["summary"]),
            text(&json["dedup_key"])
        ),
        _ => format!(
            "{} {} {} {}",
            text(&json["state"]),
            text(&json["rule"]),
            text(&json["tenant_id"]),
            text(&json["integration_id"])
        ),
    }
}
