use proptest::prelude::*;

use super::scan;
use crate::event::{check_fast_path, decode_general, validate};

/// Whether the general path accepts `bytes`.
fn general_accepts(bytes: &[u8]) -> bool {
    decode_general(bytes).and_then(validate).is_ok()
}

fn complete_event() -> serde_json::Value {
    serde_json::json!({
        "event_id": "e-1",
        "tenant_id": "acme.prod:eu-1",
        "occurred_at": 1_767_218_400_000_i64,
        "integration_type": "outbound_webhook",
        "integration_id": "wh-7",
        "integration_name": "Order sync",
        "outcome": "failure",
        "status_code": 503,
        "error_message": "upstream said no",
        "flow_id": "f-1",
        "flow_name": "Checkout",
        "service_id": "s-1",
        "service_name": "Billing",
        "latency_ms": 12.5,
        "attempt": 2,
        "final": false,
        "future_field": {"nested": [1, 2.5, "x", null, true]}
    })
}

#[test]
fn agrees_on_tricky_inputs() {
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
        assert!(!check_fast_path(case), "{}", String::from_utf8_lossy(case));
    }
}

#[test]
fn takes_every_valid_event_without_escapes() {
    let event = complete_event();
    let bytes = serde_json::to_vec(&event).unwrap();
    assert!(check_fast_path(&bytes));
}

#[test]
fn leaves_each_broken_rule_to_the_general_path() {
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("event_id", serde_json::json!("")),
        ("event_id", serde_json::json!("x".repeat(129))),
        ("event_id", serde_json::Value::Null),
        ("tenant_id", serde_json::json!("a b")),
        ("tenant_id", serde_json::json!("é")),
        ("occurred_at", serde_json::json!("2025-12-31 10:00")),
        ("occurred_at", serde_json::json!(i64::MAX)),
        ("integration_type", serde_json::json!("sms")),
        ("outcome", serde_json::json!("maybe")),
        ("status_code", serde_json::json!(99)),
        ("status_code", serde_json::Value::Null),
        ("error_message", serde_json::json!("m".repeat(1025))),
        ("error_message", serde_json::json!("bell \u{7}")),
        ("error_message", serde_json::json!("del \u{7f}")),
        ("flow_name", serde_json::json!("c1 \u{85} control")),
        ("flow_name", serde_json::json!("é".repeat(257))),
        ("latency_ms", serde_json::json!(-0.5)),
        ("attempt", serde_json::json!(1001)),
        ("final", serde_json::json!(1)),
    ];
    for (field, bad) in cases {
        let mut event = complete_event();
        event[field] = bad.clone();
        let bytes = serde_json::to_vec(&event).unwrap();
        assert!(!check_fast_path(&bytes), "{field}={bad}");
        assert!(!general_accepts(&bytes), "{field}={bad}");
    }
}

#[test]
fn reads_text_time_and_characters_beyond_ascii() {
    let mut event = complete_event();
    event["occurred_at"] = serde_json::json!("2025-12-31T23:00:00+01:00");
    event["integration_name"] = serde_json::json!("é".repeat(256));
    event["error_message"] = serde_json::json!("délai dépassé ⏱");
    let bytes = serde_json::to_vec(&event).unwrap();
    assert!(check_fast_path(&bytes));
    let scanned = scan(&bytes).unwrap();
    assert_eq!(scanned.occurred_at_ms, 1_767_218_400_000);
    assert_eq!(scanned.integration_name.chars().count(), 256);
}

/// A field's value: mostly valid, sometimes at or past a limit, sometimes of the wrong kind.
fn value_for(field: &'static str) -> BoxedStrategy<String> {
    let text = |max: usize| {
        prop_oneof![
            20 => "[a-zA-Z0-9 _.:-]{1,12}".prop_map(|t| format!("\"{t}\"")),
            4 => "[a-zé⏱\u{7f}\u{85}\u{202e}]{0,6}".prop_map(|t| format!("\"{t}\"")),
            1 => Just(format!("\"{}\"", "x".repeat(max))),
            1 => Just(format!("\"{}\"", "é".repeat(max + 1))),
            1 => Just("null".to_owned()),
            1 => Just("12".to_owned()),
        ]
        .boxed()
    };
    let number = || {
        prop_oneof![
            20 => (100i64..1_000).prop_map(|n| n.to_string()),
            1 => (-5i64..1_100).prop_map(|n| n.to_string()),
            1 => Just("404.0".to_owned()),
            1 => Just("2e3".to_owned()),
            1 => Just("99999999999999999999".to_owned()),
            1 => Just("null".to_owned()),
            1 => Just("\"7\"".to_owned()),
        ]
        .boxed()
    };
    match field {
        "tenant_id" => prop_oneof![
            20 => "[a-z0-9.:_-]{1,8}".prop_map(|t| format!("\"{t}\"")),
            1 => Just("\"a b\"".to_owned()),
            1 => Just(format!("\"{}\"", "t".repeat(65))),
        ]
        .boxed(),
        "occurred_at" => prop_oneof![
            20 => (1_700_000_000_000i64..1_800_000_000_000).prop_map(|n| n.to_string()),
            1 => Just("\"2025-12-31T23:00:00Z\"".to_owned()),
            1 => Just("\"yesterday\"".to_owned()),
            1 => Just("1.5".to_owned()),
            1 => Just(i64::MAX.to_string()),
        ]
        .boxed(),
        "integration_type" => prop_oneof![
            10 => Just("\"custom_node\"".to_owned()),
            10 => Just("\"inbound_webhook\"".to_owned()),
            1 => Just("\"sms\"".to_owned()),
        ]
        .boxed(),
        "outcome" => prop_oneof![
            10 => Just("\"success\"".to_owned()),
            10 => Just("\"failure\"".to_owned()),
            1 => Just("\"maybe\"".to_owned()),
        ]
        .boxed(),
        "status_code" | "attempt" => number(),
        "latency_ms" => prop_oneof![
            1 => number(),
            10 => (0.0f64..5_000.0).prop_map(|v| v.to_string()),
            1 => Just("-0.0".to_owned()),
            1 => Just("1e999".to_owned()),
            1 => Just("123456789012345678".to_owned()),
        ]
        .boxed(),
        "final" => prop_oneof![
            10 => Just("true".to_owned()),
            10 => Just("false".to_owned()),
            1 => Just("null".to_owned()),
            1 => Just("0".to_owned()),
        ]
        .boxed(),
        "event_id" | "integration_id" => text(128),
        "error_message" => text(1024),
        _ => text(256),
    }
}

const FIELDS: [&str; 17] = [
    "event_id",
    "tenant_id",
    "occurred_at",
    "integration_type",
    "integration_id",
    "integration_name",
    "outcome",
    "status_code",
    "error_message",
    "flow_id",
    "flow_name",
    "service_id",
    "service_name",
    "latency_ms",
    "attempt",
    "final",
    "unknown",
];

fn event_text() -> impl Strategy<Value = String> {
    let fields: Vec<_> = FIELDS
        .iter()
        .map(|field| proptest::option::weighted(0.97, value_for(field)))
        .collect();
    (fields, prop::sample::select(vec!["", " ", "\n\t"])).prop_map(|(values, space)| {
        let body: Vec<String> = FIELDS
            .iter()
            .zip(values)
            .filter_map(|(field, value)| {
                Some(format!("{space}\"{field}\"{space}:{space}{}", value?))
            })
            .collect();
        format!("{{{}{space}}}", body.join(","))
    })
}

proptest! {
    #[test]
    fn agrees_on_generated_events_and_takes_the_valid_ones(text in event_text()) {
        let taken = check_fast_path(text.as_bytes());
        if !taken {
            prop_assert!(!general_accepts(text.as_bytes()), "a valid event without escapes fell back: {text}");
        }
    }

    #[test]
    fn agrees_on_mangled_events(cut in 0usize..500, flip in 0usize..500, byte in any::<u8>()) {
        let mut bytes = serde_json::to_vec(&complete_event()).unwrap();
        let flip = flip % bytes.len();
        bytes[flip] = byte;
        bytes.truncate(cut.min(bytes.len()));
        check_fast_path(&bytes);
    }
}
