//! Tests of `owner`, beside it to keep that file to its job.

use std::sync::mpsc::sync_channel;

use rdkafka::message::Timestamp;

use super::*;
use crate::clock::ManualClock;

const NOW: i64 = 1_767_225_600_000;
pub(super) const PANIC_EVENT_ID: &str = "<panic>";

/// Keeps what the owner dead-letters, in order.
#[derive(Clone, Default)]
struct Letters(Arc<parking_lot::Mutex<Vec<(i64, &'static str)>>>);

impl DeadLetterSink for Letters {
    fn send(&mut self, message: &OwnedMessage, reason: &EventError) {
        self.0.lock().push((message.offset(), reason.reason_code()));
    }

    fn flush(&mut self) {}
}

/// A log whose start the test moves.
#[derive(Clone, Default)]
struct LogStart(Arc<std::sync::atomic::AtomicI64>);

impl LogStarts for LogStart {
    fn watermarks(&self, _key: &PartitionKey) -> Option<(i64, i64)> {
        Some((self.0.load(std::sync::atomic::Ordering::SeqCst), -1))
    }
}

impl LogStart {
    fn set(&self, offset: i64) {
        self.0.store(offset, std::sync::atomic::Ordering::SeqCst);
    }
}

fn owner(letters: Letters) -> Owner {
    owner_with_log(letters, LogStart::default())
}

fn owner_with_log(letters: Letters, log: LogStart) -> Owner {
    Owner {
        store: Arc::new(Store::new(StoreLimits::default())),
        progress: Arc::new(IngestProgress::default()),
        clock: Arc::new(ManualClock::new(NOW)),
        max_future_ms: 300_000,
        max_message_bytes: 1 << 20,
        input_keyed_by_tenant: true,
        dead_letters: Box::new(letters),
        parked: HashMap::new(),
        snapshots: None,
        shutdown: CancellationToken::new(),
        metrics: Arc::new(Metrics::new()),
        on_assignment: None,
        log_starts: Box::new(log),
    }
}

fn losses(owner: &Owner, partition: i32) -> Vec<(i64, i64)> {
    let state = owner
        .store
        .partition(&PartitionKey::new("events", partition));
    let state = state.expect("owned");
    let ranges = state.read().losses.iter().map(|l| (l.from, l.to)).collect();
    ranges
}

#[test]
fn a_partition_resumed_below_its_log_start_records_the_loss_and_starts_there() {
    let log = LogStart::default();
    log.set(100);
    let mut owner = owner_with_log(Letters::default(), log);
    let offsets = assign(&mut owner, &[0]);
    assert_eq!(
        offsets,
        vec![(PartitionKey::new("events", 0), Offset::Offset(100))]
    );
    assert_eq!(losses(&owner, 0), [(0, 100)]);
    let status = owner.progress.status(&owner.store, NOW);
    assert_eq!(status.partitions[0].lost_offsets, 100);
}

#[test]
fn a_gap_is_lost_only_below_the_log_start() {
    let log = LogStart::default();
    let mut owner = owner_with_log(Letters::default(), log.clone());
    assign(&mut owner, &[0]);
    owner.handle(Command::Batch(vec![message(0, 0, &event("a"))]));
    // Offsets 1..5 compacted away or transaction markers: the log still starts at 0.
    owner.handle(Command::Batch(vec![message(0, 5, &event("b"))]));
    assert_eq!(losses(&owner, 0), []);
    // The consumer fell behind the retention: 6..40 were deleted, 40.. is read.
    log.set(40);
    owner.handle(Command::Batch(vec![
        message(0, 40, &event("c")),
        message(0, 41, &event("d")),
    ]));
    assert_eq!(losses(&owner, 0), [(6, 40)]);
    assert_eq!(owner.store.totals().accepted, 4);
}

fn message(partition: i32, offset: i64, payload: &str) -> OwnedMessage {
    OwnedMessage::new(
        Some(payload.as_bytes().to_vec()),
        None,
        "events".into(),
        Timestamp::NotAvailable,
        partition,
        offset,
        None,
    )
}

fn event(id: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","tenant_id":"acme","occurred_at":{},"integration_type":"custom_node","integration_id":"n1","integration_name":"Node","outcome":"success"}}"#,
        NOW - 1_000
    )
}

fn keys(partitions: &[i32]) -> Vec<PartitionKey> {
    partitions
        .iter()
        .map(|p| PartitionKey::new("events", *p))
        .collect()
}

fn assign(owner: &mut Owner, partitions: &[i32]) -> Vec<(PartitionKey, Offset)> {
    let (reply, answer) = sync_channel(1);
    owner.handle(Command::Assigned(keys(partitions), reply));
    answer.recv().expect("owner answers")
}

fn revoke(owner: &mut Owner, partitions: &[i32]) {
    let (reply, answer) = sync_channel(1);
    owner.handle(Command::Revoked(keys(partitions), reply));
    answer.recv().expect("owner answers");
}

#[test]
fn a_fresh_partition_starts_at_the_beginning() {
    let mut owner = owner(Letters::default());
    let offsets = assign(&mut owner, &[0]);
    assert_eq!(
        offsets,
        vec![(PartitionKey::new("events", 0), Offset::Beginning)]
    );
    assert!(owner.progress.has_assignment());
}

#[test]
fn a_redelivered_message_is_skipped() {
    let mut owner = owner(Letters::default());
    assign(&mut owner, &[0]);
    let batch = || vec![message(0, 0, &event("a")), message(0, 1, &event("b"))];
    owner.handle(Command::Batch(batch()));
    owner.handle(Command::Batch(batch()));
    let totals = owner.store.totals();
    assert_eq!(totals.accepted, 2);
    assert_eq!(totals.duplicates, 0, "skipped by offset, not by dedup");
}

#[test]
fn a_revoked_partition_resumes_at_its_offset_when_it_comes_back() {
    let mut owner = owner(Letters::default());
    assign(&mut owner, &[0, 1]);
    owner.handle(Command::Batch(vec![
        message(0, 0, &event("a")),
        message(0, 1, &event("b")),
    ]));
    revoke(&mut owner, &[0]);
    assert!(owner
        .store
        .partition(&PartitionKey::new("events", 0))
        .is_none());
    owner.handle(Command::Batch(vec![message(0, 2, &event("c"))]));
    assert_eq!(
        owner.store.totals().accepted,
        0,
        "partition 1 has none, 0 is gone"
    );
    let offsets = assign(&mut owner, &[0]);
    assert_eq!(
        offsets,
        vec![(PartitionKey::new("events", 0), Offset::Offset(2))]
    );
    assert_eq!(owner.store.totals().accepted, 2);
}

#[test]
fn a_rejected_message_is_dead_lettered_and_the_partition_moves_on() {
    let letters = Letters::default();
    let mut owner = owner(letters.clone());
    assign(&mut owner, &[0]);
    owner.handle(Command::Batch(vec![
        message(0, 0, "{not json"),
        message(0, 1, &event("a")),
    ]));
    assert_eq!(*letters.0.lock(), vec![(0, "malformed_json")]);
    let state = owner.store.partition(&PartitionKey::new("events", 0));
    let state = state.expect("owned");
    let state = state.read();
    assert_eq!(state.next_offset(), Some(2));
    assert_eq!((state.totals.rejected, state.totals.accepted), (1, 1));
}

#[test]
fn a_panic_while_applying_sets_the_message_aside_and_moves_on() {
    let letters = Letters::default();
    let mut owner = owner(letters.clone());
    assign(&mut owner, &[0]);
    let panicking = message(0, 0, &event(PANIC_EVENT_ID));
    owner.handle(Command::Batch(vec![panicking, message(0, 1, &event("a"))]));
    assert_eq!(*letters.0.lock(), vec![(0, "internal_error")]);
    let totals = owner.store.totals();
    assert_eq!((totals.rejected, totals.accepted), (1, 1));
}

#[test]
fn a_new_tenant_past_the_cap_is_dead_lettered() {
    let letters = Letters::default();
    let mut owner = owner(letters.clone());
    // Every tenant settled at its first event, so none makes room.
    owner.store = Arc::new(Store::new(StoreLimits {
        tenant_cap_per_partition: 1,
        tenant_evict_max_events: 0,
        ..StoreLimits::default()
    }));
    assign(&mut owner, &[0]);
    let other = event("b").replace("\"acme\"", "\"globex\"");
    owner.handle(Command::Batch(vec![
        message(0, 0, &event("a")),
        message(0, 1, &other),
        message(0, 2, &event("c")),
    ]));
    assert_eq!(*letters.0.lock(), vec![(1, "tenant_limit")]);
    assert_eq!(owner.store.totals().accepted, 2);
}

#[test]
fn a_tenant_on_two_partitions_is_flagged_when_input_is_keyed() {
    let mut owner = owner(Letters::default());
    assign(&mut owner, &[0, 1]);
    owner.handle(Command::Batch(vec![
        message(0, 0, &event("a")),
        message(1, 0, &event("b")),
    ]));
    let text = owner.metrics.render(&crate::ops::StateReading::default());
    assert!(
        text.contains("integration_health_tenants_split_total 1"),
        "{text}"
    );
}

#[test]
fn messages_of_a_partition_not_owned_are_left_alone() {
    let mut owner = owner(Letters::default());
    assign(&mut owner, &[0]);
    owner.handle(Command::Batch(vec![message(5, 0, &event("a"))]));
    assert_eq!(owner.store.totals().seen(), 0);
}
