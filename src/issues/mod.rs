//! Failure issues: a failure group with a lifecycle. Users' actions are records on a compacted
//! Kafka topic keyed by `(tenant, failure_id)`; every instance reads the whole topic into an
//! `IssueBook`. The state shown is derived, at read time, from the newest action together with
//! the group's failures and the clock, so it is the same on every replica and after a restart.
//! The topic is followed and written with `changelog`.

mod actions;
pub(crate) mod rekey;

use std::collections::HashMap;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::changelog::Table;

pub(crate) use actions::{IssueKeeping, Request as ActionRequest};

/// What a user did to an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ActionKind {
    Acknowledge,
    Resolve,
    Snooze,
    Reopen,
}

/// One record of the issues topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IssueAction {
    pub(crate) tenant_id: String,
    /// 32 hexadecimal characters, as the API shows it.
    pub(crate) failure_id: String,
    pub(crate) action: ActionKind,
    /// Who acted, as the caller said.
    pub(crate) actor: String,
    /// The name of the grant that made the call (empty with an open API): what the service
    /// vouches for, where `actor` is what the caller typed. Records written before grants had
    /// names carried a token-digest prefix instead, which is no longer read.
    #[serde(default)]
    pub(crate) grant: String,
    pub(crate) at_ms: i64,
    #[serde(default)]
    pub(crate) note: String,
    /// For a snooze: when it ends.
    #[serde(default)]
    pub(crate) until_ms: Option<i64>,
}

impl IssueAction {
    /// The record's key on the topic: compaction keeps the newest action per issue.
    pub(crate) fn key(&self) -> String {
        issue_key(&self.tenant_id, &self.failure_id)
    }
}

pub(crate) fn issue_key(tenant_id: &str, failure_id: &str) -> String {
    format!("{tenant_id}/{failure_id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum IssueState {
    Open,
    Acknowledged,
    Resolved,
    Snoozed,
    Reopened,
}

/// An issue's state with what explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IssueStatus {
    pub(crate) state: IssueState,
    /// Resolved because no failure came for `auto_resolve_after`, not by a person.
    pub(crate) auto_resolved: bool,
    /// The newest action, if anyone acted.
    pub(crate) action: Option<IssueAction>,
}

/// When the group failed: the first and last failure, and the start of the newest return
/// after a quiet spell of at least `auto_resolve_after` (when it had auto-resolved and came back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Activity {
    pub(crate) first_ms: i64,
    pub(crate) last_ms: i64,
    pub(crate) latest_return_ms: Option<i64>,
}

/// The state of an issue with `action` as its newest action, at `now_ms`.
pub(crate) fn derive_state(
    action: Option<&IssueAction>,
    activity: Activity,
    now_ms: i64,
    auto_resolve_ms: i64,
) -> IssueStatus {
    let quiet = now_ms - activity.last_ms >= auto_resolve_ms;
    let returned_after = |at: i64| activity.latest_return_ms.is_some_and(|r| r > at);
    let (state, auto_resolved) = match action {
        None if now_ms - activity.last_ms >= auto_resolve_ms => (IssueState::Resolved, true),
        None if activity.latest_return_ms.is_some() => (IssueState::Reopened, false),
        None => (IssueState::Open, false),
        Some(a) => match a.action {
            ActionKind::Resolve if activity.last_ms <= a.at_ms => (IssueState::Resolved, false),
            ActionKind::Snooze if a.until_ms.is_some_and(|until| now_ms < until) => {
                (IssueState::Snoozed, false)
            }
            // A person's reopen counts as activity: the quiet day starts after it.
            ActionKind::Reopen if now_ms - activity.last_ms.max(a.at_ms) >= auto_resolve_ms => {
                (IssueState::Resolved, true)
            }
            ActionKind::Reopen => (IssueState::Reopened, false),
            _ if quiet => (IssueState::Resolved, true),
            ActionKind::Acknowledge if !returned_after(a.at_ms) => {
                (IssueState::Acknowledged, false)
            }
            // A failure after a resolve, a return after an auto-resolution, or a reopen.
            _ => (IssueState::Reopened, false),
        },
    };
    IssueStatus {
        state,
        auto_resolved,
        action: action.cloned(),
    }
}

/// The newest action of every issue, as read from the topic (and written by this instance).
#[derive(Debug, Default)]
pub(crate) struct IssueBook {
    actions: RwLock<HashMap<String, IssueAction>>,
    caught_up: std::sync::atomic::AtomicBool,
    /// Actions read per tenant, so a tenant's live feed can move on them.
    read_per_tenant: RwLock<HashMap<String, u64>>,
}

impl IssueBook {
    pub(crate) fn record(&self, action: IssueAction) {
        *self
            .read_per_tenant
            .write()
            .entry(action.tenant_id.clone())
            .or_default() += 1;
        self.actions.write().insert(action.key(), action);
    }

    /// How many actions this book has read for `tenant_id`: it moves with every action.
    pub(crate) fn actions_read(&self, tenant_id: &str) -> u64 {
        self.read_per_tenant
            .read()
            .get(tenant_id)
            .copied()
            .unwrap_or(0)
    }

    /// A tombstone on the compacted topic: the issue's actions are gone.
    pub(crate) fn forget(&self, key: &str) {
        self.actions.write().remove(key);
    }

    pub(crate) fn newest(&self, tenant_id: &str, failure_id: &str) -> Option<IssueAction> {
        self.actions
            .read()
            .get(&issue_key(tenant_id, failure_id))
            .cloned()
    }

    /// True once the topic has been read to the end it had when this instance started.
    pub(crate) fn caught_up(&self) -> bool {
        self.caught_up.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn set_caught_up(&self) {
        self.caught_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Table for IssueBook {
    fn apply(&self, key: Option<&[u8]>, payload: Option<&[u8]>) {
        match (payload, key) {
            (None, Some(key)) => self.forget(&String::from_utf8_lossy(key)),
            (Some(payload), _) => match serde_json::from_slice::<IssueAction>(payload) {
                Ok(action) => self.record(action),
                Err(err) => {
                    tracing::warn!(error = %err, "the issues topic holds a record that is not an action")
                }
            },
            (None, None) => {}
        }
    }

    fn set_caught_up(&self) {
        IssueBook::set_caught_up(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    fn acted(action: ActionKind, at_ms: i64, until_ms: Option<i64>) -> IssueAction {
        IssueAction {
            tenant_id: "acme".into(),
            failure_id: "0".repeat(32),
            action,
            actor: "ana".into(),
            grant: String::new(),
            at_ms,
            note: String::new(),
            until_ms,
        }
    }

    fn failing(last_ms: i64) -> Activity {
        Activity {
            first_ms: 0,
            last_ms,
            latest_return_ms: None,
        }
    }

    fn state(action: Option<&IssueAction>, activity: Activity, now: i64) -> (IssueState, bool) {
        let status = derive_state(action, activity, now, DAY);
        (status.state, status.auto_resolved)
    }

    #[test]
    fn a_failing_group_is_open_and_resolves_itself_after_a_quiet_day() {
        assert_eq!(
            state(None, failing(10 * HOUR), 11 * HOUR),
            (IssueState::Open, false)
        );
        assert_eq!(
            state(None, failing(10 * HOUR), 34 * HOUR),
            (IssueState::Resolved, true)
        );
        let came_back = Activity {
            latest_return_ms: Some(40 * HOUR),
            ..failing(41 * HOUR)
        };
        assert_eq!(
            state(None, came_back, 42 * HOUR),
            (IssueState::Reopened, false)
        );
    }

    #[test]
    fn acknowledged_stays_until_resolved_or_quiet() {
        let ack = acted(ActionKind::Acknowledge, 12 * HOUR, None);
        assert_eq!(
            state(Some(&ack), failing(13 * HOUR), 14 * HOUR),
            (IssueState::Acknowledged, false)
        );
        assert_eq!(
            state(Some(&ack), failing(13 * HOUR), 38 * HOUR),
            (IssueState::Resolved, true)
        );
    }

    #[test]
    fn a_failure_after_a_resolve_reopens() {
        let resolve = acted(ActionKind::Resolve, 12 * HOUR, None);
        assert_eq!(
            state(Some(&resolve), failing(11 * HOUR), 13 * HOUR),
            (IssueState::Resolved, false)
        );
        assert_eq!(
            state(Some(&resolve), failing(12 * HOUR + 1), 13 * HOUR),
            (IssueState::Reopened, false)
        );
    }

    #[test]
    fn a_snooze_holds_until_it_expires() {
        let snooze = acted(ActionKind::Snooze, 12 * HOUR, Some(20 * HOUR));
        assert_eq!(
            state(Some(&snooze), failing(19 * HOUR), 19 * HOUR),
            (IssueState::Snoozed, false)
        );
        assert_eq!(
            state(Some(&snooze), failing(19 * HOUR), 21 * HOUR),
            (IssueState::Reopened, false)
        );
        assert_eq!(
            state(Some(&snooze), failing(19 * HOUR), 45 * HOUR),
            (IssueState::Resolved, true)
        );
    }

    #[test]
    fn a_reopen_is_reopened_until_quiet() {
        let reopen = acted(ActionKind::Reopen, 12 * HOUR, None);
        assert_eq!(
            state(Some(&reopen), failing(11 * HOUR), 13 * HOUR),
            (IssueState::Reopened, false)
        );
        assert_eq!(
            state(Some(&reopen), failing(11 * HOUR), 37 * HOUR),
            (IssueState::Resolved, true)
        );
    }
}
