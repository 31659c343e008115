//! Events go in through a real Kafka-protocol broker (librdkafka's mock cluster), answers come
//! out over gRPC, and every answer is compared with `Truth`, a plain recount of the same events.
//! One run of the service is shared: each test below checks one part of it.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use chrono::TimeZone;
use common::harness::TestService;
use common::tansu::Tansu;
use common::*;
use integration_health::api::convert::{ms_to_timestamp, timestamp_to_ms};
use integration_health::catalog;
use integration_health::event::IntegrationType;
use integration_health::ingest::{
    HEADER_REASON, HEADER_SOURCE_OFFSET, HEADER_SOURCE_PARTITION, HEADER_SOURCE_TOPIC,
};
use integration_health::proto::{self};

const TOPIC: &str = "outcomes";
const DLQ: &str = "outcomes.dlq";
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

fn floor(t: i64, w: i64) -> i64 {
    t.div_euclid(w) * w
}

fn ceil(t: i64, w: i64) -> i64 {
    -floor(-t, w)
}

fn range(start: i64, end: i64) -> Option<proto::TimeRange> {
    Some(proto::TimeRange {
        start: Some(ms_to_timestamp(start)),
        end: Some(ms_to_timestamp(end)),
    })
}

fn ms(t: &Option<integration_health::proto::Timestamp>) -> i64 {
    timestamp_to_ms("t", t.as_ref().expect("timestamp present")).expect("valid timestamp")
}

fn span(r: &Option<proto::TimeRange>) -> (i64, i64) {
    let r = r.as_ref().expect("range present");
    (ms(&r.start), ms(&r.end))
}

fn type_str(value: i32) -> &'static str {
    TYPES[(value - 1) as usize]
}

/// The service after it consumed one generated batch, shared by every test in this file.
struct Run {
    bootstrap: String,
    grpc: SocketAddr,
    http: SocketAddr,
    truth: Truth,
}

/// Starts the broker and the service on a thread of their own, publishes the events and waits
/// until all are applied. They keep running until the test process exits.
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let (ready, started) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                // A broker that creates no topic on first use: the service makes its own.
                let kafka = Tansu::start();
                kafka.create_topic(TOPIC, 3).await;
                let bootstrap = kafka.bootstrap.clone();
                let service =
                    TestService::start_at(&test_config(&bootstrap, TOPIC, "e2e"), NOW).await;
                let generated = generate(11, 6_000, NOW);
                let messages: Vec<Message> =
                    generated.messages.iter().map(|(_, m)| m.clone()).collect();
                publish(&producer(&bootstrap), TOPIC, &messages).await;
                wait_applied(&service.api, messages.len() as u64).await;
                let run = Run {
                    bootstrap,
                    grpc: service.service.grpc_addr,
                    http: service.service.http_addr,
                    truth: generated.truth,
                };
                ready.send(run).expect("test thread waits");
                std::future::pending::<()>().await;
                drop((kafka, service));
            });
        });
        started.recv().expect("the shared run started")
    })
}

async fn api() -> Api {
    client(run().grpc).await
}

/// A test that runs `$check` for every tenant of the shared run.
macro_rules! per_tenant_test {
    ($name:ident, $check:ident) => {
        #[tokio::test]
        async fn $name() {
            let mut api = api().await;
            for tenant in TENANTS {
                $check(&mut api, &run().truth, tenant).await;
            }
        }
    };
}

#[tokio::test]
async fn ingest_totals_and_offsets_match_the_recount() {
    check_status(&mut api().await, &run().truth).await;
}

per_tenant_test!(overview_matches_the_recount, check_overview);

per_tenant_test!(percentage_change_matches_the_recount, check_change);

per_tenant_test!(error_breakdown_matches_the_recount, check_errors);

per_tenant_test!(trends_match_the_recount, check_trends);

per_tenant_test!(
    failures_table_and_details_match_the_recount,
    check_failures_and_details
);

#[tokio::test]
async fn catalog_has_every_code_with_guidance() {
    check_catalog(&mut api().await).await;
}

#[tokio::test]
async fn every_rejected_event_is_in_the_dead_letter_topic() {
    let run = run();
    check_dead_letters(&run.bootstrap, &run.truth);
}

#[tokio::test]
async fn grpc_health_reports_serving() {
    check_health(run().grpc).await;
}

#[tokio::test]
async fn metrics_match_the_recount() {
    let mut api = api().await;
    api.list_failures(proto::ListFailuresRequest {
        tenant_id: TENANTS[0].into(),
        ..Default::default()
    })
    .await
    .expect("a call to count");
    check_metrics(run().http, &run().truth).await;
}

async fn check_status(api: &mut Api, truth: &Truth) {
    let s = ingest_status(api).await;
    assert_eq!(s.accepted, truth.accepted());
    assert_eq!(s.duplicates, truth.duplicates);
    assert_eq!(s.late_dropped, truth.late);
    assert_eq!(s.rejected, truth.dead_letters.len() as u64);
    assert_eq!(s.partitions.len(), 3);
    for p in &s.partitions {
        assert_eq!(
            p.next_offset, p.high_watermark,
            "partition {} fully consumed",
            p.partition
        );
    }
}

async fn check_overview(api: &mut Api, truth: &Truth, tenant: &str) {
    // Default range: the last 30 days, served from hour buckets.
    let o = api
        .get_overview(proto::GetOverviewRequest {
            tenant_id: tenant.into(),
            ..Default::default()
        })
        .await
        .expect("overview")
        .into_inner();
    let (start, end) = span(&o.effective_range);
    assert_eq!((start, end), (floor(NOW - 30 * DAY, HOUR), ceil(NOW, HOUR)));
    let expected = truth.counts(tenant, start, end);
    assert_eq!(o.types.len(), 5);
    for t in &o.types {
        assert_eq!(
            (t.failed, t.succeeded),
            expected[type_str(t.integration_type)],
            "{tenant} {}",
            type_str(t.integration_type)
        );
    }

    // A recent, unaligned range is served from minute buckets, with a type filter.
    let (from, to) = (NOW - 5 * HOUR - 123, NOW - HOUR + 17);
    let filter = vec![
        proto::IntegrationType::CustomNode as i32,
        proto::IntegrationType::InboundWebhook as i32,
    ];
    let o = api
        .get_overview(proto::GetOverviewRequest {
            allow_partial: false,
            tenant_id: tenant.into(),
            range: range(from, to),
            integration_types: filter,
        })
        .await
        .expect("overview")
        .into_inner();
    let (start, end) = span(&o.effective_range);
    assert_eq!((start, end), (floor(from, 60_000), ceil(to, 60_000)));
    let expected = truth.counts(tenant, start, end);
    let got: Vec<&str> = o
        .types
        .iter()
        .map(|t| type_str(t.integration_type))
        .collect();
    assert_eq!(got, ["inbound_webhook", "custom_node"]);
    for t in &o.types {
        assert_eq!(
            (t.failed, t.succeeded),
            expected[type_str(t.integration_type)]
        );
    }
}

fn percent(current: u64, previous: u64) -> Option<f64> {
    (previous > 0).then(|| (current as f64 - previous as f64) / previous as f64 * 100.0)
}

async fn check_change(api: &mut Api, truth: &Truth, tenant: &str) {
    for (period, width) in [(DAY, 60_000), (7 * DAY, HOUR)] {
        let c = api
            .get_percentage_change(proto::GetPercentageChangeRequest {
                tenant_id: tenant.into(),
                period: Some(integration_health::proto::Duration {
                    seconds: period / 1000,
                    nanos: 0,
                }),
                ..Default::default()
            })
            .await
            .expect("change")
            .into_inner();
        let end = ceil(NOW, width);
        assert_eq!(span(&c.current_range), (end - period, end));
        assert_eq!(span(&c.previous_range), (end - 2 * period, end - period));
        let current = truth.counts(tenant, end - period, end);
        let previous = truth.counts(tenant, end - 2 * period, end - period);
        for t in &c.types {
            let name = type_str(t.integration_type);
            assert_eq!((t.failed_current, t.succeeded_current), current[name]);
            assert_eq!((t.failed_previous, t.succeeded_previous), previous[name]);
            assert_eq!(
                t.failed_change_percent,
                percent(t.failed_current, t.failed_previous)
            );
            assert_eq!(
                t.succeeded_change_percent,
                percent(t.succeeded_current, t.succeeded_previous)
            );
        }
    }
    // A tenant with no history has no percentage at all, rather than 0 or infinity.
    let c = api
        .get_percentage_change(proto::GetPercentageChangeRequest {
            tenant_id: "newcomer".into(),
            ..Default::default()
        })
        .await
        .expect("change")
        .into_inner();
    assert!(c
        .types
        .iter()
        .all(|t| t.failed_change_percent.is_none() && t.succeeded_change_percent.is_none()));
}

async fn check_errors(api: &mut Api, truth: &Truth, tenant: &str) {
    let e = api
        .get_error_breakdown(proto::GetErrorBreakdownRequest {
            tenant_id: tenant.into(),
            ..Default::default()
        })
        .await
        .expect("errors")
        .into_inner();
    let (start, end) = span(&e.effective_range);
    let mut expected: Vec<(u32, u64)> = truth
        .by_code(tenant, start, end)
        .into_iter()
        .map(|(c, n)| (u32::from(c), n))
        .collect();
    expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let got: Vec<(u32, u64)> = e.errors.iter().map(|x| (x.status_code, x.failed)).collect();
    assert_eq!(got, expected, "{tenant}");
    let unknown = e
        .errors
        .iter()
        .find(|x| x.status_code == 777)
        .expect("777 occurs");
    assert_eq!(unknown.name, "Other error");
}

async fn check_trends(api: &mut Api, truth: &Truth, tenant: &str) {
    for zone in ["Europe/Berlin", "America/New_York", "UTC"] {
        let tz: chrono_tz::Tz = zone.parse().expect("zone");
        let t = api
            .get_trends(proto::GetTrendsRequest {
                tenant_id: tenant.into(),
                range: range(NOW - 20 * DAY, NOW),
                granularity: proto::Granularity::Day as i32,
                time_zone: zone.into(),
                ..Default::default()
            })
            .await
            .expect("trends")
            .into_inner();
        let (start, end) = span(&t.effective_range);
        let expected = truth.daily(tenant, tz, start, end);
        assert_eq!(t.series.len(), 5);
        for series in &t.series {
            let name = type_str(series.integration_type);
            let dates: Vec<chrono::NaiveDate> = series
                .points
                .iter()
                .map(|p| {
                    tz.timestamp_millis_opt(ms(&p.bucket_start))
                        .single()
                        .expect("valid")
                        .date_naive()
                })
                .collect();
            assert_eq!(
                dates.len(),
                21,
                "{zone}: 20 days back to now touch 21 local dates"
            );
            for (point, date) in series.points.iter().zip(&dates) {
                let local = tz
                    .timestamp_millis_opt(ms(&point.bucket_start))
                    .single()
                    .expect("valid");
                assert_eq!(
                    local.time(),
                    chrono::NaiveTime::MIN,
                    "{zone} buckets start at local midnight"
                );
                assert_eq!(
                    point.failed,
                    expected.get(&(name, *date)).copied().unwrap_or(0),
                    "{tenant} {zone} {name} {date}"
                );
            }
        }
    }
    let t = api
        .get_trends(proto::GetTrendsRequest {
            tenant_id: tenant.into(),
            range: range(NOW - 3 * DAY, NOW),
            granularity: proto::Granularity::Hour as i32,
            integration_types: vec![proto::IntegrationType::OutboundWebhook as i32],
            ..Default::default()
        })
        .await
        .expect("hourly trends")
        .into_inner();
    assert_eq!(t.series.len(), 1);
    let points = &t.series[0].points;
    assert_eq!(
        points.len(),
        73,
        "3 days plus the partial current hour, zeros included"
    );
    for p in points {
        let hour = ms(&p.bucket_start);
        let expected = truth.counts(tenant, hour, hour + HOUR)["outbound_webhook"].0;
        assert_eq!(p.failed, expected);
    }
}

async fn check_failures_and_details(api: &mut Api, truth: &Truth, tenant: &str) {
    let (rows, effective, total_groups) = all_failures(api, tenant, 7).await;
    let expected = truth.groups(tenant, effective.0, effective.1);
    assert_eq!(
        rows.len(),
        expected.len(),
        "{tenant}: every group exactly once across pages"
    );
    assert_eq!(total_groups, expected.len() as u64);
    for pair in rows.windows(2) {
        let ordered = pair[0].total_errors > pair[1].total_errors
            || (pair[0].total_errors == pair[1].total_errors
                && pair[0].failure_id < pair[1].failure_id);
        assert!(ordered, "sorted by total errors, then id");
    }
    let mut by_identity: HashMap<GroupId, &proto::FailureGroup> = HashMap::new();
    for row in &rows {
        let id = group_id(tenant, row);
        assert!(by_identity.insert(id, row).is_none(), "no duplicate rows");
    }
    for (id, group) in &expected {
        let row = by_identity
            .get(id)
            .unwrap_or_else(|| panic!("missing group {id:?}"));
        assert_eq!(row.total_errors, group.total);
        assert_eq!(ms(&row.first_seen), group.first);
        assert_eq!(ms(&row.last_seen), group.last);
        assert_eq!(
            (&row.integration_name, &row.service_name, &row.flow_name),
            (
                &group.integration_name,
                &group.service_name,
                &group.flow_name
            )
        );
    }

    // Filters narrow the table to the matching groups.
    let filtered = api
        .list_failures(proto::ListFailuresRequest {
            tenant_id: tenant.into(),
            status_code: 404,
            flow_id: "flow-1".into(),
            page_size: 1000,
            order_by: proto::FailureOrder::LastSeenDesc as i32,
            ..Default::default()
        })
        .await
        .expect("filtered failures")
        .into_inner();
    let wanted = expected
        .iter()
        .filter(|(id, _)| id.5 == 404 && id.4 == "flow-1")
        .count();
    assert_eq!(filtered.failures.len(), wanted);
    assert!(filtered
        .failures
        .windows(2)
        .all(|p| ms(&p[0].last_seen) >= ms(&p[1].last_seen)));

    // Details for the biggest groups: samples, hourly trend and guidance.
    for row in rows.iter().take(4) {
        let d = api
            .get_failure_details(proto::GetFailureDetailsRequest {
                tenant_id: tenant.into(),
                failure_id: row.failure_id.clone(),
                ..Default::default()
            })
            .await
            .expect("details")
            .into_inner();
        let id = group_id(tenant, row);
        let group = &expected[&id];
        let failure = d.failure.expect("failure");
        assert_eq!(failure.total_errors, group.total);
        assert_eq!(
            d.hourly_trend.iter().map(|p| p.failed).sum::<u64>(),
            group.total
        );
        let samples: Vec<(i64, String)> = d
            .recent_samples
            .iter()
            .map(|s| (ms(&s.occurred_at), s.event_id.clone()))
            .collect();
        assert_eq!(samples, group.samples);
        assert!(d
            .recent_samples
            .iter()
            .all(|s| s.error_message == row.failure_description));
        let integration_type =
            IntegrationType::parse(type_str(row.integration_type)).expect("type");
        let entry = catalog::lookup(row.status_code as u16);
        let guidance = d.guidance.expect("guidance");
        assert_eq!(
            guidance.applicable,
            entry.guidance_for(integration_type).is_some()
        );
        assert!(!guidance.resolution.is_empty());
        assert_eq!(d.integration_id, row.integration_id);
    }
}

async fn check_catalog(api: &mut Api) {
    let c = api
        .list_common_errors(proto::ListCommonErrorsRequest::default())
        .await
        .expect("catalog")
        .into_inner();
    assert_eq!(c.errors.len(), 25);
    assert!(c
        .errors
        .iter()
        .all(|e| e.guidance.len() == 5 && e.cataloged));
    for e in &c.errors {
        let class = proto::ErrorClass::try_from(e.class).map(|c| c.as_str_name());
        let code = e.status_code as u16;
        assert_eq!(class, Ok(class_by_the_docs(code)), "{code}");
    }
    let outbound = proto::ListCommonErrorsRequest {
        integration_type: proto::IntegrationType::OutboundWebhook as i32,
        status_code: 882,
    };
    let c = api
        .list_common_errors(outbound)
        .await
        .expect("catalog")
        .into_inner();
    assert_eq!(c.errors[0].guidance.len(), 1);
    assert!(
        !c.errors[0].guidance[0].applicable,
        "882 does not apply to outbound webhooks"
    );
}

fn check_dead_letters(bootstrap: &str, truth: &Truth) {
    let letters = read_dead_letters(bootstrap, DLQ, |l| l.len() >= truth.dead_letters.len());
    for (_, headers) in &letters {
        assert!(!headers[HEADER_REASON].is_empty());
        assert_eq!(headers[HEADER_SOURCE_TOPIC], TOPIC);
        assert!(headers[HEADER_SOURCE_PARTITION]
            .parse::<i32>()
            .is_ok_and(|p| (0..3).contains(&p)));
        assert!(headers[HEADER_SOURCE_OFFSET]
            .parse::<i64>()
            .is_ok_and(|o| o >= 0));
    }
    let mut payloads: Vec<Vec<u8>> = letters.into_iter().map(|(p, _)| p).collect();
    let mut expected = truth.dead_letters.clone();
    expected.sort();
    payloads.sort();
    assert_eq!(
        payloads, expected,
        "every rejected event is in the DLQ, byte for byte"
    );
}

async fn check_metrics(addr: std::net::SocketAddr, truth: &Truth) {
    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let events = "integration_health_events_total";
    assert_eq!(
        metric_sum(&text, events, &["outcome=\"accepted\""]),
        truth.accepted() as f64
    );
    assert_eq!(
        metric_sum(&text, events, &["outcome=\"duplicate\""]),
        truth.duplicates as f64
    );
    assert_eq!(
        metric_sum(&text, events, &["outcome=\"late_dropped\""]),
        truth.late as f64
    );
    let rejected = metric_sum(&text, "integration_health_events_rejected_total", &[]);
    assert_eq!(rejected, truth.dead_letters.len() as f64);
    assert!(
        metric_sum(
            &text,
            "integration_health_events_rejected_total",
            &["reason=\"future_event\""]
        ) > 0.0
    );
    assert_eq!(
        metric_sum(&text, "integration_health_partition_lag", &[]),
        0.0
    );
    assert!(
        text.contains("integration_health_partition_lag{topic=\"outcomes\",partition=\"2\"} 0"),
        "{text}"
    );
    assert!(
        metric_sum(
            &text,
            "integration_health_grpc_requests_total",
            &["rpc=\"ListFailures\"", "code=\"Ok\""]
        ) > 0.0
    );
    assert!(metric_sum(&text, "integration_health_store_failure_groups", &[]) > 0.0);
    assert!(
        metric_sum(
            &text,
            "integration_health_process_resident_memory_bytes",
            &[]
        ) > 0.0
    );
    let (ready, _) = http_get(addr, "/readyz").await;
    assert_eq!(ready, 200);
}

async fn check_health(addr: std::net::SocketAddr) {
    let channel = channel(addr).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "integration_health.v1.IntegrationHealth".into(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}
