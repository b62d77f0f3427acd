//! The settings of load levels: `users` (one level for `run`, a list for `sweep`, the
//! start for `capacity`), the capacity search's limit, and the open loop's arrivals.

use super::Layers;
use crate::error::ConfigError;

/// The most users one level may have (as many as `parallel` allows).
pub const MAX_LEVEL: usize = 100_000;
/// The most levels one sweep may run.
pub const MAX_LEVELS: usize = 64;
/// Open loop without `duration`: arrivals for this long.
pub const DEFAULT_DURATION_S: f64 = 60.0;

/// `users` as given: the levels, ascending, each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Users {
    pub levels: Vec<usize>,
    /// How the user wrote it (`--users="1,4"`), for messages of the commands that
    /// accept only one level.
    pub written: String,
}

impl Users {
    /// The one level, or why a list cannot be used by `command`.
    pub fn single(&self, command: &str) -> Result<usize, ConfigError> {
        match self.levels.as_slice() {
            [one] => Ok(*one),
            _ => Err(ConfigError::new(format!(
                "{}: expected one number of users for {command} (a list of levels is for turnbench sweep)",
                self.written
            ))),
        }
    }
}

/// Sweep and capacity settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LevelSettings {
    pub users: Option<Users>,
    pub max_users: Option<usize>,
    pub require_cache: bool,
}

/// Open loop: conversations arrive at `rate_per_s` (Poisson) for `duration_s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    pub rate_per_s: f64,
    pub duration_s: f64,
}

/// `1,4,16,64`, `1..64x2` (a geometric range, each level the previous × the factor
/// rounded up), or both mixed: the levels ascending, each once. `Err`: what was expected.
pub fn parse_levels(text: &str) -> Result<Vec<usize>, &'static str> {
    const EXPECTED: &str =
        "a number of users, a list such as 1,4,16,64, or a geometric range such as 1..64x2";
    let level = |s: &str| -> Result<usize, &'static str> {
        match s.trim().parse::<usize>() {
            Ok(0) => Err("levels of at least 1 user"),
            Ok(v) if v <= MAX_LEVEL => Ok(v),
            Ok(_) => Err("levels of at most 100000 users"),
            Err(_) => Err(EXPECTED),
        }
    };
    let mut out = Vec::new();
    if text.trim().is_empty() {
        return Err(EXPECTED);
    }
    for item in text.split(',') {
        let item = item.trim();
        match item.split_once("..") {
            None => out.push(level(item)?),
            Some((from, rest)) => {
                let (to, factor) = match rest.split_once(['x', 'X', '*']) {
                    Some((to, f)) => (to, f.trim().parse::<f64>().map_err(|_| EXPECTED)?),
                    None => (rest, 2.0),
                };
                let (from, to) = (level(from)?, level(to)?);
                if from > to {
                    return Err("a range from a lower to a higher level, such as 1..64x2");
                }
                if !(factor.is_finite() && factor > 1.0) {
                    return Err("a range factor above 1, such as 1..64x2");
                }
                let mut v = from;
                while v <= to {
                    out.push(v);
                    // At least one more user per step, so a factor near 1 still ends.
                    v = ((v as f64 * factor).ceil() as usize).max(v + 1);
                }
            }
        }
        if out.len() > MAX_LEVELS * 4 {
            break;
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.len() > MAX_LEVELS {
        return Err("at most 64 levels");
    }
    Ok(out)
}

/// Read and check the level and arrival settings.
pub(super) fn validate(l: &Layers<'_>) -> Result<(LevelSettings, Option<Arrival>), ConfigError> {
    let users = match l.text("users")? {
        None => None,
        Some(text) => {
            let levels = parse_levels(&text).map_err(|expected| l.bad("users", expected))?;
            Some(Users {
                levels,
                written: format!("{}={:?}", l.name("users"), l.shown("users")),
            })
        }
    };
    let max_users = match l.uint("max_users")? {
        None => None,
        Some(v) if (1..=MAX_LEVEL as u64).contains(&v) => Some(v as usize),
        Some(_) => return Err(l.bad("max_users", "a whole number from 1 to 100000")),
    };
    let levels = LevelSettings {
        users,
        max_users,
        require_cache: l.bool("require_cache")?,
    };

    let rate = l.float_opt("arrival_rate")?;
    let duration = l.float_opt("duration")?;
    let arrival = match (rate, duration) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(ConfigError::new(format!(
                "{}={:?}: applies to the open loop only: give {} too",
                l.name("duration"),
                l.shown("duration"),
                super::Origin::Flag.describe("arrival_rate")
            )))
        }
        (Some(r), d) => {
            if !(r.is_finite() && r > 0.0 && r <= 100_000.0) {
                return Err(l.bad(
                    "arrival_rate",
                    "a number of conversations per second above 0, at most 100000",
                ));
            }
            if let Some(u) = &levels.users {
                return Err(ConfigError::new(format!(
                    "{}={:?} and {} cannot go together: users are a closed loop (each waits for its answer, then thinks), arrivals an open one",
                    l.name("arrival_rate"),
                    l.shown("arrival_rate"),
                    u.written
                )));
            }
            let d = d.unwrap_or(DEFAULT_DURATION_S);
            if !(d.is_finite() && d > 0.0 && d <= 86_400.0) {
                return Err(l.bad("duration", "a number of seconds above 0, at most 86400"));
            }
            let expected = r * d;
            if expected < 1.0 {
                return Err(ConfigError::new(format!(
                    "{}={:?} for {d} s expects {expected:.2} conversations: expected at least 1 (raise the rate or the duration)",
                    l.name("arrival_rate"),
                    l.shown("arrival_rate"),
                )));
            }
            if expected > 1_000_000.0 {
                return Err(ConfigError::new(format!(
                    "{}={:?} for {d} s expects {expected:.0} conversations: expected at most 1000000",
                    l.name("arrival_rate"),
                    l.shown("arrival_rate"),
                )));
            }
            Some(Arrival {
                rate_per_s: r,
                duration_s: d,
            })
        }
    };
    Ok((levels, arrival))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_geometric_ranges_give_ascending_distinct_levels() {
        assert_eq!(parse_levels("1,4,16,64"), Ok(vec![1, 4, 16, 64]));
        assert_eq!(parse_levels("64, 4,4,1"), Ok(vec![1, 4, 64]));
        assert_eq!(parse_levels("1..64x2"), Ok(vec![1, 2, 4, 8, 16, 32, 64]));
        assert_eq!(parse_levels("1..64"), parse_levels("1..64x2"));
        assert_eq!(parse_levels("1..100x3"), Ok(vec![1, 3, 9, 27, 81]));
        assert_eq!(parse_levels("2..10x1.5"), Ok(vec![2, 3, 5, 8]));
        assert_eq!(parse_levels("1..4x1.01"), Ok(vec![1, 2, 3, 4]));
        assert_eq!(parse_levels("1,50..100x2"), Ok(vec![1, 50, 100]));
    }

    #[test]
    fn empty_lists_zero_levels_and_bad_ranges_are_refused() {
        for bad in [
            "", " ", "1,,4", "0", "0,4", "0..8", "8..2", "1..8x1", "1..8x0.5", "a", "1..", "100001",
        ] {
            assert!(parse_levels(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_levels("0,4"), Err("levels of at least 1 user"));
        assert!(parse_levels("1..100000x1.01").is_err(), "too many levels");
    }
}
