//! The window of recently seen `(tenant_id, event_id)` keys.

use std::collections::VecDeque;

use rustc_hash::FxHashSet as HashSet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Remembers the most recent `capacity` (tenant, event_id) keys, oldest forgotten first.
///
/// Producer retries resend a message within `delivery.timeout.ms` (2 minutes by default) and,
/// being the same keyed message, land on the same partition. A window of 1M keys per partition
/// covers more than 3 minutes at 5k events/s per partition, so retries are caught.
///
/// Keys are 64-bit xxh3 hashes (16 bytes each with the set and the queue, instead of the
/// strings). A new event is wrongly taken for a duplicate when its hash equals one of the `n`
/// keys in the window: probability n / 2^64, about 5.4e-14 per event with a full 1M window, or
/// one lost event in roughly 18 trillion.
#[derive(Debug)]
pub struct Dedup {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        Dedup {
            seen: HashSet::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn key(tenant_id: &str, event_id: &str) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(tenant_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(event_id.as_bytes());
        hasher.digest()
    }

    /// True when the key is new.
    pub fn insert(&mut self, key: u64) -> bool {
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        true
    }

    /// Heap bytes of the set and the arrival queue.
    pub fn heap_bytes(&self) -> usize {
        self.seen.capacity() * (std::mem::size_of::<u64>() + 1)
            + self.order.capacity() * std::mem::size_of::<u64>()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Applies a (possibly new) capacity, forgetting the oldest keys if it shrank.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
    }
}

/// Stored as the keys in arrival order; the set is rebuilt on load.
impl Serialize for Dedup {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.capacity, &self.order).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Dedup {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (capacity, order): (usize, VecDeque<u64>) = Deserialize::deserialize(deserializer)?;
        let seen = order.iter().copied().collect();
        Ok(Dedup {
            seen,
            order,
            capacity,
        })
    }
}
