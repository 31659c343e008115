//! Asking the memory early for what an event will touch, so that the cache miss overlaps the
//! work on the events before it. The only unsafe code of the ingest path lives here; the crate
//! denies `unsafe_code` everywhere else but the two system calls of `server/files.rs` and the
//! test processes' `pre_exec`.
#![allow(unsafe_code)]

/// Hints that `item` will be read soon. It never faults, reads or changes anything; on targets
/// without a prefetch instruction it does nothing.
#[inline]
pub(crate) fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` only hints the cache and never dereferences the pointer; it needs
    // SSE, which every x86_64 target has. The pointer comes from a live reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}
