//! A DDSketch-style latency sketch: values fall into logarithmic bins whose width keeps any
//! quantile within 2% of the true value, and two sketches merge exactly by adding their bins.
//!
//! Bins are stored sparsely, sorted by index, with 32-bit counts: an hour of one integration
//! usually touches a few dozen bins, so a sketch costs tens of bytes rather than the kilobytes
//! of a dense array over the whole range. The first bin lives inline, so the many hours
//! that see one event, or events of one latency, allocate nothing.

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sketch_bins as bins;

/// The most any reported quantile is off by, relative to the true value at that rank.
pub const RELATIVE_ACCURACY: f64 = 0.02;
/// Values at or below this (in milliseconds) count as zero.
const SMALLEST_MS: f64 = 1e-3;
/// Values above this are counted in the top bin: about 11.6 days.
const LARGEST_MS: f64 = 1e9;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// A sketch whose bins past the lowest take at most this many bytes (about ten sparse pairs)
/// is merged bin by bin.
const FEW_BINS_BYTES: usize = 64;

/// Values at or below `SMALLEST_MS` are counted in this bin, below every other.
const ZERO_BIN: i16 = i16::MIN;

/// 24 bytes inline: the lowest bin, and the others behind one pointer only once there are any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LatencySketch {
    /// (bin index, count) of the lowest bin; a count of 0 means the sketch is empty.
    first: (i16, u32),
    /// The other bins, none empty, in `sketch_bins`' smallest form. Exactly sized: a new bin
    /// re-encodes, which is rare once an hour has seen its usual latencies.
    rest: Option<Box<[u8]>>,
}

impl LatencySketch {
    /// Every (bin, count), by bin.
    fn bins(&self) -> impl Iterator<Item = (i16, u32)> + '_ {
        let first = (self.first.1 > 0).then_some(self.first);
        first
            .into_iter()
            .chain(self.rest.iter().flat_map(|rest| bins::decode(rest)))
    }

    pub(crate) fn count(&self) -> u64 {
        let mut total = u64::from(self.first.1);
        if let Some(rest) = &self.rest {
            bins::for_each(rest, |_, count| total += u64::from(count));
        }
        total
    }

    /// Every (bin, count), by bin, decoded in tight loops.
    fn bin_list(&self) -> Vec<(i16, u32)> {
        let mut bins = Vec::with_capacity(1 + self.heap_bytes() / 2);
        self.for_each_bin(|bin, count| bins.push((bin, count)));
        bins
    }

    /// Calls `f` with every (bin, count), by bin, in tight loops.
    fn for_each_bin(&self, mut f: impl FnMut(i16, u32)) {
        if self.first.1 > 0 {
            f(self.first.0, self.first.1);
        }
        if let Some(rest) = &self.rest {
            bins::for_each(rest, f);
        }
    }

    /// Counts one value in milliseconds, as ingest does (`bin_for`, then `add_bin`).
    #[cfg(test)]
    pub(crate) fn add(&mut self, ms: f64) {
        self.add_bin(Self::bin_for(ms));
    }

    /// The bin that counts `ms`. Negative and non-finite values never reach here: the decoder
    /// refuses them.
    pub(crate) fn bin_for(ms: f64) -> i16 {
        if ms <= SMALLEST_MS {
            ZERO_BIN
        } else {
            bin_of(ms)
        }
    }

    /// Counts one value in `bin` (from `bin_for`).
    pub(crate) fn add_bin(&mut self, bin: i16) {
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
            self.add_to_rest(displaced.0, displaced.1);
            return;
        }
        self.add_to_rest(bin, count);
    }

    fn add_to_rest(&mut self, bin: i16, count: u32) {
        if let Some(rest) = self.rest.as_deref_mut() {
            if bins::add_in_place(rest, bin, count) {
                return;
            }
        }
        let mut all: Vec<(i16, u32)> = self.rest.iter().flat_map(|r| bins::decode(r)).collect();
        match all.binary_search_by_key(&bin, |(b, _)| *b) {
            Ok(at) => all[at].1 = all[at].1.saturating_add(count),
            Err(at) => all.insert(at, (bin, count)),
        }
        self.rest = Some(bins::encode(&all));
    }

    /// Adds every value of `other`, as if it had been counted here: one merge of the two bin
    /// lists, and one encoding.
    pub(crate) fn merge(&mut self, other: &LatencySketch) {
        if other.first.1 == 0 {
            return;
        }
        if self.first.1 == 0 {
            *self = other.clone();
            return;
        }
        // An hour's few bins into a month's many: added where they are, mostly in place,
        // rather than decoding and re-encoding every bin.
        if other.heap_bytes() <= FEW_BINS_BYTES {
            other.for_each_bin(|bin, count| self.add_to_bin(bin, count));
            return;
        }
        let (mine, theirs) = (self.bin_list(), other.bin_list());
        let mut merged = Vec::with_capacity(mine.len() + theirs.len());
        let (mut i, mut j) = (0, 0);
        while i < mine.len() && j < theirs.len() {
            let (a, b) = (mine[i], theirs[j]);
            match a.0.cmp(&b.0) {
                std::cmp::Ordering::Less => {
                    merged.push(a);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    merged.push(b);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    merged.push((a.0, a.1.saturating_add(b.1)));
                    (i, j) = (i + 1, j + 1);
                }
            }
        }
        merged.extend_from_slice(&mine[i..]);
        merged.extend_from_slice(&theirs[j..]);
        *self = LatencySketch::from_bins(&merged);
    }

    /// Takes out every value of `other`, which must all have been counted here.
    pub(crate) fn subtract(&mut self, other: &LatencySketch) {
        if other.first.1 == 0 {
            return;
        }
        let mut theirs = other.bins().peekable();
        let left: Vec<(i16, u32)> = self
            .bins()
            .filter_map(|(bin, count)| {
                while theirs.next_if(|(b, _)| *b < bin).is_some() {}
                let taken = theirs.next_if(|(b, _)| *b == bin).map_or(0, |(_, c)| c);
                let count = count.saturating_sub(taken);
                (count > 0).then_some((bin, count))
            })
            .collect();
        *self = LatencySketch::from_bins(&left);
    }

    /// A sketch of non-empty bins sorted by index.
    fn from_bins(bins: &[(i16, u32)]) -> LatencySketch {
        match bins.split_first() {
            None => LatencySketch::default(),
            Some((first, rest)) => LatencySketch {
                first: *first,
                rest: (!rest.is_empty()).then(|| bins::encode(rest)),
            },
        }
    }

    /// The value at quantile `q` (0..=1), within `RELATIVE_ACCURACY` of the value of rank
    /// `floor(q × (n − 1))` among the values counted; `None` when nothing was counted.
    #[cfg(test)]
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
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

    /// The values at the quantiles `qs`, which must ascend, in one pass over the bins: each as
    /// `quantile` gives it.
    pub(crate) fn quantiles<const N: usize>(&self, qs: [f64; N]) -> Option<[f64; N]> {
        debug_assert!(qs.windows(2).all(|w| w[0] <= w[1]), "{qs:?} ascend");
        let total = self.count();
        if total == 0 {
            return None;
        }
        let ranks = qs.map(|q| (q.clamp(0.0, 1.0) * (total - 1) as f64).floor() as u64);
        let mut out = [0.0; N];
        let (mut next, mut seen) = (0, 0);
        self.for_each_bin(|bin, count| {
            seen += u64::from(count);
            while next < N && ranks[next] < seen {
                out[next] = value_of(bin);
                next += 1;
            }
        });
        Some(out)
    }

    /// Heap bytes held by the bins beyond the first.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.rest.as_ref().map_or(0, |rest| rest.len())
    }
}

/// Stored as the lowest bin and the list of the others, whatever their form in memory: the
/// layout of snapshots and of parts between replicas does not depend on it.
#[derive(Deserialize)]
struct Stored {
    first: (i16, u32),
    rest: Option<Vec<(i16, u32)>>,
}

/// The bins past the lowest as the list `Stored` reads back, written without collecting them.
struct RestOut<'a>(&'a [u8]);

impl Serialize for RestOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut len = 0;
        bins::for_each(self.0, |_, _| len += 1);
        let mut seq = serializer.serialize_seq(Some(len))?;
        let mut result = Ok(());
        bins::for_each(self.0, |bin, count| {
            if result.is_ok() {
                result = seq.serialize_element(&(bin, count));
            }
        });
        result?;
        seq.end()
    }
}

impl Serialize for LatencySketch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut stored = serializer.serialize_struct("Stored", 2)?;
        stored.serialize_field("first", &self.first)?;
        stored.serialize_field("rest", &self.rest.as_deref().map(RestOut))?;
        stored.end()
    }
}

impl<'de> Deserialize<'de> for LatencySketch {
    /// A stored list out of order, with empty bins or below the first is put right, not
    /// trusted; the usual one is taken as it is.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Stored { first, rest } = Stored::deserialize(deserializer)?;
        let mut rest = rest.unwrap_or_default();
        let ordered = first.1 > 0
            && rest.iter().all(|(_, count)| *count > 0)
            && rest.first().is_none_or(|(bin, _)| *bin > first.0)
            && rest.windows(2).all(|w| w[0].0 < w[1].0);
        if ordered {
            let rest = (!rest.is_empty()).then(|| bins::encode(&rest));
            return Ok(LatencySketch { first, rest });
        }
        let mut sketch = LatencySketch::default();
        if first.1 > 0 {
            sketch.add_to_bin(first.0, first.1);
        }
        rest.retain(|(_, count)| *count > 0);
        rest.sort_unstable_by_key(|(bin, _)| *bin);
        rest.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                earlier.1 = earlier.1.saturating_add(later.1);
            }
            same
        });
        sketch.merge(&LatencySketch::from_bins(&rest));
        Ok(sketch)
    }
}

/// Many sketches summed into one: the first few merged pairwise, which for a handful costs less
/// than clearing and scanning a dense array; from then on, a dense count per bin over every bin
/// a latency can fall in, so each further sketch costs one pass over its bins and the sum one
/// encoding at the end.
#[derive(Default)]
pub(crate) struct SketchSum {
    merged: LatencySketch,
    merges: u8,
    dense: Option<DenseSum>,
}

/// How many sketches are merged pairwise before the dense sum takes over.
const PAIRWISE: u8 = 4;

impl SketchSum {
    pub(crate) fn add(&mut self, sketch: &LatencySketch) {
        if sketch.first.1 == 0 {
            return;
        }
        if let Some(dense) = &mut self.dense {
            dense.add(sketch);
        } else if self.merges < PAIRWISE {
            self.merged.merge(sketch);
            self.merges += 1;
        } else {
            let mut dense = DenseSum::default();
            dense.add(&std::mem::take(&mut self.merged));
            dense.add(sketch);
            self.dense = Some(dense);
        }
    }

    pub(crate) fn finish(self) -> LatencySketch {
        match self.dense {
            Some(dense) => dense.finish(),
            None => self.merged,
        }
    }
}

struct DenseSum {
    zeros: u32,
    lowest: i16,
    counts: Vec<u32>,
    /// Bins outside the dense span (only a sketch from elsewhere could hold one).
    rest: LatencySketch,
}

impl Default for DenseSum {
    fn default() -> Self {
        let lowest = bin_of(SMALLEST_MS);
        let highest = bin_of(LARGEST_MS);
        DenseSum {
            zeros: 0,
            lowest,
            counts: vec![0; (highest - lowest + 1) as usize],
            rest: LatencySketch::default(),
        }
    }
}

impl DenseSum {
    fn add(&mut self, sketch: &LatencySketch) {
        sketch.for_each_bin(|bin, count| {
            if bin == ZERO_BIN {
                self.zeros = self.zeros.saturating_add(count);
                return;
            }
            let slot = usize::try_from(i32::from(bin) - i32::from(self.lowest))
                .ok()
                .and_then(|i| self.counts.get_mut(i));
            match slot {
                Some(slot) => *slot = slot.saturating_add(count),
                None => self.rest.add_to_bin(bin, count),
            }
        });
    }

    fn finish(self) -> LatencySketch {
        let zeros = (self.zeros > 0).then_some((ZERO_BIN, self.zeros));
        let dense = self.counts.iter().enumerate().filter(|(_, c)| **c > 0);
        let bins: Vec<(i16, u32)> = zeros
            .into_iter()
            .chain(dense.map(|(i, count)| (self.lowest + i as i16, *count)))
            .collect();
        let mut sketch = LatencySketch::from_bins(&bins);
        sketch.merge(&self.rest);
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
        fn one_pass_quantiles_equal_each_quantile(
            values in prop::collection::vec(latency(), 0..400),
            mut qs in prop::array::uniform4(0.0f64..=1.0),
        ) {
            qs.sort_by(f64::total_cmp);
            let mut sketch = LatencySketch::default();
            for v in &values {
                sketch.add(*v);
            }
            let each: Option<Vec<f64>> = qs.iter().map(|q| sketch.quantile(*q)).collect();
            prop_assert_eq!(sketch.quantiles(qs).map(|a| a.to_vec()), each);
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

    proptest! {
        /// Written as the lowest bin and the list of the others, as before the bins had forms,
        /// and read back to the same sketch.
        #[test]
        fn stored_sketches_keep_their_layout(values in prop::collection::vec(latency(), 0..300)) {
            let mut sketch = LatencySketch::default();
            for v in &values {
                sketch.add(*v);
            }
            let bytes = bincode::serialize(&sketch).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let listed: Vec<(i16, u32)> = sketch.bins().skip(1).collect();
            let layout = (sketch.first, (!listed.is_empty() || sketch.rest.is_some()).then_some(listed));
            prop_assert_eq!(&bytes, &bincode::serialize(&layout).map_err(|e| TestCaseError::fail(e.to_string()))?);
            let back: LatencySketch = bincode::deserialize(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, sketch);
        }
    }

    proptest! {
        /// Subtracting a part leaves the sketch of the rest.
        #[test]
        fn subtracting_a_part_leaves_the_rest(
            kept in prop::collection::vec(latency(), 0..100),
            taken in prop::collection::vec(latency(), 0..100),
        ) {
            let (mut all, mut part, mut rest) = Default::default();
            for v in &kept {
                LatencySketch::add(&mut all, *v);
                LatencySketch::add(&mut rest, *v);
            }
            for v in &taken {
                LatencySketch::add(&mut all, *v);
                LatencySketch::add(&mut part, *v);
            }
            all.subtract(&part);
            prop_assert_eq!(all, rest);
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
