//! The server figures of a run: functions of its state, as every statistic is.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Buckets, PodRun};
use crate::state::stats::Summary;
use crate::state::RunState;

/// A server-side latency from a histogram's deltas: the mean is exact (sum ÷ count),
/// the percentiles are estimated within buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ServerLatency {
    pub count: f64,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl ServerLatency {
    fn of(b: &Buckets) -> ServerLatency {
        let ms = |s: Option<f64>| s.map(|v| v * 1000.0);
        ServerLatency {
            count: b.count,
            mean_ms: ms(b.mean()),
            p50_ms: ms(b.quantile(0.5)),
            p95_ms: ms(b.quantile(0.95)),
            p99_ms: ms(b.quantile(0.99)),
        }
    }
}

/// One pod's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PodStats {
    pub url: String,
    pub model: Option<String>,
    pub model_note: Option<String>,
    pub scrapes: u32,
    pub failed_scrapes: u32,
    pub first_error: Option<String>,
    pub covers_run: bool,
    pub resets: u32,
    pub hit_rate_percent: Option<f64>,
    pub requests_finished: Option<f64>,
    pub kv_usage_max_percent: Option<f64>,
}

/// The figures of every pod with data, together.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricsStats {
    pub simulator: bool,
    pub pods: Vec<PodStats>,
    pub pods_with_data: usize,
    pub prefix_cache_queries: Option<f64>,
    pub prefix_cache_hits: Option<f64>,
    /// Δhits ÷ Δqueries, percent.
    pub hit_rate_percent: Option<f64>,
    /// The client-side share of prompt tokens that usage reported cached, percent.
    pub client_cached_percent: Option<f64>,
    /// Server hit rate minus client cached share, in percentage points.
    pub gap_points: Option<f64>,
    pub prompt_tokens: Option<f64>,
    pub generation_tokens: Option<f64>,
    pub preemptions: Option<f64>,
    /// Requests the pods finished during the run (the e2e histogram's count).
    pub requests_finished: Option<f64>,
    pub ttft: Option<ServerLatency>,
    pub queue: Option<ServerLatency>,
    pub prefill: Option<ServerLatency>,
    pub decode: Option<ServerLatency>,
    pub e2e: Option<ServerLatency>,
    pub client_ttft_mean_ms: Option<f64>,
    /// Client TTFT mean − server TTFT mean: network, gateway, client.
    pub overhead_ms: Option<f64>,
    /// Server TTFT mean − queue mean − prefill mean: tokenization, scheduling.
    pub other_server_ms: Option<f64>,
    pub kv_usage_mean_percent: Option<f64>,
    pub kv_usage_max_percent: Option<f64>,
    pub kv_capacity_tokens: Option<u64>,
    /// Over the scrape rounds, the pods' waiting (running) requests added up.
    pub waiting_max: Option<f64>,
    pub waiting_mean: Option<f64>,
    pub running_max: Option<f64>,
    pub resets: u32,
    pub scrapes: u32,
    pub failed_scrapes: u32,
    /// Every pod's scrapes before and after the measured phase succeeded.
    pub covers_run: bool,
}

/// What a run knows of the server's side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerStats {
    /// `None` without a metrics URL.
    pub metrics: Option<MetricsStats>,
    pub reuse_p50_percent: Option<f64>,
    pub reuse_weighted_percent: Option<f64>,
    pub reuse_by_turn_p50_percent: BTreeMap<u32, f64>,
    pub reuse_samples: u64,
    /// The gateway-reported overhead header's distribution.
    pub gateway_overhead: Option<Summary>,
}

fn pct(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| 100.0 * a / b)
}

pub fn server_stats(state: &RunState) -> ServerStats {
    let reuse = &state.reuse;
    ServerStats {
        metrics: state.server.as_ref().map(|s| metrics_stats(state, s)),
        reuse_p50_percent: reuse.p50(),
        reuse_weighted_percent: reuse.weighted_percent(),
        reuse_by_turn_p50_percent: reuse.p50_by_turn(),
        reuse_samples: reuse.samples(),
        gateway_overhead: Summary::of(&state.histograms.gateway_overhead),
    }
}

fn pod_stats(p: &PodRun) -> PodStats {
    let c = |k: &str| p.counters.get(k).copied();
    PodStats {
        url: p.url.clone(),
        model: p.model.clone(),
        model_note: p.model_note.clone(),
        scrapes: p.scrapes,
        failed_scrapes: p.failed_scrapes,
        first_error: p.first_error.clone(),
        covers_run: p.covers_run,
        resets: p.resets,
        hit_rate_percent: match (c("prefix_cache_hits"), c("prefix_cache_queries")) {
            (Some(h), Some(q)) if p.has_deltas() => pct(h, q),
            _ => None,
        },
        requests_finished: p
            .has_deltas()
            .then(|| p.histograms.get("e2e").map(|h| h.count))
            .flatten(),
        kv_usage_max_percent: p
            .series
            .iter()
            .filter_map(|g| g.kv_usage)
            .reduce(f64::max)
            .map(|v| v * 100.0),
    }
}

fn metrics_stats(state: &RunState, run: &super::ServerRun) -> MetricsStats {
    let with_data: Vec<&PodRun> = run.pods.values().filter(|p| p.has_deltas()).collect();
    let counter = |k: &str| -> Option<f64> {
        let vals: Vec<f64> = with_data
            .iter()
            .filter_map(|p| p.counters.get(k).copied())
            .collect();
        (!vals.is_empty()).then(|| vals.iter().sum())
    };
    let hist = |k: &str| -> Option<Buckets> {
        let mut acc: Option<Buckets> = None;
        for h in with_data.iter().filter_map(|p| p.histograms.get(k)) {
            acc.get_or_insert_with(Buckets::default).add(h);
        }
        acc
    };
    let lat = |k: &str| hist(k).map(|b| ServerLatency::of(&b));
    let queries = counter("prefix_cache_queries");
    let hits = counter("prefix_cache_hits");
    let hit_rate = match (hits, queries) {
        (Some(h), Some(q)) => pct(h, q),
        _ => None,
    };
    let c = &state.counts;
    let client_cached = (c.cached_reported > 0)
        .then(|| pct(c.cached_tokens as f64, c.prompt_tokens as f64))
        .flatten();
    let h = &state.histograms.ttft;
    let client_ttft = (!h.is_empty()).then(|| h.0.mean() / 1000.0);
    let (ttft, queue, prefill) = (lat("ttft"), lat("queue"), lat("prefill"));
    let server_ttft = ttft.and_then(|t| t.mean_ms);
    let other_server = match (
        server_ttft,
        queue.and_then(|q| q.mean_ms),
        prefill.and_then(|p| p.mean_ms),
    ) {
        (Some(t), Some(q), Some(p)) => Some(t - q - p),
        _ => None,
    };

    // Gauges: every point for KV usage; per scrape round, added up over pods, for
    // the requests waiting and running.
    let points = with_data.iter().flat_map(|p| p.series.iter());
    let kv: Vec<f64> = points.clone().filter_map(|g| g.kv_usage).collect();
    let mut by_round: BTreeMap<u32, (Option<f64>, Option<f64>)> = BTreeMap::new();
    for g in points {
        let e = by_round.entry(g.round).or_default();
        if let Some(w) = g.waiting {
            e.0 = Some(e.0.unwrap_or(0.0) + w);
        }
        if let Some(r) = g.running {
            e.1 = Some(e.1.unwrap_or(0.0) + r);
        }
    }
    let waiting: Vec<f64> = by_round.values().filter_map(|v| v.0).collect();
    let running: Vec<f64> = by_round.values().filter_map(|v| v.1).collect();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let max = |v: &[f64]| v.iter().copied().reduce(f64::max);
    let capacities: Vec<u64> = with_data
        .iter()
        .filter_map(|p| p.cache_config.map(|c| c.capacity_tokens()))
        .collect();

    MetricsStats {
        simulator: run.simulator,
        pods: run.pods.values().map(pod_stats).collect(),
        pods_with_data: with_data.len(),
        prefix_cache_queries: queries,
        prefix_cache_hits: hits,
        hit_rate_percent: hit_rate,
        client_cached_percent: client_cached,
        gap_points: match (hit_rate, client_cached) {
            (Some(s), Some(c)) => Some(s - c),
            _ => None,
        },
        prompt_tokens: counter("prompt_tokens"),
        generation_tokens: counter("generation_tokens"),
        preemptions: counter("preemptions"),
        requests_finished: hist("e2e").map(|b| b.count),
        ttft,
        queue,
        prefill,
        decode: lat("decode"),
        e2e: lat("e2e"),
        client_ttft_mean_ms: client_ttft,
        overhead_ms: match (client_ttft, server_ttft) {
            (Some(c), Some(s)) => Some(c - s),
            _ => None,
        },
        other_server_ms: other_server,
        kv_usage_mean_percent: mean(&kv).map(|v| v * 100.0),
        kv_usage_max_percent: max(&kv).map(|v| v * 100.0),
        kv_capacity_tokens: (!capacities.is_empty()).then(|| capacities.iter().sum()),
        waiting_max: max(&waiting),
        waiting_mean: mean(&waiting),
        running_max: max(&running),
        resets: run.pods.values().map(|p| p.resets).sum(),
        scrapes: run.pods.values().map(|p| p.scrapes).sum(),
        failed_scrapes: run.pods.values().map(|p| p.failed_scrapes).sum(),
        covers_run: !run.pods.is_empty() && run.pods.values().all(|p| p.covers_run),
    }
}
