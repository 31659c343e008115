//! Three replicas, and any of them answers for the whole topic: each asks the owners of the
//! partitions it does not hold and merges their state with its own, so every RPC on every
//! replica equals the independent recount. A partition whose owner does not answer makes the
//! call UNAVAILABLE, or, when the caller accepts it, a partial answer that names it.

use crate::common;

use std::time::Duration;

use common::certs::Authority;
use common::harness::TestService;
use common::tansu::Tansu;
use common::*;
use integration_health::api::{ALLOW_PARTIAL, MISSING_PARTITIONS};
use integration_health::config::TokenGrant;
use integration_health::proto;
use serde_json::json;
use tonic::Code;

const TOPIC: &str = "replicated";
const PARTITIONS: i32 = 6;

async fn replica(bootstrap: &str) -> (TestService, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut config = test_config(bootstrap, TOPIC, "replicas");
    config.grpc_addr = addr.parse().expect("addr");
    as_replica(&mut config, &addr);
    (TestService::start_at(&config, NOW).await, addr)
}

/// Waits until one replica reports every partition, each with an owner, all applied.
async fn all_owned_and_applied(api: &Api, total: u64) {
    wait_for_status(
        api,
        "every partition owned and applied",
        Duration::from_secs(90),
        move |s| {
            let owned = s.partitions.len() == PARTITIONS as usize
                && s.partitions
                    .iter()
                    .all(|p| !p.owner.is_empty() && p.lag == 0);
            owned && seen(s) == total
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_answers_for_every_partition_exactly() {
    // On a broker that creates no topic on first use: the replicas make their own.
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, PARTITIONS).await;
    let bootstrap = tansu.bootstrap.clone();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&bootstrap).await);
    }
    let generated = generate(61, 3_000, NOW);
    let messages: Vec<Message> = generated.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer(&bootstrap), TOPIC, &messages).await;
    for (service, addr) in &replicas {
        // Each replica answers exactly once it has read the others' announcements.
        all_owned_and_applied(&service.api, messages.len() as u64).await;
        let mut api = service.api.clone();
        let local = service.service.store.partitions().len();
        assert!(
            local < PARTITIONS as usize,
            "{addr} holds only some partitions"
        );
        assert_matches_truth(&mut api, &generated.truth, &["acme", "globex", "initech"]).await;
        assert_tenant_list_matches_truth(&mut api, &generated.truth).await;
        for tenant in ["acme", "globex", "initech"] {
            let listed = api
                .list_integrations(proto::ListIntegrationsRequest {
                    tenant_id: tenant.into(),
                    page_size: 1000,
                    ..Default::default()
                })
                .await
                .expect("integrations")
                .into_inner();
            assert_integrations_match(&listed, &generated.truth, tenant);
            // An integration's health merges its groups from every owner.
            for row in listed.integrations.iter().take(3) {
                let health = api
                    .get_integration_health(proto::GetIntegrationHealthRequest {
                        tenant_id: tenant.into(),
                        integration_type: row.integration_type,
                        integration_id: row.integration_id.clone(),
                        ..Default::default()
                    })
                    .await
                    .expect("integration health")
                    .into_inner();
                assert_integration_health_matches(&health, &generated.truth, tenant);
            }
        }
    }

    // Latency through a replica that asks two others, against one that holds every partition
    // (a single replica of another group on the same topic). Debug build: compare, not quote.
    let solo_config = test_config(&bootstrap, TOPIC, "solo");
    let solo = TestService::start_at(&solo_config, NOW).await;
    wait_applied(&solo.api, messages.len() as u64).await;
    for (name, api) in [
        ("through a non-owner", &replicas[0].0.api),
        ("owner of all", &solo.api),
    ] {
        let mut api = api.clone();
        let mut micros = Vec::new();
        for _ in 0..100 {
            let started = std::time::Instant::now();
            api.get_overview(proto::GetOverviewRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            })
            .await
            .expect("overview");
            micros.push(started.elapsed().as_micros());
        }
        micros.sort_unstable();
        println!(
            "overview {name}: p50 {} µs, p99 {} µs",
            micros[50], micros[98]
        );
    }
    solo.stop().await;

    // A partition claimed by a replica that does not answer.
    let (service, _) = &replicas[0];
    let orphan = (0..PARTITIONS)
        .find(|p| {
            service
                .service
                .store
                .partitions()
                .iter()
                .all(|(k, _)| k.partition != *p)
        })
        .expect("a partition this replica does not own");
    let members = format!("{TOPIC}.members");
    let claim = |addr: &str, at_ms: i64| Message {
        key: addr.into(),
        payload: serde_json::to_vec(&json!({"addr": addr, "partitions": [orphan], "at_ms": at_ms}))
            .expect("json"),
    };
    let mut api = service.api.clone();
    let overview = || proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    // A claim dated far ahead would outrank every true announcement for good: it is refused.
    let far_ahead = claim("127.0.0.1:2", i64::MAX / 2);
    publish(&producer(&bootstrap), &members, &[far_ahead]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    api.get_overview(overview())
        .await
        .expect("a claim from the future changes nothing");
    let wall_clock_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // Dated 30 s ahead, within the 60 s of skew a reader allows: the true owner re-announces
    // every 10 s, and an announcement of it dated between now and the claim's arrival would
    // otherwise outrank the claim before the test sees it.
    publish(
        &producer(&bootstrap),
        &members,
        &[claim("127.0.0.1:1", wall_clock_now + 30_000)],
    )
    .await;
    wait_until("the claim is seen", Duration::from_secs(30), || {
        let mut api = api.clone();
        async move { api.get_overview(overview()).await.is_err() }
    })
    .await;
    let refused = api.get_overview(overview()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains(&format!("[{orphan}]")),
        "{}",
        refused.message()
    );
    let mut partial = tonic::Request::new(overview());
    partial
        .metadata_mut()
        .insert(ALLOW_PARTIAL, "true".parse().expect("header"));
    let answer = api.get_overview(partial).await.expect("a partial answer");
    let missing = answer
        .metadata()
        .get(MISSING_PARTITIONS)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(missing, Some(orphan.to_string()));
    let answer = api
        .get_overview(proto::GetOverviewRequest {
            allow_partial: true,
            ..overview()
        })
        .await
        .expect("a partial answer, asked for in the request")
        .into_inner();
    assert_eq!(answer.missing_partitions, [orphan]);
    assert_eq!(answer.covered_partitions.len(), PARTITIONS as usize - 1);

    // A tombstone takes the claimant out; the partition's true owner is asked again. (It
    // re-announces on its next rebalance; until then the claim's removal leaves its own,
    // older announcement as the newest for the partition.)
    let tombstone = rdkafka::producer::FutureRecord::<str, [u8]>::to(&members).key("127.0.0.1:1");
    producer(&bootstrap)
        .send(tombstone, Duration::from_secs(10))
        .await
        .expect("tombstone delivered");
    wait_until("the claimant is forgotten", Duration::from_secs(30), || {
        let mut api = api.clone();
        async move { api.get_overview(overview()).await.is_ok() }
    })
    .await;

    for (service, _) in replicas {
        service.stop().await;
    }
}

fn with_token<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {READER_TOKEN}").parse().expect("header"),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_each_other_over_mtls_with_a_peer_token() {
    let tansu = Tansu::start();
    tansu.create_topic(TOPIC, PARTITIONS).await;
    let bootstrap = tansu.bootstrap.clone();
    let ca = Authority::new("replicas CA");
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = ca.issue("replica");
    let paths = [
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("ca.crt"),
    ];
    for (path, pem) in paths.iter().zip([cert, key, ca.pem()]) {
        std::fs::write(path, pem).expect("pem");
    }
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let mut config = test_config(&bootstrap, TOPIC, "secured-replicas");
        config.grpc_addr = format!("127.0.0.1:{port}").parse().expect("addr");
        as_replica(&mut config, &format!("localhost:{port}"));
        config.tls_cert = Some(paths[0].clone());
        config.tls_key = Some(paths[1].clone());
        config.tls_client_ca = Some(paths[2].clone());
        replicas.push((TestService::start_at(&config, NOW).await, port));
    }
    let generated = generate(62, 1_000, NOW);
    let messages: Vec<Message> = generated.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer(&bootstrap), TOPIC, &messages).await;

    let (cert, key) = ca.issue("dashboard");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.pem()))
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .domain_name("localhost");
    let channel =
        tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{}", replicas[0].1))
            .expect("uri")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("mTLS connects");
    let api =
        integration_health::proto::integration_health_client::IntegrationHealthClient::new(channel);
    let total = messages.len() as u64;
    wait_until(
        "both replicas' partitions reported through one",
        Duration::from_secs(90),
        || {
            let mut api = api.clone();
            async move {
                let Ok(s) = api
                    .get_ingest_status(with_token(proto::GetIngestStatusRequest {}))
                    .await
                else {
                    return false;
                };
                let s = s.into_inner();
                let owners: std::collections::BTreeSet<String> =
                    s.partitions.iter().map(|p| p.owner.clone()).collect();
                s.partitions.len() == PARTITIONS as usize && owners.len() == 2 && seen(&s) == total
            }
        },
    )
    .await;
    let mut api = api.clone();
    for tenant in ["acme", "globex", "initech"] {
        let answer = api
            .get_overview(with_token(proto::GetOverviewRequest {
                tenant_id: tenant.into(),
                ..Default::default()
            }))
            .await
            .expect("answered over mTLS, peers included")
            .into_inner();
        let (start, end) = bounds(&answer.effective_range);
        let expected = generated.truth.counts(tenant, start, end);
        for t in &answer.types {
            let name = TYPES[(t.integration_type - 1) as usize];
            assert_eq!((t.failed, t.succeeded), expected[name], "{tenant} {name}");
        }
    }
    for (service, _) in replicas {
        service.stop().await;
    }
}

/// The tenant picker's list, gathered from every partition's owner, against a recount.
async fn assert_tenant_list_matches_truth(api: &mut Api, truth: &Truth) {
    let listed = api
        .list_tenants(proto::ListTenantsRequest::default())
        .await
        .expect("tenants")
        .into_inner();
    assert_eq!(listed.covered_partitions.len(), PARTITIONS as usize);
    let mut ids: Vec<&str> = listed
        .tenants
        .iter()
        .map(|t| t.tenant_id.as_str())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["acme", "globex", "initech"]);
    assert_tenants_match(&listed, truth);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_owner_forwards_a_tenants_calls_to_the_owner() {
    const INPUT: &str = "forwarded";
    let tansu = Tansu::start();
    tansu.create_topic(INPUT, 4).await;
    let mut replicas = forwarding_replicas(&tansu.bootstrap, INPUT, |_| {}).await;
    // Both groups settle first, so no hand-over re-publishes a tail mid-test.
    for replica in &replicas {
        let addr = replica.service.http_addr;
        wait_until("ready", Duration::from_secs(90), || async move {
            http_get(addr, "/readyz").await.0 == 200
        })
        .await;
    }
    let generated = generate(63, 2_000, NOW);
    let messages: Vec<Message> = generated.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer(&tansu.bootstrap), INPUT, &messages).await;
    let tenants = ["acme", "globex", "initech"];
    let total = messages.len() as u64;
    wait_until(
        "both replicas own, read and announce",
        Duration::from_secs(90),
        || {
            let apis: Vec<_> = replicas.iter().map(|r| r.api.clone()).collect();
            async move {
                for mut api in apis {
                    let s = ingest_status(&mut api).await;
                    let settled = s.partitions.len() == 4
                        && s.partitions
                            .iter()
                            .all(|p| !p.owner.is_empty() && p.lag == 0);
                    if !settled || seen(&s) != total {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
    // Every RPC on either replica equals the recount: one of them answers each tenant through
    // its owner.
    for replica in &replicas {
        let mut api = replica.api.clone();
        assert_matches_truth(&mut api, &generated.truth, &tenants).await;
    }
    // The non-owner's calls are answered by the owner: its call count moves, by one per call.
    let (owner, other) = owner_and_other(&replicas, "acme", 4);
    let before = overviews(owner).await;
    let mut api = other.api.clone();
    for _ in 0..5 {
        api.get_overview(proto::GetOverviewRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await
        .expect("overview through the non-owner");
    }
    let after = overviews(owner).await;
    assert_eq!(after - before, 5.0, "each call went to the owner once");

    // Twenty watchers of the tenant on the non-owner share one stream to the owner, and each
    // sees the tenant's count, then the events published since.
    let watches = |text: &str| {
        metric_sum(
            text,
            "integration_health_grpc_requests_total",
            &["rpc=\"WatchTenant\""],
        )
    };
    let events_of = |truth: &Truth| -> u64 {
        let counts = truth.counts("acme", i64::MIN, i64::MAX);
        counts
            .values()
            .map(|(failed, succeeded)| failed + succeeded)
            .sum()
    };
    let before = watches(&http_get(owner.service.http_addr, "/metrics").await.1);
    let mut streams = Vec::new();
    for _ in 0..20 {
        let mut api = other.api.clone();
        let stream = api
            .watch_tenant(proto::WatchTenantRequest {
                tenant_id: "acme".into(),
                min_interval: Some(proto::Duration {
                    seconds: 0,
                    nanos: 100_000_000,
                }),
            })
            .await
            .expect("watch through the non-owner")
            .into_inner();
        streams.push(stream);
    }
    for stream in &mut streams {
        let first = stream.message().await.expect("update").expect("open");
        assert_eq!(
            first.events,
            events_of(&generated.truth),
            "the first update"
        );
    }
    let after = watches(&http_get(owner.service.http_addr, "/metrics").await.1);
    assert_eq!(
        after - before,
        1.0,
        "one upstream stream for twenty watchers"
    );
    let more = generate_tagged(64, 300, NOW, "more");
    let messages: Vec<Message> = more.messages.iter().map(|(_, m)| m.clone()).collect();
    publish(&producer(&tansu.bootstrap), INPUT, &messages).await;
    let wanted = events_of(&generated.truth) + events_of(&more.truth);
    for stream in &mut streams {
        loop {
            let update = tokio::time::timeout(Duration::from_secs(60), stream.message())
                .await
                .expect("an update within a minute")
                .expect("update")
                .expect("open");
            assert!(update.events <= wanted, "never more than was published");
            if update.events == wanted {
                break;
            }
        }
    }
    drop(streams);

    // The owner stops: until the group hands its partition over, a call through the other
    // replica is UNAVAILABLE naming the partition (its owner did not answer, or it has none
    // since the owner gave it up); after, the other answers it exactly.
    let partition = integration_health::cluster::tenant_partition("acme", 4);
    let owner_index = usize::from(!std::ptr::eq(owner, &replicas[0]));
    let owner = replicas.remove(owner_index);
    let other = replicas.remove(0);
    owner.stop().await;
    let overview = proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    let mut api = other.api.clone();
    if let Err(refused) = api.get_overview(overview.clone()).await {
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        let message = refused.message();
        assert!(
            message.contains(&format!("partition {partition} "))
                || message.contains(&format!("partitions [{partition}]")),
            "{message}"
        );
    }
    wait_until(
        "the other replica takes every partition over and reads it again",
        Duration::from_secs(90),
        || {
            let mut api = api.clone();
            async move {
                let s = ingest_status(&mut api).await;
                s.partitions.len() == 4
                    && s.partitions
                        .iter()
                        .all(|p| !p.owner.is_empty() && p.lag == 0)
                    && s.upstream_partitions.iter().all(|p| p.lag == 0)
            }
        },
    )
    .await;
    let answer = api
        .get_overview(overview)
        .await
        .expect("overview")
        .into_inner();
    let (start, end) = bounds(&answer.effective_range);
    let (before, since) = (
        generated.truth.counts("acme", start, end),
        more.truth.counts("acme", start, end),
    );
    for t in &answer.types {
        let name = type_name(t.integration_type);
        let expected = (
            before[name].0 + since[name].0,
            before[name].1 + since[name].1,
        );
        assert_eq!(
            (t.failed, t.succeeded),
            expected,
            "{name} after the hand-over"
        );
    }
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_call_is_answered_in_one_hop_and_limited_once() {
    const INPUT: &str = "limited-once";
    const RATE: u32 = 5;
    let tansu = Tansu::start();
    tansu.create_topic(INPUT, 4).await;
    let replicas = forwarding_replicas(&tansu.bootstrap, INPUT, |config| {
        config.rate_limit_per_token = RATE;
        config
            .tokens
            .push(TokenGrant::plain("acme-reader", &["acme"]));
    })
    .await;
    wait_until(
        "both replicas own and announce",
        Duration::from_secs(90),
        || {
            let apis: Vec<_> = replicas.iter().map(|r| r.api.clone()).collect();
            async move {
                for mut api in apis {
                    let Ok(s) = api
                        .get_ingest_status(proto::GetIngestStatusRequest {})
                        .await
                    else {
                        return false;
                    };
                    let s = s.into_inner();
                    let owned = s.partitions.iter().all(|p| !p.owner.is_empty());
                    if s.partitions.len() != 4 || !owned {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;
    let (owner, other) = owner_and_other(&replicas, "acme", 4);
    // Every caller's bucket full again after the waiting above.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let before = overviews(owner).await;
    // Two callers, each within its own limit at the non-owner: together twice what one may
    // send, all of it reaching the owner under the replicas' one peer grant.
    let overview = || proto::GetOverviewRequest {
        tenant_id: "acme".into(),
        ..Default::default()
    };
    let callers = [
        other.api.clone(),
        client_as(other.service.grpc_addr, "acme-reader").await,
    ];
    for mut api in callers {
        for _ in 0..RATE {
            api.get_overview(overview())
                .await
                .expect("forwarded and answered, not limited again at the owner");
        }
    }
    let after = overviews(owner).await;
    assert_eq!(
        after - before,
        f64::from(2 * RATE),
        "each call reached the owner once"
    );
    // One more from the first caller is over its limit, at the replica it called.
    let mut api = other.api.clone();
    let over = api.get_overview(overview()).await.unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted, "{over:?}");
}

/// Of two replicas, the one that owns `tenant`'s partition (of `partitions`), and the other.
pub(crate) fn owner_and_other<'a>(
    replicas: &'a [TestService],
    tenant: &str,
    partitions: i32,
) -> (&'a TestService, &'a TestService) {
    let partition = integration_health::cluster::tenant_partition(tenant, partitions);
    let owns = |r: &TestService| {
        r.service
            .store
            .partitions()
            .iter()
            .any(|(k, _)| k.partition == partition)
    };
    match owns(&replicas[0]) {
        true => (&replicas[0], &replicas[1]),
        false => (&replicas[1], &replicas[0]),
    }
}

/// The `GetOverview` calls `replica` has served, from its metrics.
async fn overviews(replica: &TestService) -> f64 {
    let text = http_get(replica.service.http_addr, "/metrics").await.1;
    metric_sum(
        &text,
        "integration_health_grpc_requests_total",
        &["rpc=\"GetOverview\""],
    )
}

/// Two replicas reading `input` through the repartition stage, where a tenant has one owner
/// to forward to, with `adjust` applied to each one's settings.
async fn forwarding_replicas(
    bootstrap: &str,
    input: &str,
    adjust: impl Fn(&mut integration_health::config::Config),
) -> Vec<TestService> {
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = test_config(bootstrap, input, &format!("{input}-group"));
        config.input_keyed_by_tenant = false;
        config.grpc_addr = addr.parse().expect("addr");
        as_replica(&mut config, &addr);
        adjust(&mut config);
        replicas.push(TestService::start_at(&config, NOW).await);
    }
    replicas
}
