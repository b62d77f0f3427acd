//! Reuse efficiency: of the prefix a turn could have reused (the previous turn's prompt
//! and reply, as usage counted them), the share the server reported cached. 100% when it
//! reused all it could; lower when it evicted blocks or a router sent the turn to a pod
//! that never saw the conversation. Kept per turn number in whole percent (rounded), so shards
//! merge exactly.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Per turn number (pooled as the run's other per-turn tallies): how many requests
/// reached each whole percent of efficiency; and the token sums behind the
/// token-weighted share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReuseTally {
    pub by_turn: BTreeMap<u32, BTreeMap<u8, u64>>,
    pub reusable_tokens: u64,
    pub reused_tokens: u64,
}

impl ReuseTally {
    /// One successful request: the tokens it could reuse and the cached tokens usage
    /// reported. Nothing is recorded without both.
    pub fn add(&mut self, turn_key: u32, reusable: Option<u64>, cached: Option<u64>) {
        let (Some(reusable), Some(cached)) = (reusable, cached) else {
            return;
        };
        if reusable == 0 {
            return;
        }
        let reused = cached.min(reusable);
        // Rounded: a prefix cached but for the last partial block (vLLM caches whole
        // blocks of 16 tokens) reads 100% on any real prompt.
        let percent = ((reused * 100 + reusable / 2) / reusable) as u8;
        *self
            .by_turn
            .entry(turn_key)
            .or_default()
            .entry(percent)
            .or_default() += 1;
        self.reusable_tokens = self.reusable_tokens.saturating_add(reusable);
        self.reused_tokens = self.reused_tokens.saturating_add(reused);
    }

    pub fn merge(&mut self, o: &ReuseTally) {
        for (turn, bins) in &o.by_turn {
            let mine = self.by_turn.entry(*turn).or_default();
            for (p, n) in bins {
                *mine.entry(*p).or_default() += n;
            }
        }
        self.reusable_tokens = self.reusable_tokens.saturating_add(o.reusable_tokens);
        self.reused_tokens = self.reused_tokens.saturating_add(o.reused_tokens);
    }

    pub fn is_empty(&self) -> bool {
        self.by_turn.is_empty()
    }

    /// The median percent of each turn.
    pub fn p50_by_turn(&self) -> BTreeMap<u32, f64> {
        self.by_turn
            .iter()
            .filter_map(|(t, bins)| Some((*t, median(bins.iter())?)))
            .collect()
    }

    /// The median percent over every turn.
    pub fn p50(&self) -> Option<f64> {
        let mut all: BTreeMap<u8, u64> = BTreeMap::new();
        for bins in self.by_turn.values() {
            for (p, n) in bins {
                *all.entry(*p).or_default() += n;
            }
        }
        median(all.iter())
    }

    /// Reused ÷ reusable tokens over the run, in percent.
    pub fn weighted_percent(&self) -> Option<f64> {
        (self.reusable_tokens > 0)
            .then(|| 100.0 * self.reused_tokens as f64 / self.reusable_tokens as f64)
    }

    pub fn samples(&self) -> u64 {
        self.by_turn.values().flat_map(|b| b.values()).sum()
    }
}

/// The lower median of counted whole percents.
fn median<'a>(bins: impl Iterator<Item = (&'a u8, &'a u64)> + Clone) -> Option<f64> {
    let total: u64 = bins.clone().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let rank = total.div_ceil(2);
    let mut seen = 0;
    for (p, n) in bins {
        seen += n;
        if seen >= rank {
            return Some(f64::from(*p));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_reuse_is_100_and_cached_beyond_the_reusable_part_does_not_count() {
        let mut t = ReuseTally::default();
        t.add(2, Some(1000), Some(1000));
        t.add(2, Some(1000), Some(1400));
        t.add(2, Some(1000), Some(0));
        t.add(3, Some(2000), Some(1980));
        t.add(3, None, Some(5));
        t.add(3, Some(10), None);
        assert_eq!(t.samples(), 4);
        assert_eq!(t.p50_by_turn()[&2], 100.0);
        assert_eq!(t.p50_by_turn()[&3], 99.0);
        // The lower median of 0, 99, 100, 100.
        assert_eq!(t.p50(), Some(99.0));
        assert_eq!(t.weighted_percent(), Some(100.0 * 3980.0 / 5000.0));
    }

    #[test]
    fn merging_is_adding() {
        let (mut a, mut b, mut both) = Default::default();
        for (i, (r, c)) in [(100, 50), (200, 200), (300, 10), (400, 399)]
            .iter()
            .enumerate()
        {
            let t: &mut ReuseTally = if i % 2 == 0 { &mut a } else { &mut b };
            t.add(2 + i as u32 % 2, Some(*r), Some(*c));
            ReuseTally::add(&mut both, 2 + i as u32 % 2, Some(*r), Some(*c));
        }
        a.merge(&b);
        assert_eq!(a, both);
    }
}
