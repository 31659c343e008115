//! A deterministic, skewed event generator: NDJSON lines of valid outcome events in time order,
//! for benchmarks (`bench`, `benches/`) and load in tests.

use std::io::{BufWriter, Write};
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::event::IntegrationType;
use crate::store::DAY_MS;

#[derive(Debug, Clone, Copy)]
pub struct GenSpec {
    pub events: u64,
    pub tenants: u32,
    pub days: u32,
    pub seed: u64,
    /// The newest event's time; events run up to it in time order.
    pub end_ms: i64,
}

const CODES: [u16; 12] = [503, 401, 404, 500, 429, 400, 504, 882, 408, 502, 403, 816];

/// Cumulative weights, so a skewed pick is a binary search rather than a loop.
struct Skew(Vec<f64>);

impl Skew {
    fn new(n: u32) -> Self {
        let mut total = 0.0;
        Skew(
            (1..=n.max(1))
                .map(|k| {
                    total += 1.0 / k as f64;
                    total
                })
                .collect(),
        )
    }

    fn pick(&self, rng: &mut SmallRng) -> u32 {
        let total = self.0.last().copied().unwrap_or(1.0);
        let target = rng.gen::<f64>() * total;
        self.0
            .partition_point(|c| *c < target)
            .min(self.0.len() - 1) as u32
    }
}

/// Writes events in time order as NDJSON lines (~350 bytes each) to `out`.
pub(crate) fn generate(spec: GenSpec, out: &mut impl Write) -> std::io::Result<u64> {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let tenants = Skew::new(spec.tenants);
    let integrations = Skew::new(40);
    let codes = Skew::new(CODES.len() as u32);
    let span = i64::from(spec.days) * DAY_MS;
    let start = spec.end_ms - span;
    let step = span as f64 / spec.events.max(1) as f64;
    let mut line = String::with_capacity(512);
    let mut bytes = 0;
    for i in 0..spec.events {
        let at = start + (i as f64 * step) as i64;
        let tenant = tenants.pick(&mut rng);
        let integration = integrations.pick(&mut rng);
        let kind = IntegrationType::ALL[(integration % 5) as usize];
        let failed = rng.gen_bool(0.12);
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(
            line,
            r#"{{"event_id":"ev-{seed}-{i:012}","tenant_id":"tenant-{tenant:04}","occurred_at":{at},"integration_type":"{kind}","integration_id":"int-{integration:03}","integration_name":"Integration number {integration} for the tenant","outcome":"{outcome}""#,
            seed = spec.seed,
            kind = kind.as_str(),
            outcome = if failed { "failure" } else { "success" },
        );
        if failed {
            let code = CODES[codes.pick(&mut rng) as usize];
            let _ = write!(
                line,
                r#","status_code":{code},"error_message":"Upstream answered {code} for request","#
            );
        } else {
            line.push(',');
        }
        let flow = rng.gen_range(0..6);
        let service = rng.gen_range(0..4);
        let _ = writeln!(
            line,
            r#""flow_id":"flow-{flow}","flow_name":"Customer journey {flow}","service_id":"svc-{service}","service_name":"Service {service}","latency_ms":{}}}"#,
            rng.gen_range(5..2_000)
        );
        out.write_all(line.as_bytes())?;
        bytes += line.len() as u64;
    }
    Ok(bytes)
}

pub fn generate_file(spec: GenSpec, path: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::create(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let bytes = generate(spec, &mut out)?;
    out.flush()?;
    Ok(bytes)
}

pub fn generate_lines(spec: GenSpec) -> Vec<Vec<u8>> {
    let mut buffer = Vec::new();
    let _ = generate(spec, &mut buffer);
    buffer
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_event_takes_the_decoders_fast_path() {
        let lines = generate_lines(GenSpec {
            events: 2_000,
            tenants: 7,
            days: 3,
            seed: 11,
            end_ms: 1_767_225_600_000,
        });
        let taken = lines
            .iter()
            .filter(|line| crate::event::check_fast_path(line))
            .count();
        assert_eq!(taken, lines.len());
    }
}
