//! Every statistic a report prints: a function of [`RunState`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ErrorCount, Hist, RunState, TURN_POOL};

/// Summary of one distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(h: &Hist) -> Option<Summary> {
        let h = &h.0;
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Summary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            min_ms: ms(h.min()),
            max_ms: ms(h.max()),
        })
    }
}

/// Min, median and max of a small set of ratios.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub max: f64,
}

/// One turn number's figures (`label` is "31+" for the pooled later turns).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnStats {
    pub label: String,
    pub ttft: Option<Summary>,
    pub requests: u64,
    /// Mean bytes of prompt sent per request of this turn.
    pub mean_prompt_bytes: f64,
    /// Server-reported cached share of the prompt (usage with cached tokens only).
    pub cached_share: Option<f64>,
    pub mean_prompt_tokens: Option<f64>,
    pub mean_cached_tokens: Option<f64>,
}

/// Every statistic of a run, as printed and saved.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub total_time_s: f64,
    pub total_requests: u64,
    pub succeeded_requests: u64,
    pub failed_requests: u64,
    pub error_rate: f64,
    pub requests_per_second: f64,
    pub conversations_completed: u64,
    pub ttft: Option<Summary>,
    pub ttft_first_turn: Option<Summary>,
    pub ttft_later_turns: Option<Summary>,
    pub first_turn_mean_ms: Option<f64>,
    pub later_turns_mean_ms: Option<f64>,
    pub speedup_ratio: Option<f64>,
    pub speedup_ratio_of_medians: Option<f64>,
    pub per_conversation_speedup: Option<Spread>,
    pub ttfc: Option<Summary>,
    pub ttfb: Option<Summary>,
    pub connect: Option<Summary>,
    pub e2e: Option<Summary>,
    pub itl: Option<Summary>,
    pub tpot: Option<Summary>,
    pub client_lag: Option<Summary>,
    pub time_to_tool_call: Option<Summary>,
    pub ttft_after_tool: Option<Summary>,
    pub server_tool: Option<Summary>,
    /// Requests that ended in tool calls, and round trips (follow-ups answered).
    pub tool_calls: u64,
    pub tool_round_trips: u64,
    pub by_turn: BTreeMap<u32, TurnStats>,
    pub ttft_by_doc_kind: BTreeMap<String, Summary>,
    pub output_tokens: u64,
    pub output_tokens_approx: bool,
    pub output_tokens_per_second: f64,
    pub prompt_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub warm_first_turns: u64,
    pub errors: BTreeMap<String, ErrorCount>,
    /// The server's metrics, the reuse efficiency and the gateway-reported overhead.
    pub server: crate::scrape::stats::ServerStats,
}

impl RunState {
    pub fn stats(&self) -> Stats {
        let c = &self.counts;
        let h = &self.histograms;
        let wall_s = self.wall_s();
        let mean = |sum: u64, n: u64| (n > 0).then(|| sum as f64 / n as f64 / 1000.0);
        let first_mean_ms = mean(c.first_turn_ttft_sum_us, c.first_turns_timed);
        let later_mean_ms = mean(c.later_turn_ttft_sum_us, c.later_turns_timed);
        let ratio = |f: Option<f64>, l: Option<f64>| match (f, l) {
            (Some(f), Some(l)) if l > 0.0 => Some(f / l),
            _ => None,
        };
        let median = |h: &Hist| h.quantile_us(0.5).map(|v| v as f64);
        let mut per_conv: Vec<f64> = self
            .conversations
            .values()
            .filter_map(|t| {
                let first = t.first_ttft_us? as f64;
                let n = u64::from(t.later_timed);
                (n > 0 && t.later_ttft_sum_us > 0)
                    .then(|| first / (t.later_ttft_sum_us as f64 / n as f64))
            })
            .collect();
        per_conv.sort_by(f64::total_cmp);
        let per_conversation_speedup = (!per_conv.is_empty()).then(|| {
            let q = |p: f64| per_conv[((per_conv.len() - 1) as f64 * p).round() as usize];
            Spread {
                count: per_conv.len(),
                min: per_conv[0],
                p50: q(0.5),
                max: per_conv[per_conv.len() - 1],
            }
        });
        let by_turn = self
            .by_turn
            .iter()
            .map(|(k, t)| {
                let label = if *k == TURN_POOL {
                    format!("{TURN_POOL}+")
                } else {
                    k.to_string()
                };
                let per = |x: u64, n: u64| (n > 0).then(|| x as f64 / n as f64);
                (
                    *k,
                    TurnStats {
                        label,
                        ttft: Summary::of(&t.ttft),
                        requests: t.requests,
                        mean_prompt_bytes: per(t.prompt_bytes, t.requests).unwrap_or(0.0),
                        cached_share: (t.prompt_tokens > 0)
                            .then(|| t.cached_tokens as f64 / t.prompt_tokens as f64),
                        mean_prompt_tokens: per(t.prompt_tokens, t.usage_reported),
                        mean_cached_tokens: per(t.cached_tokens, t.usage_reported),
                    },
                )
            })
            .collect();
        let turns = self.meta.workload.turns as u32;
        let succeeded = c.requests - c.failed;
        let per_s = |n: u64| if wall_s > 0.0 { n as f64 / wall_s } else { 0.0 };
        Stats {
            total_time_s: wall_s,
            total_requests: c.requests,
            succeeded_requests: succeeded,
            failed_requests: c.failed,
            error_rate: if c.requests > 0 {
                c.failed as f64 / c.requests as f64
            } else {
                0.0
            },
            requests_per_second: per_s(c.requests),
            conversations_completed: self
                .conversations
                .values()
                .filter(|t| t.failed_turns == 0 && t.ok_turns >= turns)
                .count() as u64,
            ttft: Summary::of(&h.ttft),
            ttft_first_turn: Summary::of(&h.ttft_first_turn),
            ttft_later_turns: Summary::of(&h.ttft_later_turns),
            first_turn_mean_ms: first_mean_ms,
            later_turns_mean_ms: later_mean_ms,
            speedup_ratio: ratio(first_mean_ms, later_mean_ms),
            speedup_ratio_of_medians: ratio(
                median(&h.ttft_first_turn),
                median(&h.ttft_later_turns),
            ),
            per_conversation_speedup,
            ttfc: Summary::of(&h.ttfc),
            ttfb: Summary::of(&h.ttfb),
            connect: Summary::of(&h.connect),
            e2e: Summary::of(&h.e2e),
            itl: Summary::of(&h.itl),
            tpot: Summary::of(&h.tpot),
            client_lag: Summary::of(&h.client_lag),
            time_to_tool_call: Summary::of(&h.time_to_tool_call),
            ttft_after_tool: Summary::of(&h.ttft_after_tool),
            server_tool: Summary::of(&h.server_tool),
            tool_calls: c.tool_calls,
            tool_round_trips: c.tool_followups,
            by_turn,
            ttft_by_doc_kind: self
                .by_doc_kind
                .iter()
                .filter_map(|(k, h)| Some((k.label().to_string(), Summary::of(h)?)))
                .collect(),
            output_tokens: c.output_tokens,
            output_tokens_approx: c.output_tokens_approx > 0,
            output_tokens_per_second: per_s(c.output_tokens),
            prompt_tokens: (c.usage_reported > 0).then_some(c.prompt_tokens),
            cached_tokens: (c.cached_reported > 0).then_some(c.cached_tokens),
            warm_first_turns: c.warm_first_turns,
            errors: self
                .errors
                .iter()
                .map(|(k, v)| (k.label().to_string(), v.clone()))
                .collect(),
            server: crate::scrape::stats::server_stats(self),
        }
    }
}
