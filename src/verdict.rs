//! PASS/WARN/FAIL and the cache status, from statistics and thresholds.

use serde::Serialize;

use crate::metrics::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS ✓",
            Status::Warn => "WARN ⚠",
            Status::Fail => "FAIL ✗",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CacheStatus {
    Excellent,
    Good,
    Poor,
}

impl CacheStatus {
    pub fn label(self) -> &'static str {
        match self {
            CacheStatus::Excellent => "EXCELLENT ✓",
            CacheStatus::Good => "GOOD ✓",
            CacheStatus::Poor => "POOR ✗",
        }
    }
}

/// The thresholds a verdict is judged against.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Thresholds {
    pub ttft_p95_ms: f64,
    pub speedup: f64,
    pub max_error_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub status: Status,
    pub cache_status: CacheStatus,
    /// One line per rule that decided the status, for people.
    pub reasons: Vec<String>,
}

/// Judge a run.
///
/// status: PASS when TTFT P95 < threshold, WARN when below twice that, FAIL otherwise,
/// and FAIL when no request succeeded or the error rate exceeds the maximum.
/// cache: EXCELLENT above 1.5 × the speedup threshold, GOOD above it, POOR otherwise or
/// when there is no speedup to judge.
pub fn judge(stats: &Stats, t: &Thresholds) -> Verdict {
    let mut reasons = Vec::new();
    let status = match stats.ttft.map(|s| s.p95_ms) {
        _ if stats.succeeded_requests == 0 => {
            reasons.push("no request succeeded".to_string());
            Status::Fail
        }
        None => {
            reasons.push("no request produced a first token".to_string());
            Status::Fail
        }
        Some(p95) => {
            let by_latency = if p95 < t.ttft_p95_ms {
                reasons.push(format!("TTFT P95 {p95:.2} ms < {:.2} ms", t.ttft_p95_ms));
                Status::Pass
            } else if p95 < 2.0 * t.ttft_p95_ms {
                reasons.push(format!(
                    "TTFT P95 {p95:.2} ms ≥ {:.2} ms but < {:.2} ms",
                    t.ttft_p95_ms,
                    2.0 * t.ttft_p95_ms
                ));
                Status::Warn
            } else {
                reasons.push(format!(
                    "TTFT P95 {p95:.2} ms ≥ {:.2} ms",
                    2.0 * t.ttft_p95_ms
                ));
                Status::Fail
            };
            if stats.error_rate > t.max_error_rate {
                reasons.push(format!(
                    "error rate {:.2}% > {:.2}%",
                    stats.error_rate * 100.0,
                    t.max_error_rate * 100.0
                ));
                Status::Fail
            } else {
                by_latency
            }
        }
    };
    let cache_status = match stats.speedup_ratio {
        Some(s) if s > 1.5 * t.speedup => CacheStatus::Excellent,
        Some(s) if s > t.speedup => CacheStatus::Good,
        _ => CacheStatus::Poor,
    };
    Verdict {
        status,
        cache_status,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Aggregator, RequestRecord};

    const T: Thresholds = Thresholds {
        ttft_p95_ms: 500.0,
        speedup: 2.0,
        max_error_rate: 0.05,
    };

    fn stats_with(p95_ms: f64, speedup: Option<f64>, error_rate: f64) -> Stats {
        let mut a = Aggregator::default();
        a.add(&mut RequestRecord {
            turn: 1,
            measured: crate::metrics::Measured {
                ttft_us: Some(1000),
                e2e_us: Some(2000),
                ..Default::default()
            },
            ..Default::default()
        });
        let mut s = a.stats(1.0);
        let mut ttft = s.ttft.unwrap();
        ttft.p95_ms = p95_ms;
        s.ttft = Some(ttft);
        s.speedup_ratio = speedup;
        s.error_rate = error_rate;
        s
    }

    #[test]
    fn status_boundaries() {
        assert_eq!(
            judge(&stats_with(499.99, None, 0.0), &T).status,
            Status::Pass
        );
        assert_eq!(
            judge(&stats_with(500.0, None, 0.0), &T).status,
            Status::Warn
        );
        assert_eq!(
            judge(&stats_with(999.99, None, 0.0), &T).status,
            Status::Warn
        );
        assert_eq!(
            judge(&stats_with(1000.0, None, 0.0), &T).status,
            Status::Fail
        );
    }

    #[test]
    fn error_rate_above_the_maximum_fails_a_fast_run() {
        assert_eq!(
            judge(&stats_with(10.0, None, 0.05), &T).status,
            Status::Pass
        );
        let v = judge(&stats_with(10.0, None, 0.0501), &T);
        assert_eq!(v.status, Status::Fail);
        assert!(v.reasons.iter().any(|r| r.contains("error rate")));
    }

    #[test]
    fn no_success_fails() {
        let mut s = stats_with(10.0, Some(5.0), 1.0);
        s.succeeded_requests = 0;
        assert_eq!(judge(&s, &T).status, Status::Fail);
    }

    #[test]
    fn cache_status_boundaries() {
        let cache = |s| judge(&stats_with(10.0, s, 0.0), &T).cache_status;
        assert_eq!(cache(Some(3.01)), CacheStatus::Excellent);
        assert_eq!(cache(Some(3.0)), CacheStatus::Good);
        assert_eq!(cache(Some(2.01)), CacheStatus::Good);
        assert_eq!(cache(Some(2.0)), CacheStatus::Poor);
        assert_eq!(cache(None), CacheStatus::Poor);
    }
}
