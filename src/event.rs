//! Decoding and validation of outcome events (SPEC §2).
//!
//! The fast path deserializes into a borrowed struct, so a valid event costs no allocation
//! beyond strings that carry JSON escapes. Only a payload that fails is parsed a second time,
//! as a generic map, to say which field was wrong.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

mod scan;

pub const MAX_EVENT_ID_CHARS: usize = 128;
pub const MAX_TENANT_ID_CHARS: usize = 64;
pub const MAX_INTEGRATION_ID_CHARS: usize = 128;
pub const MAX_NAME_CHARS: usize = 256;
pub const MAX_ERROR_MESSAGE_CHARS: usize = 1024;

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
}

impl EventError {
    pub fn reason_code(&self) -> &'static str {
        match self {
            EventError::EmptyPayload => "empty_payload",
            EventError::MalformedJson(_) => "malformed_json",
            EventError::MissingField(_) => "missing_field",
            EventError::InvalidField { .. } => "invalid_field",
            EventError::FromTheFuture { .. } => "future_event",
        }
    }

    fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        EventError::InvalidField {
            field,
            problem: problem.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IntegrationType {
    InboundWebhook,
    OutboundWebhook,
    PrebuiltIntegration,
    CustomNode,
    CustomEvent,
}

impl IntegrationType {
    pub const ALL: [IntegrationType; 5] = [
        IntegrationType::InboundWebhook,
        IntegrationType::OutboundWebhook,
        IntegrationType::PrebuiltIntegration,
        IntegrationType::CustomNode,
        IntegrationType::CustomEvent,
    ];

    /// Dense index for per-type counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(index: usize) -> Option<Self> {
        Self::ALL.get(index).copied()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationType::InboundWebhook => "inbound_webhook",
            IntegrationType::OutboundWebhook => "outbound_webhook",
            IntegrationType::PrebuiltIntegration => "prebuilt_integration",
            IntegrationType::CustomNode => "custom_node",
            IntegrationType::CustomEvent => "custom_event",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            IntegrationType::InboundWebhook => "Inbound Webhooks",
            IntegrationType::OutboundWebhook => "Outbound Webhooks",
            IntegrationType::PrebuiltIntegration => "Pre-built Integrations",
            IntegrationType::CustomNode => "Custom Nodes",
            IntegrationType::CustomEvent => "Custom Events",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl fmt::Display for IntegrationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// A validated event. Strings borrow from the payload where they can.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub tenant_id: Cow<'a, str>,
    pub occurred_at_ms: i64,
    pub integration_type: IntegrationType,
    pub integration_id: Cow<'a, str>,
    pub integration_name: Cow<'a, str>,
    pub outcome: Outcome,
    /// Always present for failures; present for successes only when the producer sent it.
    pub status_code: Option<u16>,
    pub error_message: Option<Cow<'a, str>>,
    pub flow_id: Option<Cow<'a, str>>,
    pub flow_name: Option<Cow<'a, str>>,
    pub service_id: Option<Cow<'a, str>>,
    pub service_name: Option<Cow<'a, str>>,
    pub latency_ms: Option<f64>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
struct RawEvent<'a> {
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tenant_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    occurred_at: Option<RawTime<'a>>,
    #[serde(borrow)]
    integration_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    integration_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    integration_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    status_code: Option<i64>,
    #[serde(borrow)]
    error_message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    flow_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    flow_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    service_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    service_name: Option<Cow<'a, str>>,
    latency_ms: Option<f64>,
}

#[derive(Debug, PartialEq)]
enum RawTime<'a> {
    EpochMillis(i64),
    Text(Cow<'a, str>),
}

/// Hand-written so the common integer form costs no buffering (an untagged enum would).
impl<'de: 'a, 'a> Deserialize<'de> for RawTime<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for TimeVisitor<'a> {
            type Value = RawTime<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("RFC 3339 text or integer epoch milliseconds")
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawTime::EpochMillis(v))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map(RawTime::EpochMillis)
                    .map_err(|_| E::custom("epoch milliseconds out of range"))
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(RawTime::Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawTime::Text(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_any(TimeVisitor(std::marker::PhantomData))
    }
}

/// Bounds that depend on the wall clock, passed in so decoding stays deterministic.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub now_ms: i64,
    pub max_future_ms: i64,
}

/// Decodes and validates one Kafka message value.
pub fn decode(payload: &[u8], limits: DecodeLimits) -> Result<Event<'_>, EventError> {
    if payload.is_empty() {
        return Err(EventError::EmptyPayload);
    }
    let raw = match scan::scan(payload) {
        Some(raw) => raw,
        None => decode_general(payload)?,
    };
    let event = validate(raw)?;
    let ahead_ms = event.occurred_at_ms.saturating_sub(limits.now_ms);
    if ahead_ms > limits.max_future_ms {
        return Err(EventError::FromTheFuture {
            ahead_ms,
            allowed_ms: limits.max_future_ms,
        });
    }
    Ok(event)
}

/// Any valid JSON: escapes, odd spacing, everything the fast scanner leaves to it. sonic-rs
/// parses with SIMD and validates UTF-8; serde_json stays for the slow diagnosis.
fn decode_general(payload: &[u8]) -> Result<RawEvent<'_>, EventError> {
    sonic_rs::from_slice(payload).map_err(|_| diagnose(payload))
}

/// Slow path for payloads the typed decoder refused: find the field to blame.
fn diagnose(payload: &[u8]) -> EventError {
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(err) => return EventError::MalformedJson(err.to_string()),
    };
    let Some(object) = value.as_object() else {
        return EventError::MalformedJson("top-level value is not an object".into());
    };
    let expect_text = [
        "event_id",
        "tenant_id",
        "integration_type",
        "integration_id",
        "integration_name",
        "outcome",
        "error_message",
        "flow_id",
        "flow_name",
        "service_id",
        "service_name",
    ];
    for field in expect_text {
        if let Some(v) = object.get(field) {
            if !(v.is_string() || v.is_null()) {
                return EventError::invalid(field, "must be a string");
            }
        }
    }
    if let Some(v) = object.get("occurred_at") {
        if !(v.is_string() || v.is_i64() || v.is_null()) {
            return EventError::invalid(
                "occurred_at",
                "must be RFC 3339 text or integer epoch milliseconds",
            );
        }
    }
    if let Some(v) = object.get("status_code") {
        if !(v.is_i64() || v.is_null()) {
            return EventError::invalid("status_code", "must be an integer");
        }
    }
    if let Some(v) = object.get("latency_ms") {
        if !(v.is_number() || v.is_null()) {
            return EventError::invalid("latency_ms", "must be a number");
        }
    }
    EventError::MalformedJson("payload does not match the outcome event schema".into())
}

fn validate(raw: RawEvent<'_>) -> Result<Event<'_>, EventError> {
    let event_id = required_text(raw.event_id, "event_id", 1, MAX_EVENT_ID_CHARS)?;
    let tenant_id = required_text(raw.tenant_id, "tenant_id", 1, MAX_TENANT_ID_CHARS)?;
    if let Some(bad) = tenant_id.chars().find(|c| !is_tenant_char(*c)) {
        return Err(EventError::invalid(
            "tenant_id",
            format!("contains {bad:?}; allowed are A-Z a-z 0-9 . _ : -"),
        ));
    }
    let occurred_at_ms = parse_time(
        raw.occurred_at
            .ok_or(EventError::MissingField("occurred_at"))?,
    )?;
    let type_text = raw
        .integration_type
        .ok_or(EventError::MissingField("integration_type"))?;
    let integration_type = IntegrationType::parse(&type_text).ok_or_else(|| {
        EventError::invalid(
            "integration_type",
            format!("is {type_text:?}; expected one of inbound_webhook, outbound_webhook, prebuilt_integration, custom_node, custom_event"),
        )
    })?;
    let integration_id = required_text(
        raw.integration_id,
        "integration_id",
        1,
        MAX_INTEGRATION_ID_CHARS,
    )?;
    let integration_name =
        required_text(raw.integration_name, "integration_name", 0, MAX_NAME_CHARS)?;
    let outcome = match raw.outcome.as_deref() {
        None => return Err(EventError::MissingField("outcome")),
        Some("success") => Outcome::Success,
        Some("failure") => Outcome::Failure,
        Some(other) => {
            return Err(EventError::invalid(
                "outcome",
                format!("is {other:?}; expected success or failure"),
            ))
        }
    };
    let status_code = match raw.status_code {
        None if outcome == Outcome::Failure => return Err(EventError::MissingField("status_code")),
        None => None,
        Some(code) if (100..=999).contains(&code) => Some(code as u16),
        Some(code) => {
            return Err(EventError::invalid(
                "status_code",
                format!("is {code}; expected 100..=999"),
            ))
        }
    };
    if let Some(latency) = raw.latency_ms {
        if !(latency >= 0.0 && latency.is_finite()) {
            return Err(EventError::invalid("latency_ms", "must be a number >= 0"));
        }
    }
    Ok(Event {
        event_id,
        tenant_id,
        occurred_at_ms,
        integration_type,
        integration_id,
        integration_name,
        outcome,
        status_code,
        error_message: optional_text(raw.error_message, "error_message", MAX_ERROR_MESSAGE_CHARS)?,
        flow_id: optional_text(raw.flow_id, "flow_id", MAX_NAME_CHARS)?,
        flow_name: optional_text(raw.flow_name, "flow_name", MAX_NAME_CHARS)?,
        service_id: optional_text(raw.service_id, "service_id", MAX_NAME_CHARS)?,
        service_name: optional_text(raw.service_name, "service_name", MAX_NAME_CHARS)?,
        latency_ms: raw.latency_ms,
    })
}

/// Characters allowed in a tenant id; the API checks requested tenants with the same rule.
pub fn is_tenant_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// Lengths are counted in Unicode scalar values, not bytes.
fn check_length(text: &str, field: &'static str, min: usize, max: usize) -> Result<(), EventError> {
    // Byte length bounds the char count from above, so most strings skip the count.
    if text.len() <= max && text.len() >= min.max(1) {
        return Ok(());
    }
    let chars = text.chars().count();
    if chars < min {
        return Err(EventError::invalid(field, "must not be empty"));
    }
    if chars > max {
        return Err(EventError::invalid(
            field,
            format!("has {chars} characters; at most {max} are allowed"),
        ));
    }
    Ok(())
}

fn required_text<'a>(
    value: Option<Cow<'a, str>>,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<Cow<'a, str>, EventError> {
    let text = value.ok_or(EventError::MissingField(field))?;
    check_length(&text, field, min, max)?;
    Ok(text)
}

fn optional_text<'a>(
    value: Option<Cow<'a, str>>,
    field: &'static str,
    max: usize,
) -> Result<Option<Cow<'a, str>>, EventError> {
    match value {
        None => Ok(None),
        Some(text) => {
            check_length(&text, field, 0, max)?;
            Ok(Some(text))
        }
    }
}

fn parse_time(raw: RawTime<'_>) -> Result<i64, EventError> {
    match raw {
        RawTime::EpochMillis(ms) => {
            if chrono::DateTime::from_timestamp_millis(ms).is_none() {
                return Err(EventError::invalid("occurred_at", "is out of range"));
            }
            Ok(ms)
        }
        RawTime::Text(text) => chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| t.timestamp_millis())
            .map_err(|err| {
                EventError::invalid(
                    "occurred_at",
                    format!("is not RFC 3339 with an offset ({err})"),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::prop;

    use super::*;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn limits() -> DecodeLimits {
        DecodeLimits {
            now_ms: NOW,
            max_future_ms: 300_000,
        }
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

    /// The fast scanner must accept only what the general decoder accepts, with equal values.
    fn agrees_with_the_general_decoder(bytes: &[u8]) {
        if let Some(fast) = scan::scan(bytes) {
            let general = decode_general(bytes);
            assert_eq!(
                general.as_ref().ok(),
                Some(&fast),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn scanner_agrees_on_tricky_inputs() {
        let cases: &[&[u8]] = &[
            br#"{"event_id":"a","event_id":"b"}"#,
            br#"{"event_id":null,"event_id":"b"}"#,
            br#"{"status_code":404.0}"#,
            br#"{"status_code":4e2}"#,
            br#"{"status_code":"404"}"#,
            br#"{"status_code":99999999999999999999}"#,
            br#"{"occurred_at":1.5}"#,
            br#"{"occurred_at":-5}"#,
            br#"{"latency_ms":1e999}"#,
            br#"{"latency_ms":12}"#,
            br#"{"x":[1,{"y":[true,false,null,"z"]}],"event_id":"e"}"#,
            br#"{"x":01}"#,
            br#"{"x":-}"#,
            br#"{"x":1.}"#,
            br#"{}"#,
            br#" { "event_id" : "e" } "#,
            br#"{"event_id":"e",}"#,
            br#"{"event_id":"e"} x"#,
            br#"{"event_\u0069d":"e"}"#,
            b"{\"event_id\":\"a\tb\"}",
            br#"[]"#,
        ];
        for case in cases {
            agrees_with_the_general_decoder(case);
        }
        assert!(scan::scan(br#"{"event_id":"a","event_id":"b"}"#).is_none());
        assert!(scan::scan(br#"{"status_code":4e2}"#).is_none());
        let payload = serde_json::to_vec(&base()).unwrap();
        assert!(
            scan::scan(&payload).is_some(),
            "the common shape takes the fast path"
        );
        assert_eq!(decode(&payload, limits()).unwrap().status_code, Some(503));
    }

    proptest::proptest! {
        #[test]
        fn scanner_agrees_on_mangled_events(cut in 0usize..400, flip in 0usize..400, byte in proptest::num::u8::ANY) {
            let mut bytes = serde_json::to_vec(&base()).unwrap();
            let flip = flip % bytes.len();
            bytes[flip] = byte;
            bytes.truncate(cut.min(bytes.len()));
            agrees_with_the_general_decoder(&bytes);
        }

        #[test]
        fn scanner_agrees_on_generated_objects(
            fields in proptest::collection::vec(
                (
                    prop::sample::select(vec!["event_id", "tenant_id", "occurred_at", "status_code", "latency_ms", "outcome", "extra", "nested"]),
                    prop::sample::select(vec!["\"t\"", "null", "12", "-3", "1.5", "2e3", "true", "[1,\"a\"]", "{\"k\":{}}", "\"a\\\"b\"", "99999999999999999999"]),
                ),
                0..8,
            ),
            space in prop::sample::select(vec!["", " ", "\n\t"]),
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("{space}\"{k}\"{space}:{space}{v}")).collect();
            let text = format!("{{{}{space}}}", body.join(","));
            agrees_with_the_general_decoder(text.as_bytes());
        }

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
