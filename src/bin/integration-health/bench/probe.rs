//! What the replicas benchmark reads from the processes it runs: a replica's CPU time from
//! /proc, and a metric from its /metrics.

use std::net::SocketAddr;
use std::process::Command;

use super::replicas::ReplicasError;

/// The sum of `integration_health_peer_bytes_total` on a replica.
pub async fn peer_bytes(http: SocketAddr) -> Result<f64, ReplicasError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(http)
        .await
        .map_err(|_| ReplicasError::Metrics(http))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|_| ReplicasError::Metrics(http))?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .await
        .map_err(|_| ReplicasError::Metrics(http))?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("integration_health_peer_bytes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// A process's user and system CPU seconds so far.
pub fn cpu_seconds(pid: u32) -> Result<f64, ReplicasError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(ReplicasError::Cpu)?;
    // Fields after the command name, which ends with the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    Ok((ticks(11) + ticks(12)) / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
