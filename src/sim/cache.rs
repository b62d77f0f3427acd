//! A prefix cache of fixed-size blocks, each keyed by a hash chained over every block
//! before it (as vLLM's automatic prefix caching keys its KV blocks), evicted LRU.

use std::hash::{BuildHasher, Hasher};

use lru::LruCache;

/// Bytes per block: 16 tokens of ~4 characters.
pub const BLOCK_BYTES: usize = 64;

pub struct PrefixCache {
    blocks: LruCache<u64, (), Prehashed>,
    capacity: usize,
    chain: foldhash::fast::FixedState,
}

/// The keys are hashes already: hashing them again was a tenth of the simulator's CPU
/// together with SipHash over every 64-byte block, at a thousand streams.
#[derive(Clone, Copy, Default)]
struct Prehashed;

impl BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys reach here; fold anything else rather than lose it.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl PrefixCache {
    /// Unbounded underneath and trimmed by hand: a bounded `LruCache` allocates its
    /// whole capacity up front, which a large `--cache-capacity-tokens` cannot afford.
    pub fn new(capacity_blocks: usize) -> PrefixCache {
        PrefixCache {
            blocks: LruCache::unbounded_with_hasher(Prehashed),
            capacity: capacity_blocks.max(1),
            // Fixed: a block's key must not depend on the process (tests compare runs).
            chain: foldhash::fast::FixedState::with_seed(0x7475_726e_6265_6e63),
        }
    }

    /// How many leading full blocks of `text` were cached; then cache all of them.
    pub fn lookup_insert(&mut self, text: &[u8]) -> usize {
        let mut prev = 0u64;
        let mut hits = 0;
        let mut missed = false;
        for block in text.chunks_exact(BLOCK_BYTES) {
            prev = self.chain.hash_one((prev, block));
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
