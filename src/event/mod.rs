//! Decoding and validation of outcome events (docs/events.md).
//!
//! Two paths. The fast one (`scan`) reads the common shape in one pass, validating each field as
//! it reads it and borrowing every string, so a valid event costs no allocation and no copy.
//! Whatever it does not take goes to the general one: sonic-rs into a `RawEvent` (escapes, odd
//! spacing, anything JSON allows), then `validate`, which names the field at fault. Only a
//! payload that fails there is parsed once more, as a generic map, to say which field was wrong.

use std::borrow::Cow;

use thiserror::Error;

mod plain;
mod scan;
mod types;
mod validate;

pub use types::IntegrationType;
pub(crate) use types::{Outcome, PerType};
pub use validate::is_bidi_control;
pub(crate) use validate::is_tenant_char;
use validate::{decode_general, validate};

pub(crate) const MAX_EVENT_ID_CHARS: usize = 128;
pub(crate) const MAX_TENANT_ID_CHARS: usize = 64;
pub(crate) const MAX_INTEGRATION_ID_CHARS: usize = 128;
pub(crate) const MAX_NAME_CHARS: usize = 256;
pub(crate) const MAX_ERROR_MESSAGE_CHARS: usize = 1024;

/// Why an event was rejected. The `reason_code` goes into the DLQ header and the metrics label.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EventError {
    #[error("message has no payload")]
    EmptyPayload,
    #[error("payload is not a JSON object: {0}")]
    MalformedJson(String),
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    #[error("occurred_at is {ahead_ms} ms in the future, more than the allowed {allowed_ms} ms")]
    FromTheFuture { ahead_ms: i64, allowed_ms: i64 },
    #[error("message is {bytes} bytes; at most {max} are accepted")]
    TooLarge { bytes: usize, max: usize },
    #[error("tenant {tenant} would exceed this partition's limit of {cap} tenants")]
    TenantLimit { tenant: String, cap: usize },
    #[error("internal error while applying the event; it was set aside, see the service log")]
    Internal,
}

impl EventError {
    pub(crate) fn reason_code(&self) -> &'static str {
        match self {
            EventError::EmptyPayload => "empty_payload",
            EventError::MalformedJson(_) => "malformed_json",
            EventError::MissingField(_) => "missing_field",
            EventError::InvalidField { .. } => "invalid_field",
            EventError::FromTheFuture { .. } => "future_event",
            EventError::TooLarge { .. } => "too_large",
            EventError::TenantLimit { .. } => "tenant_limit",
            EventError::Internal => "internal_error",
        }
    }

    fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        EventError::InvalidField {
            field,
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub(crate) event_id: Cow<'a, str>,
    pub(crate) tenant_id: Cow<'a, str>,
    pub occurred_at_ms: i64,
    pub(crate) integration_type: IntegrationType,
    pub(crate) integration_id: Cow<'a, str>,
    pub(crate) integration_name: Cow<'a, str>,
    pub(crate) outcome: Outcome,
    /// Always present for failures; present for successes only when the producer sent it.
    pub(crate) status_code: Option<u16>,
    pub(crate) error_message: Option<Cow<'a, str>>,
    pub(crate) flow_id: Option<Cow<'a, str>>,
    pub(crate) flow_name: Option<Cow<'a, str>>,
    pub(crate) service_id: Option<Cow<'a, str>>,
    pub(crate) service_name: Option<Cow<'a, str>>,
    pub(crate) latency_ms: Option<f64>,
    /// Which attempt of its transaction this outcome is, counting from 1, when sent.
    pub(crate) attempt: Option<u32>,
    /// False when another attempt follows; absent means final.
    pub(crate) final_attempt: Option<bool>,
}

impl Event<'_> {
    /// Whether this outcome is its transaction's last: the only kind the failure-rate and SLO
    /// rules count.
    pub(crate) fn is_final(&self) -> bool {
        self.final_attempt.unwrap_or(true)
    }

    /// Whether the event says anything about retries; most do not, and cost nothing more.
    pub(crate) fn tells_retries(&self) -> bool {
        self.attempt.is_some() || self.final_attempt.is_some()
    }
}

#[cfg(test)]
impl Event<'static> {
    /// An event with only the required fields, for tests to adjust with `..`.
    pub(crate) fn bare(
        event_id: String,
        tenant_id: &'static str,
        integration_type: IntegrationType,
        integration_id: String,
        outcome: Outcome,
        occurred_at_ms: i64,
    ) -> Self {
        Event {
            event_id: Cow::Owned(event_id),
            tenant_id: Cow::Borrowed(tenant_id),
            occurred_at_ms,
            integration_type,
            integration_name: Cow::Owned(integration_id.clone()),
            integration_id: Cow::Owned(integration_id),
            outcome,
            status_code: None,
            error_message: None,
            flow_id: None,
            flow_name: None,
            service_id: None,
            service_name: None,
            latency_ms: None,
            attempt: None,
            final_attempt: None,
        }
    }
}

/// Most characters of an offending value that an error message repeats.
pub(crate) const MAX_ECHO_CHARS: usize = 64;
/// Deepest nesting of arrays and objects accepted, anywhere in the payload.
pub(crate) const MAX_NESTING: usize = 64;
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// `text` cut to `MAX_ECHO_CHARS` characters, so an error never repeats a huge value.
pub(crate) fn echo(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// Bounds that depend on the wall clock and the deployment, passed in so decoding stays
/// deterministic.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub now_ms: i64,
    pub(crate) max_future_ms: i64,
    pub(crate) max_bytes: usize,
}

impl DecodeLimits {
    /// The defaults (5 minutes into the future, 1 MiB) at `now_ms`.
    pub fn at(now_ms: i64) -> Self {
        DecodeLimits {
            now_ms,
            max_future_ms: 300_000,
            max_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Decodes and validates one Kafka message value.
pub fn decode(payload: &[u8], limits: DecodeLimits) -> Result<Event<'_>, EventError> {
    if payload.is_empty() {
        return Err(EventError::EmptyPayload);
    }
    if payload.len() > limits.max_bytes {
        return Err(EventError::TooLarge {
            bytes: payload.len(),
            max: limits.max_bytes,
        });
    }
    let event = match scan::scan(payload) {
        Some(event) => event,
        // The general decoders recurse into nested values; bound the depth before they see it.
        None if !nesting_within(payload, MAX_NESTING) => {
            return Err(EventError::MalformedJson(format!(
                "values nest deeper than {MAX_NESTING} levels"
            )))
        }
        None => validate(decode_general(payload)?)?,
    };
    let ahead_ms = event.occurred_at_ms.saturating_sub(limits.now_ms);
    if ahead_ms > limits.max_future_ms {
        return Err(EventError::FromTheFuture {
            ahead_ms,
            allowed_ms: limits.max_future_ms,
        });
    }
    Ok(event)
}

/// How many payloads ahead `decode_batch` asks the memory for: about the decoding time of four
/// events covers a read from RAM (measured in docs/performance.md).
const PAYLOAD_AHEAD: usize = 4;

/// Decodes `payloads` in order, as `decode` does one by one. While it decodes one, it asks the
/// memory for a payload a few places on, so reading it does not wait on RAM. A panic while
/// decoding one (a bug) makes that payload `EventError::Internal` and the batch goes on.
pub fn decode_batch<'a>(
    payloads: &[&'a [u8]],
    limits: DecodeLimits,
) -> Vec<Result<Event<'a>, EventError>> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            if let Some(ahead) = payloads.get(i + PAYLOAD_AHEAD) {
                ahead.iter().step_by(64).for_each(crate::prefetch::prefetch);
            }
            std::panic::catch_unwind(|| decode(payload, limits))
                .unwrap_or(Err(EventError::Internal))
        })
        .collect()
}

/// Whether the fast path took `payload`; panics when it took it with an event other than the
/// general path's. The decode fuzz target and the hostile corpus check this on every input.
#[cfg(any(test, feature = "testkit"))]
pub(crate) fn check_fast_path(payload: &[u8]) -> bool {
    let Some(fast) = scan::scan(payload) else {
        return false;
    };
    let general = decode_general(payload).and_then(validate);
    assert_eq!(
        general.as_ref().ok(),
        Some(&fast),
        "the fast path read {:?} unlike the general path",
        String::from_utf8_lossy(payload)
    );
    true
}

/// True when no array or object in `payload` nests deeper than `max`. Brackets inside strings
/// do not count. Runs in one pass without recursion, whatever the input.
pub(crate) fn nesting_within(payload: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in payload {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn limits() -> DecodeLimits {
        DecodeLimits::at(NOW)
    }

    #[test]
    fn deep_nesting_in_an_unknown_field_is_malformed_not_a_crash() {
        let depth = 400_000;
        let mut payload = br#"{"x":"#.to_vec();
        payload.extend(std::iter::repeat_n(b'[', depth));
        payload.extend(std::iter::repeat_n(b']', depth));
        payload.push(b'}');
        let err = decode(&payload, limits()).unwrap_err();
        assert_eq!(err.reason_code(), "malformed_json");
        assert!(err.to_string().contains("nest"), "{err}");
    }

    #[test]
    fn brackets_inside_strings_do_not_count_as_nesting() {
        let mut value = base();
        value["error_message"] = serde_json::json!("[".repeat(500));
        value["future_field"] = serde_json::json!({"a\\\"[": [[["deep enough"]]]});
        assert!(decode_value(&value).is_ok());
        assert!(!nesting_within(b"[[[[", 3));
        assert!(nesting_within(br#"["[[[[[[["]"#, 1));
    }

    #[test]
    fn an_oversized_message_is_too_large() {
        let mut value = base();
        value["padding"] = serde_json::json!("x".repeat(2 << 20));
        let bytes = serde_json::to_vec(&value).unwrap();
        let err = decode(&bytes, limits()).unwrap_err();
        assert_eq!(err.reason_code(), "too_large");
    }

    #[test]
    fn control_characters_in_strings_are_refused_but_whitespace_is_not() {
        for (field, text) in [
            ("error_message", "clear \u{1b}[2J screen"),
            ("integration_name", "title \u{9d} change"),
            ("flow_name", "nul \u{0} byte"),
        ] {
            let mut value = base();
            value[field] = serde_json::json!(text);
            let err = decode_value(&value).unwrap_err();
            assert_eq!(err.reason_code(), "invalid_field", "{field}");
            assert!(err.to_string().contains(field), "{err}");
        }
        let mut value = base();
        value["error_message"] = serde_json::json!("line one\nline two\tend\r");
        assert!(decode_value(&value).is_ok());
    }

    #[test]
    fn errors_echo_at_most_a_short_prefix_of_the_value() {
        let mut value = base();
        value["integration_type"] = serde_json::json!("y".repeat(100_000));
        let err = decode_value(&value).unwrap_err().to_string();
        assert!(err.len() < 400, "{} bytes", err.len());
        assert_eq!(echo("short"), "short");
        assert_eq!(echo(&"é".repeat(100)).chars().count(), MAX_ECHO_CHARS + 1);
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "event_id": "e-1",
            "tenant_id": "acme.prod:eu-1",
            "occurred_at": "2025-12-31T23:00:00+01:00",
            "integration_type": "outbound_webhook",
            "integration_id": "wh-7",
            "integration_name": "Order sync",
            "outcome": "failure",
            "status_code": 503,
            "future_field": {"nested": true}
        })
    }

    fn decode_value(value: &serde_json::Value) -> Result<Event<'static>, EventError> {
        let bytes = serde_json::to_vec(value).unwrap();
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        decode(bytes, limits())
    }

    #[test]
    fn decodes_a_valid_failure_and_ignores_unknown_fields() {
        let event = decode_value(&base()).unwrap();
        assert_eq!(event.occurred_at_ms, NOW - 2 * 3_600_000);
        assert_eq!(event.integration_type, IntegrationType::OutboundWebhook);
        assert_eq!(event.outcome, Outcome::Failure);
        assert_eq!(event.status_code, Some(503));
        assert_eq!(event.error_message, None);
    }

    #[test]
    fn accepts_epoch_millis() {
        let mut value = base();
        value["occurred_at"] = serde_json::json!(NOW - 5);
        assert_eq!(decode_value(&value).unwrap().occurred_at_ms, NOW - 5);
    }

    #[test]
    fn rejects_each_broken_rule_with_the_field_named() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("event_id", serde_json::json!(""), "invalid_field"),
            (
                "event_id",
                serde_json::json!("x".repeat(129)),
                "invalid_field",
            ),
            ("tenant_id", serde_json::json!("a b"), "invalid_field"),
            (
                "tenant_id",
                serde_json::json!("t".repeat(65)),
                "invalid_field",
            ),
            (
                "occurred_at",
                serde_json::json!("2025-12-31 10:00"),
                "invalid_field",
            ),
            ("occurred_at", serde_json::json!(1.5), "invalid_field"),
            (
                "integration_type",
                serde_json::json!("sms"),
                "invalid_field",
            ),
            ("outcome", serde_json::json!("maybe"), "invalid_field"),
            ("status_code", serde_json::json!(99), "invalid_field"),
            ("status_code", serde_json::json!(1000), "invalid_field"),
            ("status_code", serde_json::json!("404"), "invalid_field"),
            (
                "error_message",
                serde_json::json!("m".repeat(1025)),
                "invalid_field",
            ),
            (
                "flow_name",
                serde_json::json!("f".repeat(257)),
                "invalid_field",
            ),
            ("latency_ms", serde_json::json!(-1), "invalid_field"),
            ("attempt", serde_json::json!(0), "invalid_field"),
            ("attempt", serde_json::json!(1001), "invalid_field"),
            ("attempt", serde_json::json!("2"), "invalid_field"),
            ("final", serde_json::json!("no"), "invalid_field"),
            ("final", serde_json::json!(0), "invalid_field"),
        ];
        for (field, bad, reason) in cases {
            let mut value = base();
            value[field] = bad.clone();
            let err = decode_value(&value).unwrap_err();
            assert_eq!(err.reason_code(), reason, "{field}={bad}: {err}");
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn retry_fields_are_read_and_absent_means_final() {
        let plain = decode_value(&base()).unwrap();
        assert_eq!(
            (plain.attempt, plain.final_attempt, plain.is_final()),
            (None, None, true)
        );
        assert!(!plain.tells_retries());
        let mut value = base();
        value["attempt"] = serde_json::json!(2);
        value["final"] = serde_json::json!(false);
        let retried = decode_value(&value).unwrap();
        assert_eq!((retried.attempt, retried.is_final()), (Some(2), false));
        let text = serde_json::to_vec(&value).unwrap();
        let scanned = decode(&text, limits()).unwrap();
        assert_eq!(
            (scanned.attempt, scanned.final_attempt),
            (Some(2), Some(false))
        );
    }

    #[test]
    fn failure_needs_a_status_code_but_success_does_not() {
        let mut value = base();
        value.as_object_mut().unwrap().remove("status_code");
        assert_eq!(
            decode_value(&value).unwrap_err(),
            EventError::MissingField("status_code")
        );
        value["outcome"] = serde_json::json!("success");
        assert_eq!(decode_value(&value).unwrap().status_code, None);
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        let mut value = base();
        value["integration_name"] = serde_json::json!("é".repeat(256));
        assert!(decode_value(&value).is_ok());
    }

    #[test]
    fn rejects_events_too_far_in_the_future() {
        let mut value = base();
        value["occurred_at"] = serde_json::json!(NOW + 300_001);
        assert_eq!(
            decode_value(&value).unwrap_err().reason_code(),
            "future_event"
        );
        value["occurred_at"] = serde_json::json!(NOW + 300_000);
        assert!(decode_value(&value).is_ok());
    }

    #[test]
    fn rejects_non_objects_and_garbage() {
        for payload in [&b"not json"[..], b"[1,2]", b"{\"event_id\":", b"\xff\xfe"] {
            let err = decode(payload, limits()).unwrap_err();
            assert_eq!(err.reason_code(), "malformed_json", "{payload:?}");
        }
        assert_eq!(decode(b"", limits()).unwrap_err(), EventError::EmptyPayload);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = decode(&bytes, limits());
        }

        #[test]
        fn mangled_events_never_panic(cut in 0usize..400, flip in 0usize..400, byte in proptest::num::u8::ANY) {
            let mut bytes = serde_json::to_vec(&base()).unwrap();
            let flip = flip % bytes.len();
            bytes[flip] = byte;
            bytes.truncate(cut.min(bytes.len()));
            let _ = decode(&bytes, limits());
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        for field in [
            "event_id",
            "tenant_id",
            "occurred_at",
            "integration_type",
            "integration_id",
            "integration_name",
            "outcome",
        ] {
            let mut value = base();
            value.as_object_mut().unwrap().remove(field);
            assert_eq!(
                decode_value(&value).unwrap_err(),
                EventError::MissingField(field)
            );
        }
    }
}
