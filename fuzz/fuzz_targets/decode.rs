//! Any bytes as a Kafka message value: decoding must return an event or a rejection, never
//! panic, overflow the stack or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    integration_health::testkit::fuzz_decode(payload);
});
