//! The keys seen while reducing one batch, with a value each, without an allocation per key:
//! keys (bytes) share one buffer and the table maps their hashes to chained entries. A key is
//! hashed once per lookup (foldhash with a per-map random seed, so crafted keys cannot force
//! collisions without knowing it; SipHash cost about 3 % of the connector's CPU here); the table
//! of hashes does not hash them again.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::ops::Range;

use foldhash::quality::RandomState;

/// A map from key bytes to `V` for the life of one batch.
pub struct KeyMap<V> {
    hasher: RandomState,
    /// Hash → the newest entry with that hash.
    heads: HashMap<u64, usize, BuildHasherDefault<Prehashed>>,
    /// (key in `text`, value, the next older entry with the same hash).
    entries: Vec<(Range<usize>, Option<V>, Option<usize>)>,
    text: Vec<u8>,
}

/// The table's keys are already hashes: they are used as they are.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashMap<u64, _>`; anything else is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl<V> Default for KeyMap<V> {
    fn default() -> Self {
        Self {
            hasher: RandomState::default(),
            heads: HashMap::default(),
            entries: Vec::new(),
            text: Vec::new(),
        }
    }
}

impl<V> KeyMap<V> {
    /// Room for `keys` keys without growing.
    pub fn with_capacity(keys: usize) -> Self {
        Self {
            heads: HashMap::with_capacity_and_hasher(keys, BuildHasherDefault::default()),
            entries: Vec::with_capacity(keys),
            ..Self::default()
        }
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
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

    /// The value of `key`: `None` for a key not seen before (which is added, so the caller can
    /// set it through the returned reference).
    pub fn slot(&mut self, key: &[u8]) -> &mut Option<V> {
        let hash = self.hasher.hash_one(key);
        let i = match self.find(hash, key) {
            Some(i) => i,
            None => {
                let start = self.text.len();
                self.text.extend_from_slice(key);
                let older = self.heads.insert(hash, self.entries.len());
                self.entries.push((start..self.text.len(), None, older));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
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
            let slot = map.slot(key.as_bytes());
            assert_eq!(slot.as_ref(), reference.get(&key));
            *slot = Some(i);
            reference.insert(key, i);
        }
        // Force every key onto one chain: lookups must still tell the texts apart.
        let mut chained: KeyMap<u32> = KeyMap::default();
        for (i, key) in ["a", "b", "", "ab"].iter().enumerate() {
            let start = chained.text.len();
            chained.text.extend_from_slice(key.as_bytes());
            let older = chained.heads.insert(7, chained.entries.len());
            chained
                .entries
                .push((start..chained.text.len(), Some(i as u32), older));
        }
        for (i, key) in ["a", "b", "", "ab"].iter().enumerate() {
            assert_eq!(chained.find(7, key.as_bytes()), Some(i));
        }
        assert_eq!(chained.find(7, b"ba"), None);
        for (key, value) in &reference {
            assert_eq!(map.slot(key.as_bytes()).as_ref(), Some(value));
        }
        assert_eq!(map.slot(b"never seen"), &None);
    }
}
