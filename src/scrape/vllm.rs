//! What turnbench reads from a vLLM `/metrics` page: the names (V1, with the older ones
//! where they differ), and one [`Snapshot`] of them for the run's model.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::delta::Buckets;
use super::parse::{Page, Sample};
use crate::state::Wall;

/// Counters by the name turnbench gives them, each with the names vLLM has exposed
/// them under, newest first (the first one present is read, never two: vLLM 0.9 exposes
/// the deprecated `gpu_` names beside the new ones with the same values).
pub const COUNTERS: &[(&str, &[&str])] = &[
    (
        "prefix_cache_queries",
        &[
            "vllm:prefix_cache_queries_total",
            "vllm:gpu_prefix_cache_queries_total",
            "vllm:prefix_cache_queries",
        ],
    ),
    (
        "prefix_cache_hits",
        &[
            "vllm:prefix_cache_hits_total",
            "vllm:gpu_prefix_cache_hits_total",
            "vllm:prefix_cache_hits",
        ],
    ),
    (
        "prompt_tokens",
        &["vllm:prompt_tokens_total", "vllm:prompt_tokens"],
    ),
    (
        "generation_tokens",
        &["vllm:generation_tokens_total", "vllm:generation_tokens"],
    ),
    (
        "preemptions",
        &["vllm:num_preemptions_total", "vllm:num_preemptions"],
    ),
];

/// Histograms (seconds) by turnbench's name and vLLM's.
pub const HISTOGRAMS: &[(&str, &str)] = &[
    ("ttft", "vllm:time_to_first_token_seconds"),
    ("queue", "vllm:request_queue_time_seconds"),
    ("prefill", "vllm:request_prefill_time_seconds"),
    ("decode", "vllm:request_decode_time_seconds"),
    ("e2e", "vllm:e2e_request_latency_seconds"),
];

pub const RUNNING: &[&str] = &["vllm:num_requests_running"];
pub const WAITING: &[&str] = &["vllm:num_requests_waiting"];
pub const KV_USAGE: &[&str] = &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"];
pub const CACHE_CONFIG: &str = "vllm:cache_config_info";

/// The KV cache's size, from `vllm:cache_config_info`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub block_size: u64,
    pub num_gpu_blocks: u64,
}

impl CacheConfig {
    pub fn capacity_tokens(&self) -> u64 {
        self.block_size.saturating_mul(self.num_gpu_blocks)
    }
}

/// One scrape of one pod, for the run's model: counters and histograms summed over
/// engines, gauges summed (requests) or averaged (KV usage) over engines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub at: Option<Wall>,
    pub counters: BTreeMap<&'static str, f64>,
    pub histograms: BTreeMap<&'static str, Buckets>,
    pub running: Option<f64>,
    pub waiting: Option<f64>,
    pub kv_usage: Option<f64>,
    pub cache_config: Option<CacheConfig>,
    /// The latest `_created` time of the counters read: it changes when the process
    /// restarts, even if the counters have grown past their old values since.
    pub created: Option<f64>,
    /// The `model_name` the samples were filtered by, when the page has that label.
    pub model: Option<String>,
    /// Why the filter is not the run's model, when it is not.
    pub model_note: Option<String>,
}

/// Which samples belong to the run: those of the run's model when the page names it,
/// else those of the only model it names, else all (with a note).
fn pick_model(page: &Page, model: &str) -> (Option<String>, Option<String>) {
    let names: BTreeSet<&str> = page
        .samples
        .iter()
        .filter(|s| s.name.starts_with("vllm:"))
        .filter_map(|s| s.label("model_name"))
        .collect();
    if names.is_empty() {
        return (None, None);
    }
    if names.contains(model) {
        return (Some(model.to_string()), None);
    }
    if names.len() == 1 {
        let only = names.into_iter().next().unwrap_or_default().to_string();
        let note = format!(
            "the pod serves {only:?}, not {model:?}: read as the same model (a gateway's alias?)"
        );
        return (Some(only), Some(note));
    }
    let list: Vec<&str> = names.into_iter().collect();
    let note = format!(
        "the pod serves {} models, none named {model:?}: figures include all of them",
        list.join(", ")
    );
    (None, Some(note))
}

impl Snapshot {
    /// Read a page. `Err` when it holds no vLLM metric at all (a gateway's page, another
    /// exporter's).
    pub fn read(page: &Page, model: &str, at: Wall) -> Result<Snapshot, String> {
        if !page.samples.iter().any(|s| s.name.starts_with("vllm:")) {
            return Err("no vllm: metrics on the page (is it a vLLM pod's /metrics?)".into());
        }
        let (filter, model_note) = pick_model(page, model);
        let ours = |s: &Sample| match (&filter, s.label("model_name")) {
            (Some(want), Some(got)) => want == got,
            _ => true,
        };
        let of = |name: &str| -> Vec<&Sample> {
            page.samples
                .iter()
                .filter(|s| s.name == name && ours(s))
                .collect()
        };
        let present = |name: &str| !of(name).is_empty();
        let sum = |name: &str| of(name).iter().map(|s| finite(s.value)).sum::<f64>();
        let first_present = |names: &[&'static str]| names.iter().copied().find(|n| present(n));

        let mut snap = Snapshot {
            at: Some(at),
            model: filter.clone(),
            model_note,
            ..Default::default()
        };
        let mut created: Option<f64> = None;
        for (key, names) in COUNTERS {
            if let Some(name) = first_present(names) {
                snap.counters.insert(key, sum(name));
                let base = name.strip_suffix("_total").unwrap_or(name);
                for c in of(&format!("{base}_created")) {
                    created = Some(created.map_or(c.value, |m: f64| m.max(c.value)));
                }
            }
        }
        snap.created = created.filter(|c| c.is_finite());
        for (key, name) in HISTOGRAMS {
            let buckets: Vec<(f64, f64)> = of(&format!("{name}_bucket"))
                .into_iter()
                .filter_map(|s| Some((parse_le(s.label("le")?)?, finite(s.value))))
                .collect();
            let count_name = format!("{name}_count");
            if buckets.is_empty() && !present(&count_name) {
                continue;
            }
            snap.histograms.insert(
                key,
                Buckets::from_samples(&buckets, sum(&format!("{name}_sum")), sum(&count_name)),
            );
        }
        snap.running = first_present(RUNNING).map(sum);
        snap.waiting = first_present(WAITING).map(sum);
        snap.kv_usage = first_present(KV_USAGE).map(|name| {
            let (total, n) = of(name)
                .iter()
                .fold((0.0, 0u32), |(t, n), s| (t + finite(s.value), n + 1));
            total / f64::from(n.max(1))
        });
        // Engines of one pod share a configuration: their GPU blocks add up.
        let configs: Vec<CacheConfig> = page
            .samples
            .iter()
            .filter(|s| s.name == CACHE_CONFIG)
            .filter_map(|s| {
                Some(CacheConfig {
                    block_size: s.label("block_size")?.trim().parse().ok()?,
                    num_gpu_blocks: s.label("num_gpu_blocks")?.trim().parse().ok()?,
                })
            })
            .collect();
        if let Some(first) = configs.first() {
            snap.cache_config = Some(CacheConfig {
                block_size: first.block_size,
                num_gpu_blocks: configs.iter().map(|c| c.num_gpu_blocks).sum(),
            });
        }
        Ok(snap)
    }
}

impl Snapshot {
    /// Take `prev`'s values for the counters and histograms this snapshot lacks.
    pub fn fill_from(&mut self, prev: &Snapshot) {
        for (k, v) in &prev.counters {
            self.counters.entry(k).or_insert(*v);
        }
        for (k, h) in &prev.histograms {
            self.histograms.entry(k).or_insert_with(|| h.clone());
        }
        self.created = self.created.or(prev.created);
    }
}

/// A value a counter or gauge can hold: NaN and infinities read as 0.
fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

fn parse_le(s: &str) -> Option<f64> {
    let v: f64 = s.trim().parse().ok()?;
    (!v.is_nan()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    const PAGE: &str = include_str!("../../tests/fixtures/vllm-metrics.txt");

    #[test]
    fn a_page_rendered_by_prometheus_client_reads_whole() {
        let page = parse(PAGE).unwrap();
        assert_eq!(page.unreadable_families, 0);
        let s = Snapshot::read(&page, "meta-llama/Llama-3.1-8B-Instruct", Wall(0)).unwrap();
        assert_eq!(s.model.as_deref(), Some("meta-llama/Llama-3.1-8B-Instruct"));
        assert_eq!(s.model_note, None);
        // Two engines (data parallel) of one pod add up.
        assert_eq!(s.counters["prefix_cache_queries"], 12_000.0);
        assert_eq!(s.counters["prefix_cache_hits"], 9_000.0);
        assert_eq!(s.counters["prompt_tokens"], 12_000.0);
        assert_eq!(s.counters["generation_tokens"], 640.0);
        assert_eq!(s.counters["preemptions"], 1.0);
        assert_eq!(s.running, Some(3.0));
        assert_eq!(s.waiting, Some(1.0));
        assert_eq!(s.kv_usage, Some(0.375));
        assert_eq!(
            s.cache_config,
            Some(CacheConfig {
                block_size: 16,
                num_gpu_blocks: 2 * 27_000
            })
        );
        let ttft = &s.histograms["ttft"];
        assert_eq!(ttft.count, 10.0);
        assert!((ttft.sum - 0.95).abs() < 1e-9);
        for key in ["queue", "prefill", "decode", "e2e"] {
            assert_eq!(s.histograms[key].count, 10.0, "{key}");
        }
        assert!(s.created.is_some());
        // The deprecated gpu_ names, present beside the new ones, are not added in.
        assert!(PAGE.contains("vllm:gpu_prefix_cache_queries_total"));
    }

    #[test]
    fn another_models_samples_are_left_out_and_an_alias_is_said() {
        let page = parse(
            "# TYPE vllm:prompt_tokens_total counter\n\
             vllm:prompt_tokens_total{model_name=\"a\"} 5\n\
             vllm:prompt_tokens_total{model_name=\"b\"} 7\n",
        )
        .unwrap();
        let s = Snapshot::read(&page, "b", Wall(0)).unwrap();
        assert_eq!(s.counters["prompt_tokens"], 7.0);
        let s = Snapshot::read(&page, "gateway-alias", Wall(0)).unwrap();
        assert_eq!(s.counters["prompt_tokens"], 12.0);
        assert!(s.model_note.unwrap().contains("none named"));
        let one = parse("vllm:prompt_tokens_total{model_name=\"a\"} 5\n").unwrap();
        let s = Snapshot::read(&one, "alias", Wall(0)).unwrap();
        assert_eq!(s.model.as_deref(), Some("a"));
        assert!(s.model_note.unwrap().contains("alias"));
    }

    #[test]
    fn a_page_without_vllm_metrics_is_refused() {
        let page =
            parse("# TYPE litellm_requests_total counter\nlitellm_requests_total 3\n").unwrap();
        assert!(Snapshot::read(&page, "m", Wall(0))
            .unwrap_err()
            .contains("no vllm: metrics"));
    }
}
