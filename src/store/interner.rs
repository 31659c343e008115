//! String interning, so groups and samples store each distinct string once.

use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) type Sym = u32;

/// Maps strings to small ids so groups and samples store each distinct string once.
/// It only grows: strings of evicted groups stay, and are snapshotted, until the partition is
/// rebuilt from Kafka. Compaction is not done yet.
#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    ids: HashMap<Arc<str>, Sym>,
    strings: Vec<Arc<str>>,
}

impl Interner {
    fn from_strings(strings: Vec<Arc<str>>) -> Self {
        let ids = strings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), i as Sym))
            .collect();
        Interner { ids, strings }
    }

    pub(crate) fn intern(&mut self, text: &str) -> Sym {
        if let Some(id) = self.ids.get(text) {
            return *id;
        }
        let id = self.strings.len() as Sym;
        let shared: Arc<str> = Arc::from(text);
        self.strings.push(shared.clone());
        self.ids.insert(shared, id);
        id
    }

    pub(crate) fn get(&self, text: &str) -> Option<Sym> {
        self.ids.get(text).copied()
    }

    pub(crate) fn resolve(&self, id: Sym) -> &str {
        self.strings.get(id as usize).map_or("", |s| s)
    }

    pub(crate) fn strings(&self) -> impl Iterator<Item = &str> {
        self.strings.iter().map(|s| &**s)
    }

    pub(crate) fn len(&self) -> usize {
        self.strings.len()
    }
}

/// Only the strings are stored; the reverse map is rebuilt on load.
impl Serialize for Interner {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.strings.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Interner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Interner::from_strings(Vec::deserialize(deserializer)?))
    }
}
