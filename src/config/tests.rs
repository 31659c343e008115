//! Tests of the settings: defaults, checks and the tokens file.

use super::*;

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
    assert_eq!(Config::default().dlq_topic(), "integration-events.dlq");
}

#[test]
fn toml_overrides_and_passes_kafka_properties_through() {
    let config = Config::from_toml(
        r#"
        brokers = "k1:9092,k2:9092"
        retention_days = 40
        [kafka]
        "security.protocol" = "SASL_SSL"
        "sasl.mechanisms" = "PLAIN"
        [[tokens]]
        name = "acme-reader"
        token = "abc"
        tenants = ["acme"]
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.hour_retention_days, 40);
    assert_eq!(config.kafka["security.protocol"], "SASL_SSL");
    assert_eq!(config.tokens[0].tenants, ["acme"]);
}

#[test]
fn an_open_api_on_a_public_address_is_refused_unless_allowed() {
    let public = Config {
        grpc_addr: "0.0.0.0:50051".parse().unwrap(),
        ..Config::default()
    };
    let err = public.validate().unwrap_err().to_string();
    assert!(err.contains("tokens"), "{err}");
    assert!(Config {
        allow_open_api: true,
        ..public.clone()
    }
    .validate()
    .is_ok());
    assert!(Config {
        tokens: vec![TokenGrant::plain("t", &["acme"])],
        ..public
    }
    .validate()
    .is_ok());
}

#[test]
fn debug_output_never_shows_the_peer_token() {
    let config = Config {
        peer_token: Some(Secret::new("p33r-s3cret")),
        ..Config::default()
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("p33r-s3cret"), "{shown}");
    assert!(!config.redacted_toml().contains("p33r-s3cret"));
}

#[test]
fn dot_topics_are_refused() {
    for topic in [".", ".."] {
        let config = Config {
            topic: topic.into(),
            ..Config::default()
        };
        assert!(config.validate().is_err(), "{topic}");
    }
}

#[test]
fn printed_config_hides_secrets() {
    let mut config = Config::default();
    config
        .kafka
        .insert("sasl.password".into(), "hunter2".into());
    config.kafka.insert("sasl.username".into(), "svc".into());
    config.tokens.push(TokenGrant::plain("t0ps3cret", &["*"]));
    let text = config.redacted_toml();
    assert!(!format!("{config:?}").contains("hunter2"));
    assert!(!format!("{config:?}").contains("t0ps3cret"));
    assert!(
        !text.contains("hunter2") && !text.contains("t0ps3cret"),
        "{text}"
    );
    assert!(text.contains("svc"));
    assert_eq!(
        Config::from_toml(&text).map(|c| c.brokers).ok(),
        Some(config.brokers)
    );
}

#[test]
fn unknown_settings_are_refused() {
    assert!(Config::from_toml("retention = 3")
        .unwrap_err()
        .to_string()
        .contains("retention"));
}

#[test]
fn bad_values_name_the_setting() {
    let cases: Vec<(Config, &str)> = vec![
        (
            Config {
                hour_retention_days: 1,
                ..Config::default()
            },
            "hour_retention_days",
        ),
        (
            Config {
                detail_hour_retention_days: Some(7),
                ..Config::default()
            },
            "detail_hour_retention_days",
        ),
        (
            Config {
                detail_hour_retention_days: Some(70),
                ..Config::default()
            },
            "detail_hour_retention_days",
        ),
        (
            Config {
                day_retention_days: 30,
                ..Config::default()
            },
            "day_retention_days",
        ),
        (
            Config {
                topic: "bad topic".into(),
                ..Config::default()
            },
            "topic",
        ),
        (
            Config {
                group_cap_per_tenant: 0,
                ..Config::default()
            },
            "group_cap_per_tenant",
        ),
        (
            Config {
                minute_window_hours: 10_000,
                ..Config::default()
            },
            "minute_window_hours",
        ),
        (
            Config {
                kafka: [("enable.auto.commit".to_owned(), "true".to_owned())]
                    .into_iter()
                    .collect(),
                ..Config::default()
            },
            "kafka",
        ),
    ];
    for (config, setting) in cases {
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains(setting), "{message}");
    }
}

#[test]
fn replicas_off_loopback_need_tls_for_their_token_and_a_ttl_of_three_intervals() {
    let peer = crate::config::TokenGrant {
        peer: true,
        ..crate::config::TokenGrant::plain("peer-secret", &["*"])
    };
    let replica = |addr: &str| Config {
        advertise_addr: Some(addr.into()),
        peer_token: Some(crate::config::Secret::new("peer-secret")),
        tokens: vec![peer.clone()],
        ..Config::default()
    };
    let err = replica("10.0.0.7:50051")
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tls_cert") && err.contains("clear text"),
        "{err}"
    );
    replica("127.0.0.1:50051").validate().unwrap();
    replica("localhost:50051").validate().unwrap();
    for (interval, ttl, valid) in [
        (10_000, 30_000, true),
        (10_000, 29_999, false),
        (50, 1_000, false),
    ] {
        let config = Config {
            member_announce_interval_ms: interval,
            member_ttl_ms: ttl,
            ..Config::default()
        };
        assert_eq!(config.validate().is_ok(), valid, "{interval} {ttl}");
    }
    assert!(crate::config::is_loopback("[::1]:50051"));
    assert!(!crate::config::is_loopback("replica-0.svc:50051"));
}
