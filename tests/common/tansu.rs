//! tansu, a Kafka-API broker from crates.io that keeps every message and, like most production
//! clusters, does not create topics on first use. The tests that must not depend on
//! auto-creation, or that publish more than the mock cluster keeps, run on it.
//!
//! `.ci/run` installs it first; a test that finds it missing installs it the same way (about 15
//! minutes on 2 cores, once per machine).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use super::free_port;

const VERSION: &str = "0.6.0";

/// A running tansu broker with its data in memory, stopped when dropped.
pub struct Tansu {
    child: Child,
    pub bootstrap: String,
}

impl Tansu {
    pub fn start() -> Tansu {
        let binary = installed();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let tansu = Tansu {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tansu did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        tansu
    }

    /// Creates `topic` through the admin API, as an operator would.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics([&new], &options)
            .await
            .expect("CreateTopics answered");
        for result in results {
            result.expect("topic created");
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tansu on the PATH or in cargo's bin directory, installed there first when missing.
fn installed() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = find() {
        return found;
    }
    eprintln!(
        "tansu is not installed; installing tansu {VERSION} from crates.io (about 15 minutes)"
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "--locked", "tansu", "--version", VERSION])
        .args(["--features", "dynostore,libsql"])
        .status()
        .expect("cargo install runs");
    assert!(status.success(), "cargo install tansu failed");
    find().expect("tansu installed")
}

fn find() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    from_path
        .chain(cargo_home.map(|h| h.join("bin")))
        .map(|dir| dir.join("tansu"))
        .find(|candidate| candidate.is_file())
}
