//! Error classes against the recount: the mapping as docs/events.md writes it, and each view
//! that shows or filters by class.

use std::collections::BTreeMap;

use integration_health::proto;

use super::{all_failures_of, bounds, default_overview, group_id, ts, type_name, Api, Truth};

/// A code's class as docs/events.md defines it, written out here for the recount.
pub fn class_by_the_docs(code: u16) -> &'static str {
    match code {
        401 | 403 => "AUTH",
        429 | 882 | 883 => "RATE_LIMITED",
        408 | 500 | 502 | 503 | 504 | 521 | 523 => "PROVIDER_UNAVAILABLE",
        816 | 844 | 852 | 884 => "CONFIG",
        c if (500..600).contains(&c) => "PROVIDER_UNAVAILABLE",
        _ => "CLIENT",
    }
}

/// Every class, in the order answers list them.
pub const CLASSES: [proto::ErrorClass; 5] = [
    proto::ErrorClass::Auth,
    proto::ErrorClass::RateLimited,
    proto::ErrorClass::ProviderUnavailable,
    proto::ErrorClass::Config,
    proto::ErrorClass::Client,
];

fn class_name(class: i32) -> &'static str {
    proto::ErrorClass::try_from(class).map_or("?", |c| c.as_str_name())
}

/// The recount's failures per class, every class present.
pub fn expected_classes(codes: &BTreeMap<u16, u64>) -> BTreeMap<&'static str, u64> {
    let mut expected: BTreeMap<&str, u64> = CLASSES.iter().map(|c| (c.as_str_name(), 0)).collect();
    for (code, failed) in codes {
        *expected.entry(class_by_the_docs(*code)).or_default() += failed;
    }
    expected
}

fn shown_classes(classes: &[proto::ClassCount]) -> BTreeMap<&'static str, u64> {
    classes
        .iter()
        .map(|c| (class_name(c.class), c.failed))
        .collect()
}

/// The answer's failures per class, and each code's class, against the recount's codes.
pub fn assert_classes_match(
    answer: &proto::GetErrorBreakdownResponse,
    codes: &BTreeMap<u16, u64>,
    tenant: &str,
) {
    let shown = shown_classes(&answer.classes);
    assert_eq!(
        shown,
        expected_classes(codes),
        "{tenant} failures per class"
    );
    for error in &answer.errors {
        let code = error.status_code as u16;
        assert_eq!(
            class_name(error.class),
            class_by_the_docs(code),
            "{tenant} {code}"
        );
    }
}

/// The overview's failures per class over its own range (minutes inside the minute window).
pub async fn assert_overview_classes_match(api: &mut Api, truth: &Truth, tenant: &str) {
    let o = default_overview(api, tenant).await;
    let (start, end) = bounds(&o.effective_range);
    let expected = expected_classes(&truth.by_code(tenant, start, end));
    assert_eq!(
        shown_classes(&o.classes),
        expected,
        "{tenant} overview per class"
    );
}

/// The failures table kept to each class holds the recount's groups of that class, no more,
/// read in small pages so the filter carries across page tokens.
pub async fn assert_failures_by_class_match(api: &mut Api, truth: &Truth, tenant: &str) {
    for class in CLASSES {
        let (rows, (start, end), total) = all_failures_of(api, tenant, 7, &[class]).await;
        let expected: BTreeMap<_, u64> = truth
            .groups(tenant, start, end)
            .into_iter()
            .filter(|(id, _)| class_by_the_docs(id.5) == class.as_str_name())
            .map(|(id, group)| (id, group.total))
            .collect();
        let shown: BTreeMap<_, u64> = rows
            .iter()
            .map(|row| (group_id(tenant, row), row.total_errors))
            .collect();
        assert_eq!(shown.len(), rows.len(), "{tenant}: a group listed twice");
        assert_eq!(total, expected.len() as u64, "{tenant} {class:?} total");
        assert_eq!(shown, expected, "{tenant} {class:?}");
    }
}

/// The trend kept to each class, by UTC day and by hour over the default range: each point counts the recount's failures of that class, type and bucket.
pub async fn assert_trends_by_class_match(api: &mut Api, truth: &Truth, tenant: &str) {
    for (granularity, width) in [
        (proto::Granularity::Day, 86_400_000),
        (proto::Granularity::Hour, 3_600_000),
    ] {
        for class in CLASSES {
            let t = api
                .get_trends(proto::GetTrendsRequest {
                    tenant_id: tenant.into(),
                    granularity: granularity as i32,
                    classes: vec![class as i32],
                    ..Default::default()
                })
                .await
                .expect("trends")
                .into_inner();
            let (start, end) = bounds(&t.effective_range);
            let mut expected: BTreeMap<(&str, i64), u64> = BTreeMap::new();
            let wanted = |e: &&super::TruthEvent| {
                e.failed
                    && e.at >= start
                    && e.at < end
                    && class_by_the_docs(e.code) == class.as_str_name()
            };
            for e in truth.of(tenant).filter(wanted) {
                *expected
                    .entry((e.kind, e.at.div_euclid(width) * width))
                    .or_default() += 1;
            }
            let mut shown: BTreeMap<(&str, i64), u64> = BTreeMap::new();
            for series in &t.series {
                for p in series.points.iter().filter(|p| p.failed > 0) {
                    let key = (type_name(series.integration_type), ts(&p.bucket_start));
                    shown.insert(key, p.failed);
                }
            }
            assert_eq!(shown, expected, "{tenant} {class:?} {granularity:?} trend");
        }
    }
}

/// The integrations list kept to each class, read in small pages: exactly the integrations with
/// failures of that class in the range, each with the recount's failures of it, most first.
pub async fn assert_integrations_by_class_match(api: &mut Api, truth: &Truth, tenant: &str) {
    for class in CLASSES {
        let mut rows = Vec::new();
        let mut token = String::new();
        let range = loop {
            let page = api
                .list_integrations(proto::ListIntegrationsRequest {
                    tenant_id: tenant.into(),
                    classes: vec![class as i32],
                    page_size: 3,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .expect("integrations")
                .into_inner();
            rows.extend(page.integrations);
            token = page.next_page_token;
            if token.is_empty() {
                break bounds(&page.effective_range);
            }
        };
        let mut expected: BTreeMap<(&str, String), u64> = BTreeMap::new();
        let wanted = |e: &&super::TruthEvent| {
            e.failed
                && (range.0..range.1).contains(&e.at)
                && class_by_the_docs(e.code) == class.as_str_name()
        };
        for e in truth.of(tenant).filter(wanted) {
            *expected
                .entry((e.kind, e.integration_id.clone()))
                .or_default() += 1;
        }
        let shown: BTreeMap<(&str, String), u64> = rows
            .iter()
            .map(|r| {
                let key = (type_name(r.integration_type), r.integration_id.clone());
                (key, r.class_failures.expect("class failures with a filter"))
            })
            .collect();
        assert_eq!(shown, expected, "{tenant} {class:?} integrations");
        let order: Vec<u64> = rows.iter().filter_map(|r| r.class_failures).collect();
        assert!(
            order.windows(2).all(|w| w[0] >= w[1]),
            "{tenant} {class:?}: most failures of the class first"
        );
    }
}
