//! The dead letters: a state change that one destination did not take after its last attempt
//! (or refused for good) is written to `<topic>.alerts.dlq`, keyed by tenant, with the last
//! error. Every replica reads the whole topic into a `DeadLetterBook`, so any replica lists a
//! tenant's dead letters (`ListAlertDeadLetters`, `query alerts dead-letters`) without asking
//! another.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::alerts::AlertEvent;
use crate::changelog::Table;

/// A state change that could not be delivered to one destination: the schema of
/// `<topic>.alerts.dlq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeadLetter {
    pub(crate) destination: String,
    /// What the destination was sent as the message's id (`webhook-id` for a webhook).
    pub(crate) webhook_id: String,
    pub(crate) attempts: u32,
    /// The last attempt's refusal or transport error.
    pub(crate) error: String,
    pub(crate) at_ms: i64,
    pub(crate) alert: AlertEvent,
}

/// The newest dead letters kept per tenant; older ones stay on the topic until its retention.
pub(crate) const DEAD_LETTERS_PER_TENANT: usize = 500;

/// Each tenant's newest dead letters, oldest first.
#[derive(Debug, Default)]
pub struct DeadLetterBook {
    by_tenant: RwLock<HashMap<String, VecDeque<DeadLetter>>>,
    caught_up: AtomicBool,
}

impl DeadLetterBook {
    /// `tenant`'s dead letters written at or after `since_ms`, newest first, at most `limit`.
    pub(crate) fn list(&self, tenant: &str, since_ms: i64, limit: usize) -> Vec<DeadLetter> {
        let by_tenant = self.by_tenant.read();
        by_tenant
            .get(tenant)
            .into_iter()
            .flat_map(|letters| letters.iter().rev())
            .filter(|letter| letter.at_ms >= since_ms)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Whether the book holds everything the topic held when reading began.
    pub(crate) fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    fn add(&self, letter: DeadLetter) {
        let mut by_tenant = self.by_tenant.write();
        let letters = by_tenant.entry(letter.alert.tenant_id.clone()).or_default();
        if letters.len() == DEAD_LETTERS_PER_TENANT {
            letters.pop_front();
        }
        letters.push_back(letter);
    }
}

impl Table for DeadLetterBook {
    fn apply(&self, _key: Option<&[u8]>, payload: Option<&[u8]>) {
        let Some(payload) = payload else { return };
        match serde_json::from_slice::<DeadLetter>(payload) {
            Ok(letter) => self.add(letter),
            Err(err) => warn!(error = %err, "a dead-letters record is not a dead letter; skipped"),
        }
    }

    fn set_caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::messages::test_event;

    fn letter(tenant: &str, at_ms: i64) -> Vec<u8> {
        let letter = DeadLetter {
            destination: "hook".into(),
            webhook_id: format!("a{at_ms}_FIRING"),
            attempts: 8,
            error: "HTTP 503 Service Unavailable".into(),
            at_ms,
            alert: test_event("hook", tenant, at_ms),
        };
        serde_json::to_vec(&letter).expect("json")
    }

    #[test]
    fn a_tenant_sees_its_own_newest_first_within_the_bound() {
        let book = DeadLetterBook::default();
        for at in 0..(DEAD_LETTERS_PER_TENANT as i64 + 5) {
            book.apply(None, Some(&letter("acme", at)));
        }
        book.apply(None, Some(&letter("globex", 7)));
        book.apply(None, Some(b"not json"));
        book.apply(None, None);
        let acme = book.list("acme", 0, 3);
        let at: Vec<i64> = acme.iter().map(|l| l.at_ms).collect();
        let newest = DEAD_LETTERS_PER_TENANT as i64 + 4;
        assert_eq!(at, [newest, newest - 1, newest - 2]);
        assert_eq!(
            book.list("acme", 0, usize::MAX).len(),
            DEAD_LETTERS_PER_TENANT
        );
        assert_eq!(book.list("acme", newest - 1, 10).len(), 2);
        assert_eq!(book.list("globex", 0, 10).len(), 1);
        assert!(book.list("initech", 0, 10).is_empty());
    }
}
