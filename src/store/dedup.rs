//! The window of recently seen `(tenant_id, event_id)` keys.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Remembers the most recent `capacity` (tenant, event_id) keys, oldest forgotten first.
///
/// Producer retries resend a message within `delivery.timeout.ms` (2 minutes by default) and,
/// being the same keyed message, land on the same partition. A window of 1M keys per partition
/// covers more than 3 minutes at 5k events/s per partition, so retries are caught.
///
/// Keys are 64-bit xxh3 hashes. A new event is wrongly taken for a duplicate when its hash
/// equals one of the `n` keys in the window: probability n / 2^64, about 5.4e-14 per event
/// with a full 1M window, or one lost event in roughly 18 trillion.
///
/// Layout, about 13 bytes per key: the keys in arrival order in a ring, and an open-addressing
/// table (linear probing) of 32-bit slots, each a 24-bit ring position and 8 bits of the key
/// (so a probe reads the ring only when those bits match). The keys are hashes already, so
/// they pick their own table slot. A hash set beside a queue held each key twice and cost
/// about 25 bytes per key.
#[derive(Debug)]
pub struct Dedup {
    /// Keys in arrival order; once full, `next` is the oldest and is overwritten next.
    ring: Vec<u64>,
    next: usize,
    /// `tag << 24 | (ring position + 1)` of the key whose probe sequence passes here; 0 is an
    /// empty slot, so a fresh table is zeroed memory that the kernel maps lazily.
    table: Vec<u32>,
    capacity: usize,
}

/// Slots per key when the table is sized for the whole window: a load of 0.75.
const SLOTS_PER_KEY: f64 = 4.0 / 3.0;
const POSITION_BITS: u32 = 24;
const POSITION_MASK: u32 = (1 << POSITION_BITS) - 1;
/// The largest window a 24-bit ring position can address.
pub(crate) const MAX_DEDUP_CAPACITY: usize = POSITION_MASK as usize - 1;

impl Dedup {
    pub fn new(capacity: usize) -> Self {
        Dedup {
            ring: Vec::new(),
            next: 0,
            table: Vec::new(),
            capacity: capacity.clamp(1, MAX_DEDUP_CAPACITY),
        }
    }

    pub(crate) fn key(tenant_id: &str, event_id: &str) -> u64 {
        let (tenant, event) = (tenant_id.as_bytes(), event_id.as_bytes());
        let length = tenant.len() + 1 + event.len();
        // Joined on the stack and hashed in one call: setting up the streaming hasher costs more
        // than hashing a short key. Both give the same value for the same bytes, so the keys in
        // snapshots stay valid.
        let mut joined = [0u8; 256];
        if length <= joined.len() {
            joined[..tenant.len()].copy_from_slice(tenant);
            joined[tenant.len() + 1..length].copy_from_slice(event);
            return xxhash_rust::xxh3::xxh3_64(&joined[..length]);
        }
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(tenant_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(event_id.as_bytes());
        hasher.digest()
    }

    /// True when the key is new.
    pub fn insert(&mut self, key: u64) -> bool {
        if self.find(key).is_ok() {
            return false;
        }
        if self.ring.len() < self.capacity {
            self.grow_table_for(self.ring.len() + 1);
            // The whole window at once: the ring fills in order, so the kernel maps its pages
            // only as they are reached, and it is never copied to grow.
            self.ring.reserve_exact(self.capacity - self.ring.len());
            self.ring.push(key);
            self.place(key, self.ring.len() - 1);
            return true;
        }
        let oldest = self.ring[self.next];
        self.forget(oldest);
        self.ring[self.next] = key;
        self.place(key, self.next);
        self.next = (self.next + 1) % self.capacity;
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Hints that `key` will be inserted soon: its table slot is asked for ahead.
    pub(crate) fn prefetch(&self, key: u64) {
        if let Some(slot) = self.table.get(self.home(key)) {
            crate::prefetch::prefetch(slot);
        }
    }

    /// Heap bytes of the ring and the table. The ring counts the keys it holds: the rest of its
    /// reservation is not touched, so it costs no memory.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.ring.len() * std::mem::size_of::<u64>()
            + self.table.capacity() * std::mem::size_of::<u32>()
    }

    /// Applies a (possibly new) capacity, forgetting the oldest keys if it shrank.
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        // A restored window usually keeps its capacity; it was just built, so leave it.
        if capacity.clamp(1, MAX_DEDUP_CAPACITY) == self.capacity {
            return;
        }
        let keys: Vec<u64> = self.oldest_first().collect();
        *self = Dedup::from_keys(capacity, keys);
    }

    fn from_keys(capacity: usize, keys: Vec<u64>) -> Self {
        let mut dedup = Dedup::new(capacity);
        let kept = keys.len().min(dedup.capacity);
        dedup.grow_table_for(kept);
        let skip = keys.len() - kept;
        for key in keys.into_iter().skip(skip) {
            dedup.insert(key);
        }
        dedup
    }

    fn oldest_first(&self) -> impl Iterator<Item = u64> + '_ {
        let (newer, older) = self.ring.split_at(self.next.min(self.ring.len()));
        older.iter().chain(newer).copied()
    }

    /// The slot a key's probe sequence starts at: the key's high bits scaled to the table.
    fn home(&self, key: u64) -> usize {
        ((u128::from(key) * self.table.len() as u128) >> 64) as usize
    }

    /// `Ok(slot)` holding `key`, or `Err(slot)`: the empty slot that ends its probe sequence.
    fn find(&self, key: u64) -> Result<usize, usize> {
        if self.table.is_empty() {
            return Err(0);
        }
        let mut slot = self.home(key);
        let tag = tag_of(key);
        loop {
            match self.table[slot] {
                0 => return Err(slot),
                entry if entry >> POSITION_BITS == tag && self.key_at(entry) == key => {
                    return Ok(slot)
                }
                _ => slot = (slot + 1) % self.table.len(),
            }
        }
    }

    /// The ring's key for a non-empty table entry.
    fn key_at(&self, entry: u32) -> u64 {
        self.ring[(entry & POSITION_MASK) as usize - 1]
    }

    fn place(&mut self, key: u64, position: usize) {
        if let Err(slot) = self.find(key) {
            self.table[slot] = tag_of(key) << POSITION_BITS | (position as u32 + 1);
        }
    }

    /// Removes `key` from the table, shifting later entries of its run back so that every
    /// probe sequence stays unbroken (deletion for linear probing, without tombstones).
    fn forget(&mut self, key: u64) {
        let Ok(mut hole) = self.find(key) else {
            return;
        };
        let size = self.table.len();
        let mut slot = hole;
        loop {
            slot = (slot + 1) % size;
            let entry = self.table[slot];
            if entry == 0 {
                break;
            }
            let home = self.home(self.key_at(entry));
            // The entry may fill the hole if its home is not cyclically within (hole, slot].
            let stays = if hole <= slot {
                hole < home && home <= slot
            } else {
                hole < home || home <= slot
            };
            if !stays {
                self.table[hole] = entry;
                hole = slot;
            }
        }
        self.table[hole] = 0;
    }

    /// Keeps the load at or below 0.75 for `keys` keys, growing the table eightfold (up to its
    /// size for the whole window) and placing every key again when it must grow. Eightfold
    /// rather than doubling: placing again is a cache miss per key, and a filling window then
    /// places each key about 0.14 times more instead of once more.
    fn grow_table_for(&mut self, keys: usize) {
        let needed = (keys as f64 * SLOTS_PER_KEY).ceil() as usize;
        if self.table.len() >= needed {
            return;
        }
        let full = (self.capacity as f64 * SLOTS_PER_KEY).ceil() as usize + 1;
        let size = (self.table.len() * 8)
            .max(needed)
            .max(64)
            .min(full.max(needed));
        self.table = vec![0; size];
        for position in 0..self.ring.len() {
            self.place(self.ring[position], position);
        }
    }
}

/// The key's low 8 bits; its table slot comes from its high bits.
fn tag_of(key: u64) -> u32 {
    (key & 0xff) as u32
}

/// Stored as the keys in arrival order; the table is rebuilt on load.
impl Serialize for Dedup {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        struct Keys<'a>(&'a Dedup);
        impl Serialize for Keys<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.oldest_first())
            }
        }
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&self.capacity)?;
        tuple.serialize_element(&Keys(self))?;
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Dedup {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (capacity, keys): (usize, Vec<u64>) = Deserialize::deserialize(deserializer)?;
        Ok(Dedup::from_keys(capacity, keys))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};

    use proptest::prelude::*;

    use super::*;

    /// The key as the streaming hasher computes it, which snapshots hold.
    fn streamed_key(tenant_id: &str, event_id: &str) -> u64 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        hasher.update(tenant_id.as_bytes());
        hasher.update(&[0]);
        hasher.update(event_id.as_bytes());
        hasher.digest()
    }

    proptest! {
        #[test]
        fn keys_equal_the_streamed_hash_at_every_length(tenant in "[a-z]{1,64}", event in "[a-zé]{1,300}") {
            prop_assert_eq!(Dedup::key(&tenant, &event), streamed_key(&tenant, &event));
        }

        /// Against a set and a queue: the same answers for every insert, through wrap-arounds,
        /// deletions inside probe runs (few distinct high bits force collisions, and keys share
        /// tags), a capacity
        /// change and a serialisation round trip.
        #[test]
        fn answers_like_a_set_with_a_queue(
            keys in proptest::collection::vec((0_u64..64).prop_map(|k| k << 58 | (k & 3)), 0..400),
            capacity in 1_usize..40,
            shrunk in 1_usize..40,
        ) {
            let mut dedup = Dedup::new(capacity);
            let (mut seen, mut order) = (HashSet::new(), VecDeque::new());
            for (i, key) in keys.iter().enumerate() {
                let expected = seen.insert(*key);
                if expected {
                    order.push_back(*key);
                    if order.len() > capacity {
                        let oldest = order.pop_front().unwrap();
                        seen.remove(&oldest);
                    }
                }
                prop_assert_eq!(dedup.insert(*key), expected, "insert {} of {}", i, key);
                prop_assert_eq!(dedup.len(), order.len());
            }
            let bytes = bincode::serialize(&dedup).unwrap();
            let mut restored: Dedup = bincode::deserialize(&bytes).unwrap();
            restored.set_capacity(shrunk);
            while order.len() > shrunk {
                let oldest = order.pop_front().unwrap();
                seen.remove(&oldest);
            }
            prop_assert_eq!(restored.oldest_first().collect::<Vec<_>>(), order.iter().copied().collect::<Vec<_>>());
            for key in 0_u64..64 {
                let key = key << 58 | (key & 3);
                prop_assert_eq!(restored.find(key).is_ok(), seen.contains(&key));
            }
        }
    }
}
