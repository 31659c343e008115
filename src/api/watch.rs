//! `WatchTenant`: a small update whenever a tenant's counters move, or an issue action of the
//! tenant is read, at most once per interval.
//! The sender waits for the client to take each update before it looks again, so a slow client
//! holds at most one update and gets the newest state next, never a backlog.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::callers::WatchPermit;
use super::convert::duration_to_ms;
use super::feeds::Feed;
use crate::proto;
use crate::query::{QueryEngine, TenantCounters};

pub(crate) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<proto::TenantUpdate, Status>> + Send>>;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const SHORTEST: Duration = Duration::from_millis(100);
const LONGEST: Duration = Duration::from_secs(3600);

/// Sections a failure moves, and those any event moves.
const FAILURE_SECTIONS: [&str; 6] = [
    "overview",
    "change",
    "errors",
    "trends",
    "failures",
    "integrations",
];
const EVENT_SECTIONS: [&str; 3] = ["overview", "change", "integrations"];
/// What an issue action moves: the failures table's issue states.
const ACTION_SECTIONS: [&str; 1] = ["failures"];

/// How many issue actions of the watched tenant have been read so far.
pub(crate) type ActionsRead = Box<dyn Fn() -> u64 + Send + Sync>;

pub(crate) fn watch_interval(requested: Option<&proto::Duration>) -> Result<Duration, Status> {
    let Some(requested) = requested else {
        return Ok(DEFAULT_INTERVAL);
    };
    let ms = duration_to_ms("min_interval", requested)?;
    let interval = Duration::from_millis(ms.max(0) as u64);
    if !(SHORTEST..=LONGEST).contains(&interval) {
        return Err(Status::invalid_argument(
            "min_interval must be between 100 ms and 1 hour",
        ));
    }
    Ok(interval)
}

/// Where a watch reads the tenant's counters.
pub(crate) enum Counting {
    /// This replica's partitions alone: for another replica's feed, which counts the rest.
    Here(QueryEngine, String),
    /// The tenant's feed, shared by every local watcher of the tenant.
    Shared(Arc<Feed>),
}

pub(crate) struct Watched {
    pub(crate) counting: Counting,
    /// Held while the stream is open and given back when its task ends (by `Drop`).
    #[allow(dead_code)]
    pub(crate) permit: WatchPermit,
    pub(crate) interval: Duration,
    pub(crate) shutdown: CancellationToken,
    /// Moves with the tenant's issue actions; every replica reads them all, so a local count
    /// suffices.
    pub(crate) actions: ActionsRead,
}

impl Watched {
    /// The tenant's counters now; `None` when some partition's count is missing (a partial
    /// count would look like a change).
    fn counters(&self) -> Option<TenantCounters> {
        match &self.counting {
            Counting::Here(engine, tenant_id) => engine.tenant_counters(tenant_id).ok(),
            Counting::Shared(feed) => *feed.counters.borrow(),
        }
    }

    pub(crate) fn stream(self) -> WatchStream {
        let (updates, receiver) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(self.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut last: Option<TenantCounters> = None;
            let mut actions = (self.actions)();
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = updates.closed() => return,
                    _ = ticker.tick() => {}
                }
                let Some(now) = self.counters() else {
                    continue;
                };
                let acted = (self.actions)();
                if last == Some(now) && acted == actions {
                    continue;
                }
                let update = match last == Some(now) {
                    true => acted_on(now),
                    false => update(last, now),
                };
                last = Some(now);
                actions = acted;
                if updates.send(Ok(update)).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(ReceiverStream::new(receiver))
    }
}

/// An update for an issue action alone: the counters have not moved.
fn acted_on(now: TenantCounters) -> proto::TenantUpdate {
    proto::TenantUpdate {
        version: now.events,
        changed_sections: ACTION_SECTIONS.iter().map(|s| (*s).to_owned()).collect(),
        events: now.events,
        failures: now.failures,
    }
}

fn update(last: Option<TenantCounters>, now: TenantCounters) -> proto::TenantUpdate {
    let sections: &[&str] = match last {
        Some(last) if last.failures == now.failures => &EVENT_SECTIONS,
        _ => &FAILURE_SECTIONS,
    };
    proto::TenantUpdate {
        version: now.events,
        changed_sections: sections.iter().map(|s| (*s).to_owned()).collect(),
        events: now.events,
        failures: now.failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_move_the_failure_sections() {
        let before = TenantCounters {
            events: 10,
            failures: 2,
        };
        let first = update(None, before);
        assert_eq!(first.changed_sections.len(), FAILURE_SECTIONS.len());
        let success = update(
            Some(before),
            TenantCounters {
                events: 11,
                ..before
            },
        );
        assert_eq!(success.changed_sections, EVENT_SECTIONS);
        assert_eq!(success.version, 11);
        let failure = update(
            Some(before),
            TenantCounters {
                events: 11,
                failures: 3,
            },
        );
        assert!(failure.changed_sections.contains(&"failures".to_owned()));
    }
}
