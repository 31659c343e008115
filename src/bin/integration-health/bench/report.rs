//! The benchmark reports as text for people; `--json` prints the same reports as JSON. The
//! replicas benchmark's report is defined here too, beside its rendering.

use std::fmt::Write as _;

use integration_health::store::StateBytes;
use serde::Serialize;

use super::{E2eReport, IngestReport, Latency};

trait Mebibytes {
    fn mib(self) -> f64;
}

impl Mebibytes for u64 {
    fn mib(self) -> f64 {
        self as f64 / 1_048_576.0
    }
}

pub fn render_ingest(report: &IngestReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "events: {} ({:.1} MB)",
        report.events,
        report.input_bytes as f64 / 1e6
    );
    for t in std::iter::once(&report.single_thread).chain(&report.all_threads) {
        let _ = writeln!(
            out,
            "decode+validate+dedup+aggregate, {} thread(s): {:.0} events/s, {:.0} MB/s ({:.2} s)",
            t.threads, t.events_per_sec, t.mb_per_sec, t.seconds
        );
    }
    let _ = writeln!(
        out,
        "rss: {:.0} MiB; state estimate: {:.0} MiB; failure groups: {}",
        report.rss_bytes.mib(),
        report.state_bytes_estimate.mib(),
        report.groups
    );
    let _ = writeln!(out, "{}", state_breakdown(&report.state_bytes));
    let timings = [
        ("write", report.snapshot_write_ms),
        ("restore", report.snapshot_restore_ms),
    ];
    let _ = writeln!(out, "{}", snapshots(report.snapshot_bytes, &timings));
    render_latencies(&mut out, &report.queries, true);
    out
}

/// Where the state's bytes go, and what one tenant, group, integration and dedup key costs.
fn state_breakdown(bytes: &StateBytes) -> String {
    let per = |total: u64, count: u64| total as f64 / count.max(1) as f64;
    format!(
        "state by part (MiB): dedup {:.1}, strings {:.1}, tenant buckets {:.1}, groups {:.1}, \
         integrations {:.1}\nbuckets by tier (MiB): minutes {:.1}, hours {:.1}, days {:.1}, \
         quiet series' events {:.1}\n\
         per unit (bytes): tenant buckets {:.0} per tenant, {:.0} per group, \
         {:.0} per integration, {:.1} per dedup key",
        bytes.dedup.mib(),
        bytes.strings.mib(),
        bytes.buckets.mib(),
        bytes.groups.mib(),
        bytes.integrations.mib(),
        bytes.minute_tier.mib(),
        bytes.hour_tier.mib(),
        bytes.day_tier.mib(),
        bytes.quiet_tier.mib(),
        per(bytes.buckets, bytes.tenants),
        per(bytes.groups, bytes.group_count),
        per(bytes.integrations, bytes.integration_count),
        per(bytes.dedup, bytes.dedup_keys),
    )
}

pub fn render_e2e(report: &E2eReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "consumed {} events in {:.2} s: {:.0} events/s sustained",
        report.events, report.seconds, report.events_per_sec
    );
    let lag: Vec<String> = report
        .lag
        .iter()
        .step_by((report.lag.len() / 12).max(1))
        .map(|(t, l)| format!("{t:.1}s:{l}"))
        .collect();
    let _ = writeln!(
        out,
        "lag (messages) over time: {}; max {}",
        lag.join(" "),
        report.max_lag
    );
    let _ = writeln!(
        out,
        "{} RPCs under load over gRPC loopback:",
        report.rpc_calls
    );
    render_latencies(&mut out, &report.rpc, false);
    let timings = [
        (
            "slowest encode (ingest pause)",
            report.snapshot_encode_ms_max,
        ),
        ("slowest write", report.snapshot_write_ms_max),
    ];
    let _ = writeln!(out, "{}", snapshots(report.snapshot_bytes, &timings));
    let _ = writeln!(
        out,
        "restart: gRPC serving after {:.0} ms; all partitions restored and caught up after {:.0} ms",
        report.restart_to_grpc_ms, report.restart_to_restored_ms
    );
    out
}

/// "snapshots: 12.3 MiB; write 40 ms, restore 30 ms".
fn snapshots(bytes: u64, timings: &[(&str, f64)]) -> String {
    let timings: Vec<String> = timings
        .iter()
        .map(|(what, ms)| format!("{what} {ms:.1} ms"))
        .collect();
    format!("snapshots: {:.1} MiB; {}", bytes.mib(), timings.join(", "))
}

/// A table of latencies: one row per query (and tenant, when `with_tenant`).
pub fn render_latencies(out: &mut String, latencies: &[Latency], with_tenant: bool) {
    let tenant = |t: &str| {
        if with_tenant {
            format!("{t:<12} ")
        } else {
            String::new()
        }
    };
    let _ = writeln!(
        out,
        "{:<16} {}{:>10} {:>10} {:>10}",
        "query",
        tenant("tenant"),
        "p50",
        "p99",
        "max"
    );
    for q in latencies {
        let _ = writeln!(
            out,
            "{:<16} {}{:>10} {:>10} {:>10}",
            q.query,
            tenant(&q.tenant),
            fmt_us(q.p50_us),
            fmt_us(q.p99_us),
            fmt_us(q.max_us)
        );
    }
}

pub fn fmt_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicasReport {
    pub events: u64,
    pub replicas: usize,
    pub partitions: i32,
    pub tenant: String,
    pub tenant_events: u64,
    pub load_seconds: f64,
    pub rpcs: Vec<RpcComparison>,
    pub watch: WatchCost,
}

/// One RPC through the owner and through the other replica.
#[derive(Debug, Clone, Serialize)]
pub struct RpcComparison {
    pub rpc: &'static str,
    pub owner_p50_us: f64,
    pub owner_p99_us: f64,
    pub other_p50_us: f64,
    pub other_p99_us: f64,
    /// The answer's size on the wire.
    pub answer_bytes: usize,
    /// What the two replicas exchanged per call through the other one, both ways.
    pub peer_bytes_per_call: f64,
    /// Whether the other replica's answer equals the owner's.
    pub equal: bool,
}

/// The owner's CPU time over one watch phase, with no watcher, one, and many on the other
/// replica, while events for the tenant keep arriving.
#[derive(Debug, Clone, Serialize)]
pub struct WatchCost {
    pub seconds: u64,
    pub owner_cpu_idle_s: f64,
    pub owner_cpu_one_watcher_s: f64,
    pub watchers: usize,
    pub owner_cpu_many_watchers_s: f64,
    /// Updates the many watchers received, in all.
    pub updates: u64,
}

pub fn render_replicas(report: &ReplicasReport) -> String {
    let mut text = format!(
        "{} replicas, {} partitions, {} events loaded in {:.1} s; largest tenant {} ({} events)\n",
        report.replicas,
        report.partitions,
        report.events,
        report.load_seconds,
        report.tenant,
        report.tenant_events
    );
    text.push_str(
        "rpc                      owner p50/p99 µs     other p50/p99 µs   answer B  peer B/call  equal\n",
    );
    for r in &report.rpcs {
        text.push_str(&format!(
            "{:<24} {:>9.0} {:>9.0}   {:>9.0} {:>9.0}   {:>8}  {:>11.0}  {}\n",
            r.rpc,
            r.owner_p50_us,
            r.owner_p99_us,
            r.other_p50_us,
            r.other_p99_us,
            r.answer_bytes,
            r.peer_bytes_per_call,
            if r.equal { "yes" } else { "NO" }
        ));
    }
    let w = &report.watch;
    text.push_str(&format!(
        "owner CPU over {} s with events arriving: no watcher {:.2} s, one watcher {:.2} s, {} watchers {:.2} s ({} updates received)\n",
        w.seconds, w.owner_cpu_idle_s, w.owner_cpu_one_watcher_s, w.watchers, w.owner_cpu_many_watchers_s, w.updates
    ));
    text
}
