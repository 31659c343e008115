//! The notifier's thread: a consumer of `<topic>.alerts` in a group of its own, so each
//! partition of the topic has one sender among the replicas.
//!
//! Each record's destinations are delivered to by tasks of their own, so a destination that
//! keeps failing holds only its own deliveries; two changes of one alert to one destination
//! still go in the order they were published (a RESOLVED never overtakes its FIRING). The
//! committed offset follows `Progress`: the oldest record not yet delivered everywhere. A
//! partition taken away in a rebalance has its deliveries cancelled, after the offset reached
//! is committed; its next owner resumes from there.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::progress::{Progress, Ticket};
use super::{Notifier, NotifyError};
use crate::alerts::AlertEvent;

/// Records read and not yet delivered everywhere before the notifier stops reading more.
const MAX_PENDING_RECORDS: usize = 1_000;
/// How often the notifier's lag is measured and the secret files are checked.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

/// Follows `topic` with `client` (its group set) and delivers every alert until `shutdown`.
pub(crate) fn deliver_alerts(
    mut client: ClientConfig,
    topic: String,
    notifier: Arc<Notifier>,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, NotifyError> {
    // A notifier that died holds its partitions, and their pending alerts, until its session
    // times out: 10 s, as for ingest, unless the [kafka] settings say otherwise.
    for (key, value) in [
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "3000"),
    ] {
        if client.get(key).is_none() {
            client.set(key, value);
        }
    }
    client
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts from the beginning; `alert_delivery_max_age_ms` keeps it from
        // paging anyone about old episodes.
        .set("auto.offset.reset", "earliest");
    let progress = Arc::new(Mutex::new(Progress::default()));
    let context = NotifierContext {
        topic: topic.clone(),
        progress: progress.clone(),
    };
    let consumer: BaseConsumer<NotifierContext> = client
        .create_with_context(context)
        .map_err(NotifyError::Kafka)?;
    consumer.subscribe(&[&topic]).map_err(NotifyError::Kafka)?;
    // Deliveries run here, off the API's runtime, while this thread polls Kafka.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("ih-notify-send")
        .enable_all()
        .build()
        .map_err(NotifyError::Thread)?;
    std::thread::Builder::new()
        .name("ih-notifier".into())
        .spawn(move || {
            info!(%topic, "alert notifier started");
            let mut follower = Follower {
                consumer,
                topic,
                notifier,
                progress,
                runtime,
                shutdown,
                order: HashMap::new(),
                paused: false,
            };
            follower.run();
            // Deliveries still running were cancelled with `shutdown`; what they had not
            // finished is not committed, so the partition's next owner delivers it.
            follower.runtime.shutdown_timeout(Duration::from_secs(1));
            info!("alert notifier stopped");
        })
        .map_err(NotifyError::Thread)
}

/// Commits what was delivered of a partition before it goes, then cancels the rest.
struct NotifierContext {
    topic: String,
    progress: Arc<Mutex<Progress>>,
}

impl ClientContext for NotifierContext {}

impl ConsumerContext for NotifierContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut progress = self.progress.lock();
        let mut reached = Vec::new();
        for element in revoked.elements_for_topic(&self.topic) {
            let partition = element.partition();
            if let Some(offset) = progress.committable(partition) {
                reached.push((partition, offset));
            }
            progress.revoke(partition);
        }
        if let Err(err) = commit_offsets(consumer, &self.topic, reached) {
            warn!(error = %err, "cannot commit the alerts delivered before a rebalance; they may be sent again");
        }
    }
}

/// Commits each (partition, offset) of `topic`, synchronously; nothing to do for none.
fn commit_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    offsets: Vec<(i32, i64)>,
) -> rdkafka::error::KafkaResult<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    consumer.commit(&list, CommitMode::Sync)
}

struct Follower {
    consumer: BaseConsumer<NotifierContext>,
    topic: String,
    notifier: Arc<Notifier>,
    progress: Arc<Mutex<Progress>>,
    runtime: tokio::runtime::Runtime,
    shutdown: CancellationToken,
    /// Per (destination, alert): the end of the newest delivery, which the next one awaits.
    order: HashMap<(String, String), oneshot::Receiver<()>>,
    paused: bool,
}

impl Follower {
    fn run(&mut self) {
        let mut housekept = Instant::now() - HOUSEKEEPING_INTERVAL;
        while !self.shutdown.is_cancelled() {
            self.hold_back_when_busy();
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let event = message.payload().map(serde_json::from_slice::<AlertEvent>);
                    let event = match event {
                        Some(Ok(event)) => Some(event),
                        Some(Err(err)) => {
                            warn!(error = %err, offset = message.offset(), "an alerts record is not an alert; skipped");
                            None
                        }
                        None => None,
                    };
                    self.start(message.partition(), message.offset(), event);
                }
                Some(Err(err)) => warn!(error = %err, "reading alerts to deliver failed"),
                None => {}
            }
            self.commit();
            if housekept.elapsed() >= HOUSEKEEPING_INTERVAL {
                housekept = Instant::now();
                self.housekeeping();
            }
        }
        self.commit();
    }

    /// Starts the record's deliveries, one task per destination.
    fn start(&mut self, partition: i32, offset: i64, event: Option<AlertEvent>) {
        let event = event.filter(|e| !self.notifier.is_stale(e));
        let destinations = event.as_ref().map_or(0, |e| e.destinations.len());
        let (ticket, cancel) =
            self.progress
                .lock()
                .read(partition, offset, destinations, &self.shutdown);
        let Some(event) = event else { return };
        let event = Arc::new(event);
        for name in &event.destinations {
            let key = (name.clone(), event.alert_id.clone());
            let (done, next) = oneshot::channel();
            let before = self.order.insert(key, next);
            let delivery = Delivery {
                notifier: self.notifier.clone(),
                progress: self.progress.clone(),
                event: event.clone(),
                destination: name.clone(),
                ticket,
            };
            let cancel = cancel.clone();
            self.runtime.spawn(async move {
                tokio::select! {
                    _ = delivery.run(before, done) => {}
                    _ = cancel.cancelled() => {}
                }
            });
        }
    }

    /// Commits each partition's committable offset that moved.
    fn commit(&self) {
        let moved = self.progress.lock().take_commits();
        if let Err(err) = commit_offsets(&self.consumer, &self.topic, moved) {
            warn!(error = %err, "delivered, but the commit failed; they may be sent again");
        }
    }

    /// Stops reading while too many records are being delivered, and reads again once half
    /// of them are done; polling goes on meanwhile, so the group keeps this member.
    fn hold_back_when_busy(&mut self) {
        let pending = self.progress.lock().pending_records();
        let change = match (self.paused, pending) {
            (false, p) if p >= MAX_PENDING_RECORDS => true,
            (true, p) if p < MAX_PENDING_RECORDS / 2 => true,
            _ => false,
        };
        if !change {
            return;
        }
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let result = match self.paused {
            false => self.consumer.pause(&assignment),
            true => self.consumer.resume(&assignment),
        };
        match result {
            Ok(()) => self.paused = !self.paused,
            Err(err) => warn!(error = %err, "cannot pause or resume reading alerts"),
        }
    }

    /// Measures the lag, forgets finished delivery orders, and re-reads changed secrets.
    fn housekeeping(&mut self) {
        self.order
            .retain(|_, done| matches!(done.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        self.notifier.reload_secrets();
        let lag = self.lag();
        self.notifier.metrics.set_notifier_lag(lag);
    }

    /// Records of the assigned partitions not yet delivered everywhere.
    fn lag(&self) -> i64 {
        let Ok(assignment) = self.consumer.assignment() else {
            return 0;
        };
        let mut lag = 0;
        for element in assignment.elements_for_topic(&self.topic) {
            let partition = element.partition();
            let Ok((_, high)) =
                self.consumer
                    .fetch_watermarks(&self.topic, partition, Duration::from_millis(500))
            else {
                continue;
            };
            let reached = self.progress.lock().committable(partition).or_else(|| {
                let position = self.consumer.position().ok()?;
                let element = position.find_partition(&self.topic, partition)?;
                match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                }
            });
            if let Some(reached) = reached {
                lag += (high - reached).max(0);
            }
        }
        lag
    }
}

/// One record's delivery to one destination.
struct Delivery {
    notifier: Arc<Notifier>,
    progress: Arc<Mutex<Progress>>,
    event: Arc<AlertEvent>,
    destination: String,
    ticket: Ticket,
}

impl Delivery {
    /// Waits for the alert's previous change to this destination, delivers, and reports.
    async fn run(self, before: Option<oneshot::Receiver<()>>, done: oneshot::Sender<()>) {
        if let Some(before) = before {
            let _ = before.await;
        }
        self.notifier
            .deliver_to(&self.destination, &self.event)
            .await;
        self.progress.lock().delivered(self.ticket);
        let _ = done.send(());
    }
}
