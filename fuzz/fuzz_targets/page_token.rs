//! Any text as a failures-table page token: refused with INVALID_ARGUMENT or accepted, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|token: &[u8]| {
    integration_health::testkit::fuzz_page_token(token);
});
