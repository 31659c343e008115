//! The README's first command, as a new user would run it: `demo` starts, prints where it
//! listens, `query overview` shows failures for all five types, its alerts reach its own
//! receiver (a webhook, its signature verified, Slack and PagerDuty, each printed), and SIGTERM
//! stops it cleanly.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{die_with_parent, succeeded};

const BIN: &str = env!("CARGO_BIN_EXE_integration-health");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_serves_failures_for_every_type_and_stops_on_sigterm() {
    let child = die_with_parent(&mut Command::new(BIN))
        .args([
            "demo",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ])
        .args(["--backfill-days", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("demo starts");
    let mut demo = KillOnDrop(child);
    let stdout = demo.0.stdout.take().expect("stdout");
    let (lines, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut grpc = None;
    let mut kinds = std::collections::HashSet::new();
    loop {
        let line = inbox
            .recv_timeout(Duration::from_secs(120))
            .expect("demo keeps talking");
        note_delivery(&line, &mut kinds);
        if let Some(addr) = line.strip_prefix("gRPC: ") {
            grpc = addr.split_whitespace().next().map(str::to_owned);
        }
        if line.starts_with("Live traffic") {
            break;
        }
    }
    let addr = format!("http://{}", grpc.expect("demo printed its gRPC address"));

    let output = Command::new(BIN)
        .args([
            "query",
            "--addr",
            &addr,
            "--json",
            "overview",
            "--tenant",
            "acme-retail",
        ])
        .output()
        .expect("query runs");
    let overview: serde_json::Value =
        serde_json::from_str(&succeeded(&output)).expect("json output");
    let types = overview["types"].as_array().expect("types");
    assert_eq!(types.len(), 5);
    for t in types {
        assert!(t["failed"].as_u64().unwrap_or(0) > 0, "no failures for {t}");
    }
    let failed: u64 = types.iter().filter_map(|t| t["failed"].as_u64()).sum();
    let classes = overview["classes"].as_array().expect("classes");
    let by_class: u64 = classes.iter().filter_map(|c| c["failed"].as_u64()).sum();
    assert_eq!((classes.len(), by_class), (5, failed), "{classes:?}");

    // Kept to two classes, every group's code is of one of them.
    let output = Command::new(BIN)
        .args(["query", "--addr", &addr, "--json", "failures"])
        .args([
            "--tenant",
            "acme-retail",
            "--class",
            "auth,provider-unavailable",
        ])
        .output()
        .expect("query runs");
    let kept: serde_json::Value = serde_json::from_str(&succeeded(&output)).expect("json output");
    let rows = kept["failures"].as_array().expect("rows");
    assert!(!rows.is_empty(), "the demo has auth or provider failures");
    for row in rows {
        let code = row["status_code"].as_u64().expect("a code") as u16;
        let class = common::class_by_the_docs(code);
        assert!(["AUTH", "PROVIDER_UNAVAILABLE"].contains(&class), "{row}");
    }

    let table = Command::new(BIN)
        .args([
            "query",
            "--addr",
            &addr,
            "failures",
            "--tenant",
            "acme-retail",
        ])
        .output()
        .expect("query runs");
    assert!(String::from_utf8_lossy(&table.stdout).contains("failure groups"));

    // The incidents' alerts reach the demo's own receiver, which prints each kind whole once.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while kinds.len() < 4 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = inbox
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the receiver printed only {kinds:?}"));
        note_delivery(&line, &mut kinds);
    }
    assert_eq!(
        kinds,
        [
            "webhook",
            "slack",
            "pagerduty",
            "a verified webhook signature"
        ]
        .map(str::to_owned)
        .into()
    );

    let pid = demo.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs")
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "demo exited with {status}");
}

/// Notes the kind of delivery a "the first … delivery" line of the demo's receiver names.
fn note_delivery(line: &str, kinds: &mut std::collections::HashSet<String>) {
    if let Some(kind) = line
        .strip_prefix("demo receiver: the first ")
        .and_then(|rest| rest.split_whitespace().next())
    {
        kinds.insert(kind.to_owned());
    }
    if line.starts_with("demo receiver: webhook ") && line.ends_with(": signature verified") {
        kinds.insert("a verified webhook signature".to_owned());
    }
}
