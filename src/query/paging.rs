//! Keyset paging, for the failures table and the integration list alike: the page size rule,
//! taking one page of rows in their order, and the token that carries the sort position of the
//! last row served, bound to the query (tenant, filters, order) it came from.

use std::fmt::Debug;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{QueryError, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// The page size asked for: 0 means the default; more than the maximum is refused.
pub(super) fn page_size(requested: usize) -> Result<usize, QueryError> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n > MAX_PAGE_SIZE => Err(QueryError::PageSizeTooLarge { max: MAX_PAGE_SIZE }),
        n => Ok(n),
    }
}

/// Binds tokens to a query: a hash of everything that decides its rows and their order.
pub(super) fn fingerprint(query: &impl Debug) -> u64 {
    xxhash_rust::xxh3::xxh3_64(format!("{query:?}").as_bytes())
}

/// The page after `after` (from the start without one) of `rows` ordered by `key`, and the
/// position to continue from when more rows follow. Only the page and one more row are put in
/// order, so a page costs a selection, not a sort of every row.
pub(super) fn take_page<T, K: Ord + Clone>(
    rows: Vec<T>,
    after: Option<&K>,
    size: usize,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Option<K>) {
    // Each row's key once: a key may own strings, and sorting would make one per comparison.
    let mut keyed: Vec<(K, T)> = rows.into_iter().map(|row| (key(&row), row)).collect();
    if let Some(after) = after {
        keyed.retain(|(k, _)| k > after);
    }
    if keyed.len() > size + 1 {
        keyed.select_nth_unstable_by(size, |a, b| a.0.cmp(&b.0));
        keyed.truncate(size + 1);
    }
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let next = (keyed.len() > size).then(|| keyed[size - 1].0.clone());
    keyed.truncate(size);
    (keyed.into_iter().map(|(_, row)| row).collect(), next)
}

/// A page token's text: base64url of `{"v":1,"f":fingerprint,"p":position}`.
#[derive(Serialize, Deserialize)]
struct TokenText<P> {
    v: u8,
    f: u64,
    p: P,
}

pub(super) fn encode_token<P: Serialize>(fingerprint: u64, position: &P) -> String {
    let text = TokenText {
        v: 1,
        f: fingerprint,
        p: position,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&text).unwrap_or_default())
}

/// The position a token carries, if this service issued it for this query.
pub(super) fn decode_token<P: DeserializeOwned>(
    token: &str,
    fingerprint: u64,
) -> Result<P, QueryError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| QueryError::BadPageToken)?;
    let text: TokenText<P> =
        serde_json::from_slice(&bytes).map_err(|_| QueryError::BadPageToken)?;
    if text.v != 1 {
        return Err(QueryError::BadPageToken);
    }
    if text.f != fingerprint {
        return Err(QueryError::PageTokenForAnotherQuery);
    }
    Ok(text.p)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_query() {
        let token = encode_token(7, &(-42_i64, "0f".to_owned()));
        let position: (i64, String) = decode_token(&token, 7).unwrap();
        assert_eq!(position, (-42, "0f".to_owned()));
        let other = decode_token::<(i64, String)>(&token, 8).err();
        assert_eq!(other, Some(QueryError::PageTokenForAnotherQuery));
        for bad in [
            "garbage!",
            "%%",
            &URL_SAFE_NO_PAD.encode("{\"v\":2,\"f\":7,\"p\":[1,\"a\"]}"),
        ] {
            let refused = decode_token::<(i64, String)>(bad, 7).err();
            assert_eq!(refused, Some(QueryError::BadPageToken), "{bad}");
        }
    }

    proptest! {
        /// Paging through with the positions it hands back visits every row once, in order.
        #[test]
        fn pages_cover_every_row_once_in_order(
            rows in proptest::collection::vec(0_u32..50, 0..120),
            size in 1_usize..9,
        ) {
            let keyed: Vec<(u32, usize)> = rows.iter().copied().zip(0..).collect();
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let (page, next) = take_page(keyed.clone(), after.as_ref(), size, |r| *r);
                prop_assert!(page.len() <= size);
                seen.extend(page);
                match next {
                    Some(position) => after = Some(position),
                    None => break,
                }
            }
            let mut sorted = keyed;
            sorted.sort_unstable();
            prop_assert_eq!(seen, sorted);
        }
    }
}
