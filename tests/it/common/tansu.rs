//! tansu (`testkit::Tansu`), installed first when missing: `.ci/run` installs it, and a test
//! that finds it missing installs it the same way (about 15 minutes on 2 cores, once per
//! machine).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use integration_health::testkit::{find_tansu, TANSU_VERSION};

/// A running tansu broker, stopped when dropped.
pub struct Tansu(integration_health::testkit::Tansu);

impl std::ops::Deref for Tansu {
    type Target = integration_health::testkit::Tansu;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Tansu {
    pub fn start() -> Tansu {
        let broker = integration_health::testkit::Tansu::start(&installed()).expect("tansu starts");
        Tansu(broker)
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        self.0
            .create_topic(topic, partitions)
            .await
            .expect("topic created");
    }
}

/// tansu, installed with cargo first when missing.
fn installed() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Ok(found) = find_tansu() {
        return found;
    }
    eprintln!(
        "tansu is not installed; installing tansu {TANSU_VERSION} from crates.io (about 15 minutes)"
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "--locked", "tansu", "--version", TANSU_VERSION])
        .args(["--features", "dynostore,libsql"])
        .status()
        .expect("cargo install runs");
    assert!(status.success(), "cargo install tansu failed");
    find_tansu().expect("tansu installed")
}
