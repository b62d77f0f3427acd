//! PASS/WARN/FAIL, the cache status and the warnings: functions of a run's state and
//! its thresholds.

use serde::{Deserialize, Serialize};

use crate::state::stats::Stats;
use crate::state::RunState;

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
    /// A plain word for styles and machines.
    pub fn word(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
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
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub ttft_p95_ms: f64,
    pub speedup: f64,
    pub max_error_rate: f64,
}

/// A check that says a measurement cannot be believed as it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// Stable: scripts may match on it.
    pub id: &'static str,
    pub message: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub status: Status,
    pub cache_status: CacheStatus,
    /// One line per rule that decided the status, for people.
    pub reasons: Vec<String>,
    pub warnings: Vec<Warning>,
}

/// Every warning id, in the order they are listed.
pub const WARNING_IDS: &[&str] = &[
    "not_streamed",
    "buffered_stream",
    "no_output",
    "clamped",
    "parallel_exceeds_conversations",
    "usage_missing",
    "warm_first_turns",
    "client_lag",
    "missing_shards",
    "metrics_unavailable",
    "counter_reset",
    "metrics_other_traffic",
];

/// The client's timer lateness P99 above which the client, not the endpoint, was the
/// bottleneck.
pub const CLIENT_LAG_P99_MS: f64 = 5.0;

/// The checks of a run.
pub fn warnings(state: &RunState, stats: &Stats) -> Vec<Warning> {
    let c = &state.counts;
    let w = &state.meta.workload;
    let mut out = Vec::new();
    let mut warn = |id: &'static str, count: u64, message: String| {
        if count > 0 {
            out.push(Warning { id, message, count });
        }
    };
    warn(
        "not_streamed",
        c.not_streamed,
        format!(
            "{} answers to streaming requests were not event streams: they have no TTFT (E2E and tokens still count)",
            c.not_streamed
        ),
    );
    let streams = c.streamed.saturating_sub(c.no_output);
    warn(
        "buffered_stream",
        if streams > 0 && c.buffered * 2 > streams { c.buffered } else { 0 },
        format!(
            "{} of {streams} streams arrived all at once (tokens within 1 ms): something between client and server buffers, so TTFT is not what a user sees",
            c.buffered
        ),
    );
    warn(
        "no_output",
        c.no_output,
        format!(
            "{} successful requests carried no output token",
            c.no_output
        ),
    );
    warn(
        "clamped",
        c.clamped,
        format!(
            "{} values lay above the histograms' top and were recorded at it",
            c.clamped
        ),
    );
    let per_shard = w
        .conversations
        .div_ceil(state.meta.shard_count.max(1) as usize);
    warn(
        "parallel_exceeds_conversations",
        w.parallel.saturating_sub(per_shard) as u64,
        format!(
            "parallel {} exceeds the {per_shard} conversations run here: a conversation has one turn in flight, so at most {per_shard} requests are",
            w.parallel
        ),
    );
    let succeeded = c.requests - c.failed;
    let without_usage = succeeded.saturating_sub(c.usage_reported);
    warn(
        "usage_missing",
        without_usage,
        format!(
            "{without_usage} successful requests came without usage: token counts are approximate and cached tokens N/A"
        ),
    );
    warn(
        "warm_first_turns",
        c.warm_first_turns,
        format!(
            "{} first turns were mostly served from the cache (cached tokens above half the prompt): the speedup understates the cache; was the salt fixed, or --salt none?",
            c.warm_first_turns
        ),
    );
    if let Some(lag) = stats.client_lag.filter(|l| l.p99_ms > CLIENT_LAG_P99_MS) {
        warn(
            "client_lag",
            1,
            format!(
                "the client's own timer ran {:.2} ms late at P99 (above {CLIENT_LAG_P99_MS} ms): the load generator, not the endpoint, was the bottleneck",
                lag.p99_ms
            ),
        );
    }
    let missing = state
        .meta
        .shard_count
        .saturating_sub(state.meta.shards.len() as u32);
    warn(
        "missing_shards",
        u64::from(missing),
        format!(
            "{missing} of {} shards are missing: these figures cover only part of the plan",
            state.meta.shard_count
        ),
    );
    out.extend(crate::scrape::report::warnings(state, &stats.server));
    out
}

/// Judge a run.
///
/// status: PASS when TTFT P95 < threshold, WARN when below twice that, FAIL otherwise,
/// and FAIL when no request succeeded, when no request streamed, or when the error
/// rate exceeds the maximum.
/// cache: EXCELLENT above 1.5 × the speedup threshold, GOOD above it, POOR otherwise or
/// when there is no speedup to judge.
pub fn judge(state: &RunState, stats: &Stats) -> Verdict {
    let t = &state.meta.thresholds;
    let mut reasons = Vec::new();
    let status = match stats.ttft.map(|s| s.p95_ms) {
        _ if stats.succeeded_requests == 0 => {
            reasons.push("no request succeeded".to_string());
            Status::Fail
        }
        None if state.counts.streamed == 0 => {
            reasons.push("the endpoint does not stream: TTFT cannot be measured".to_string());
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
        warnings: warnings(state, stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Measured;
    use crate::state::{RequestRecord, RunMeta};

    fn state() -> RunState {
        let mut a = RunState::new(RunMeta::for_tests());
        a.add(&mut RequestRecord {
            turn: 1,
            measured: Measured {
                ttft_us: Some(1000),
                e2e_us: Some(2000),
                streamed: true,
                ..Default::default()
            },
            ..Default::default()
        });
        a
    }

    fn judge(s: &Stats, _t: &()) -> Verdict {
        super::judge(&state(), s)
    }
    const T: () = ();

    fn stats_with(p95_ms: f64, speedup: Option<f64>, error_rate: f64) -> Stats {
        let mut s = state().stats();
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

    #[test]
    fn client_lag_above_the_bound_and_clamped_values_are_warned_and_absent_otherwise() {
        let ids = |st: &RunState| -> Vec<&'static str> {
            super::warnings(st, &st.stats())
                .iter()
                .map(|w| w.id)
                .collect()
        };
        let mut st = state();
        for _ in 0..100 {
            st.histograms.client_lag.record(800);
        }
        assert!(!ids(&st).contains(&"client_lag"));
        for _ in 0..5 {
            st.histograms.client_lag.record(12_000);
        }
        assert!(ids(&st).contains(&"client_lag"));

        let mut st = state();
        st.add(&mut RequestRecord {
            turn: 2,
            measured: Measured {
                ttft_us: Some(1000),
                e2e_us: Some(crate::state::hist::HIGH_US + 1),
                streamed: true,
                ..Default::default()
            },
            ..Default::default()
        });
        assert!(!ids(&state()).contains(&"clamped"));
        assert_eq!(st.counts.clamped, 1);
        assert!(ids(&st).contains(&"clamped"));
    }
}
