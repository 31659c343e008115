//! tansu, a Kafka-API broker from crates.io that keeps every message in memory and, like most
//! production clusters, does not create topics on first use: for tests and benchmarks that
//! publish more than librdkafka's mock cluster keeps, or that must not rely on auto-creation.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use thiserror::Error;

/// The version `.ci/run` and the tests install.
pub const TANSU_VERSION: &str = "0.6.0";

#[derive(Debug, Error)]
pub enum TansuError {
    #[error(
        "tansu is not installed; run: cargo install --locked tansu --version {TANSU_VERSION} --features dynostore,libsql"
    )]
    NotInstalled,
    #[error("cannot start tansu")]
    Start(#[source] std::io::Error),
    #[error("tansu did not listen within 30 s")]
    NotListening,
    #[error("creating topic {topic}")]
    CreateTopic {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
}

/// A running tansu broker with its data in memory, stopped when dropped.
pub struct Tansu {
    child: Child,
    pub bootstrap: String,
}

impl Tansu {
    /// Starts `binary` (from `find_tansu`) on a free loopback port.
    pub fn start(binary: &std::path::Path) -> Result<Tansu, TansuError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(TansuError::Start)?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = super::die_with_parent(&mut Command::new(binary))
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(TansuError::Start)?;
        let tansu = Tansu {
            child,
            bootstrap: format!("127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(TansuError::NotListening);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(tansu)
    }

    /// Creates `topic` through the admin API, as an operator would.
    pub async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), TansuError> {
        let failed = |source| TansuError::CreateTopic {
            topic: topic.to_owned(),
            source,
        };
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .map_err(failed)?;
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics([&new], &options)
            .await
            .map_err(failed)?;
        for result in results {
            result.map_err(|(_, code)| failed(rdkafka::error::KafkaError::AdminOp(code)))?;
        }
        Ok(())
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tansu on the PATH or in cargo's bin directory.
pub fn find_tansu() -> Result<PathBuf, TansuError> {
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
        .ok_or(TansuError::NotInstalled)
}
