//! Finding where a JSON string stops being plain, eight bytes at a time.
//!
//! A plain byte is printable ASCII other than `"` and `\`. A string made only of plain bytes
//! needs no unescaping, no UTF-8 check, no control-character check, and its length in characters
//! is its length in bytes. That is almost every string an outcome event carries, so the scanner
//! asks this module first and looks closer only when it stops early.
//!
//! The word tricks are the classic ones ("Bit Twiddling Hacks", haszero and hasless): in a flag
//! word only the lowest flag is exact, since a borrow can only run upward from a real match, and
//! the lowest flag is all that is used here. Safe code, no intrinsics: it runs the same on every
//! target.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bits set at bytes of `word` that equal `byte` (the lowest flag is exact).
fn equal(word: u64, byte: u8) -> u64 {
    let v = word ^ (ONES * u64::from(byte));
    v.wrapping_sub(ONES) & !v & HIGHS
}

/// High bits set at bytes of `word` below `n`, for `n` ≤ 128 (the lowest flag is exact).
fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS
}

/// High bits set at every byte that is not plain (the lowest flag is exact).
fn not_plain(word: u64) -> u64 {
    (word & HIGHS) | below(word, 0x20) | equal(word, b'"') | equal(word, b'\\') | equal(word, 0x7F)
}

fn is_plain(byte: u8) -> bool {
    (0x20..0x7F).contains(&byte) && byte != b'"' && byte != b'\\'
}

/// How many bytes at the start of `bytes` are plain.
pub(super) fn plain_prefix(bytes: &[u8]) -> usize {
    let mut words = bytes.chunks_exact(8);
    let mut seen = 0;
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let flags = not_plain(u64::from_le_bytes(word));
        if flags != 0 {
            return seen + (flags.trailing_zeros() / 8) as usize;
        }
        seen += 8;
    }
    let tail = words.remainder();
    seen + tail.iter().take_while(|b| is_plain(**b)).count()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn stops_at_each_kind_of_byte_that_is_not_plain() {
        for stop in [b'"', b'\\', 0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xFF] {
            for at in 0..20 {
                let mut bytes = vec![b'a'; 20];
                bytes[at] = stop;
                assert_eq!(plain_prefix(&bytes), at, "byte {stop:#x} at {at}");
            }
        }
        assert_eq!(plain_prefix(b" ~!#azAZ09{}[]:,"), 16);
        assert_eq!(plain_prefix(b""), 0);
    }

    proptest! {
        #[test]
        fn agrees_with_a_byte_at_a_time_count(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let expected = bytes.iter().take_while(|b| is_plain(**b)).count();
            prop_assert_eq!(plain_prefix(&bytes), expected);
        }

        #[test]
        fn agrees_on_mostly_plain_text(text in "[ -~]{0,40}", stop in any::<u8>(), at in 0usize..41) {
            let mut bytes = text.into_bytes();
            let at = at.min(bytes.len());
            bytes.insert(at, stop);
            let expected = bytes.iter().take_while(|b| is_plain(**b)).count();
            prop_assert_eq!(plain_prefix(&bytes), expected);
        }
    }
}
