//! Alert rules set at runtime through the API: only a tenant's `alerts_admin` token may set
//! them, bad rules are refused with INVALID_ARGUMENT, an integration's rule wins over its
//! tenant's, and a changed rule takes effect at the next evaluation without a restart.

use crate::alerts::event;
use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::harness::TestService;
use common::*;
use integration_health::clock::ManualClock;
use integration_health::config::{Config, TokenGrant};
use integration_health::proto;
use tonic::{Code, Request};

const TOPIC: &str = "rule-events";
const MINUTE: i64 = 60_000;
const ADMIN: &str = "acme-admin";
const READER: &str = "acme-reader";
const OTHER_ADMIN: &str = "globex-admin";

fn config(bootstrap: &str) -> Config {
    let admin = |token, tenant| TokenGrant {
        alerts_admin: true,
        ..TokenGrant::plain(token, &[tenant])
    };
    Config {
        alert_interval_ms: 100,
        tokens: vec![
            admin(ADMIN, "acme"),
            admin(OTHER_ADMIN, "globex"),
            TokenGrant::plain(READER, &["acme"]),
        ],
        ..test_config(bootstrap, TOPIC, "rules")
    }
}

fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

fn scope(kind: proto::IntegrationType, integration: &str) -> proto::AlertRuleScope {
    proto::AlertRuleScope {
        tenant_id: "acme".into(),
        integration_type: kind as i32,
        integration_id: integration.into(),
    }
}

fn threshold(scope: proto::AlertRuleScope, rate: f64) -> proto::PutAlertRuleRequest {
    proto::PutAlertRuleRequest {
        rule: Some(proto::AlertRuleSpec {
            scope: Some(scope),
            rate_threshold: Some(rate),
            ..proto::AlertRuleSpec::default()
        }),
    }
}

async fn put(
    api: &Api,
    rule: proto::PutAlertRuleRequest,
    token: &str,
) -> Result<proto::AlertRuleSpec, Code> {
    api.clone()
        .put_alert_rule(authorized(rule, token))
        .await
        .map(|r| r.into_inner().rule.expect("rule"))
        .map_err(|status| status.code())
}

/// The integrations with a firing failure-rate alert, once `want` holds.
async fn firing(api: &Api, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let request = proto::ListAlertsRequest {
            tenant_id: "acme".into(),
            resolved_within: None,
        };
        let alerts = api
            .clone()
            .list_alerts(authorized(request, READER))
            .await
            .expect("alerts")
            .into_inner()
            .alerts;
        let mut ids: Vec<String> = alerts
            .into_iter()
            .filter(|a| a.rule == proto::AlertRule::FailureRate as i32)
            .filter(|a| a.state == proto::AlertState::AlertFiring as i32)
            .map(|a| a.integration_id)
            .collect();
        ids.sort();
        if want(&ids) {
            return ids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alerts stayed {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integrations_rule_wins_and_a_changed_rule_applies_without_a_restart() {
    let (kafka, bootstrap) = kafka_with_topic(TOPIC, 1);
    for topic in ["alerts", "rules"] {
        kafka
            .create_topic(&format!("{TOPIC}.{topic}"), 1)
            .expect("topic");
    }
    let clock = Arc::new(ManualClock::new(NOW));
    let service = TestService::start(&config(&bootstrap), clock).await;
    let api = service.api.clone();
    let node = proto::IntegrationType::CustomNode;
    let tenant_scope = || scope(proto::IntegrationType::Unspecified, "");

    // Who may set rules, and which rules are refused.
    let tenant_rule = threshold(tenant_scope(), 0.1);
    assert_eq!(
        put(&api, tenant_rule.clone(), READER).await,
        Err(Code::PermissionDenied)
    );
    assert_eq!(
        put(&api, tenant_rule.clone(), OTHER_ADMIN).await,
        Err(Code::PermissionDenied)
    );
    let refused = [
        threshold(tenant_scope(), 1.5),
        threshold(scope(proto::IntegrationType::Unspecified, "crm"), 0.5),
        proto::PutAlertRuleRequest {
            rule: Some(proto::AlertRuleSpec {
                scope: Some(tenant_scope()),
                destinations: Some(proto::AlertDestinations {
                    names: vec!["nowhere".into()],
                }),
                ..proto::AlertRuleSpec::default()
            }),
        },
    ];
    for rule in refused {
        assert_eq!(put(&api, rule, ADMIN).await, Err(Code::InvalidArgument));
    }

    // The tenant fires at 10%, its crm node only at 50%.
    let stored = put(&api, tenant_rule, ADMIN).await.expect("tenant rule");
    assert_eq!(stored.rate_threshold, Some(0.1));
    put(&api, threshold(scope(node, "crm"), 0.5), ADMIN)
        .await
        .expect("integration rule");

    // Both nodes fail 30% of 30 events: an independent look says erp crosses 10% and crm
    // stays under 50%.
    let producer = producer(&bootstrap);
    let mut messages = Vec::new();
    for integration in ["crm", "erp"] {
        for i in 0..30 {
            let at = NOW - 10 * MINUTE + i * 20_000;
            let id = format!("{integration}{i}");
            messages.push(event(&id, integration, "custom_node", at, i % 10 < 3, 503));
        }
    }
    // crm's events go first on the one partition, so erp firing means crm's are all counted.
    publish(&producer, TOPIC, &messages).await;
    let rate = 9.0 / 30.0;
    assert!((0.1..0.5).contains(&rate));
    assert_eq!(firing(&api, |ids| !ids.is_empty()).await, ["erp"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        firing(&api, |_| true).await,
        ["erp"],
        "crm's own rule holds it"
    );

    // Lowering crm's threshold under its rate fires it at the next evaluation.
    put(&api, threshold(scope(node, "crm"), 0.25), ADMIN)
        .await
        .expect("changed rule");
    assert_eq!(firing(&api, |ids| ids.len() == 2).await, ["crm", "erp"]);

    // Listed least specific first; deleting crm's rule leaves the tenant's.
    let list = |token: &str| {
        let request = authorized(
            proto::ListAlertRulesRequest {
                tenant_id: "acme".into(),
            },
            token,
        );
        let mut api = api.clone();
        async move { api.list_alert_rules(request).await }
    };
    let rules = list(READER).await.expect("rules").into_inner().rules;
    let scopes: Vec<(i32, String, Option<f64>)> = rules
        .iter()
        .map(|r| {
            let s = r.scope.clone().expect("scope");
            (s.integration_type, s.integration_id, r.rate_threshold)
        })
        .collect();
    assert_eq!(
        scopes,
        [
            (0, String::new(), Some(0.1)),
            (node as i32, "crm".into(), Some(0.25))
        ]
    );
    let delete = |token: &str| {
        let request = authorized(
            proto::DeleteAlertRuleRequest {
                scope: Some(scope(node, "crm")),
            },
            token,
        );
        let mut api = api.clone();
        async move { api.delete_alert_rule(request).await.map_err(|s| s.code()) }
    };
    assert_eq!(delete(READER).await.err(), Some(Code::PermissionDenied));
    delete(ADMIN).await.expect("deleted");
    assert_eq!(delete(ADMIN).await.err(), Some(Code::NotFound));
    assert_eq!(
        list(READER).await.expect("rules").into_inner().rules.len(),
        1
    );
    service.stop().await;
}
