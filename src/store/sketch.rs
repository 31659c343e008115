//! A DDSketch-style latency sketch: values fall into logarithmic bins whose width keeps any
//! quantile within 2% of the true value, and two sketches merge exactly by adding their bins.
//!
//! Bins are stored sparsely, sorted by index, with 32-bit counts: an hour of one integration
//! usually touches a few dozen bins, so a sketch costs tens of bytes rather than the kilobytes
//! of a dense array over the whole range. The first bin lives inline, so the many hours
//! that see one event, or events of one latency, allocate nothing.

use serde::{Deserialize, Serialize};

/// The most any reported quantile is off by, relative to the true value at that rank.
pub const RELATIVE_ACCURACY: f64 = 0.02;
/// Values at or below this (in milliseconds) count as zero.
const SMALLEST_MS: f64 = 1e-3;
/// Values above this are counted in the top bin: about 11.6 days.
const LARGEST_MS: f64 = 1e9;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// Values at or below `SMALLEST_MS` are counted in this bin, below every other.
const ZERO_BIN: i16 = i16::MIN;

/// 16 bytes inline: the lowest bin, and the others behind one pointer only once there are any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySketch {
    /// (bin index, count) of the lowest bin; a count of 0 means the sketch is empty.
    first: (i16, u32),
    /// The other bins, sorted by index, none empty. Exactly sized: a new bin reallocates,
    /// which is rare once an hour has seen its usual latencies, and saves a vector's spare room
    /// and header on every hour with more than one bin.
    rest: Option<Box<[(i16, u32)]>>,
}

impl LatencySketch {
    /// Every (bin, count), by bin.
    fn bins(&self) -> impl Iterator<Item = (i16, u32)> + '_ {
        let first = (self.first.1 > 0).then_some(self.first);
        first
            .into_iter()
            .chain(self.rest.iter().flat_map(|rest| rest.iter().copied()))
    }

    pub fn count(&self) -> u64 {
        self.bins().map(|(_, c)| u64::from(c)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.first.1 == 0
    }

    /// Counts one value in milliseconds. Negative and non-finite values never reach here: the
    /// decoder refuses them.
    pub fn add(&mut self, ms: f64) {
        let bin = if ms <= SMALLEST_MS {
            ZERO_BIN
        } else {
            bin_of(ms)
        };
        self.add_to_bin(bin, 1);
    }

    fn add_to_bin(&mut self, bin: i16, count: u32) {
        let (lowest, lowest_count) = self.first;
        if lowest_count == 0 {
            self.first = (bin, count);
            return;
        }
        if bin == lowest {
            self.first.1 = lowest_count.saturating_add(count);
            return;
        }
        if bin < lowest {
            let displaced = std::mem::replace(&mut self.first, (bin, count));
            self.insert_rest(0, displaced);
            return;
        }
        let rest = self.rest.as_deref_mut().unwrap_or_default();
        match rest.binary_search_by_key(&bin, |(b, _)| *b) {
            Ok(at) => rest[at].1 = rest[at].1.saturating_add(count),
            Err(at) => self.insert_rest(at, (bin, count)),
        }
    }

    fn insert_rest(&mut self, at: usize, bin: (i16, u32)) {
        let old = self.rest.take().unwrap_or_default();
        let mut bins = Vec::with_capacity(old.len() + 1);
        bins.extend_from_slice(&old[..at]);
        bins.push(bin);
        bins.extend_from_slice(&old[at..]);
        self.rest = Some(bins.into_boxed_slice());
    }

    /// Adds every value of `other`, as if it had been counted here.
    pub fn merge(&mut self, other: &LatencySketch) {
        for (bin, count) in other.bins() {
            self.add_to_bin(bin, count);
        }
    }

    /// The value at quantile `q` (0..=1), within `RELATIVE_ACCURACY` of the value of rank
    /// `floor(q × (n − 1))` among the values counted; `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * (total - 1) as f64).floor() as u64;
        let mut seen = 0;
        let mut last = None;
        for (bin, count) in self.bins() {
            seen += u64::from(count);
            last = Some(bin);
            if rank < seen {
                break;
            }
        }
        last.map(value_of)
    }

    /// Heap bytes held by the bins beyond the first.
    pub fn heap_bytes(&self) -> usize {
        self.rest
            .as_ref()
            .map_or(0, |rest| std::mem::size_of_val::<[(i16, u32)]>(rest))
    }
}

/// Sums many sketches into one through a dense array over every bin `add` can produce: linear
/// in the bins summed, where merging sparse sketches pairwise would shift them over and over.
pub struct SketchSum {
    zeros: u32,
    lowest: i16,
    counts: Vec<u32>,
    /// Bins outside the dense span (only a sketch from elsewhere could hold one).
    rest: LatencySketch,
}

impl Default for SketchSum {
    fn default() -> Self {
        let lowest = bin_of(SMALLEST_MS);
        let highest = bin_of(LARGEST_MS);
        SketchSum {
            zeros: 0,
            lowest,
            counts: vec![0; (highest - lowest + 1) as usize],
            rest: LatencySketch::default(),
        }
    }
}

impl SketchSum {
    pub fn add(&mut self, sketch: &LatencySketch) {
        for (bin, count) in sketch.bins() {
            if bin == ZERO_BIN {
                self.zeros = self.zeros.saturating_add(count);
                continue;
            }
            let slot = usize::try_from(i32::from(bin) - i32::from(self.lowest))
                .ok()
                .and_then(|i| self.counts.get_mut(i));
            match slot {
                Some(slot) => *slot = slot.saturating_add(count),
                None => self.rest.add_to_bin(bin, count),
            }
        }
    }

    pub fn finish(self) -> LatencySketch {
        let mut sketch = self.rest;
        if self.zeros > 0 {
            sketch.add_to_bin(ZERO_BIN, self.zeros);
        }
        for (i, count) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            sketch.add_to_bin(self.lowest + i as i16, *count);
        }
        sketch
    }
}

/// The bin holding `ms`: the smallest `i` with `ms ≤ γ^i`.
fn bin_of(ms: f64) -> i16 {
    let clamped = ms.min(LARGEST_MS);
    (clamped.ln() / gamma().ln()).ceil() as i16
}

/// The value reported for a bin: the point whose relative distance to both of the bin's ends
/// is the same, `2γ^i / (γ + 1)`.
fn value_of(bin: i16) -> f64 {
    if bin == ZERO_BIN {
        return 0.0;
    }
    let g = gamma();
    2.0 * g.powi(i32::from(bin)) / (g + 1.0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn exact(values: &mut [f64], q: f64) -> f64 {
        values.sort_by(f64::total_cmp);
        values[(q * (values.len() - 1) as f64).floor() as usize]
    }

    fn close(estimate: f64, truth: f64) -> bool {
        if truth <= SMALLEST_MS {
            return estimate == 0.0;
        }
        (estimate - truth).abs() <= RELATIVE_ACCURACY * truth + 1e-9
    }

    fn latency() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(0.0),
            0.0005f64..0.01,
            0.01f64..50.0,
            50.0f64..120_000.0
        ]
    }

    proptest! {
        #[test]
        fn quantiles_are_within_the_stated_error(
            mut values in prop::collection::vec(latency(), 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut sketch = LatencySketch::default();
            for v in &values {
                sketch.add(*v);
            }
            let estimate = sketch.quantile(q).unwrap();
            let truth = exact(&mut values, q);
            prop_assert!(close(estimate, truth), "q={q} estimate={estimate} truth={truth}");
        }

        #[test]
        fn merged_sketches_equal_one_sketch_of_all_values(
            parts in prop::collection::vec(prop::collection::vec(latency(), 0..60), 1..6),
        ) {
            let mut merged = LatencySketch::default();
            let mut whole = LatencySketch::default();
            for part in &parts {
                let mut sketch = LatencySketch::default();
                for v in part {
                    sketch.add(*v);
                    whole.add(*v);
                }
                merged.merge(&sketch);
            }
            prop_assert_eq!(merged, whole);
        }
    }

    proptest! {
        #[test]
        fn a_dense_sum_equals_pairwise_merges(
            parts in prop::collection::vec(prop::collection::vec(latency(), 0..40), 0..8),
        ) {
            let mut merged = LatencySketch::default();
            let mut sum = SketchSum::default();
            for part in &parts {
                let mut sketch = LatencySketch::default();
                for v in part {
                    sketch.add(*v);
                }
                merged.merge(&sketch);
                sum.add(&sketch);
            }
            prop_assert_eq!(sum.finish(), merged);
        }
    }

    #[test]
    fn an_empty_sketch_has_no_quantiles() {
        assert_eq!(LatencySketch::default().quantile(0.5), None);
    }

    #[test]
    fn huge_values_land_in_the_top_bin() {
        let mut sketch = LatencySketch::default();
        sketch.add(1e300);
        let top = sketch.quantile(1.0).unwrap();
        assert!((top - LARGEST_MS).abs() <= RELATIVE_ACCURACY * LARGEST_MS);
    }
}
