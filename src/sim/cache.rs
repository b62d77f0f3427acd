//! A prefix cache of fixed-size blocks, each keyed by a hash chained over every block
//! before it (as vLLM's automatic prefix caching keys its KV blocks), evicted LRU.

use std::hash::{Hash, Hasher};

use lru::LruCache;

/// Bytes per block: 16 tokens of ~4 characters.
pub const BLOCK_BYTES: usize = 64;

pub struct PrefixCache {
    blocks: LruCache<u64, ()>,
    capacity: usize,
}

impl PrefixCache {
    /// Unbounded underneath and trimmed by hand: a bounded `LruCache` allocates its
    /// whole capacity up front, which a large `--cache-capacity-tokens` cannot afford.
    pub fn new(capacity_blocks: usize) -> PrefixCache {
        PrefixCache {
            blocks: LruCache::unbounded(),
            capacity: capacity_blocks.max(1),
        }
    }

    /// How many leading full blocks of `text` were cached; then cache all of them.
    pub fn lookup_insert(&mut self, text: &[u8]) -> usize {
        let mut prev = 0u64;
        let mut hits = 0;
        let mut missed = false;
        for block in text.chunks_exact(BLOCK_BYTES) {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            prev.hash(&mut h);
            block.hash(&mut h);
            prev = h.finish();
            if !missed && self.blocks.get(&prev).is_some() {
                hits += 1;
            } else {
                missed = true;
                self.blocks.put(prev, ());
                if self.blocks.len() > self.capacity {
                    self.blocks.pop_lru();
                }
            }
        }
        hits
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_prefix_hits_and_a_different_one_does_not() {
        let mut c = PrefixCache::new(1000);
        let a = "a".repeat(BLOCK_BYTES * 10);
        assert_eq!(c.lookup_insert(a.as_bytes()), 0);
        let longer = format!("{a}{}", "b".repeat(BLOCK_BYTES * 2));
        assert_eq!(c.lookup_insert(longer.as_bytes()), 10);
        // Same blocks at another position hash differently: chaining.
        let shifted = format!("x{a}");
        assert_eq!(c.lookup_insert(shifted.as_bytes()), 0);
    }

    #[test]
    fn capacity_evicts_least_recently_used_blocks() {
        let mut c = PrefixCache::new(10);
        let a = "a".repeat(BLOCK_BYTES * 10);
        let b = "b".repeat(BLOCK_BYTES * 10);
        c.lookup_insert(a.as_bytes());
        c.lookup_insert(b.as_bytes());
        assert_eq!(c.len(), 10);
        assert_eq!(c.lookup_insert(a.as_bytes()), 0, "a was evicted by b");
    }
}
