//! One reading of a tenant's counters shared by every local `WatchTenant` stream of that tenant.
//!
//! A feed counts the tenant's local partitions itself and follows each other owner of the
//! tenant's partitions through one upstream `WatchTenant` stream (marked forwarded, so the owner
//! answers over its own partitions alone), whatever the number of local watchers: 300 watchers
//! of a tenant cost its owner what one does. A feed that lacks an owner's count publishes
//! nothing rather than a partial sum, which would look like a change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

use super::asker::Asker;
use super::coverage::FORWARDED;
use crate::cluster::Cluster;
use crate::ops::Metrics;
use crate::proto;
use crate::query::TenantCounters;

/// How often a feed counts: the shortest interval a watcher may ask for.
pub(crate) const FEED_INTERVAL: Duration = Duration::from_millis(100);
/// How long a feed waits before opening a failed upstream again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The feeds of the tenants watched on this replica.
pub(crate) struct Feeds {
    asker: Asker,
    open: Mutex<HashMap<String, Weak<Feed>>>,
    shutdown: CancellationToken,
}

/// A tenant's counters over all its partitions, `None` while some owner's count is missing.
/// The feed's task ends when the last watcher drops it.
pub(crate) struct Feed {
    pub(crate) counters: watch::Receiver<Option<TenantCounters>>,
    stop: CancellationToken,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Feeds {
    pub(crate) fn new(asker: Asker, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Feeds {
            asker,
            open: Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    /// The tenant's feed, started if no local watcher has it yet.
    pub(crate) fn subscribe(&self, tenant_id: &str) -> Arc<Feed> {
        let mut open = self.open.lock();
        if let Some(feed) = open.get(tenant_id).and_then(Weak::upgrade) {
            return feed;
        }
        open.retain(|_, feed| feed.strong_count() > 0);
        let (publish, counters) = watch::channel(None);
        let stop = self.shutdown.child_token();
        let feed = Arc::new(Feed {
            counters,
            stop: stop.clone(),
        });
        open.insert(tenant_id.to_owned(), Arc::downgrade(&feed));
        let follow = Following {
            asker: self.asker.clone(),
            tenant_id: tenant_id.to_owned(),
            publish,
            stop,
        };
        tokio::spawn(follow.run());
        feed
    }
}

/// A feed's task.
struct Following {
    asker: Asker,
    tenant_id: String,
    publish: watch::Sender<Option<TenantCounters>>,
    stop: CancellationToken,
}

/// The newest count each other owner sent, by owner; `None` until it sends one.
type Upstreams = Arc<Mutex<BTreeMap<String, Option<TenantCounters>>>>;

impl Following {
    async fn run(self) {
        let mut ticker = tokio::time::interval(FEED_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let upstreams: Upstreams = Arc::default();
        let mut followed: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        let mut streams = CancellationToken::new();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let counted = match &self.asker.cluster {
                None => Some(self.local()),
                Some(cluster) => {
                    let (coverage, owners) =
                        cluster.tenant_owners(self.asker.engine.store(), &self.tenant_id);
                    if owners != followed {
                        streams.cancel();
                        streams = self.stop.child_token();
                        *upstreams.lock() = owners.keys().map(|o| (o.clone(), None)).collect();
                        for owner in owners.keys() {
                            let upstream = Upstream {
                                cluster: cluster.clone(),
                                metrics: self.asker.metrics.clone(),
                                owner: owner.clone(),
                                tenant_id: self.tenant_id.clone(),
                                into: upstreams.clone(),
                                stop: streams.clone(),
                            };
                            tokio::spawn(upstream.run());
                        }
                        followed = owners;
                    }
                    let others: Option<Vec<TenantCounters>> =
                        upstreams.lock().values().copied().collect();
                    match (coverage.missing.is_empty(), others) {
                        (true, Some(others)) => Some(others.into_iter().fold(self.local(), add)),
                        _ => None,
                    }
                }
            };
            self.publish.send_if_modified(|current| {
                let changed = *current != counted;
                *current = counted;
                changed
            });
        }
        streams.cancel();
    }

    /// The tenant's counters over this replica's partitions.
    fn local(&self) -> TenantCounters {
        self.asker
            .engine
            .tenant_counters(&self.tenant_id)
            .unwrap_or_default()
    }
}

fn add(mut sum: TenantCounters, other: TenantCounters) -> TenantCounters {
    sum.events += other.events;
    sum.failures += other.failures;
    sum
}

/// One other owner's count of the tenant, followed through one `WatchTenant` stream.
struct Upstream {
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    owner: String,
    tenant_id: String,
    into: Upstreams,
    stop: CancellationToken,
}

impl Upstream {
    async fn run(self) {
        while !self.stop.is_cancelled() {
            let ended = tokio::select! {
                _ = self.stop.cancelled() => return,
                ended = self.follow() => ended,
            };
            self.set(None);
            tracing::warn!(peer = %self.owner, tenant = %self.tenant_id, cause = %ended, "a watch of another replica ended; opening it again");
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            }
        }
    }

    fn set(&self, counters: Option<TenantCounters>) {
        if let Some(slot) = self.into.lock().get_mut(&self.owner) {
            *slot = counters;
        }
    }

    /// Reads the owner's updates until the stream ends; returns why it ended.
    async fn follow(&self) -> String {
        let Some(mut client) = self.cluster.api_client(&self.owner) else {
            return "the owner's address is not valid".to_owned();
        };
        let mut request = self.cluster.peer_request(proto::WatchTenantRequest {
            tenant_id: self.tenant_id.clone(),
            min_interval: Some(proto::Duration {
                seconds: 0,
                nanos: FEED_INTERVAL.as_nanos() as i32,
            }),
        });
        request
            .metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
        let sent = prost::Message::encoded_len(request.get_ref());
        self.metrics.peer_bytes("WatchTenant", sent, 0);
        let mut updates = match client.watch_tenant(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return format!("{:?}: {}", status.code(), status.message()),
        };
        loop {
            match updates.next().await {
                Some(Ok(update)) => {
                    let received = prost::Message::encoded_len(&update);
                    self.metrics.peer_bytes("WatchTenant", 0, received);
                    self.set(Some(TenantCounters {
                        events: update.events,
                        failures: update.failures,
                    }));
                }
                Some(Err(status)) => return format!("{:?}: {}", status.code(), status.message()),
                None => return "the owner closed the stream".to_owned(),
            }
        }
    }
}
