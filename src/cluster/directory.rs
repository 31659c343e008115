//! Who owns which partition, learned from Kafka: every replica announces its address and its
//! partitions on a members topic whenever its assignment changes and again every
//! `member_announce_interval_ms`, and every replica reads that topic whole. For each partition
//! the newest announcement that lists it names the owner; a member whose newest announcement
//! is older than `member_ttl_ms` is dropped, so a dead replica, a forged record or a forged
//! tombstone heals on its own. No consensus of our own: the consumer group decides ownership,
//! this only spreads the word.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::ClusterError;
use crate::clock::Clock;

const METADATA_REFRESH: Duration = Duration::from_secs(2);

/// One replica's announcement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Announcement {
    pub(crate) addr: String,
    pub(crate) partitions: BTreeSet<i32>,
    /// Wall-clock milliseconds: the newest announcement of a partition wins.
    pub(crate) at_ms: i64,
}

/// The announcements seen so far, and how many partitions the input topic has.
#[derive(Debug)]
pub(crate) struct Directory {
    latest: RwLock<HashMap<String, Announcement>>,
    partition_count: AtomicUsize,
    /// How old a member's newest announcement may be before the member is dropped.
    ttl_ms: i64,
}

impl Default for Directory {
    fn default() -> Self {
        Directory::new(i64::MAX)
    }
}

/// Why an announcement read from the members topic was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Dated past now plus the allowed clock skew: it would outrank every true announcement.
    FromTheFuture { at_ms: i64 },
    /// The record's key is not the address it announces.
    KeyMismatch,
}

impl Directory {
    pub(crate) fn new(ttl_ms: i64) -> Self {
        Directory {
            latest: RwLock::new(HashMap::new()),
            partition_count: AtomicUsize::new(0),
            ttl_ms,
        }
    }

    /// Drops the members whose newest announcement is older than the TTL at `now_ms`.
    pub(crate) fn expire(&self, now_ms: i64) {
        let horizon = now_ms.saturating_sub(self.ttl_ms);
        if self.latest.read().values().all(|a| a.at_ms >= horizon) {
            return;
        }
        self.latest.write().retain(|addr, a| {
            let live = a.at_ms >= horizon;
            if !live {
                warn!(%addr, age_ms = now_ms - a.at_ms, "replica dropped from the members: no announcement within member_ttl_ms");
            }
            live
        });
    }

    /// Takes an announcement read from the members topic, unless it is dated further ahead
    /// of `now_ms` than `max_skew_ms` or its record's key names another address.
    pub(crate) fn accept(
        &self,
        key: Option<&[u8]>,
        announcement: Announcement,
        now_ms: i64,
        max_skew_ms: i64,
    ) -> Result<(), Refused> {
        if key.is_some_and(|k| k != announcement.addr.as_bytes()) {
            return Err(Refused::KeyMismatch);
        }
        if announcement.at_ms > now_ms.saturating_add(max_skew_ms) {
            return Err(Refused::FromTheFuture {
                at_ms: announcement.at_ms,
            });
        }
        self.record(announcement);
        Ok(())
    }

    /// A tombstone on the members topic: the replica at `addr` is gone.
    pub(crate) fn forget(&self, addr: &str) {
        self.latest.write().remove(addr);
    }

    pub(crate) fn record(&self, announcement: Announcement) {
        let mut latest = self.latest.write();
        let known = latest.get(&announcement.addr);
        if known.is_some_and(|known| known.at_ms > announcement.at_ms) {
            return;
        }
        if known.is_none() {
            warn_of_takeover(&latest, &announcement);
        }
        latest.insert(announcement.addr.clone(), announcement);
    }

    /// The replica that announced `partition` last.
    pub(crate) fn owner_of(&self, partition: i32) -> Option<String> {
        self.latest
            .read()
            .values()
            .filter(|a| a.partitions.contains(&partition))
            .max_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.addr.cmp(&b.addr)))
            .map(|a| a.addr.clone())
    }

    /// Every replica that has announced at least one partition.
    pub(crate) fn members(&self) -> Vec<String> {
        let mut members: Vec<String> = self
            .latest
            .read()
            .values()
            .filter(|a| !a.partitions.is_empty())
            .map(|a| a.addr.clone())
            .collect();
        members.sort();
        members
    }

    pub(crate) fn partition_count(&self) -> usize {
        self.partition_count.load(Ordering::SeqCst)
    }

    pub(crate) fn set_partition_count(&self, count: usize) {
        self.partition_count.store(count, Ordering::SeqCst);
    }
}

/// A new member that claims partitions another member announced: a rebalance that moved
/// them, or a record that is not a replica's. Either way worth a line with both addresses.
fn warn_of_takeover(latest: &HashMap<String, Announcement>, new: &Announcement) {
    for (addr, member) in latest {
        let taken: Vec<i32> = member
            .partitions
            .intersection(&new.partitions)
            .copied()
            .collect();
        if !taken.is_empty() {
            warn!(new_member = %new.addr, from = %addr, partitions = ?taken, "a new member announces partitions a live member holds");
        }
    }
}

/// Publishes this replica's announcements, and repeats the newest one.
pub(crate) struct Announcer {
    producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: String,
    addr: String,
    /// What was announced last, once anything was.
    last: parking_lot::Mutex<Option<BTreeSet<i32>>>,
}

impl Announcer {
    pub(crate) fn new(
        client: &ClientConfig,
        topic: &str,
        addr: &str,
    ) -> Result<Self, ClusterError> {
        Ok(Announcer {
            producer: client.create().map_err(ClusterError::Kafka)?,
            topic: topic.to_owned(),
            addr: addr.to_owned(),
            last: parking_lot::Mutex::new(None),
        })
    }

    /// Announces again what was announced last, newly dated, so the others keep this replica
    /// as a member and a forged tombstone of it is undone.
    pub(crate) fn repeat(&self, now_ms: i64, directory: &Directory) {
        let last = self.last.lock().clone();
        if let Some(partitions) = last {
            self.announce(partitions, now_ms, directory);
        }
    }

    pub(crate) fn announce(&self, partitions: BTreeSet<i32>, now_ms: i64, directory: &Directory) {
        *self.last.lock() = Some(partitions.clone());
        let announcement = Announcement {
            addr: self.addr.clone(),
            partitions,
            at_ms: now_ms,
        };
        directory.record(announcement.clone());
        let Ok(payload) = serde_json::to_vec(&announcement) else {
            return;
        };
        let record = BaseRecord::to(&self.topic)
            .key(&self.addr)
            .payload(&payload);
        if let Err((err, _)) = self.producer.send(record) {
            warn!(error = %err, "cannot announce this replica's partitions");
        }
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

/// Repeats this replica's newest announcement every `interval` until `shutdown`.
pub(crate) fn repeat(
    announcer: Arc<Announcer>,
    directory: Arc<Directory>,
    interval: Duration,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, ClusterError> {
    std::thread::Builder::new()
        .name("ih-announce".into())
        .spawn(move || {
            let mut last = Instant::now();
            while !shutdown.is_cancelled() {
                std::thread::sleep(Duration::from_millis(50).min(interval));
                if last.elapsed() >= interval {
                    last = Instant::now();
                    announcer.repeat(crate::clock::SystemClock.now_ms(), &directory);
                }
            }
        })
        .map_err(ClusterError::Thread)
}

/// Reads the members topic from its beginning, and the input topic's partition count, until
/// `shutdown`.
pub(crate) fn follow(
    client: ClientConfig,
    members_topic: String,
    input_topic: String,
    directory: Arc<Directory>,
    max_skew_ms: i64,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, ClusterError> {
    let consumer: BaseConsumer = client.create().map_err(ClusterError::Kafka)?;
    std::thread::Builder::new()
        .name("ih-members".into())
        .spawn(move || {
            let mut assigned = 0;
            let mut refreshed = Instant::now() - METADATA_REFRESH;
            while !shutdown.is_cancelled() {
                if refreshed.elapsed() >= METADATA_REFRESH {
                    refreshed = Instant::now();
                    assigned = refresh(
                        &consumer,
                        &members_topic,
                        &input_topic,
                        &directory,
                        assigned,
                    );
                }
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) => {
                        take(&directory, message.key(), message.payload(), max_skew_ms)
                    }
                    Some(Err(err)) => debug!(error = %err, "members topic read failed"),
                    None => {}
                }
                directory.expire(crate::clock::SystemClock.now_ms());
            }
        })
        .map_err(ClusterError::Thread)
}

/// Applies one record of the members topic: a tombstone removes its replica, an announcement
/// is taken if it can be trusted.
fn take(directory: &Directory, key: Option<&[u8]>, payload: Option<&[u8]>, max_skew_ms: i64) {
    let Some(payload) = payload else {
        if let Some(addr) = key.map(String::from_utf8_lossy) {
            tracing::info!(%addr, "a tombstone on the members topic removes this replica until it announces again");
            directory.forget(&addr);
        }
        return;
    };
    let Ok(announcement) = serde_json::from_slice::<Announcement>(payload) else {
        warn!("the members topic holds a record that is not an announcement");
        return;
    };
    let addr = announcement.addr.clone();
    let now_ms = crate::clock::SystemClock.now_ms();
    if let Err(refused) = directory.accept(key, announcement, now_ms, max_skew_ms) {
        warn!(%addr, ?refused, "announcement on the members topic not trusted");
    }
}

/// Learns the input topic's partition count and assigns any new members-topic partitions from
/// their beginning. Returns how many members-topic partitions are assigned.
fn refresh(
    consumer: &BaseConsumer,
    members_topic: &str,
    input_topic: &str,
    directory: &Directory,
    assigned: usize,
) -> usize {
    let timeout = Duration::from_secs(2);
    if let Ok(metadata) = consumer.fetch_metadata(Some(input_topic), timeout) {
        if let Some(topic) = metadata.topics().first() {
            directory.set_partition_count(topic.partitions().len());
        }
    }
    let Ok(metadata) = consumer.fetch_metadata(Some(members_topic), timeout) else {
        return assigned;
    };
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    if partitions <= assigned {
        return assigned;
    }
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        let _ = list.add_partition_offset(members_topic, partition, Offset::Beginning);
    }
    match consumer.assign(&list) {
        Ok(()) => partitions,
        Err(err) => {
            warn!(error = %err, "cannot read the members topic");
            assigned
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(addr: &str, partitions: &[i32], at_ms: i64) -> Announcement {
        Announcement {
            addr: addr.into(),
            partitions: partitions.iter().copied().collect(),
            at_ms,
        }
    }

    #[test]
    fn the_newest_announcement_of_a_partition_names_its_owner() {
        let directory = Directory::default();
        directory.record(announce("a:1", &[0, 1], 10));
        directory.record(announce("b:1", &[1, 2], 20));
        assert_eq!(directory.owner_of(0).as_deref(), Some("a:1"));
        assert_eq!(directory.owner_of(1).as_deref(), Some("b:1"));
        assert_eq!(directory.owner_of(3), None);
        directory.record(announce("a:1", &[0, 1, 2], 5));
        assert_eq!(
            directory.owner_of(2).as_deref(),
            Some("b:1"),
            "an older record is ignored"
        );
        directory.record(announce("b:1", &[], 30));
        assert_eq!(directory.members(), ["a:1"]);
    }

    #[test]
    fn an_announcement_from_the_future_or_under_another_key_is_refused() {
        let directory = Directory::default();
        let now = 1_000_000;
        let future = announce("evil:1", &[0], i64::MAX);
        assert_eq!(
            directory.accept(Some(b"evil:1"), future, now, 60_000),
            Err(Refused::FromTheFuture { at_ms: i64::MAX })
        );
        let spoofed = announce("a:1", &[0], now);
        assert_eq!(
            directory.accept(Some(b"evil:1"), spoofed, now, 60_000),
            Err(Refused::KeyMismatch)
        );
        assert_eq!(directory.owner_of(0), None);
        let skewed = announce("a:1", &[0], now + 59_000);
        assert_eq!(directory.accept(Some(b"a:1"), skewed, now, 60_000), Ok(()));
        assert_eq!(directory.owner_of(0).as_deref(), Some("a:1"));
    }

    #[test]
    fn a_member_silent_past_the_ttl_is_dropped_and_its_next_announcement_brings_it_back() {
        let directory = Directory::new(3_000);
        directory.record(announce("a:1", &[0], 10_000));
        directory.record(announce("b:1", &[1], 12_000));
        directory.expire(13_000);
        assert_eq!(directory.members(), ["a:1", "b:1"]);
        directory.expire(13_001);
        assert_eq!(directory.members(), ["b:1"], "a is 3,001 ms old");
        assert_eq!(directory.owner_of(0), None);
        // A forged tombstone of b, then b's next announcement.
        take(&directory, Some(b"b:1"), None, 60_000);
        assert!(directory.members().is_empty());
        directory.record(announce("b:1", &[1], 14_000));
        assert_eq!(directory.owner_of(1).as_deref(), Some("b:1"));
    }

    #[test]
    fn a_tombstone_removes_a_replica() {
        let directory = Directory::default();
        directory.record(announce("a:1", &[0], 10));
        take(&directory, Some(b"a:1"), None, 60_000);
        assert_eq!(directory.owner_of(0), None);
        assert!(directory.members().is_empty());
    }
}
