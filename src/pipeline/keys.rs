//! The keys seen while reducing one batch, with a value each, without an allocation per key:
//! key texts share one buffer and the table maps their hashes to chained entries.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;

/// A map from key text to `V` for the life of one batch.
pub struct KeyMap<V> {
    hasher: RandomState,
    /// Hash → the newest entry with that hash.
    heads: HashMap<u64, usize>,
    /// (key text in `text`, value, the next older entry with the same hash).
    entries: Vec<(Range<usize>, V, Option<usize>)>,
    text: String,
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            heads: HashMap::new(),
            entries: Vec::new(),
            text: String::new(),
        }
    }
}

impl<V> KeyMap<V> {
    /// Room for `keys` keys without growing.
    pub fn with_capacity(keys: usize) -> Self {
        Self {
            heads: HashMap::with_capacity(keys),
            entries: Vec::with_capacity(keys),
            ..Self::default()
        }
    }

    fn find(&self, hash: u64, key: &str) -> Option<usize> {
        let mut next = self.heads.get(&hash).copied();
        while let Some(i) = next {
            let (range, _, older) = &self.entries[i];
            if &self.text[range.clone()] == key {
                return Some(i);
            }
            next = *older;
        }
        None
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        let hash = self.hasher.hash_one(key);
        self.find(hash, key).map(|i| &self.entries[i].1)
    }

    /// Sets the value of `key`, adding the key if it is new.
    pub fn insert(&mut self, key: &str, value: V) {
        let hash = self.hasher.hash_one(key);
        if let Some(i) = self.find(hash, key) {
            self.entries[i].1 = value;
            return;
        }
        let start = self.text.len();
        self.text.push_str(key);
        let older = self.heads.insert(hash, self.entries.len());
        self.entries.push((start..self.text.len(), value, older));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_hash_map_including_on_hash_collisions() {
        let mut map = KeyMap::default();
        let mut reference = HashMap::new();
        for i in 0..5000u32 {
            let key = format!("k{}", i % 1700);
            assert_eq!(map.get(&key), reference.get(&key));
            map.insert(&key, i);
            reference.insert(key, i);
        }
        // Force every key onto one chain: lookups must still tell the texts apart.
        let mut chained: KeyMap<u32> = KeyMap::default();
        for (i, key) in ["a", "b", "", "ab"].iter().enumerate() {
            let start = chained.text.len();
            chained.text.push_str(key);
            let older = chained.heads.insert(7, chained.entries.len());
            chained
                .entries
                .push((start..chained.text.len(), i as u32, older));
        }
        for (i, key) in ["a", "b", "", "ab"].iter().enumerate() {
            assert_eq!(chained.find(7, key), Some(i));
        }
        assert_eq!(chained.find(7, "ba"), None);
        for (key, value) in &reference {
            assert_eq!(map.get(key), Some(value));
        }
    }
}
