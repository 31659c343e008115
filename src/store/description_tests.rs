//! One failure group per visible description: docs/events.md's rule (the message, or the catalog
//! name of the code when the message is absent or empty) checked against a recount, and the
//! migration of state written before descriptions were normalised.

use std::borrow::Cow;
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::catalog;
use crate::event::{Event, IntegrationType, Outcome};

const NOW: i64 = 1_767_225_600_000;
const CODES: [u16; 3] = [404, 503, 599];

/// How the producer described the failure.
#[derive(Debug, Clone)]
pub(crate) enum Message {
    Absent,
    Empty,
    CatalogName,
    Own(u8),
}

impl Message {
    fn text(&self, code: u16) -> Option<String> {
        match self {
            Message::Absent => None,
            Message::Empty => Some(String::new()),
            Message::CatalogName => Some(catalog::name_of(code).to_owned()),
            Message::Own(n) => Some(format!("upstream said no ({n})")),
        }
    }
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::Absent),
        Just(Message::Empty),
        Just(Message::CatalogName),
        (0u8..2).prop_map(Message::Own),
    ]
}

#[derive(Debug, Clone)]
pub(crate) struct Failure {
    flow: u8,
    code: u16,
    message: Message,
    offset_ms: i64,
}

fn failures() -> impl Strategy<Value = Vec<Failure>> {
    proptest::collection::vec(
        (0u8..2, 0..CODES.len(), message(), 0_i64..(20 * DAY_MS)).prop_map(
            |(flow, code, message, offset_ms)| Failure {
                flow,
                code: CODES[code],
                message,
                offset_ms,
            },
        ),
        1..80,
    )
}

fn event(i: usize, failure: &Failure, message: Option<String>) -> Event<'static> {
    Event {
        integration_name: Cow::Borrowed("ERP push"),
        status_code: Some(failure.code),
        error_message: message.map(Cow::Owned),
        flow_id: Some(Cow::Owned(format!("flow-{}", failure.flow))),
        ..Event::bare(
            format!("e{i}"),
            "t1",
            IntegrationType::OutboundWebhook,
            "owh-1".into(),
            Outcome::Failure,
            NOW - failure.offset_ms,
        )
    }
}

/// (flow, code, visible description) -> (total, first, last), counted straight from the events.
type Rows = BTreeMap<(String, u16, String), (u64, i64, i64)>;

fn recount(failures: &[Failure]) -> Rows {
    let mut rows = Rows::new();
    for f in failures {
        let text = f.message.text(f.code).unwrap_or_default();
        let visible = if text.is_empty() {
            catalog::name_of(f.code).to_owned()
        } else {
            text
        };
        let at = NOW - f.offset_ms;
        let row = rows
            .entry((format!("flow-{}", f.flow), f.code, visible))
            .or_insert((0, i64::MAX, i64::MIN));
        row.0 += 1;
        row.1 = row.1.min(at);
        row.2 = row.2.max(at);
    }
    rows
}

/// The state's groups in the recount's terms; a second group with the same visible
/// description would show up as a duplicate key.
fn rows_of(state: &PartitionState) -> (Rows, usize) {
    let tenant = state.tenant("t1").expect("tenant");
    let rows: Rows = tenant
        .groups
        .iter()
        .map(|(key, group)| {
            let text = state.interner.resolve(key.description);
            let visible = catalog::visible_description(text, key.status_code).to_owned();
            let flow = state.interner.resolve(key.flow_id).to_owned();
            let total = group.total_in(i64::MIN, i64::MAX, i64::MIN);
            let first = group.first_seen_ms().unwrap_or_default();
            let last = group.last_seen_ms().unwrap_or_default();
            ((flow, key.status_code, visible), (total, first, last))
        })
        .collect();
    (rows, tenant.groups.len())
}

fn ids_of(state: &PartitionState) -> Vec<u128> {
    let tenant = state.tenant("t1").expect("tenant");
    let mut ids: Vec<u128> = tenant.groups.values().map(|g| g.failure_id).collect();
    ids.sort_unstable();
    ids
}

fn applied(failures: &[Failure], text: impl Fn(&Failure) -> Option<String>) -> PartitionState {
    let limits = StoreLimits::default();
    let mut state = PartitionState::new(&limits);
    for (i, f) in failures.iter().enumerate() {
        let _ = state.apply(&event(i, f, text(f)), &limits, NOW);
    }
    state
}

/// State as a build before normalisation kept it: a message equal to the catalog name was its
/// own group, stored under that name and identified by it. Built by applying those events with a
/// stand-in message and renaming the stand-in afterwards.
pub(crate) fn legacy_state(failures: &[Failure]) -> PartitionState {
    let stand_in = |code: u16| format!("\u{1}{code}");
    let mut state = applied(failures, |f| match f.message {
        Message::CatalogName => Some(stand_in(f.code)),
        _ => f.message.text(f.code),
    });
    let tenant_sym = state.interner.get("t1").expect("tenant");
    let mut tenant = state.tenants.remove(&tenant_sym).expect("tenant");
    let groups = std::mem::take(&mut tenant.groups);
    for (key, mut group) in groups {
        if state.interner.resolve(key.description) == stand_in(key.status_code) {
            let name = catalog::name_of(key.status_code);
            let identity = GroupIdentity {
                integration_type: key.integration_type,
                integration_id: state.interner.resolve(key.integration_id),
                service_id: state.interner.resolve(key.service_id),
                flow_id: state.interner.resolve(key.flow_id),
                status_code: key.status_code,
                description: name,
            };
            group.failure_id = failure_id("t1", &identity);
            let description = state.interner.intern(name);
            tenant.groups.insert(GroupKey { description, ..key }, group);
        } else {
            tenant.groups.insert(key, group);
        }
    }
    tenant.ranking = None;
    state.tenants.insert(tenant_sym, tenant);
    state
}

/// A 404 without a message, one with an empty message and one with the catalog name: one
/// failure, which a build before normalisation stored as two groups.
pub(crate) fn legacy_failures() -> Vec<Failure> {
    let failure = |message| Failure {
        flow: 0,
        code: 404,
        message,
        offset_ms: HOUR_MS,
    };
    vec![
        failure(Message::Absent),
        failure(Message::Empty),
        failure(Message::CatalogName),
    ]
}

#[test]
fn a_message_equal_to_the_catalog_name_joins_the_group_without_one() {
    let all = legacy_failures();
    assert_eq!(legacy_state(&all).group_count(), 2);
    let state = applied(&all, |f| f.message.text(f.code));
    let (rows, groups) = rows_of(&state);
    assert_eq!(groups, 1, "{rows:?}");
    assert_eq!(rows.values().next().map(|r| r.0), Some(3));
}

proptest! {
    #[test]
    fn groups_equal_a_recount_keyed_by_the_visible_description(failures in failures()) {
        let state = applied(&failures, |f| f.message.text(f.code));
        let expected = recount(&failures);
        let (rows, groups) = rows_of(&state);
        prop_assert_eq!(groups, expected.len(), "one group per visible description");
        prop_assert_eq!(rows, expected);
    }

    #[test]
    fn migrating_legacy_state_gives_the_groups_and_ids_of_a_fresh_count(failures in failures()) {
        let fresh = applied(&failures, |f| f.message.text(f.code));
        let mut legacy = legacy_state(&failures);
        let legacy_ids = ids_of(&legacy);
        let rekeys = legacy.merge_catalog_named_groups();
        prop_assert_eq!(rows_of(&legacy), rows_of(&fresh));
        let fresh_ids = ids_of(&fresh);
        prop_assert_eq!(ids_of(&legacy), fresh_ids.clone());
        let named = failures.iter().filter(|f| matches!(f.message, Message::CatalogName));
        let named_groups: std::collections::BTreeSet<(u8, u16)> =
            named.map(|f| (f.flow, f.code)).collect();
        prop_assert_eq!(rekeys.len(), named_groups.len());
        for rekey in &rekeys {
            prop_assert!(legacy_ids.contains(&rekey.from));
            prop_assert!(fresh_ids.contains(&rekey.to));
        }
        // The samples survive the merge: the newest five of the whole group.
        let fresh_tenant = fresh.tenant("t1").expect("tenant");
        let migrated_tenant = legacy.tenant("t1").expect("tenant");
        for (key, group) in &fresh_tenant.groups {
            let mut ids: Vec<&str> = group.samples.iter().map(|s| &*s.event_id).collect();
            let other = migrated_tenant.groups.values().find(|g| g.failure_id == group.failure_id);
            let mut other_ids: Vec<&str> = other.map(|g| g.samples.iter().map(|s| &*s.event_id).collect()).unwrap_or_default();
            ids.sort_unstable();
            other_ids.sort_unstable();
            prop_assert_eq!(ids, other_ids, "{:?}", key);
        }
    }
}
