//! Generated test events and `Truth`, a deliberately simple second computation of every number
//! the API serves, with the checks that compare the two.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::TimeZone;
use integration_health::api::convert::ms_to_timestamp;
use integration_health::catalog;
use integration_health::proto;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::*;

#[derive(Debug, Clone)]
pub struct Message {
    pub key: String,
    pub payload: Vec<u8>,
}

/// What each message is meant to be, so the test knows the truth without asking the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Valid,
    Duplicate,
    Malformed,
    Future,
    Late,
}

/// A valid event as the truth model sees it.
#[derive(Debug, Clone)]
pub struct TruthEvent {
    pub event_id: String,
    pub tenant: String,
    pub at: i64,
    pub kind: &'static str,
    pub integration_id: String,
    pub integration_name: String,
    pub failed: bool,
    pub code: u16,
    pub description: String,
    pub service_id: String,
    pub service_name: String,
    pub flow_id: String,
    pub flow_name: String,
}

pub struct Generated {
    pub messages: Vec<(Kind, Message)>,
    pub truth: Truth,
}

fn time_text(rng: &mut SmallRng, at: i64) -> Value {
    match rng.gen_range(0..3) {
        0 => json!(at),
        1 => json!(chrono::Utc
            .timestamp_millis_opt(at)
            .single()
            .expect("valid")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        _ => {
            let zone = chrono::FixedOffset::east_opt(5 * 3600 + 1800).expect("offset");
            json!(zone
                .timestamp_millis_opt(at)
                .single()
                .expect("valid")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false))
        }
    }
}

/// A seeded mix of valid events (spread over 40 days, three tenants, every type), repeats,
/// malformed payloads, events from the future and events older than retention.
pub fn generate(seed: u64, valid_count: usize, now: i64) -> Generated {
    generate_tagged(seed, valid_count, now, "")
}

/// Like `generate`, with `tag` in every event id so separate batches never collide.
pub fn generate_tagged(seed: u64, valid_count: usize, now: i64, tag: &str) -> Generated {
    let mut rng = SmallRng::seed_from_u64(seed);
    let tenants = ["acme", "globex", "initech"];
    let codes = [400u16, 401, 404, 429, 503, 504, 882, 418, 777, 844];
    let mut messages = Vec::new();
    let mut truth = Truth::default();
    for i in 0..valid_count {
        let tenant = tenants[rng.gen_range(0..tenants.len())];
        let kind = TYPES[rng.gen_range(0..5)];
        let integration = rng.gen_range(0..4);
        // One in ten reaches back up to a year: past the hour tier, into the days alone.
        let at = match rng.gen_bool(0.1) {
            true => now - rng.gen_range(40 * DAY..380 * DAY),
            false => now - rng.gen_range(0..40 * DAY),
        };
        let failed = rng.gen_bool(0.4);
        let code = codes[rng.gen_range(0..codes.len())];
        // Half the failures describe themselves; the rest send nothing, an empty message, or
        // the catalog name, which docs/events.md's rule shows alike.
        let message = match rng.gen_range(0..8) {
            _ if !failed => None,
            0..=3 => Some(format!("upstream said {code}")),
            4 => Some(String::new()),
            5 => Some(catalog::name_of(code).to_owned()),
            _ => None,
        };
        let service = rng.gen_range(0..3);
        let flow = rng.gen_range(0..3);
        let event_id = format!("{tenant}-{tag}{i}");
        let mut event = json!({
            "event_id": event_id,
            "tenant_id": tenant,
            "occurred_at": time_text(&mut rng, at),
            "integration_type": kind,
            "integration_id": format!("{kind}-{integration}"),
            "integration_name": format!("Integration {integration} v{}", rng.gen_range(1..3)),
            "outcome": if failed { "failure" } else { "success" },
            "some_future_field": [1, 2, 3],
        });
        if failed {
            event["status_code"] = json!(code);
        }
        if let Some(m) = &message {
            event["error_message"] = json!(m);
        }
        // Service 0 and flow 0 stand for "not given".
        if service > 0 {
            event["service_id"] = json!(format!("svc-{service}"));
            event["service_name"] = json!(format!("Service {service}"));
        }
        if flow > 0 {
            event["flow_id"] = json!(format!("flow-{flow}"));
            event["flow_name"] = json!(format!("Flow {flow}"));
        }
        // Most events are keyed by tenant; some by event id, so a tenant spans partitions.
        let key = if rng.gen_bool(0.8) {
            tenant.to_owned()
        } else {
            event_id.clone()
        };
        let payload = serde_json::to_vec(&event).expect("json");
        let parsed = TruthEvent {
            event_id: event_id.clone(),
            tenant: tenant.to_owned(),
            at,
            kind,
            integration_id: format!("{kind}-{integration}"),
            integration_name: event["integration_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            failed,
            code: if failed { code } else { 0 },
            description: match message {
                Some(text) if !text.is_empty() => text,
                _ => catalog::name_of(code).to_owned(),
            },
            service_id: event["service_id"].as_str().unwrap_or_default().to_owned(),
            service_name: event["service_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            flow_id: event["flow_id"].as_str().unwrap_or_default().to_owned(),
            flow_name: event["flow_name"].as_str().unwrap_or_default().to_owned(),
        };
        truth.events.push(parsed);
        let msg = Message { key, payload };
        messages.push((Kind::Valid, msg.clone()));
        if rng.gen_bool(0.05) {
            messages.push((Kind::Duplicate, msg));
            truth.duplicates += 1;
        }
        if rng.gen_bool(0.02) {
            let bad = bad_payload(&mut rng, tenant, &format!("{tag}{i}"), now);
            truth.dead_letters.push(bad.1.payload.clone());
            messages.push(bad);
        }
        if rng.gen_bool(0.01) {
            let mut late = event.clone();
            late["event_id"] = json!(format!("late-{tag}{i}"));
            late["occurred_at"] = json!(now - 400 * DAY - HOUR);
            messages.push((
                Kind::Late,
                Message {
                    key: tenant.to_owned(),
                    payload: serde_json::to_vec(&late).expect("json"),
                },
            ));
            truth.late += 1;
        }
    }
    Generated { messages, truth }
}

fn bad_payload(rng: &mut SmallRng, tenant: &str, i: &str, now: i64) -> (Kind, Message) {
    let base = json!({
        "event_id": format!("bad-{i}"), "tenant_id": tenant, "occurred_at": now - HOUR,
        "integration_type": "custom_node", "integration_id": "cn", "integration_name": "n",
        "outcome": "failure", "status_code": 500,
    });
    let mut event = base.clone();
    let kind = match rng.gen_range(0..7) {
        0 => {
            return (
                Kind::Malformed,
                Message {
                    key: tenant.to_owned(),
                    payload: b"{not json".to_vec(),
                },
            )
        }
        1 => {
            event.as_object_mut().expect("object").remove("status_code");
            Kind::Malformed
        }
        2 => {
            event["tenant_id"] = json!("no spaces allowed");
            Kind::Malformed
        }
        3 => {
            event["integration_type"] = json!("carrier_pigeon");
            Kind::Malformed
        }
        4 => {
            event["status_code"] = json!(42);
            Kind::Malformed
        }
        5 => {
            event["occurred_at"] = json!("yesterday");
            Kind::Malformed
        }
        _ => {
            event["occurred_at"] = json!(now + 10 * 60_000);
            Kind::Future
        }
    };
    (
        kind,
        Message {
            key: tenant.to_owned(),
            payload: serde_json::to_vec(&event).expect("json"),
        },
    )
}

/// The independent computation: plain loops over the generated events.
#[derive(Debug, Default, Clone)]
pub struct Truth {
    pub events: Vec<TruthEvent>,
    pub duplicates: u64,
    pub late: u64,
    pub dead_letters: Vec<Vec<u8>>,
}

pub type GroupId = (String, &'static str, String, String, String, u16, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthGroup {
    pub total: u64,
    pub first: i64,
    pub last: i64,
    pub integration_name: String,
    pub service_name: String,
    pub flow_name: String,
    /// (at, event_id), newest first.
    pub samples: Vec<(i64, String)>,
}

impl Truth {
    pub fn extend(&mut self, other: Truth) {
        self.events.extend(other.events);
        self.duplicates += other.duplicates;
        self.late += other.late;
        self.dead_letters.extend(other.dead_letters);
    }

    pub fn of<'a>(&'a self, tenant: &'a str) -> impl Iterator<Item = &'a TruthEvent> + 'a {
        self.events.iter().filter(move |e| e.tenant == tenant)
    }

    /// (failed, succeeded) per type for events in [start, end).
    pub fn counts(&self, tenant: &str, start: i64, end: i64) -> HashMap<&'static str, (u64, u64)> {
        let mut counts: HashMap<&'static str, (u64, u64)> =
            TYPES.iter().map(|t| (*t, (0, 0))).collect();
        for e in self.of(tenant).filter(|e| e.at >= start && e.at < end) {
            let slot = counts.get_mut(e.kind).expect("known type");
            if e.failed {
                slot.0 += 1;
            } else {
                slot.1 += 1;
            }
        }
        counts
    }

    pub fn by_code(&self, tenant: &str, start: i64, end: i64) -> BTreeMap<u16, u64> {
        let mut codes = BTreeMap::new();
        for e in self
            .of(tenant)
            .filter(|e| e.failed && e.at >= start && e.at < end)
        {
            *codes.entry(e.code).or_insert(0) += 1;
        }
        codes
    }

    /// Failures per type per local calendar day in `tz`.
    pub fn daily(
        &self,
        tenant: &str,
        tz: chrono_tz::Tz,
        start: i64,
        end: i64,
    ) -> HashMap<(&'static str, chrono::NaiveDate), u64> {
        let mut days = HashMap::new();
        for e in self
            .of(tenant)
            .filter(|e| e.failed && e.at >= start && e.at < end)
        {
            let date = tz
                .timestamp_millis_opt(e.at)
                .single()
                .expect("valid")
                .date_naive();
            *days.entry((e.kind, date)).or_insert(0) += 1;
        }
        days
    }

    pub fn groups(&self, tenant: &str, start: i64, end: i64) -> HashMap<GroupId, TruthGroup> {
        let mut groups: HashMap<GroupId, TruthGroup> = HashMap::new();
        let mut named_at: HashMap<GroupId, i64> = HashMap::new();
        for e in self.of(tenant).filter(|e| e.failed) {
            let id = (
                e.tenant.clone(),
                e.kind,
                e.integration_id.clone(),
                e.service_id.clone(),
                e.flow_id.clone(),
                e.code,
                e.description.clone(),
            );
            let group = groups.entry(id.clone()).or_insert(TruthGroup {
                total: 0,
                first: i64::MAX,
                last: i64::MIN,
                integration_name: String::new(),
                service_name: String::new(),
                flow_name: String::new(),
                samples: Vec::new(),
            });
            if e.at >= start && e.at < end {
                group.total += 1;
            }
            group.first = group.first.min(e.at);
            group.last = group.last.max(e.at);
            group.samples.push((e.at, e.event_id.clone()));
            let seen = named_at.entry(id).or_insert(i64::MIN);
            if e.at >= *seen {
                *seen = e.at;
                group.integration_name = e.integration_name.clone();
                group.service_name = e.service_name.clone();
                group.flow_name = e.flow_name.clone();
            }
        }
        for group in groups.values_mut() {
            group
                .samples
                .sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            group.samples.truncate(5);
        }
        groups.retain(|_, g| g.total > 0);
        groups
    }

    pub fn accepted(&self) -> u64 {
        self.events.len() as u64
    }

    pub fn distinct_dead_letters(&self) -> HashSet<Vec<u8>> {
        self.dead_letters.iter().cloned().collect()
    }
}

pub fn ts(t: &Option<integration_health::proto::Timestamp>) -> i64 {
    let t = t.as_ref().expect("timestamp present");
    t.seconds * 1000 + i64::from(t.nanos / 1_000_000)
}

pub fn bounds(r: &Option<proto::TimeRange>) -> (i64, i64) {
    let r = r.as_ref().expect("range present");
    (ts(&r.start), ts(&r.end))
}

pub fn type_name(value: i32) -> &'static str {
    TYPES[(value - 1) as usize]
}

/// What a set of instances reported, summed: used when several instances split the partitions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reported {
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub late_dropped: u64,
    pub overview: BTreeMap<(String, &'static str), (u64, u64)>,
}

/// Sums every instance's status and default-range overview per tenant.
pub async fn reported(apis: &mut [Api], tenants: &[&str]) -> Reported {
    let mut sum = Reported::default();
    for api in apis.iter_mut() {
        let s = ingest_status(api).await;
        sum.accepted += s.accepted;
        sum.rejected += s.rejected;
        sum.duplicates += s.duplicates;
        sum.late_dropped += s.late_dropped;
        for tenant in tenants {
            let o = default_overview(api, tenant).await;
            for t in o.types {
                let slot = sum
                    .overview
                    .entry(((*tenant).to_owned(), type_name(t.integration_type)))
                    .or_default();
                slot.0 += t.failed;
                slot.1 += t.succeeded;
            }
        }
    }
    sum
}

/// The overview the truth expects over the default range used by `reported`.
pub fn expected_overview(
    truth: &Truth,
    tenants: &[&str],
    now: i64,
) -> BTreeMap<(String, &'static str), (u64, u64)> {
    let start = (now - 30 * DAY).div_euclid(HOUR) * HOUR;
    let end = -(-now).div_euclid(HOUR) * HOUR;
    let mut expected = BTreeMap::new();
    for tenant in tenants {
        for (kind, counts) in truth.counts(tenant, start, end) {
            expected.insert(((*tenant).to_owned(), kind), counts);
        }
    }
    expected
}

/// A year up to `end` (the service's now, from an answer) asked of the counting queries: served
/// in whole UTC days from the day tier, and equal to the truth over the range each reports.
async fn assert_year_matches_truth(api: &mut Api, truth: &Truth, tenant: &str, end: i64) {
    let year = Some(proto::TimeRange {
        start: Some(ms_to_timestamp(end - 365 * DAY)),
        end: Some(ms_to_timestamp(end)),
    });
    let o = api
        .get_overview(proto::GetOverviewRequest {
            tenant_id: tenant.into(),
            range: year,
            ..Default::default()
        })
        .await
        .expect("year overview")
        .into_inner();
    assert_eq!(o.granularity, proto::Granularity::Day as i32);
    let (start, stop) = bounds(&o.effective_range);
    assert_eq!((start % DAY, stop % DAY), (0, 0), "whole UTC days");
    let expected = truth.counts(tenant, start, stop);
    for t in &o.types {
        let counted = (t.failed, t.succeeded);
        assert_eq!(
            counted,
            expected[type_name(t.integration_type)],
            "{tenant} year"
        );
    }
    let e = api
        .get_error_breakdown(proto::GetErrorBreakdownRequest {
            tenant_id: tenant.into(),
            range: year,
            ..Default::default()
        })
        .await
        .expect("year errors")
        .into_inner();
    let (start, stop) = bounds(&e.effective_range);
    let got: BTreeMap<u16, u64> = e
        .errors
        .iter()
        .map(|x| (x.status_code as u16, x.failed))
        .collect();
    assert_eq!(
        got,
        truth.by_code(tenant, start, stop),
        "{tenant} year errors"
    );
    assert_daily_trend_matches(api, truth, tenant, year).await;
}

/// The UTC-daily trend over `range` (the default when `None`) against the truth's days.
async fn assert_daily_trend_matches(
    api: &mut Api,
    truth: &Truth,
    tenant: &str,
    range: Option<proto::TimeRange>,
) {
    let t = api
        .get_trends(proto::GetTrendsRequest {
            tenant_id: tenant.into(),
            granularity: proto::Granularity::Day as i32,
            range,
            ..Default::default()
        })
        .await
        .expect("trends")
        .into_inner();
    let (start, end) = bounds(&t.effective_range);
    let daily = truth.daily(tenant, chrono_tz::Tz::UTC, start, end);
    for series in &t.series {
        for p in &series.points {
            let date = chrono::Utc
                .timestamp_millis_opt(ts(&p.bucket_start))
                .single()
                .expect("valid")
                .date_naive();
            let expected = daily
                .get(&(type_name(series.integration_type), date))
                .copied()
                .unwrap_or(0);
            assert_eq!(p.failed, expected, "{tenant} trend {date}");
        }
    }
}

/// Compares every RPC's answer with the truth, computing the truth over the effective range
/// each answer reports (so a wall clock moving on between calls cannot cause a mismatch).
pub async fn assert_matches_truth(api: &mut Api, truth: &Truth, tenants: &[&str]) {
    let s = ingest_status(api).await;
    assert_eq!(s.accepted, truth.accepted(), "accepted");
    assert_eq!(s.late_dropped, truth.late, "late dropped");
    assert_eq!(s.rejected, truth.dead_letters.len() as u64, "rejected");
    assert_eq!(s.duplicates, truth.duplicates, "duplicates");
    for tenant in tenants {
        let o = default_overview(api, tenant).await;
        let (start, end) = bounds(&o.effective_range);
        let expected = truth.counts(tenant, start, end);
        for t in &o.types {
            assert_eq!(
                (t.failed, t.succeeded),
                expected[type_name(t.integration_type)],
                "{tenant} overview"
            );
        }
        assert_year_matches_truth(api, truth, tenant, end).await;

        for days in [1, 7] {
            let c = api
                .get_percentage_change(proto::GetPercentageChangeRequest {
                    allow_partial: false,
                    tenant_id: (*tenant).into(),
                    period: Some(integration_health::proto::Duration {
                        seconds: days * 86_400,
                        nanos: 0,
                    }),
                    end: None,
                    integration_types: vec![],
                    include_drivers: true,
                })
                .await
                .expect("change")
                .into_inner();
            for t in &c.types {
                let change = t.failed_current as i64 - t.failed_previous as i64;
                let other = t.other_integrations.as_ref().map_or(0, |o| o.change);
                let drivers: i64 = t.integration_drivers.iter().map(|d| d.change).sum();
                assert_eq!(drivers + other, change, "{tenant}: drivers add up");
            }
            let (cs, ce) = bounds(&c.current_range);
            let (ps, pe) = bounds(&c.previous_range);
            let current = truth.counts(tenant, cs, ce);
            let previous = truth.counts(tenant, ps, pe);
            for t in &c.types {
                let name = type_name(t.integration_type);
                assert_eq!(
                    (t.failed_current, t.succeeded_current),
                    current[name],
                    "{tenant} change current"
                );
                assert_eq!(
                    (t.failed_previous, t.succeeded_previous),
                    previous[name],
                    "{tenant} change previous"
                );
            }
        }

        let e = api
            .get_error_breakdown(proto::GetErrorBreakdownRequest {
                allow_partial: false,
                tenant_id: (*tenant).into(),
                range: None,
                integration_types: vec![],
            })
            .await
            .expect("errors")
            .into_inner();
        let (start, end) = bounds(&e.effective_range);
        let got: BTreeMap<u16, u64> = e
            .errors
            .iter()
            .map(|x| (x.status_code as u16, x.failed))
            .collect();
        assert_eq!(got, truth.by_code(tenant, start, end), "{tenant} errors");
        assert_classes_match(&e, &truth.by_code(tenant, start, end), tenant);
        assert_overview_classes_match(api, truth, tenant).await;
        assert_failures_by_class_match(api, truth, tenant).await;
        assert_trends_by_class_match(api, truth, tenant).await;
        assert_integrations_by_class_match(api, truth, tenant).await;

        assert_daily_trend_matches(api, truth, tenant, None).await;

        let (rows, effective, _) = all_failures(api, tenant, 50).await;
        let groups = truth.groups(tenant, effective.0, effective.1);
        assert_eq!(rows.len(), groups.len(), "{tenant} group count");
        for row in &rows {
            let id = group_id(tenant, row);
            let group = groups
                .get(&id)
                .unwrap_or_else(|| panic!("unexpected group {id:?}"));
            assert_eq!(
                (row.total_errors, ts(&row.first_seen), ts(&row.last_seen)),
                (group.total, group.first, group.last),
                "{id:?}"
            );
        }
        for row in rows.iter().take(3) {
            let d = api
                .get_failure_details(proto::GetFailureDetailsRequest {
                    allow_partial: false,
                    tenant_id: (*tenant).into(),
                    failure_id: row.failure_id.clone(),
                    range: None,
                })
                .await
                .expect("details")
                .into_inner();
            let id = group_id(tenant, row);
            let samples: Vec<(i64, String)> = d
                .recent_samples
                .iter()
                .map(|s| (ts(&s.occurred_at), s.event_id.clone()))
                .collect();
            assert_eq!(samples, groups[&id].samples, "{id:?} samples");
        }
    }
}

/// Every failure group's id, by its identity, across `tenants`: compared before and after a
/// restart, it shows that ids are stable.
pub async fn failure_ids(api: &mut Api, tenants: &[&str]) -> BTreeMap<GroupId, String> {
    let mut ids = BTreeMap::new();
    for tenant in tenants {
        let (rows, _, _) = all_failures(api, tenant, 1000).await;
        for row in rows {
            ids.insert(group_id(tenant, &row), row.failure_id);
        }
    }
    ids
}

/// Every row of a tenant list carries the recount's failed and succeeded totals for its range.
pub fn assert_tenants_match(listed: &proto::ListTenantsResponse, truth: &Truth) {
    let (start, end) = bounds(&listed.effective_range);
    for row in &listed.tenants {
        let counts = truth.counts(&row.tenant_id, start, end);
        let failed: u64 = counts.values().map(|c| c.0).sum();
        let succeeded: u64 = counts.values().map(|c| c.1).sum();
        assert_eq!(
            (row.failed, row.succeeded),
            (failed, succeeded),
            "{}",
            row.tenant_id
        );
    }
}

/// Every integration row of the tenant carries the recount's failed and succeeded totals for its
/// range, and no integration with events is missing.
pub fn assert_integrations_match(
    listed: &proto::ListIntegrationsResponse,
    truth: &Truth,
    tenant: &str,
) {
    let (start, end) = bounds(&listed.effective_range);
    let mut expected: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for e in truth.of(tenant).filter(|e| e.at >= start && e.at < end) {
        let slot = expected
            .entry((e.kind.to_owned(), e.integration_id.clone()))
            .or_default();
        if e.failed {
            slot.0 += 1;
        } else {
            slot.1 += 1;
        }
    }
    let shown: BTreeMap<(String, String), (u64, u64)> = listed
        .integrations
        .iter()
        .map(|row| {
            let kind = TYPES[(row.integration_type - 1) as usize].to_owned();
            (
                (kind, row.integration_id.clone()),
                (row.failed, row.succeeded),
            )
        })
        .collect();
    assert_eq!(shown, expected, "{tenant}");
}

/// One integration's health as the test's own recount has it over the answer's range: its
/// failures and successes, failures per code, its top code, and its busiest failure groups'
/// totals (a group being one code, description, service and flow).
pub fn assert_integration_health_matches(
    health: &proto::GetIntegrationHealthResponse,
    truth: &Truth,
    tenant: &str,
) {
    let summary = health.integration.as_ref().expect("a summary");
    let kind = type_name(summary.integration_type);
    let id = summary.integration_id.as_str();
    let (start, end) = bounds(&health.effective_range);
    let events: Vec<&TruthEvent> = truth
        .of(tenant)
        .filter(|e| e.kind == kind && e.integration_id == id)
        .filter(|e| e.at >= start && e.at < end)
        .collect();
    let failed = events.iter().filter(|e| e.failed).count() as u64;
    assert_eq!(summary.failed, failed, "{tenant} {id}");
    assert_eq!(
        summary.succeeded,
        events.len() as u64 - failed,
        "{tenant} {id}"
    );
    let mut codes: BTreeMap<u32, u64> = BTreeMap::new();
    let mut groups: BTreeMap<(u16, &str, &str, &str), u64> = BTreeMap::new();
    for e in events.iter().filter(|e| e.failed) {
        *codes.entry(u32::from(e.code)).or_default() += 1;
        let key = (
            e.code,
            e.description.as_str(),
            e.service_id.as_str(),
            e.flow_id.as_str(),
        );
        *groups.entry(key).or_default() += 1;
    }
    let shown: BTreeMap<u32, u64> = health
        .error_codes
        .iter()
        .map(|c| (c.status_code, c.failed))
        .collect();
    assert_eq!(shown, codes, "{tenant} {id}");
    let busiest = codes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)));
    assert_eq!(summary.top_error_code, busiest.map_or(0, |(code, _)| *code));
    let mut totals: Vec<u64> = groups.into_values().collect();
    totals.sort_unstable_by(|a, b| b.cmp(a));
    totals.truncate(5);
    let top: Vec<u64> = health.top_failures.iter().map(|f| f.total_errors).collect();
    assert_eq!(top, totals, "{tenant} {id}: the busiest groups");
}
