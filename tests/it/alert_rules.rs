//! Alert rules set at runtime through the API: only a tenant's `alerts_admin` token may set
//! them, bad rules are refused with INVALID_ARGUMENT naming the field, an integration's rule
//! wins over its tenant's and inherits the rest, a changed rule takes effect at the next
//! evaluation without a restart, through either of two replicas, and after a restart; a rule's
//! own destination gets its alerts, a disabled rule resolves them and a deleted one falls back.

use crate::alerts::{alerts_of, event, state};
use crate::common;
use crate::notify::{crm_failing_30_percent, kafka_with_alert_topics, SECRET_A};
use crate::replicas::owner_and_other;

use std::sync::Arc;
use std::time::Duration;

use common::harness::TestService;
use common::receiver::Receiver;
use common::*;
use integration_health::clock::ManualClock;
use integration_health::config::{Config, DestinationKind, DestinationSettings, TokenGrant};
use integration_health::proto;
use tonic::{Code, Request};

const TOPIC: &str = "rule-events";
const MINUTE: i64 = 60_000;
/// Reads every tenant and the ingest status.
pub(crate) const OPERATOR: &str = "operator-token";
pub(crate) const ADMIN: &str = "acme-admin";
pub(crate) const READER: &str = "acme-reader";
const OTHER_ADMIN: &str = "globex-admin";
/// The name of ADMIN's grant, which rules record as their setter.
const ADMIN_NAME: &str = "acme-oncall-lead";

pub(crate) fn grants() -> Vec<TokenGrant> {
    let admin = |token, tenant| TokenGrant {
        alerts_admin: true,
        ..TokenGrant::plain(token, &[tenant])
    };
    vec![
        TokenGrant {
            name: Some(ADMIN_NAME.into()),
            ..admin(ADMIN, "acme")
        },
        admin(OTHER_ADMIN, "globex"),
        TokenGrant::plain(READER, &["acme"]),
        TokenGrant {
            operator: true,
            ..TokenGrant::plain(OPERATOR, &["*"])
        },
    ]
}

fn config(bootstrap: &str) -> Config {
    Config {
        alert_interval_ms: 100,
        max_alert_rules_per_tenant: 4,
        tokens: grants(),
        ..test_config(bootstrap, TOPIC, "rules")
    }
}

pub(crate) fn authorized<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

pub(crate) fn scope(kind: proto::IntegrationType, integration: &str) -> proto::AlertRuleScope {
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
            kind: proto::AlertRule::FailureRate as i32,
            rate_threshold: Some(rate),
            ..proto::AlertRuleSpec::default()
        }),
    }
}

pub(crate) async fn put(
    api: &Api,
    rule: proto::PutAlertRuleRequest,
    token: &str,
) -> Result<proto::AlertRuleSpec, Code> {
    put_status(api, rule, token).await.map_err(|s| s.code())
}

async fn put_status(
    api: &Api,
    rule: proto::PutAlertRuleRequest,
    token: &str,
) -> Result<proto::AlertRuleSpec, tonic::Status> {
    api.clone()
        .put_alert_rule(authorized(rule, token))
        .await
        .map(|r| r.into_inner().rule.expect("rule"))
}

/// A rule of `kind` for `scope` with `set` applied to it.
pub(crate) fn rule(
    scope: proto::AlertRuleScope,
    kind: proto::AlertRule,
    set: impl FnOnce(&mut proto::AlertRuleSpec),
) -> proto::PutAlertRuleRequest {
    let mut spec = proto::AlertRuleSpec {
        scope: Some(scope),
        kind: kind as i32,
        ..proto::AlertRuleSpec::default()
    };
    set(&mut spec);
    proto::PutAlertRuleRequest { rule: Some(spec) }
}

/// The rules in force for acme's crm node, by kind and field: (value as JSON, origin).
async fn effective_for_crm(
    api: &Api,
    token: &str,
) -> std::collections::BTreeMap<(i32, String), (String, String)> {
    let request = proto::ListAlertRulesRequest {
        tenant_id: "acme".into(),
        effective: true,
        integration_type: proto::IntegrationType::CustomNode as i32,
        integration_id: "crm".into(),
    };
    let answer = api
        .clone()
        .list_alert_rules(authorized(request, token))
        .await
        .expect("rules")
        .into_inner();
    answer
        .effective
        .into_iter()
        .flat_map(|rule| {
            rule.fields
                .into_iter()
                .map(move |f| ((rule.kind, f.name), (f.value_json, f.origin)))
        })
        .collect()
}

/// acme's crm and erp nodes, 30 calls each over the last 10 minutes, 30% of them 503s; crm's
/// go first.
fn crm_and_erp_failing_30_percent() -> Vec<Message> {
    let mut messages = Vec::new();
    for integration in ["crm", "erp"] {
        for i in 0..30 {
            let at = NOW - 10 * MINUTE + i * 20_000;
            let id = format!("{integration}{i}");
            messages.push(event(&id, integration, "custom_node", at, i % 10 < 3, 503));
        }
    }
    messages
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
    use proto::AlertRule::{FailureRate, SloBurn, Spike};
    let crm = || scope(node, "crm");
    // Each refusal names the field at fault.
    let refused = [
        ("rate_threshold", threshold(tenant_scope(), 1.5)),
        (
            "scope.integration_type",
            threshold(scope(proto::IntegrationType::Unspecified, "crm"), 0.5),
        ),
        (
            "scope.integration_type",
            rule(
                proto::AlertRuleScope {
                    integration_type: 99,
                    ..tenant_scope()
                },
                FailureRate,
                |_| {},
            ),
        ),
        (
            "destinations",
            rule(tenant_scope(), FailureRate, |r| {
                r.destinations = Some(proto::AlertDestinations {
                    names: vec!["nowhere".into()],
                })
            }),
        ),
        (
            "slo_objective",
            rule(crm(), SloBurn, |r| r.slo_objective = Some(1.0)),
        ),
        (
            "slo_fast_window_minutes",
            rule(crm(), SloBurn, |r| r.slo_fast_window_minutes = Some(600)),
        ),
        (
            "scope.integration_id",
            rule(crm(), Spike, |r| r.spike_factor = Some(3.0)),
        ),
        (
            "spike_factor",
            rule(crm(), FailureRate, |r| r.spike_factor = Some(3.0)),
        ),
        (
            "severity_fast",
            rule(crm(), FailureRate, |r| {
                r.severity_fast = proto::AlertSeverity::Critical as i32
            }),
        ),
        ("kind", rule(crm(), proto::AlertRule::Unspecified, |_| {})),
    ];
    for (field, rule) in refused {
        let status = put_status(&api, rule, ADMIN).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }

    // The tenant fires at 10% with at least 25 events, its crm node only at 50%.
    let tenant_rule = rule(tenant_scope(), FailureRate, |r| {
        r.rate_threshold = Some(0.1);
        r.rate_min_events = Some(25);
    });
    let stored = put(&api, tenant_rule, ADMIN).await.expect("tenant rule");
    assert_eq!(stored.rate_threshold, Some(0.1));
    assert_eq!(stored.updated_by, ADMIN_NAME, "the setter's grant name");
    put(&api, threshold(scope(node, "crm"), 0.5), ADMIN)
        .await
        .expect("integration rule");

    // Both nodes fail 30% of 30 events: an independent look says erp crosses 10% and crm
    // stays under 50%.
    let producer = producer(&bootstrap);
    let messages = crm_and_erp_failing_30_percent();
    // crm's events go first on the one partition, so erp firing means crm's are all counted.
    publish(&producer, TOPIC, &messages).await;
    let rate = 9.0 / 30.0;
    assert!((0.1..0.5).contains(&rate));
    let events = 30;
    assert!(events >= 25, "enough for the tenant's minimum");
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

    // crm's failure-rate rule in force: its own threshold, the tenant's minimum, the
    // settings' window; its SLO rule is all the settings'.
    let effective = effective_for_crm(&api, READER).await;
    let field = |kind: proto::AlertRule, name: &str| {
        let (value, origin) = &effective[&(kind as i32, name.to_owned())];
        (value.as_str(), origin.as_str())
    };
    assert_eq!(
        field(FailureRate, "rate_threshold"),
        ("0.25", "integration")
    );
    assert_eq!(field(FailureRate, "rate_min_events"), ("25", "tenant"));
    assert_eq!(
        field(FailureRate, "rate_window_minutes"),
        ("15", "settings")
    );
    assert_eq!(field(SloBurn, "slo_objective"), ("0.99", "settings"));
    assert_eq!(field(Spike, "spike_factor"), ("5.0", "settings"));

    // Another tenant's admin may not read acme's rules either; at the cap of 4 rules, a fifth
    // is refused, while a change to one of them is not.
    let other = authorized(
        proto::ListAlertRulesRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        },
        OTHER_ADMIN,
    );
    let err = api.clone().list_alert_rules(other).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    for kind in [SloBurn, Spike] {
        put(
            &api,
            rule(tenant_scope(), kind, |r| r.enabled = Some(true)),
            ADMIN,
        )
        .await
        .expect("within the cap");
    }
    let fifth = rule(tenant_scope(), proto::AlertRule::Silence, |r| {
        r.enabled = Some(true)
    });
    assert_eq!(put(&api, fifth, ADMIN).await, Err(Code::ResourceExhausted));
    put(&api, threshold(scope(node, "crm"), 0.25), ADMIN)
        .await
        .expect("a change within the cap");
    for kind in [SloBurn, Spike] {
        let request = proto::DeleteAlertRuleRequest {
            scope: Some(tenant_scope()),
            kind: kind as i32,
        };
        api.clone()
            .delete_alert_rule(authorized(request, ADMIN))
            .await
            .expect("deleted");
    }

    // Listed least specific first; deleting crm's rule leaves the tenant's.
    let list = |token: &str| {
        let request = authorized(
            proto::ListAlertRulesRequest {
                tenant_id: "acme".into(),
                ..Default::default()
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
                kind: proto::AlertRule::FailureRate as i32,
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

const ROUTED: &str = "routed-events";

/// A mock cluster with `input` and its alerts and rules topics, and a receiver behind two
/// signed webhook destinations: `defaults`, the default, and `crm-oncall`.
pub(crate) struct Routing {
    _kafka: integration_health::testkit::EmbeddedKafka,
    pub(crate) bootstrap: String,
    pub(crate) receiver: Receiver,
    input: &'static str,
    dir: tempfile::TempDir,
}

impl Routing {
    pub(crate) async fn start(input: &'static str) -> Routing {
        let (kafka, bootstrap) = kafka_with_alert_topics(input);
        kafka
            .create_topic(&format!("{input}.rules"), 1)
            .expect("topic");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("hook.secret"), SECRET_A).expect("secret");
        Routing {
            _kafka: kafka,
            bootstrap,
            receiver: Receiver::start().await,
            input,
            dir,
        }
    }

    pub(crate) fn config(&self) -> Config {
        let webhook = |name: &str| DestinationSettings {
            url: Some(self.receiver.url(&format!("/{name}"))),
            secret_file: Some(self.dir.path().join("hook.secret")),
            ..DestinationSettings::new(name, DestinationKind::Webhook)
        };
        Config {
            alert_default_destinations: vec!["defaults".into()],
            alert_destinations: vec![webhook("defaults"), webhook("crm-oncall")],
            tokens: grants(),
            ..test_config(&self.bootstrap, self.input, self.input)
        }
    }
}

/// The webhook deliveries at `path` as (rule, state, integration), in arrival order.
pub(crate) fn deliveries(receiver: &Receiver, path: &str) -> Vec<(String, String, String)> {
    receiver
        .received(path)
        .iter()
        .filter(|r| (200..300).contains(&r.answered))
        .map(|r| {
            let body = r.json();
            let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
            (text("rule"), text("state"), text("integration_id"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_routes_its_own_alerts_and_disabling_or_deleting_it_takes_effect() {
    let routing = Routing::start(ROUTED).await;
    let config = Config {
        alert_interval_ms: 100,
        alert_delivery_backoff_ms: 20,
        ..routing.config()
    };
    let (bootstrap, receiver) = (&routing.bootstrap, &routing.receiver);
    let service = TestService::start(&config, Arc::new(ManualClock::new(NOW))).await;
    let api = service.api.clone();
    let crm = || scope(proto::IntegrationType::CustomNode, "crm");
    let routed = rule(crm(), proto::AlertRule::FailureRate, |r| {
        r.destinations = Some(proto::AlertDestinations {
            names: vec!["crm-oncall".into()],
        })
    });
    put(&api, routed, ADMIN).await.expect("routed rule");

    // crm fails 30%: its failure-rate alert goes to crm-oncall alone; its SLO-burn alert,
    // which no rule routes, to the defaults.
    publish(&producer(bootstrap), ROUTED, &crm_failing_30_percent()).await;
    let firing = |rule: &str| (rule.to_owned(), "FIRING".to_owned(), "crm".to_owned());
    receiver
        .wait_for("/crm-oncall", "the failure-rate FIRING", |r| !r.is_empty())
        .await;
    receiver
        .wait_for("/defaults", "the SLO-burn FIRING", |r| !r.is_empty())
        .await;
    assert_eq!(
        deliveries(receiver, "/crm-oncall"),
        [firing("failure_rate")]
    );
    assert_eq!(deliveries(receiver, "/defaults"), [firing("slo_burn")]);

    // Disabled while firing: RESOLVED, where its FIRING went.
    let disabled = rule(crm(), proto::AlertRule::FailureRate, |r| {
        r.enabled = Some(false)
    });
    put(&api, disabled, ADMIN).await.expect("disabled");
    receiver
        .wait_for("/crm-oncall", "the RESOLVED", |r| r.len() == 2)
        .await;
    let resolved = ("failure_rate".into(), "RESOLVED".into(), "crm".into());
    assert_eq!(deliveries(receiver, "/crm-oncall")[1], resolved);
    let reader = client_as(service.service.grpc_addr, READER).await;
    let rate_alerts = alerts_of(&reader, proto::AlertRule::FailureRate, |a| {
        a.iter()
            .all(|a| state(a) == proto::AlertState::AlertResolved)
    })
    .await;
    assert_eq!(rate_alerts.len(), 1);

    // Deleted: crm falls back to the defaults, where the rate (still 30%) fires again.
    let request = proto::DeleteAlertRuleRequest {
        scope: Some(crm()),
        kind: proto::AlertRule::FailureRate as i32,
    };
    api.clone()
        .delete_alert_rule(authorized(request, ADMIN))
        .await
        .expect("deleted");
    receiver
        .wait_for("/defaults", "the failure-rate FIRING", |r| r.len() == 2)
        .await;
    assert_eq!(
        deliveries(receiver, "/defaults"),
        [firing("slo_burn"), firing("failure_rate")]
    );
    assert_eq!(deliveries(receiver, "/crm-oncall").len(), 2);
    service.stop().await;
}

/// A replica of `input` at a free port, reading through the repartition stage so that a
/// tenant has one owner, with the admin grants beside `as_replica`'s.
fn replica_config(bootstrap: &str, input: &str) -> Config {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut config = Config {
        alert_interval_ms: 100,
        input_keyed_by_tenant: false,
        grpc_addr: addr.parse().expect("addr"),
        tokens: grants(),
        ..test_config(bootstrap, input, &format!("{input}-group"))
    };
    as_replica(&mut config, &addr);
    config
}

/// Waits until the group has split `partitions` evenly among `replicas`, each is ready and
/// knows every partition's owner: only then does no hand-over re-publish a tail mid-test.
async fn settled(replicas: &[&TestService], partitions: usize) {
    let share = partitions / replicas.len();
    for replica in replicas {
        let (api, http) = (replica.api.clone(), replica.service.http_addr);
        let store = replica.service.store.clone();
        wait_until("the replicas settle", Duration::from_secs(90), || {
            let (mut api, store) = (api.clone(), store.clone());
            async move {
                let status = ingest_status(&mut api).await;
                status.partitions.len() == partitions
                    && status.partitions.iter().all(|p| !p.owner.is_empty())
                    && store.partitions().len() == share
                    && http_get(http, "/readyz").await.0 == 200
            }
        })
        .await;
    }
}

/// A mock cluster with `input` (2 partitions) and the topics the replicas use, and two
/// replicas of it, settled: the cluster, its address, their settings and the replicas.
pub(crate) async fn settled_replicas(
    input: &str,
) -> (
    integration_health::testkit::EmbeddedKafka,
    String,
    [Config; 2],
    [TestService; 2],
) {
    let kafka = integration_health::testkit::EmbeddedKafka::start(1).expect("mock cluster");
    for (topic, partitions) in [
        (input.to_owned(), 2),
        (format!("{input}.by-tenant"), 2),
        (format!("{input}.dlq"), 1),
        (format!("{input}.alerts"), 1),
        (format!("{input}.rules"), 1),
    ] {
        kafka.create_topic(&topic, partitions).expect("topic");
    }
    let bootstrap = kafka.bootstrap_servers();
    let configs = [
        replica_config(&bootstrap, input),
        replica_config(&bootstrap, input),
    ];
    let a = TestService::start_at(&configs[0], NOW).await;
    let b = TestService::start_at(&configs[1], NOW).await;
    settled(&[&a, &b], 2).await;
    (kafka, bootstrap, configs, [a, b])
}

/// The failure-rate rules of acme, as (integration, threshold, set by), through `replica`.
async fn listed(replica: &TestService) -> Vec<(String, Option<f64>, String)> {
    let request = proto::ListAlertRulesRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    let rules = replica
        .api
        .clone()
        .list_alert_rules(authorized(request, READER))
        .await
        .expect("rules")
        .into_inner()
        .rules;
    rules
        .into_iter()
        .map(|r| {
            let scope = r.scope.unwrap_or_default();
            (scope.integration_id, r.rate_threshold, r.updated_by)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_put_through_either_replica_holds_on_the_owner_and_after_a_restart() {
    const INPUT: &str = "replicated-rules";
    let (_kafka, bootstrap, configs, [a, b]) = settled_replicas(INPUT).await;
    let replicas = [a, b];
    let (owner, other) = owner_and_other(&replicas, "acme", 2);

    // crm's rule put through the replica that does not own acme, erp's through the owner.
    let node = proto::IntegrationType::CustomNode;
    put(&other.api, threshold(scope(node, "crm"), 0.5), ADMIN)
        .await
        .expect("through the other replica");
    put(&owner.api, threshold(scope(node, "erp"), 0.2), ADMIN)
        .await
        .expect("through the owner");
    let expected = vec![
        ("crm".to_owned(), Some(0.5), ADMIN_NAME.to_owned()),
        ("erp".to_owned(), Some(0.2), ADMIN_NAME.to_owned()),
    ];
    assert_eq!(listed(owner).await, expected);
    assert_eq!(listed(other).await, expected);

    // Both fail 30%: the owner, which evaluates acme, holds crm under its 50% and fires erp.
    let messages = crm_and_erp_failing_30_percent();
    publish(&producer(&bootstrap), INPUT, &messages).await;
    wait_applied(&owner.api, 60).await;
    assert_eq!(firing(&other.api, |ids| !ids.is_empty()).await, ["erp"]);
    put(&other.api, threshold(scope(node, "crm"), 0.25), ADMIN)
        .await
        .expect("lowered through the other replica");
    assert_eq!(
        firing(&owner.api, |ids| ids.len() == 2).await,
        ["crm", "erp"]
    );

    // Both stop; one started again reads the rules back from the topic.
    let [a, b] = replicas;
    a.stop().await;
    b.stop().await;
    let restarted = TestService::start_at(&configs[0], NOW).await;
    settled(&[&restarted], 2).await;
    let expected = vec![
        ("crm".to_owned(), Some(0.25), ADMIN_NAME.to_owned()),
        ("erp".to_owned(), Some(0.2), ADMIN_NAME.to_owned()),
    ];
    assert_eq!(listed(&restarted).await, expected);
    let effective = effective_for_crm(&restarted.api, READER).await;
    let kind = proto::AlertRule::FailureRate as i32;
    assert_eq!(
        effective[&(kind, "rate_threshold".to_owned())],
        ("0.25".to_owned(), "integration".to_owned())
    );
    restarted.stop().await;
}

/// `query` of the built binary against `grpc` with `token`: (succeeded, stdout, stderr).
pub(crate) fn query(
    grpc: std::net::SocketAddr,
    token: &str,
    args: &[&str],
) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_integration-health"))
        .args(["query", "--addr", &format!("http://{grpc}")])
        .args(args)
        .env("IH_TOKEN", token)
        .output()
        .expect("runs");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_sets_lists_and_deletes_rules_and_a_removed_destination_stops_nothing() {
    let routing = Routing::start("queried-rules").await;
    let mut config = routing.config();
    let service = TestService::start_at(&config, NOW).await;
    let grpc = service.service.grpc_addr;
    let crm = [
        "--tenant",
        "acme",
        "--kind",
        "failure-rate",
        "--type",
        "custom-node",
        "--integration",
        "crm",
    ];

    let set = [&["--json", "rule"], &crm[..], &["--rate-threshold", "0.3"]].concat();
    let routed = [&set[..], &["--destinations", "crm-oncall"]].concat();
    let (ok, stdout, stderr) = query(grpc, ADMIN, &routed);
    assert!(ok, "{stderr}");
    let put: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(put["rule"]["rateThreshold"], 0.3);
    assert_eq!(put["rule"]["kind"], "FAILURE_RATE");
    assert_eq!(put["rule"]["updatedBy"], ADMIN_NAME);
    let (ok, _, stderr) = query(grpc, READER, &routed);
    assert!(!ok && stderr.contains("PermissionDenied"), "{stderr}");
    let spike = ["rule", "--tenant", "acme", "--kind", "spike"];
    let (ok, _, stderr) = query(
        grpc,
        ADMIN,
        &[&spike[..], &["--rate-threshold", "0.3"]].concat(),
    );
    assert!(!ok && stderr.contains("rate_threshold"), "{stderr}");

    let effective = [
        "rules",
        "--tenant",
        "acme",
        "--effective",
        "--type",
        "custom-node",
        "--integration",
        "crm",
    ];
    let (ok, text, stderr) = query(grpc, READER, &effective);
    assert!(ok, "{stderr}");
    for shown in [
        "crm-oncall",
        ADMIN_NAME,
        "rate_threshold",
        "integration",
        "settings",
    ] {
        assert!(text.contains(shown), "{shown} in {text}");
    }

    // Started again without crm-oncall: the rule holds, and its alerts go to the defaults.
    service.stop().await;
    config.alert_destinations.retain(|d| d.name != "crm-oncall");
    let service = TestService::start_at(&config, NOW).await;
    let grpc = service.service.grpc_addr;
    let http = service.service.http_addr;
    wait_until("ready", Duration::from_secs(30), || async move {
        http_get(http, "/readyz").await.0 == 200
    })
    .await;
    let in_force = effective_for_crm(&service.api, READER).await;
    let rate = proto::AlertRule::FailureRate as i32;
    let field = |name: &str| in_force[&(rate, name.to_owned())].clone();
    assert_eq!(
        field("rate_threshold"),
        ("0.3".into(), "integration".into())
    );
    assert_eq!(
        field("destinations"),
        ("[\"defaults\"]".into(), "settings".into())
    );

    let delete = [&["rule"], &crm[..], &["--delete"]].concat();
    let (ok, text, stderr) = query(grpc, ADMIN, &delete);
    assert!(ok && text.contains("deleted"), "{text}{stderr}");
    let (ok, listed, stderr) = query(grpc, READER, &["--json", "rules", "--tenant", "acme"]);
    assert!(ok, "{stderr}");
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("json");
    assert!(
        listed["rules"].as_array().is_none_or(Vec::is_empty),
        "{listed}"
    );
    service.stop().await;
}
