//! The capacity search: doubling from a start until a level fails (or the limit
//! passes), then bisection between the largest PASS and the smallest FAIL until they
//! are one user apart. Each probe is a full run; the search assumes that more users
//! never do better, so one FAIL bounds every level above it.

use serde::Serialize;

/// Where the search stands; [`Search::next`] names the next probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Search {
    pub start: usize,
    pub limit: usize,
    /// The largest level that passed (0: none yet).
    pub largest_pass: usize,
    /// The smallest level that failed.
    pub smallest_fail: Option<usize>,
    /// Levels probed, in order.
    pub probed: Vec<usize>,
}

impl Search {
    pub fn new(start: usize, limit: usize) -> Search {
        Search {
            start: start.clamp(1, limit.max(1)),
            limit: limit.max(1),
            largest_pass: 0,
            smallest_fail: None,
            probed: Vec::new(),
        }
    }

    /// The next level to probe; `None` when the search is over.
    pub fn next(&self) -> Option<usize> {
        match self.smallest_fail {
            // Doubling: the start, then twice the last PASS, capped at the limit.
            None if self.probed.is_empty() => Some(self.start),
            None if self.largest_pass >= self.limit => None,
            None => Some((self.largest_pass * 2).min(self.limit)),
            // Bisection, down to one user apart.
            Some(fail) if fail - self.largest_pass <= 1 => None,
            Some(fail) => Some(self.largest_pass + (fail - self.largest_pass) / 2),
        }
    }

    pub fn record(&mut self, users: usize, passed: bool) {
        self.probed.push(users);
        if passed {
            self.largest_pass = self.largest_pass.max(users);
        } else {
            self.smallest_fail = Some(self.smallest_fail.map_or(users, |f| f.min(users)));
        }
    }

    /// The answer: the largest number of users that passed (0 when none did).
    pub fn max_users(&self) -> usize {
        self.largest_pass
    }

    /// Whether every level up to the limit passed: the capacity is at least the limit.
    pub fn limit_reached(&self) -> bool {
        self.smallest_fail.is_none() && self.largest_pass >= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run the search against a server that passes up to `capacity` users.
    fn search(start: usize, limit: usize, capacity: usize) -> Search {
        let mut s = Search::new(start, limit);
        while let Some(u) = s.next() {
            assert!(!s.probed.contains(&u), "{u} probed twice: {:?}", s.probed);
            assert!((1..=limit).contains(&u));
            s.record(u, u <= capacity);
            assert!(s.probed.len() <= 40, "the search ends");
        }
        s
    }

    #[test]
    fn doubling_then_bisection_finds_the_exact_capacity_with_its_bracket() {
        for capacity in [0, 1, 2, 3, 5, 16, 17, 37, 63, 64, 99, 100] {
            let s = search(1, 100, capacity);
            assert_eq!(s.max_users(), capacity.min(100), "{:?}", s.probed);
            if capacity < 100 {
                assert_eq!(s.smallest_fail, Some(capacity + 1));
            } else {
                assert!(s.limit_reached() && s.smallest_fail.is_none());
            }
        }
        let s = search(1, 100, 37);
        assert_eq!(s.probed, vec![1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]);
    }

    #[test]
    fn a_start_that_fails_searches_below_it() {
        let s = search(32, 1000, 5);
        assert_eq!(s.max_users(), 5);
        assert_eq!(s.smallest_fail, Some(6));
        assert_eq!(s.probed[0], 32);
        assert_eq!(search(8, 1000, 0).max_users(), 0);
        // A start above the limit starts at the limit.
        assert_eq!(search(500, 20, 100).probed, vec![20]);
    }
}
