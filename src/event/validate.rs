//! Turning a payload into a validated `Event`: the general decoder, the diagnosis of a refused
//! payload, and the field rules of docs/events.md.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use super::{
    echo, Event, EventError, IntegrationType, Outcome, MAX_ERROR_MESSAGE_CHARS, MAX_EVENT_ID_CHARS,
    MAX_INTEGRATION_ID_CHARS, MAX_NAME_CHARS, MAX_TENANT_ID_CHARS,
};

#[derive(Deserialize, Default, Debug, PartialEq)]
pub(super) struct RawEvent<'a> {
    #[serde(borrow)]
    pub(super) event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) tenant_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) occurred_at: Option<RawTime<'a>>,
    #[serde(borrow)]
    pub(super) integration_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) integration_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) integration_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) outcome: Option<Cow<'a, str>>,
    pub(super) status_code: Option<i64>,
    #[serde(borrow)]
    pub(super) error_message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) flow_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) flow_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) service_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) service_name: Option<Cow<'a, str>>,
    pub(super) latency_ms: Option<f64>,
    pub(super) attempt: Option<i64>,
    #[serde(rename = "final")]
    pub(super) final_attempt: Option<bool>,
}

#[derive(Debug, PartialEq)]
pub(super) enum RawTime<'a> {
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

/// Any valid JSON: escapes, odd spacing, everything the fast scanner leaves to it. sonic-rs
/// parses with SIMD and validates UTF-8; serde_json stays for the slow diagnosis.
pub(super) fn decode_general(payload: &[u8]) -> Result<RawEvent<'_>, EventError> {
    sonic_rs::from_slice(payload).map_err(|_| diagnose(payload))
}

/// Slow path for payloads the typed decoder refused: find the field to blame.
fn diagnose(payload: &[u8]) -> EventError {
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(err) => return EventError::MalformedJson(echo(&err.to_string())),
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
    if let Some(v) = object.get("attempt") {
        if !(v.is_i64() || v.is_null()) {
            return EventError::invalid("attempt", "must be an integer");
        }
    }
    if let Some(v) = object.get("final") {
        if !(v.is_boolean() || v.is_null()) {
            return EventError::invalid("final", "must be true or false");
        }
    }
    EventError::MalformedJson("payload does not match the outcome event schema".into())
}

/// The highest retry attempt an event may number.
pub(super) const MAX_ATTEMPT: i64 = 1_000;

pub(super) fn validate(raw: RawEvent<'_>) -> Result<Event<'_>, EventError> {
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
            format!("is {:?}; expected one of inbound_webhook, outbound_webhook, prebuilt_integration, custom_node, custom_event", echo(&type_text)),
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
                format!("is {:?}; expected success or failure", echo(other)),
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
    let attempt = match raw.attempt {
        None => None,
        Some(n) if (1..=MAX_ATTEMPT).contains(&n) => Some(n as u32),
        Some(n) => {
            return Err(EventError::invalid(
                "attempt",
                format!("is {n}; expected 1..={MAX_ATTEMPT}"),
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
        attempt,
        final_attempt: raw.final_attempt,
    })
}

/// Characters allowed in a tenant id; the API checks requested tenants with the same rule.
pub(crate) fn is_tenant_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// A character that reorders the text around it when shown (the bidirectional marks, embeddings,
/// overrides and isolates): in a name or a note it can make a terminal show something else than
/// what is stored.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The first C0 or C1 control character other than tab, newline and carriage return: such a
/// character could rewrite a terminal or a log line when the value is shown. Scans bytes, since
/// every control character is ASCII or a two-byte sequence starting 0xC2.
fn find_control(text: &str) -> Option<char> {
    let bytes = text.as_bytes();
    // Printable ASCII holds no control character; this loop vectorises, the one below does not.
    if bytes.iter().all(|b| (0x20..0x7F).contains(b)) {
        return None;
    }
    let at = bytes.iter().enumerate().position(|(i, &b)| {
        let c0 = b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r');
        let c1 = b == 0xC2 && bytes.get(i + 1).is_some_and(|n| (0x80..=0x9F).contains(n));
        c0 || b == 0x7F || c1
    })?;
    text.get(at..).and_then(|rest| rest.chars().next())
}

/// Whether `text` passes `check_length`, without saying why not.
pub(super) fn text_fits(text: &str, min: usize, max: usize) -> bool {
    find_control(text).is_none() && (min..=max).contains(&text.chars().count())
}

/// Lengths are counted in Unicode scalar values, not bytes. Control characters are refused.
fn check_length(text: &str, field: &'static str, min: usize, max: usize) -> Result<(), EventError> {
    if let Some(c) = find_control(text) {
        return Err(EventError::invalid(
            field,
            format!("contains the control character U+{:04X}", u32::from(c)),
        ));
    }
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
        RawTime::EpochMillis(ms) if epoch_ms_in_range(ms) => Ok(ms),
        RawTime::EpochMillis(_) => Err(EventError::invalid("occurred_at", "is out of range")),
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

/// Whether epoch milliseconds name a time that a timestamp can hold.
pub(super) fn epoch_ms_in_range(ms: i64) -> bool {
    chrono::DateTime::from_timestamp_millis(ms).is_some()
}

/// RFC 3339 text with an offset, as epoch milliseconds.
pub(super) fn rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}
