//! What the demo, the benchmarks, the fuzz targets and the tests share, and the service does not
//! need: the in-process Kafka cluster, a tansu broker, child processes that end with their tests, the event generator and the fuzz targets'
//! bodies. Behind the `testkit` feature, which is on by default because the binary's `demo` and
//! `bench` use it; the service itself never imports it.

mod fuzz;
mod generator;
mod mock_cluster;
mod parts;
mod process;
mod tansu;
mod tokens;

pub use fuzz::{fuzz_decode, fuzz_page_token};
pub use generator::{generate_file, generate_lines, GenSpec};
pub use mock_cluster::EmbeddedKafka;
pub use parts::overview_parts;
pub use process::die_with_parent;
pub use tansu::TANSU_VERSION;
pub use tansu::{find_tansu, Tansu, TansuError};
pub use tokens::replica_tokens_toml;
