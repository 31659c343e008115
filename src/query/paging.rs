//! Keyset page tokens for the failures table: the sort position of the last row served, bound
//! to the query (tenant, filters, order) it came from.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::{ListFailuresRequest, QueryError};
use crate::store::{format_failure_id, parse_failure_id};

pub(super) fn query_fingerprint(request: &ListFailuresRequest) -> u64 {
    let text = format!(
        "{}|{:?}|{:?}|{:?}",
        request.tenant_id, request.types, request.filter, request.order
    );
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

/// Keyset page token: the sort position of the last row served, bound to the query it came from.
pub(super) struct PageToken {
    pub fingerprint: u64,
    pub position: (i64, u128),
}

impl PageToken {
    pub fn encode(&self) -> String {
        let text = format!(
            "v1.{:016x}.{}.{}",
            self.fingerprint,
            self.position.0,
            format_failure_id(self.position.1)
        );
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(token: &str, fingerprint: u64) -> Result<PageToken, QueryError> {
        let bad = || QueryError::BadPageToken;
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(4, '.');
        if parts.next() != Some("v1") {
            return Err(bad());
        }
        let token_fingerprint = parts
            .next()
            .and_then(|p| u64::from_str_radix(p, 16).ok())
            .ok_or_else(bad)?;
        let primary = parts
            .next()
            .and_then(|p| p.parse::<i64>().ok())
            .ok_or_else(bad)?;
        let failure_id = parts.next().and_then(parse_failure_id).ok_or_else(bad)?;
        if token_fingerprint != fingerprint {
            return Err(QueryError::PageTokenForAnotherQuery);
        }
        Ok(PageToken {
            fingerprint,
            position: (primary, failure_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_the_query() {
        let token = PageToken {
            fingerprint: 7,
            position: (-42, 9),
        }
        .encode();
        let decoded = PageToken::decode(&token, 7).unwrap();
        assert_eq!(decoded.position, (-42, 9));
        assert!(PageToken::decode(&token, 8).is_err());
        assert!(PageToken::decode("garbage!", 7).is_err());
        assert!(PageToken::decode(&URL_SAFE_NO_PAD.encode("v1.zz.1.2"), 7).is_err());
    }
}
