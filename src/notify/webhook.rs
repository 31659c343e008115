//! Standard Webhooks signing: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature`, a space-separated list of `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">`, one per secret, so a receiver keeps verifying while a secret is
//! rotated.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::NotifyError;

/// One `whsec_…` signing secret, decoded. `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(****)")
    }
}

impl SigningKey {
    pub(crate) fn parse(text: &str) -> Result<Self, NotifyError> {
        let encoded = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or(NotifyError::Secret("a webhook secret starts with whsec_"))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| NotifyError::Secret("a webhook secret is whsec_ and then base64"))?;
        if key.len() < 16 {
            return Err(NotifyError::Secret(
                "a webhook secret must hold at least 16 bytes",
            ));
        }
        Ok(SigningKey(key))
    }

    /// The secrets of a `secret_file`: one per non-empty line.
    pub(crate) fn parse_all(text: &str) -> Result<Vec<Self>, NotifyError> {
        let keys = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(SigningKey::parse)
            .collect::<Result<Vec<_>, _>>()?;
        match keys.len() {
            1 | 2 => Ok(keys),
            _ => Err(NotifyError::Secret(
                "a webhook secret file holds one secret, or two during a rotation",
            )),
        }
    }
}

/// The HMAC of `"{id}.{timestamp}.{body}"` under `key`, what Standard Webhooks signs.
fn mac(key: &SigningKey, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for `body` sent as message `id` at `timestamp`.
pub(crate) fn signature(keys: &[SigningKey], id: &str, timestamp: i64, body: &[u8]) -> String {
    let timestamp = timestamp.to_string();
    let signed = |key: &SigningKey| {
        let tag = mac(key, id, &timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    };
    keys.iter().map(signed).collect::<Vec<_>>().join(" ")
}

/// Whether `signatures` (a `webhook-signature` value) holds a valid signature of `body` sent
/// as message `id` at `timestamp` under one of the secrets in `secret_text` (a secret file's
/// text). What a receiver does; the demo's receiver uses it. Compared in constant time.
pub fn verify(secret_text: &str, id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let Ok(keys) = SigningKey::parse_all(secret_text) else {
        return false;
    };
    let given: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .collect();
    keys.iter().any(|key| {
        given.iter().any(|signature| {
            mac(key, id, timestamp, body)
                .verify_slice(signature)
                .is_ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specifications_example() {
        // The example in the Standard Webhooks specification.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signed = signature(
            &[key],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let both = format!("v1,AAAA {signed}");
        assert!(verify(secret, id, "1614265330", body, &both));
        assert!(!verify(secret, id, "1614265331", body, &signed));
        assert!(!verify(secret, id, "1614265330", b"{}", &signed));
        assert!(!verify(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            id,
            "1614265330",
            body,
            &signed
        ));
    }

    #[test]
    fn two_secrets_give_two_signatures_and_bad_ones_are_refused() {
        let text =
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\nwhsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n";
        let keys = SigningKey::parse_all(text).unwrap();
        let signed = signature(&keys, "id", 1, b"{}");
        assert_eq!(signed.split(' ').count(), 2);
        assert!(signed.split(' ').all(|s| s.starts_with("v1,")));
        assert!(SigningKey::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(SigningKey::parse("whsec_!!!").is_err());
        assert!(SigningKey::parse("whsec_AAAA").is_err());
        assert!(SigningKey::parse_all("").is_err());
        assert!(format!("{:?}", keys[0]).contains("****"));
    }
}
