//! Telling a changed file from the one loaded, for the files the service reloads while it runs
//! (the tokens file, the TLS certificate, key and client CA): by a SHA-256 of their bytes.
//! A modification time and a length miss a rewrite to the same length within the
//! filesystem's timestamp granularity, which is how a token rotated to one of the same length
//! arrives.

use std::path::Path;

use sha2::{Digest, Sha256};

/// What a file held when it was read: its bytes' SHA-256, or `None` when it could not be read.
pub(crate) type FileDigest = Option<[u8; 32]>;

/// The digest of the file at `path` as it is now.
pub(crate) fn digest(path: &Path) -> FileDigest {
    let bytes = std::fs::read(path).ok()?;
    Some(Sha256::digest(&bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_same_length_rewrite_changes_the_digest() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "token = \"aaaa\"\n").expect("first");
        let first = digest(&path);
        std::fs::write(&path, "token = \"bbbb\"\n").expect("second");
        let second = digest(&path);
        assert!(first.is_some() && second.is_some());
        assert_ne!(first, second);
        std::fs::write(&path, "token = \"aaaa\"\n").expect("back");
        assert_eq!(digest(&path), first);
    }

    #[test]
    fn a_missing_file_has_no_digest() {
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(digest(&dir.path().join("absent")), None);
    }
}
