//! A sketch's bins beyond its lowest, in the fewest bytes: a list of (bin, count) pairs when
//! they are few and far apart, or one count per bin over their span, 16-bit while every count
//! fits. An hour of one integration usually fills a run of neighbouring bins with small counts,
//! so the dense form takes 2 bytes a bin where pairs took 8.
//!
//! The bytes start with the form: `SPARSE` then 6 bytes a pair (index, count; little-endian);
//! `DENSE16` or `DENSE32` then the lowest index (2 bytes) and a count per bin from it, 0 for an
//! empty bin. The form is chosen from the bins alone, so equal bins have equal bytes.

const SPARSE: u8 = 0;
const DENSE16: u8 = 1;
const DENSE32: u8 = 2;
const PAIR: usize = 6;
const DENSE_HEADER: usize = 3;

/// Encodes non-empty bins sorted by index, in the smallest form.
pub(super) fn encode(bins: &[(i16, u32)]) -> Box<[u8]> {
    let (Some(first), Some(last)) = (bins.first(), bins.last()) else {
        return Box::new([SPARSE]);
    };
    let span = (i32::from(last.0) - i32::from(first.0) + 1) as usize;
    let sparse = 1 + PAIR * bins.len();
    let fits16 = bins.iter().all(|(_, c)| *c <= u32::from(u16::MAX));
    let width = if fits16 { 2 } else { 4 };
    if sparse <= DENSE_HEADER + width * span {
        let mut out = Vec::with_capacity(sparse);
        out.push(SPARSE);
        for (bin, count) in bins {
            out.extend_from_slice(&bin.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
        return out.into_boxed_slice();
    }
    let mut out = vec![0u8; DENSE_HEADER + width * span];
    out[0] = if fits16 { DENSE16 } else { DENSE32 };
    out[1..3].copy_from_slice(&first.0.to_le_bytes());
    for (bin, count) in bins {
        let at = DENSE_HEADER + width * (i32::from(*bin) - i32::from(first.0)) as usize;
        match fits16 {
            true => out[at..at + 2].copy_from_slice(&(*count as u16).to_le_bytes()),
            false => out[at..at + 4].copy_from_slice(&count.to_le_bytes()),
        }
    }
    out.into_boxed_slice()
}

fn i16_at(bytes: &[u8], at: usize) -> i16 {
    i16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Every non-empty bin, by index.
pub(super) fn decode(bytes: &[u8]) -> impl Iterator<Item = (i16, u32)> + '_ {
    let kind = bytes.first().copied().unwrap_or(SPARSE);
    let (width, step, start) = match kind {
        SPARSE => (0, PAIR, 1),
        DENSE16 => (2, 2, DENSE_HEADER),
        _ => (4, 4, DENSE_HEADER),
    };
    let lowest = if kind == SPARSE { 0 } else { i16_at(bytes, 1) };
    let slots = bytes.len().saturating_sub(start) / step;
    (0..slots).filter_map(move |i| {
        let at = start + i * step;
        let (bin, count) = match width {
            0 => (i16_at(bytes, at), u32_at(bytes, at + 2)),
            2 => (
                lowest + i as i16,
                u32::from(u16::from_le_bytes([bytes[at], bytes[at + 1]])),
            ),
            _ => (lowest + i as i16, u32_at(bytes, at)),
        };
        (count > 0).then_some((bin, count))
    })
}

/// Calls `f` with every non-empty bin, by index: `decode` as tight loops, for sums over many
/// sketches.
pub(super) fn for_each(bytes: &[u8], mut f: impl FnMut(i16, u32)) {
    match bytes.first().copied() {
        Some(SPARSE) => {
            for pair in bytes[1..].chunks_exact(PAIR) {
                let bin = i16::from_le_bytes([pair[0], pair[1]]);
                f(
                    bin,
                    u32::from_le_bytes([pair[2], pair[3], pair[4], pair[5]]),
                );
            }
        }
        Some(DENSE16) if bytes.len() >= DENSE_HEADER => {
            let lowest = i16_at(bytes, 1);
            for (i, slot) in bytes[DENSE_HEADER..].chunks_exact(2).enumerate() {
                let count = u16::from_le_bytes([slot[0], slot[1]]);
                if count > 0 {
                    f(lowest.wrapping_add(i as i16), u32::from(count));
                }
            }
        }
        Some(DENSE32) if bytes.len() >= DENSE_HEADER => {
            let lowest = i16_at(bytes, 1);
            for (i, slot) in bytes[DENSE_HEADER..].chunks_exact(4).enumerate() {
                let count = u32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]);
                if count > 0 {
                    f(lowest.wrapping_add(i as i16), count);
                }
            }
        }
        _ => {}
    }
}

/// Adds `count` to `bin` without changing the form, when the bytes allow: a bin already there,
/// or a slot within a dense span that stays within its width. False when they must be rebuilt.
pub(super) fn add_in_place(bytes: &mut [u8], bin: i16, count: u32) -> bool {
    match bytes.first().copied() {
        Some(SPARSE) => {
            let pairs = (bytes.len() - 1) / PAIR;
            let (mut low, mut high) = (0, pairs);
            while low < high {
                let mid = (low + high) / 2;
                let at = 1 + mid * PAIR;
                match i16_at(bytes, at).cmp(&bin) {
                    std::cmp::Ordering::Less => low = mid + 1,
                    std::cmp::Ordering::Greater => high = mid,
                    std::cmp::Ordering::Equal => {
                        let sum = u32_at(bytes, at + 2).saturating_add(count);
                        bytes[at + 2..at + 6].copy_from_slice(&sum.to_le_bytes());
                        return true;
                    }
                }
            }
            false
        }
        Some(kind @ (DENSE16 | DENSE32)) => {
            let offset = i32::from(bin) - i32::from(i16_at(bytes, 1));
            let width = if kind == DENSE16 { 2 } else { 4 };
            let Ok(offset) = usize::try_from(offset) else {
                return false;
            };
            let at = DENSE_HEADER + width * offset;
            if at + width > bytes.len() {
                return false;
            }
            if kind == DENSE32 {
                let sum = u32_at(bytes, at).saturating_add(count);
                bytes[at..at + 4].copy_from_slice(&sum.to_le_bytes());
                return true;
            }
            let sum = u32::from(u16::from_le_bytes([bytes[at], bytes[at + 1]])) + count;
            match u16::try_from(sum) {
                Ok(sum) => {
                    bytes[at..at + 2].copy_from_slice(&sum.to_le_bytes());
                    true
                }
                Err(_) => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the form, the bytes hold the bins put in, and adding in place or by
        /// rebuilding gives the same bins, in the same bytes as encoding them afresh.
        #[test]
        fn bins_round_trip_and_adds_agree(
            start in prop::collection::btree_map(-300_i16..300, 1_u32..70_000, 0..40),
            adds in prop::collection::vec((-300_i16..300, 1_u32..70_000), 0..40),
        ) {
            let pairs: Vec<(i16, u32)> = start.iter().map(|(b, c)| (*b, *c)).collect();
            let mut bytes = encode(&pairs);
            prop_assert_eq!(decode(&bytes).collect::<Vec<_>>(), pairs.clone());
            let mut seen = Vec::new();
            for_each(&bytes, |bin, count| seen.push((bin, count)));
            prop_assert_eq!(seen, pairs);
            let mut expected: BTreeMap<i16, u32> = start.clone();
            for (bin, count) in adds {
                *expected.entry(bin).or_default() += count;
                if !add_in_place(&mut bytes, bin, count) {
                    let mut all: BTreeMap<i16, u32> = decode(&bytes).collect();
                    *all.entry(bin).or_default() += count;
                    bytes = encode(&all.into_iter().collect::<Vec<_>>());
                }
            }
            let want: Vec<(i16, u32)> = expected.into_iter().collect();
            prop_assert_eq!(decode(&bytes).collect::<Vec<_>>(), want.clone());
            prop_assert_eq!(bytes, encode(&want));
        }
    }

    #[test]
    fn a_run_of_small_counts_is_dense() {
        let run: Vec<(i16, u32)> = (100..250).map(|b| (b, 3)).collect();
        let bytes = encode(&run);
        assert_eq!(bytes[0], DENSE16);
        assert_eq!(bytes.len(), DENSE_HEADER + 2 * 150);
    }
}
