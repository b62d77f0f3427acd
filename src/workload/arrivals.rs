//! Open-loop arrivals: when each conversation starts, drawn before the run from the
//! seed, so a slow server cannot delay the offered load (no coordinated omission).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mixed into the plan's seed, so the arrivals draw from a generator of their own and
/// the rest of the plan (documents, questions, think times) stays what it is.
const STREAM: u64 = 0x6172_7269_7661_6c73; // "arrivals"

/// Arrival times in seconds from the start of the measured phase: a Poisson process of
/// `rate_per_s` (exponential gaps), every arrival before `duration_s`.
pub fn poisson(rate_per_s: f64, duration_s: f64, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed ^ STREAM);
    let mut out = Vec::with_capacity((rate_per_s * duration_s * 1.1) as usize + 8);
    let mut t = 0.0;
    loop {
        // 1 − u lies in (0, 1]: its logarithm is finite.
        let u: f64 = rng.random();
        t += -(1.0 - u).ln() / rate_per_s;
        if t >= duration_s {
            return out;
        }
        out.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_seeded_ordered_inside_the_window_and_at_the_rate() {
        let a = poisson(20.0, 50.0, 42);
        assert_eq!(a, poisson(20.0, 50.0, 42));
        assert_ne!(a, poisson(20.0, 50.0, 43));
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(a.iter().all(|t| (0.0..50.0).contains(t)));
        // 1000 expected; a Poisson count's standard deviation is about 32.
        assert!((850..1150).contains(&a.len()), "{}", a.len());
        // Exponential gaps: as many below the mean gap as 1 − 1/e of them.
        let gaps: Vec<f64> = a.windows(2).map(|w| w[1] - w[0]).collect();
        let short = gaps.iter().filter(|g| **g < 1.0 / 20.0).count() as f64;
        let share = short / gaps.len() as f64;
        assert!((0.58..0.68).contains(&share), "{share}");
    }
}
