//! Tokens for replicas started by the tests and benchmarks, which never serve an open API.

use crate::config::sha256;

/// A tokens file that grants `peer` as the replicas' peer token and `reader` every tenant with
/// operator rights, each by its SHA-256.
pub fn replica_tokens_toml(peer: &str, reader: &str) -> String {
    format!(
        "[[tokens]]\nname = \"replicas\"\ntoken_sha256 = \"{}\"\ntenants = [\"*\"]\npeer = true\n\n\
         [[tokens]]\nname = \"reader\"\ntoken_sha256 = \"{}\"\ntenants = [\"*\"]\noperator = true\n",
        hex::encode(sha256(peer)),
        hex::encode(sha256(reader))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::check_grants;

    #[test]
    fn the_file_grants_a_peer_and_a_reader() {
        let text = replica_tokens_toml("p", "r");
        #[derive(serde::Deserialize)]
        struct File {
            tokens: Vec<crate::config::TokenGrant>,
        }
        let file: File = toml::from_str(&text).expect("toml");
        let grants = check_grants(&file.tokens).expect("valid grants");
        assert!(grants[0].peer && grants[0].digest == sha256("p"));
        assert!(grants[1].operator && !grants[1].peer && grants[1].digest == sha256("r"));
    }
}
