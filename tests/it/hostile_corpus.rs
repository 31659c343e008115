//! The fuzz targets' bodies over the committed corpus of hostile inputs (`fuzz/corpus/`), on
//! stable Rust, so every CI run replays them. `cargo +nightly fuzz run decode` grows the
//! corpus; docs/security.md says how.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(entry.path()).expect("readable"))
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_hostile_payload_decodes_or_is_rejected_without_a_panic() {
    let inputs = inputs("decode");
    assert!(inputs.len() >= 20, "the corpus is committed");
    for (name, payload) in inputs {
        let outcome =
            std::panic::catch_unwind(|| integration_health::testkit::fuzz_decode(&payload));
        assert!(outcome.is_ok(), "{name} panicked");
    }
}

#[test]
fn every_hostile_page_token_is_answered_or_refused_without_a_panic() {
    let inputs = inputs("page_token");
    assert!(!inputs.is_empty(), "the corpus is committed");
    for (name, token) in inputs {
        let outcome =
            std::panic::catch_unwind(|| integration_health::testkit::fuzz_page_token(&token));
        assert!(outcome.is_ok(), "{name} panicked");
    }
}
