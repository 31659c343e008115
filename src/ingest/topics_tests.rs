//! Tests of `topics.rs`: the needed settings and the partition checks.

use super::*;

fn counts() -> HashMap<String, i32> {
    HashMap::from([("events".to_owned(), 6), ("events.by-tenant".to_owned(), 3)])
}

fn by_tenant() -> TopicSpec {
    TopicSpec {
        name: "events.by-tenant".into(),
        purpose: "the repartition stage's output",
        partitions: Partitions::SameAs("events".into()),
        compacted: false,
        min_compaction_lag_ms: None,
    }
}

#[test]
fn a_repartition_topic_with_another_partition_count_is_a_problem() {
    let mut report = TopicReport::default();
    check_partitions(&by_tenant(), 3, &counts(), &mut report);
    assert_eq!(report.problems.len(), 1);
    assert!(
        report.problems[0].contains("has 3 partitions"),
        "{report:?}"
    );
    assert!(report.problems[0].contains("6 partitions"), "{report:?}");
    let mut fine = TopicReport::default();
    check_partitions(&by_tenant(), 6, &counts(), &mut fine);
    assert!(fine.problems.is_empty());
}

#[test]
fn the_alerts_topic_needs_a_week_before_compaction() {
    let config = Config {
        topic: "events".into(),
        ..Config::default()
    };
    let alerts = internal_topics(&config)
        .into_iter()
        .find(|spec| spec.name == "events.alerts")
        .expect("the alerts topic");
    assert_eq!(
        alerts.needs(&counts()),
        "1 or more partitions, cleanup.policy=compact, min.compaction.lag.ms=604800000"
    );
}

#[test]
fn the_needed_settings_are_spelled_out() {
    let issues = TopicSpec {
        name: "events.issues".into(),
        purpose: "users' issue actions",
        partitions: Partitions::AtLeastOne(1),
        compacted: true,
        min_compaction_lag_ms: None,
    };
    assert_eq!(
        issues.needs(&counts()),
        "1 or more partitions, cleanup.policy=compact"
    );
    assert_eq!(
        by_tenant().needs(&counts()),
        "6 partitions (as many as events)"
    );
}
