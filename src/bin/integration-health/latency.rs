//! How long simulated calls take: each integration follows a shape of its own, as real
//! endpoints do.

use rand::rngs::SmallRng;
use rand::Rng;

/// How long an integration's calls take: each follows its own shape, as real endpoints do.
#[derive(Debug, Clone, Copy)]
pub enum Latency {
    /// A fast API: log-normal around 60 ms.
    Fast,
    /// An ERP or a batch-minded partner: log-normal around 900 ms with a long tail.
    Slow,
    /// A cache in front of a slow backend: most calls ~40 ms, one in four ~700 ms.
    Bimodal,
    /// A typical SaaS API: log-normal around 220 ms.
    Typical,
}

impl Latency {
    /// The shape of an integration, fixed by its id so every run draws the same dashboard.
    pub fn of(id: &str) -> Latency {
        match id
            .bytes()
            .fold(0_u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % 4
        {
            0 => Latency::Fast,
            1 => Latency::Slow,
            2 => Latency::Bimodal,
            _ => Latency::Typical,
        }
    }

    /// One call's latency in ms; an incident makes every call of the integration about four
    /// times slower (timeouts and retries inside the runtime).
    pub fn draw(self, rng: &mut SmallRng, degraded: bool) -> u32 {
        let (median, spread) = match self {
            Latency::Fast => (60.0, 0.35),
            Latency::Slow => (900.0, 0.6),
            Latency::Bimodal if rng.gen_bool(0.25) => (700.0, 0.3),
            Latency::Bimodal => (40.0, 0.25),
            Latency::Typical => (220.0, 0.45),
        };
        let factor = if degraded { 4.0 } else { 1.0 };
        let ms = median * factor * (spread * standard_normal(rng)).exp();
        ms.clamp(1.0, 60_000.0) as u32
    }
}

/// A draw from the standard normal distribution (Box–Muller).
fn standard_normal(rng: &mut SmallRng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen_range(0.0..1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn median(shape: Latency, degraded: bool) -> u32 {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut draws: Vec<u32> = (0..2_001).map(|_| shape.draw(&mut rng, degraded)).collect();
        draws.sort_unstable();
        draws[1_000]
    }

    #[test]
    fn integrations_differ_in_latency_and_slow_down_in_an_incident() {
        let fast = median(Latency::Fast, false);
        let typical = median(Latency::Typical, false);
        let slow = median(Latency::Slow, false);
        assert!(fast < typical && typical < slow, "{fast} {typical} {slow}");
        let degraded = median(Latency::Typical, true);
        assert!(
            (3 * typical..5 * typical).contains(&degraded),
            "{typical} {degraded}"
        );
        // A bimodal one: its 90th percentile sits in the slow mode, its median in the fast.
        let mut rng = SmallRng::seed_from_u64(7);
        let mut draws: Vec<u32> = (0..2_001)
            .map(|_| Latency::Bimodal.draw(&mut rng, false))
            .collect();
        draws.sort_unstable();
        assert!(
            draws[1_000] < 100 && draws[1_800] > 400,
            "{} {}",
            draws[1_000],
            draws[1_800]
        );
    }
}
