//! What the fuzz targets (`fuzz/`) and the hostile-corpus test run on every input. Any panic
//! is a bug.

use std::sync::Arc;

use crate::clock::ManualClock;
use crate::event::{decode, DecodeLimits};
use crate::query::{ListFailuresRequest, QueryEngine, QueryError};
use crate::store::{PartitionState, Store, StoreLimits};

const NOW: i64 = 1_767_225_600_000;

/// Decode, and count what decodes, as the owner would. The fast path must agree with the
/// general one wherever it takes a payload.
pub fn fuzz_decode(payload: &[u8]) {
    crate::event::check_fast_path(payload);
    let limits = StoreLimits::default();
    let mut state = PartitionState::new(&limits);
    if let Ok(event) = decode(payload, DecodeLimits::at(NOW)) {
        let _ = state.apply(&event, &limits, NOW);
    }
}

/// A failures-table request with `token` as its page token is answered or refused as a bad
/// token, never anything else.
pub fn fuzz_page_token(token: &[u8]) {
    let store = Arc::new(Store::new(StoreLimits::default()));
    let engine = QueryEngine::new(store, Arc::new(ManualClock::new(NOW)));
    let mut request = ListFailuresRequest::first_page("acme", 10);
    request.page_token = Some(String::from_utf8_lossy(token).into_owned());
    match engine.list_failures(&request) {
        Ok(_) | Err(QueryError::BadPageToken) | Err(QueryError::PageTokenForAnotherQuery) => {}
        Err(other) => panic!("a page token was refused as {other:?}"),
    }
}
