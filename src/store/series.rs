//! A time series of buckets: a vector kept sorted by bucket start.
//!
//! Events arrive nearly in time order, so almost every write lands in the newest bucket, which a
//! vector reaches in one step where a B-tree walks its right spine (a cache miss per level). A
//! B-tree leaf also reserves room for eleven entries, so a group or integration with one busy
//! hour paid for eleven; a vector holds what it needs, starting at one entry.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Series<T> {
    /// Sorted by bucket start, each start once.
    entries: Vec<(i64, T)>,
}

impl<T> Default for Series<T> {
    fn default() -> Self {
        Series {
            entries: Vec::new(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Series<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<T> Series<T> {
    pub(crate) fn new() -> Self {
        Series::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bucket starting at `start`, made by `make` if there is none.
    pub(crate) fn slot_with(&mut self, start: i64, make: impl FnOnce() -> T) -> &mut T {
        let at = match self.entries.last() {
            Some((newest, _)) if *newest == start => self.entries.len() - 1,
            Some((newest, _)) if *newest < start => self.push(start, make()),
            _ => match self.entries.binary_search_by_key(&start, |(k, _)| *k) {
                Ok(at) => at,
                Err(at) => {
                    self.reserve_one();
                    self.entries.insert(at, (start, make()));
                    at
                }
            },
        };
        &mut self.entries[at].1
    }

    /// The bucket starting at `start`, empty if there was none.
    pub(crate) fn slot(&mut self, start: i64) -> &mut T
    where
        T: Default,
    {
        self.slot_with(start, T::default)
    }

    fn push(&mut self, start: i64, value: T) -> usize {
        self.reserve_one();
        self.entries.push((start, value));
        self.entries.len() - 1
    }

    /// The first allocation holds one entry: many series never get a second.
    fn reserve_one(&mut self) {
        if self.entries.capacity() == 0 {
            self.entries.reserve_exact(1);
        }
    }

    /// Buckets whose start lies in `range`, oldest first.
    pub(crate) fn range(
        &self,
        range: impl RangeBounds<i64>,
    ) -> impl DoubleEndedIterator<Item = (&i64, &T)> + ExactSizeIterator {
        let from = match range.start_bound() {
            Bound::Included(s) => self.entries.partition_point(|(k, _)| k < s),
            Bound::Excluded(s) => self.entries.partition_point(|(k, _)| k <= s),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(e) => self.entries.partition_point(|(k, _)| k <= e),
            Bound::Excluded(e) => self.entries.partition_point(|(k, _)| k < e),
            Bound::Unbounded => self.entries.len(),
        };
        self.entries[from..to.max(from)].iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (&i64, &T)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn values(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    pub(crate) fn values_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = &mut T> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    pub(crate) fn first_key_value(&self) -> Option<(&i64, &T)> {
        self.entries.first().map(|(k, v)| (k, v))
    }

    pub(crate) fn last_key_value(&self) -> Option<(&i64, &T)> {
        self.entries.last().map(|(k, v)| (k, v))
    }

    /// Forgets every bucket that starts before `floor`, and the room they took.
    pub(crate) fn drop_before(&mut self, floor: i64) {
        let keep_from = self.entries.partition_point(|(k, _)| *k < floor);
        if keep_from == 0 {
            return;
        }
        self.entries.drain(..keep_from);
        if self.entries.capacity() > 2 * self.entries.len() {
            self.entries.shrink_to_fit();
        }
    }

    /// Bytes held beyond the series itself, for the state estimate.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(i64, T)>()
    }
}

impl<T> FromIterator<(i64, T)> for Series<T> {
    /// Later entries for the same start replace earlier ones, as inserting into a map would.
    fn from_iter<I: IntoIterator<Item = (i64, T)>>(iter: I) -> Self {
        let mut entries: Vec<(i64, T)> = iter.into_iter().collect();
        entries.reverse();
        entries.sort_by_key(|(k, _)| *k);
        entries.dedup_by_key(|(k, _)| *k);
        Series { entries }
    }
}

/// Written as a map from bucket start to bucket, the same bytes a `BTreeMap` would produce.
impl<T: Serialize> Serialize for Series<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Series<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeriesVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for SeriesVisitor<T> {
            type Value = Series<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from bucket start to bucket")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(4096));
                while let Some(entry) = access.next_entry::<i64, T>()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }

        deserializer.deserialize_map(SeriesVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The same writes, evictions and range reads as a `BTreeMap` give the same answers.
        #[test]
        fn behaves_like_an_ordered_map(
            writes in proptest::collection::vec((-50_i64..50, 1_u32..5), 0..200),
            floor in -60_i64..60,
            (start, end) in (-60_i64..60, -60_i64..60),
        ) {
            let mut series = Series::<u32>::new();
            let mut map = BTreeMap::<i64, u32>::new();
            for (key, add) in &writes {
                *series.slot(*key) += add;
                *map.entry(*key).or_default() += add;
            }
            let ranged: Vec<_> = series.range(start..end).map(|(k, v)| (*k, *v)).collect();
            let expected: Vec<_> = if start <= end {
                map.range(start..end).map(|(k, v)| (*k, *v)).collect()
            } else {
                Vec::new()
            };
            prop_assert_eq!(ranged, expected);
            let inclusive: Vec<_> = series.range(start..=end).map(|(k, _)| *k).collect();
            prop_assert!(inclusive.iter().all(|k| (start..=end).contains(k)));
            series.drop_before(floor);
            let map = map.split_off(&floor);
            let all: Vec<_> = series.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(all, map.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            let bytes = bincode::serialize(&series).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&bytes, &bincode::serialize(&map).map_err(|e| TestCaseError::fail(e.to_string()))?);
            let back: Series<u32> = bincode::deserialize(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(back == series);
        }
    }
}
