//! `WatchTenant`: a small update whenever a tenant's counters move, at most once per interval.
//! The sender waits for the client to take each update before it looks again, so a slow client
//! holds at most one update and gets the newest state next, never a backlog.

// Handlers must return `tonic::Status`.
#![allow(clippy::result_large_err)]

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::callers::WatchPermit;
use super::convert::duration_to_ms;
use crate::cluster::Cluster;
use crate::proto;
use crate::query::{QueryEngine, TenantCounters};

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::TenantUpdate, Status>> + Send>>;

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

pub fn watch_interval(requested: Option<&proto::Duration>) -> Result<Duration, Status> {
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

/// What the watch reads the tenant's counters from: this replica alone, or every partition's
/// owner when replicas answer together.
pub struct Watched {
    pub engine: QueryEngine,
    /// Each tick is a query, and waits for a query slot like any other.
    pub slots: Arc<Semaphore>,
    /// Held while the stream is open and given back when its task ends (by `Drop`).
    #[allow(dead_code)]
    pub permit: WatchPermit,
    pub cluster: Option<Arc<Cluster>>,
    pub tenant_id: String,
    pub interval: Duration,
    pub shutdown: CancellationToken,
}

impl Watched {
    async fn counters(&self) -> Option<TenantCounters> {
        let _slot = self.slots.acquire().await.ok()?;
        let counters = match &self.cluster {
            None => self.engine.tenant_counters(&self.tenant_id),
            Some(cluster) => {
                let (view, _) = cluster
                    .tenant_view(self.engine.store(), &self.tenant_id)
                    .await;
                self.engine
                    .over(Arc::new(view))
                    .tenant_counters(&self.tenant_id)
            }
        };
        Some(counters)
    }

    pub fn stream(self) -> WatchStream {
        let (updates, receiver) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(self.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut last: Option<TenantCounters> = None;
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = updates.closed() => return,
                    _ = ticker.tick() => {}
                }
                let Some(now) = self.counters().await else {
                    return;
                };
                if last == Some(now) {
                    continue;
                }
                let update = update(last, now);
                last = Some(now);
                if updates.send(Ok(update)).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(ReceiverStream::new(receiver))
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
