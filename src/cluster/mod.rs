//! Asking any replica: a replica that does not own a tenant's partition forwards the tenant's
//! calls to its owner; where a tenant spreads over partitions of several owners, it asks each
//! for its partial answers (`query::Part`) and merges them with its own by the rules that merge
//! its own partitions.
//!
//! - `directory`: who owns which partition, announced on and read from a members topic.

mod directory;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::RwLock;
use rdkafka::ClientConfig;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub(crate) use directory::{Announcer, Directory};

use crate::proto;
use crate::proto::integration_health_peer_client::IntegrationHealthPeerClient;
use crate::query::{Answer, Part, TenantEvents, TimeRange};
use crate::store::{PartitionLosses, Store};

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("kafka client for the members topic")]
    Kafka(#[source] rdkafka::error::KafkaError),
    #[error("cannot start the members thread")]
    Thread(#[source] std::io::Error),
}

/// How this replica takes part: its address as the others reach it, and how it reaches them.
#[derive(Debug, Clone)]
pub(crate) struct ClusterConfig {
    pub(crate) advertise_addr: String,
    pub(crate) members_topic: String,
    pub(crate) input_topic: String,
    /// Sent as `Bearer` to peers; an operator token when the replicas require tokens.
    pub(crate) peer_token: Option<crate::config::Secret>,
    pub(crate) peer_timeout: Duration,
    /// How far ahead of this replica's clock an announcement may be dated.
    pub(crate) max_clock_skew: Duration,
    /// How often this replica repeats its announcement, and how old a member's newest one may
    /// be before the member is dropped.
    pub(crate) announce_interval: Duration,
    pub(crate) member_ttl: Duration,
    /// The aggregated topic is keyed by tenant with librdkafka's `consistent` partitioner (the
    /// repartition stage's): a tenant's events all sit in one known partition, so only it is
    /// asked for.
    pub(crate) route_by_tenant: bool,
    /// With TLS on, how to reach the others: the CA that signed their certificates (the
    /// system's roots without one) and this replica's certificate and key, for mTLS.
    pub(crate) tls: Option<PeerTls>,
}

/// How a replica reaches the others over TLS: only a CA of the operator's is trusted (never the
/// public roots, under which anyone with a certificate for some name could pose as a replica),
/// and the certificate must name the host the peer announced.
#[derive(Debug, Clone)]
pub(crate) struct PeerTls {
    pub(crate) ca_pem: Vec<u8>,
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl PeerTls {
    fn client_config(&self) -> ClientTlsConfig {
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        tls
    }
}

/// The largest answer a replica accepts from another: the public API's own cap.
const MAX_PEER_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The partition librdkafka's `consistent` partitioner gives a tenant's key: CRC-32 of the key,
/// modulo the partition count.
pub fn tenant_partition(tenant_id: &str, partitions: i32) -> i32 {
    (crc32fast::hash(tenant_id.as_bytes()) % partitions.max(1) as u32) as i32
}

/// The other owners' answers to a query's parts, and their partitions' losses.
#[derive(Debug, Default)]
pub(crate) struct RemoteParts {
    /// Per part, in the order asked: one answer per owner that answered.
    pub(crate) answers: Vec<Vec<Answer>>,
    pub(crate) losses: Vec<PartitionLosses>,
    /// Message bytes sent to and received from the owners.
    pub(crate) sent_bytes: usize,
    pub(crate) received_bytes: usize,
}

/// One owner's answer.
struct OwnerParts {
    received_bytes: usize,
    partitions: Vec<i32>,
    answers: Vec<Answer>,
    losses: Vec<PartitionLosses>,
}

/// Which partitions an answer covers, and which it could not reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Coverage {
    pub(crate) covered: BTreeSet<i32>,
    pub(crate) missing: BTreeSet<i32>,
}

/// This replica's view of the others.
pub struct Cluster {
    pub(crate) config: ClusterConfig,
    pub(crate) directory: Arc<Directory>,
    announcer: Arc<Announcer>,
    channels: RwLock<BTreeMap<String, Channel>>,
    threads: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl Cluster {
    /// Starts following the members topic. `client` carries the brokers and any security
    /// properties.
    pub(crate) fn start(
        config: ClusterConfig,
        client: &ClientConfig,
        shutdown: CancellationToken,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let ttl_ms = i64::try_from(config.member_ttl.as_millis()).unwrap_or(i64::MAX);
        let directory = Arc::new(Directory::new(ttl_ms));
        let announcer = Arc::new(Announcer::new(
            client,
            &config.members_topic,
            &config.advertise_addr,
        )?);
        let mut reader = client.clone();
        reader
            .set("group.id", format!("ih-members-{}", config.advertise_addr))
            .set("enable.auto.commit", "false");
        let follower = directory::follow(
            reader,
            config.members_topic.clone(),
            config.input_topic.clone(),
            directory.clone(),
            i64::try_from(config.max_clock_skew.as_millis()).unwrap_or(i64::MAX),
            shutdown.clone(),
        )?;
        let repeater = directory::repeat(
            announcer.clone(),
            directory.clone(),
            config.announce_interval,
            shutdown,
        )?;
        Ok(Arc::new(Cluster {
            config,
            directory,
            announcer,
            channels: RwLock::new(BTreeMap::new()),
            threads: parking_lot::Mutex::new(vec![follower, repeater]),
        }))
    }

    /// Tells the others which partitions this replica owns now.
    pub(crate) fn announce(&self, partitions: BTreeSet<i32>, now_ms: i64) {
        self.announcer.announce(partitions, now_ms, &self.directory);
    }

    /// Waits for the members and announcing threads after shutdown.
    pub(crate) fn join(&self) {
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }

    fn channel(&self, addr: &str) -> Option<Channel> {
        if let Some(channel) = self.channels.read().get(addr) {
            return Some(channel.clone());
        }
        // The peer token never crosses a network in clear text, whatever an announcement says.
        if self.config.peer_token.is_some()
            && self.config.tls.is_none()
            && !crate::config::is_loopback(addr)
        {
            tracing::warn!(%addr, "not asking a replica at a non-loopback address without TLS");
            return None;
        }
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Channel::from_shared(format!("{scheme}://{addr}"))
            .ok()?
            .timeout(self.config.peer_timeout);
        if let Some(tls) = &self.config.tls {
            endpoint = endpoint.tls_config(tls.client_config()).ok()?;
        }
        let channel = endpoint.connect_lazy();
        self.channels
            .write()
            .insert(addr.to_owned(), channel.clone());
        Some(channel)
    }

    /// A request to another replica, with the replicas' token when they have one.
    pub(crate) fn peer_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.config.peer_token {
            if let Ok(value) = format!("Bearer {}", token.expose()).parse() {
                request.metadata_mut().insert("authorization", value);
            }
        }
        request
    }

    /// The replica a tenant's calls go to instead of being answered here: the owner of the
    /// tenant's one partition, when that is another replica. Only with the repartition stage,
    /// which puts each tenant in one known partition.
    pub(crate) fn forward_target(&self, tenant_id: &str) -> Option<(String, i32)> {
        if !self.config.route_by_tenant {
            return None;
        }
        let count = self.directory.partition_count() as i32;
        if count <= 0 {
            return None;
        }
        let partition = tenant_partition(tenant_id, count);
        let owner = self.directory.owner_of(partition)?;
        (owner != self.config.advertise_addr).then_some((owner, partition))
    }

    /// A client of another replica's peer service, taking answers as large as the public API
    /// sends (tonic's default of 4 MiB would refuse a big tenant's slice).
    fn peer_client(&self, addr: &str) -> Option<IntegrationHealthPeerClient<Channel>> {
        let client = IntegrationHealthPeerClient::new(self.channel(addr)?);
        Some(client.max_decoding_message_size(MAX_PEER_ANSWER_BYTES))
    }

    /// A client of another replica's public service, for forwarded calls.
    pub(crate) fn api_client(
        &self,
        addr: &str,
    ) -> Option<crate::proto::integration_health_client::IntegrationHealthClient<Channel>> {
        let client = crate::proto::integration_health_client::IntegrationHealthClient::new(
            self.channel(addr)?,
        );
        Some(client.max_decoding_message_size(MAX_PEER_ANSWER_BYTES))
    }

    /// `partitions` grouped by the other replica that owns each; those with no owner, or that
    /// the directory still gives to this replica, go to `coverage.missing`.
    fn owners_of(
        &self,
        partitions: impl Iterator<Item = i32>,
        coverage: &mut Coverage,
    ) -> BTreeMap<String, Vec<i32>> {
        let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for partition in partitions {
            match self.directory.owner_of(partition) {
                Some(owner) if owner != self.config.advertise_addr => {
                    wanted.entry(owner).or_default().push(partition)
                }
                _ => {
                    coverage.missing.insert(partition);
                }
            }
        }
        wanted
    }

    /// Where a tenant's partitions are: those this replica holds (`covered`), those that no
    /// other replica owns (`missing`), and the rest grouped by the replica that owns each. With
    /// the repartition stage that is the tenant's one partition; otherwise every partition.
    pub(crate) fn tenant_owners(
        &self,
        local: &Store,
        tenant_id: &str,
    ) -> (Coverage, BTreeMap<String, Vec<i32>>) {
        let mut coverage = Coverage::default();
        let count = self.directory.partition_count() as i32;
        let relevant = |partition: i32| match (self.config.route_by_tenant, count) {
            (true, count) if count > 0 => partition == tenant_partition(tenant_id, count),
            _ => true,
        };
        for (key, _) in local.partitions() {
            if relevant(key.partition) {
                coverage.covered.insert(key.partition);
            }
        }
        let others: Vec<i32> = (0..count)
            .filter(|p| relevant(*p) && !coverage.covered.contains(p))
            .collect();
        let wanted = self.owners_of(others.into_iter(), &mut coverage);
        (coverage, wanted)
    }

    /// Every other owner's answers to `parts` about the tenant, over its partitions in
    /// `wanted`: one list per part, with one answer per owner that answered. A partition whose
    /// owner did not answer, or no longer owns it, goes to `coverage.missing`.
    pub(crate) async fn ask_parts(
        &self,
        tenant_id: &str,
        wanted: BTreeMap<String, Vec<i32>>,
        parts: &[Part],
        coverage: &mut Coverage,
    ) -> RemoteParts {
        let mut remote = RemoteParts {
            answers: vec![Vec::new(); parts.len()],
            ..RemoteParts::default()
        };
        let encoded = match crate::query::encode_parts(&parts) {
            Ok(encoded) => encoded,
            Err(err) => {
                tracing::error!(error = %err, "parts to ask the other replicas do not encode");
                coverage.missing.extend(wanted.into_values().flatten());
                return remote;
            }
        };
        let asks = wanted.into_iter().map(|(owner, partitions)| {
            let encoded = encoded.clone();
            async move {
                let answer = self
                    .tenant_parts(&owner, tenant_id, &partitions, encoded, parts.len())
                    .await;
                (partitions, answer)
            }
        });
        for (partitions, answer) in futures::future::join_all(asks).await {
            remote.sent_bytes += encoded.len() + tenant_id.len() + 4 * partitions.len();
            let Some(answer) = answer else {
                coverage.missing.extend(partitions);
                continue;
            };
            remote.received_bytes += answer.received_bytes;
            for partition in partitions {
                if answer.partitions.contains(&partition) {
                    coverage.covered.insert(partition);
                } else {
                    coverage.missing.insert(partition);
                }
            }
            for (slot, part_answer) in remote.answers.iter_mut().zip(answer.answers) {
                slot.push(part_answer);
            }
            remote.losses.extend(answer.losses);
        }
        remote
    }

    async fn tenant_parts(
        &self,
        owner: &str,
        tenant_id: &str,
        partitions: &[i32],
        parts: Vec<u8>,
        count: usize,
    ) -> Option<OwnerParts> {
        let mut client = self.peer_client(owner)?;
        let request = self.peer_request(proto::TenantPartsRequest {
            tenant_id: tenant_id.to_owned(),
            partitions: partitions.to_vec(),
            version: crate::query::PARTS_VERSION,
            parts,
        });
        let answer =
            tokio::time::timeout(self.config.peer_timeout, client.get_tenant_parts(request)).await;
        let answer = self.answered(owner, "GetTenantParts", answer)?;
        let received_bytes = prost::Message::encoded_len(&answer);
        let decoded =
            crate::query::decode_parts::<Vec<Answer>>(&answer.answers).and_then(|answers| {
                Ok((
                    answers,
                    crate::query::decode_parts::<Vec<PartitionLosses>>(&answer.losses)?,
                ))
            });
        let (answers, losses) = decoded
            .inspect_err(|err| {
                tracing::warn!(peer = %owner, ?partitions, error = %err, "a peer's parts do not decode; its partitions count as missing");
            })
            .ok()?;
        if answers.len() != count {
            tracing::warn!(peer = %owner, ?partitions, asked = count, answered = answers.len(), "a peer answered another number of parts than asked; its partitions count as missing");
            return None;
        }
        // Only what was asked of that owner counts: a peer cannot add partitions.
        let answered: Vec<i32> = answer
            .partitions
            .into_iter()
            .filter(|p| partitions.contains(p))
            .collect();
        let losses = losses
            .into_iter()
            .filter(|l| answered.contains(&l.partition))
            .collect();
        Some(OwnerParts {
            received_bytes,
            partitions: answered,
            answers,
            losses,
        })
    }

    /// Each tenant's totals over `range` in every partition of the topic that `local` does not
    /// hold, from their owners; and the coverage of the whole answer, `local` included.
    pub(crate) async fn remote_tenants(
        &self,
        local: &BTreeSet<i32>,
        range: TimeRange,
    ) -> (Vec<Vec<TenantEvents>>, Coverage) {
        let mut coverage = Coverage {
            covered: local.clone(),
            ..Coverage::default()
        };
        let others = (0..self.directory.partition_count() as i32).filter(|p| !local.contains(p));
        let wanted = self.owners_of(others, &mut coverage);
        let asks = wanted.into_iter().map(|(owner, partitions)| async move {
            let answer = self.local_tenants(&owner, range, &partitions).await;
            (partitions, answer)
        });
        let mut lists = Vec::new();
        for (partitions, answer) in futures::future::join_all(asks).await {
            let answer = answer.unwrap_or_default();
            for partition in partitions {
                match answer.iter().find(|p| p.partition == partition) {
                    Some(found) => {
                        coverage.covered.insert(partition);
                        lists.push(found.tenants.iter().map(tenant_events).collect());
                    }
                    None => {
                        coverage.missing.insert(partition);
                    }
                }
            }
        }
        (lists, coverage)
    }

    async fn local_tenants(
        &self,
        owner: &str,
        range: TimeRange,
        partitions: &[i32],
    ) -> Option<Vec<proto::PartitionTenants>> {
        let mut client = self.peer_client(owner)?;
        let request = self.peer_request(proto::LocalTenantsRequest {
            range: Some(range.into()),
            partitions: partitions.to_vec(),
        });
        let answer =
            tokio::time::timeout(self.config.peer_timeout, client.get_local_tenants(request)).await;
        Some(self.answered(owner, "GetLocalTenants", answer)?.partitions)
    }

    /// A peer's answer, or `None` with the cause logged: a timeout, or the status it returned.
    fn answered<T>(
        &self,
        peer: &str,
        rpc: &'static str,
        answer: Result<Result<tonic::Response<T>, tonic::Status>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        match answer {
            Ok(Ok(response)) => Some(response.into_inner()),
            Ok(Err(status)) => {
                tracing::warn!(%peer, rpc, code = ?status.code(), message = %status.message(), "a peer refused or failed a call");
                None
            }
            Err(_) => {
                tracing::warn!(%peer, rpc, timeout_ms = self.config.peer_timeout.as_millis() as u64, "a peer did not answer in time");
                None
            }
        }
    }

    /// Every other replica's own partitions and totals.
    pub(crate) async fn peer_statuses(&self) -> Vec<(String, proto::GetIngestStatusResponse)> {
        let peers = self
            .directory
            .members()
            .into_iter()
            .filter(|addr| *addr != self.config.advertise_addr);
        let asks = peers.map(|addr| async move {
            let mut client = self.peer_client(&addr)?;
            let request = self.peer_request(proto::GetIngestStatusRequest {});
            let answer = tokio::time::timeout(
                self.config.peer_timeout,
                client.get_local_ingest_status(request),
            )
            .await;
            let mut status = self.answered(&addr, "GetLocalIngestStatus", answer)?;
            // A replica reports only the partitions the directory says it owns.
            status
                .partitions
                .retain(|p| self.directory.owner_of(p.partition).as_deref() == Some(&addr));
            Some((addr, status))
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

fn tenant_events(row: &proto::TenantSummary) -> TenantEvents {
    TenantEvents {
        tenant_id: row.tenant_id.clone(),
        failed: row.failed,
        succeeded: row.succeeded,
    }
}
