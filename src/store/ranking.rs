//! Candidates for the first page of a tenant's failures table over the default range, so that
//! page is built from a few hundred groups instead of ranking all of them (up to the group cap).
//!
//! Each eviction round takes the `CANDIDATES` groups that rank highest by total and by last
//! seen, and notes the lowest total and last seen among them: the thresholds. Between rounds,
//! totals and last-seen times only grow, so a group outside the candidates can only overtake
//! one by reaching the threshold, and ingest adds it when it does. Hence the first
//! `CANDIDATES` rows of either order are always among the candidates.

use rustc_hash::FxHashMap as HashMap;

use super::groups::{GroupKey, GroupState, Window};
use super::interner::Sym;
use crate::event::IntegrationType;

/// Failures per (type, integration, code) over the default range, from every group's window.
pub(crate) type CodesByIntegration = HashMap<(IntegrationType, Sym, u16), u64>;

/// Groups kept as candidates per order; pages up to one fewer are served from them.
pub(crate) const CANDIDATES: usize = 128;

const BY_TOTAL: u8 = 1;
const BY_LAST_SEEN: u8 = 2;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Candidates {
    pub(super) keys: Vec<GroupKey>,
    /// The lowest total (or last seen) among the candidates chosen at the last round.
    threshold: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ranking {
    /// The default range's start at the last eviction round; every group's window starts here.
    pub(super) start_ms: i64,
    pub(super) by_total: Candidates,
    pub(super) by_last_seen: Candidates,
    /// Groups with at least one failure from `start_ms` on.
    pub(super) groups_with_failures: u64,
    /// Every group's key by failure id, for a failure's details.
    pub(super) ids: HashMap<u128, GroupKey>,
    /// The newest hour any group has a failure in. A range ending at or before it cuts some
    /// group's window short, so its totals need summing hour by hour.
    pub(super) newest_hour: i64,
    /// The groups' window totals summed by integration and code, for the integrations table.
    pub(super) codes: CodesByIntegration,
}

impl Ranking {
    /// Whether its sums answer `[start_ms, end_ms)`: the default range as of the last round,
    /// ending after every failure it counted.
    pub(crate) fn answers(&self, start_ms: i64, end_ms: i64) -> bool {
        self.start_ms == start_ms && self.newest_hour < end_ms
    }

    /// The candidates for the first page by total errors, and by last seen.
    pub(crate) fn by_total(&self) -> &[GroupKey] {
        &self.by_total.keys
    }

    pub(crate) fn by_last_seen(&self) -> &[GroupKey] {
        &self.by_last_seen.keys
    }

    /// Groups with at least one failure in the range it answers.
    pub(crate) fn groups_with_failures(&self) -> u64 {
        self.groups_with_failures
    }

    /// The key of the group with this failure id.
    pub(crate) fn group_with_id(&self, failure_id: u128) -> Option<&GroupKey> {
        self.ids.get(&failure_id)
    }

    /// The groups' totals in the range it answers, by integration and code.
    pub(crate) fn codes(&self) -> &CodesByIntegration {
        &self.codes
    }

    /// Chooses the candidates among `groups`, whose windows all start at `start_ms`, and marks
    /// them.
    pub(crate) fn build(groups: &mut HashMap<GroupKey, GroupState>, start_ms: i64) -> Ranking {
        let mut ranking = Ranking {
            start_ms,
            newest_hour: i64::MIN,
            ..Ranking::default()
        };
        let mut rows: Vec<(GroupKey, u128, Window)> = Vec::with_capacity(groups.len());
        ranking.ids.reserve(groups.len());
        for (key, group) in groups.iter_mut() {
            ranking.ids.insert(group.failure_id, *key);
            if let Some(window) = &mut group.window {
                window.ranked = 0;
                ranking.groups_with_failures += u64::from(window.total > 0);
                if window.total > 0 {
                    *ranking.codes.entry(codes_key(key)).or_default() += window.total;
                }
                ranking.newest_hour = ranking.newest_hour.max(window.newest_hour);
                rows.push((*key, group.failure_id, *window));
            }
        }
        ranking.choose_from(rows, groups);
        ranking
    }

    /// Chooses the candidates again when a list has grown too long. What ingest keeps up to
    /// date between rounds (`ids`, `codes`, `groups_with_failures`, `newest_hour`) stays as it
    /// is: rebuilding it is most of `build`'s cost.
    pub(crate) fn choose_again(&mut self, groups: &mut HashMap<GroupKey, GroupState>) {
        let mut rows: Vec<(GroupKey, u128, Window)> = Vec::with_capacity(groups.len());
        for (key, group) in groups.iter_mut() {
            if let Some(window) = &mut group.window {
                window.ranked = 0;
                rows.push((*key, group.failure_id, *window));
            }
        }
        self.choose_from(rows, groups);
    }

    /// Chooses both lists among `rows` (every group with a window, unmarked) and marks them.
    fn choose_from(
        &mut self,
        mut rows: Vec<(GroupKey, u128, Window)>,
        groups: &mut HashMap<GroupKey, GroupState>,
    ) {
        self.by_total = choose(&mut rows, |w| w.total as i64);
        self.by_last_seen = choose(&mut rows, |w| w.last_ms);
        for (candidates, flag) in [
            (&self.by_total, BY_TOTAL),
            (&self.by_last_seen, BY_LAST_SEEN),
        ] {
            for key in &candidates.keys {
                if let Some(window) = groups.get_mut(key).and_then(|g| g.window.as_mut()) {
                    window.ranked |= flag;
                }
            }
        }
    }

    /// Gives a group created since the last round its window and its place in `ids`.
    pub(crate) fn admit(&mut self, key: GroupKey, failure_id: u128) -> Window {
        self.ids.insert(failure_id, key);
        Window::empty(self.start_ms)
    }

    /// True once either list has grown to several times its chosen size, as it does when many
    /// groups pass a low threshold (a new tenant's is the lowest possible): then reading the
    /// candidates costs more than choosing them again.
    pub(crate) fn needs_choosing_again(&self) -> bool {
        self.by_total.keys.len().max(self.by_last_seen.keys.len()) > 4 * CANDIDATES
    }

    /// Takes note of a failure just counted in `window` (the group `key`) in `hour`.
    pub(crate) fn note(&mut self, key: GroupKey, window: &mut Window, hour: i64) {
        if hour >= self.start_ms {
            self.groups_with_failures += u64::from(window.total == 1);
            *self.codes.entry(codes_key(&key)).or_default() += 1;
        }
        self.newest_hour = self.newest_hour.max(hour);
        if window.ranked & BY_TOTAL == 0 && window.total as i64 >= self.by_total.threshold {
            window.ranked |= BY_TOTAL;
            self.by_total.keys.push(key);
        }
        if window.ranked & BY_LAST_SEEN == 0 && window.last_ms >= self.by_last_seen.threshold {
            window.ranked |= BY_LAST_SEEN;
            self.by_last_seen.keys.push(key);
        }
    }
}

fn codes_key(key: &GroupKey) -> (IntegrationType, Sym, u16) {
    (key.integration_type, key.integration_id, key.status_code)
}

/// The `CANDIDATES` rows ranking highest by `measure` (ties by failure id), and the threshold
/// a group must reach to join them: with fewer rows than that, any group joins.
fn choose(rows: &mut [(GroupKey, u128, Window)], measure: fn(&Window) -> i64) -> Candidates {
    let order = |row: &(GroupKey, u128, Window)| (std::cmp::Reverse(measure(&row.2)), row.1);
    if rows.len() <= CANDIDATES {
        return Candidates {
            keys: rows.iter().map(|r| r.0).collect(),
            threshold: i64::MIN,
        };
    }
    rows.select_nth_unstable_by_key(CANDIDATES - 1, order);
    let chosen = &rows[..CANDIDATES];
    Candidates {
        keys: chosen.iter().map(|r| r.0).collect(),
        threshold: chosen
            .iter()
            .map(|r| measure(&r.2))
            .min()
            .unwrap_or(i64::MIN),
    }
}
