//! The simulator's `GET /metrics`: vLLM V1's names, labels and buckets in the
//! Prometheus text format as `prometheus_client` renders it, with the same meanings:
//! prefix-cache queries and hits in tokens, the time each request spent queued, in
//! prefill (until its first token) and in decode, and KV usage as the share of the
//! cache's blocks that requests in flight hold.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// vLLM's buckets for time to first token, seconds.
const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM's buckets for request phases (queue, prefill, decode, e2e), seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

struct PromHist {
    bounds: &'static [f64],
    /// Per bucket, not cumulative; the last is `+Inf`.
    counts: Vec<u64>,
    sum: f64,
}

impl PromHist {
    fn new(bounds: &'static [f64]) -> PromHist {
        PromHist {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }
    fn observe(&mut self, d: Duration) {
        let v = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }
}

struct Hists {
    ttft: PromHist,
    queue: PromHist,
    prefill: PromHist,
    decode: PromHist,
    e2e: PromHist,
}

/// What one finished request spent in each phase.
pub struct Phases {
    pub queue: Duration,
    pub prefill: Duration,
    pub decode: Duration,
    pub e2e: Duration,
}

pub struct SimMetrics {
    model: String,
    /// Unix seconds of the start: the `_created` of every series.
    created: f64,
    block_tokens: u64,
    gpu_blocks: u64,
    queries: AtomicU64,
    hits: AtomicU64,
    prompt_tokens: AtomicU64,
    generation_tokens: AtomicU64,
    preemptions: AtomicU64,
    running: AtomicI64,
    /// Requests waiting for a slot (0 while the simulator admits every request at once).
    pub waiting: AtomicI64,
    /// KV blocks held by the requests in flight.
    held_blocks: AtomicI64,
    hists: Mutex<Hists>,
}

/// A request in flight: counted as running and holding its blocks until dropped.
pub struct InFlight {
    m: Arc<SimMetrics>,
    blocks: i64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.m.running.fetch_sub(1, Ordering::Relaxed);
        self.m.held_blocks.fetch_sub(self.blocks, Ordering::Relaxed);
    }
}

impl SimMetrics {
    pub fn new(model: &str, block_tokens: u64, gpu_blocks: u64) -> SimMetrics {
        SimMetrics {
            model: model.to_string(),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            block_tokens: block_tokens.max(1),
            gpu_blocks: gpu_blocks.max(1),
            queries: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            running: AtomicI64::new(0),
            waiting: AtomicI64::new(0),
            held_blocks: AtomicI64::new(0),
            hists: Mutex::new(Hists {
                ttft: PromHist::new(TTFT_BUCKETS),
                queue: PromHist::new(LATENCY_BUCKETS),
                prefill: PromHist::new(LATENCY_BUCKETS),
                decode: PromHist::new(LATENCY_BUCKETS),
                e2e: PromHist::new(LATENCY_BUCKETS),
            }),
        }
    }

    /// A request was admitted: its prompt looked up in the prefix cache (as vLLM counts
    /// queries and hits in tokens), its blocks held until the guard drops.
    pub fn admitted(self: &Arc<Self>, prompt_tokens: u64, cached_tokens: u64) -> InFlight {
        self.queries.fetch_add(prompt_tokens, Ordering::Relaxed);
        self.hits.fetch_add(cached_tokens, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(prompt_tokens, Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::Relaxed);
        let blocks = prompt_tokens.div_ceil(self.block_tokens) as i64;
        self.held_blocks.fetch_add(blocks, Ordering::Relaxed);
        InFlight {
            m: self.clone(),
            blocks,
        }
    }

    pub fn generated(&self, tokens: u64) {
        self.generation_tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    /// The first token left, `ttft` after the request arrived.
    pub fn first_token(&self, ttft: Duration) {
        self.hists.lock().expect("metrics lock").ttft.observe(ttft);
    }

    pub fn finished(&self, p: &Phases) {
        let mut h = self.hists.lock().expect("metrics lock");
        h.queue.observe(p.queue);
        h.prefill.observe(p.prefill);
        h.decode.observe(p.decode);
        h.e2e.observe(p.e2e);
    }

    /// The page, as vLLM's prometheus_client renders it.
    pub fn render(&self) -> String {
        let labels = format!(
            "engine=\"0\",model_name=\"{}\"",
            self.model.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let mut out = String::with_capacity(16 * 1024);
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {v:?}\n"
            );
        };
        let created = |out: &mut String, name: &str, help: &str| {
            let _ = write!(
                out,
                "# HELP {name}_created {help}\n# TYPE {name}_created gauge\n{name}_created{{{labels}}} {:e}\n",
                self.created
            );
        };
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = write!(
                out,
                "# HELP {name}_total {help}\n# TYPE {name}_total counter\n{name}_total{{{labels}}} {:?}\n",
                v.load(Ordering::Relaxed) as f64
            );
            created(out, name, help);
        };
        gauge(
            &mut out,
            "vllm:num_requests_running",
            "Number of requests in model execution batches.",
            self.running.load(Ordering::Relaxed).max(0) as f64,
        );
        gauge(
            &mut out,
            "vllm:num_requests_waiting",
            "Number of requests waiting to be processed.",
            self.waiting.load(Ordering::Relaxed).max(0) as f64,
        );
        let held = self.held_blocks.load(Ordering::Relaxed).max(0) as f64;
        gauge(
            &mut out,
            "vllm:kv_cache_usage_perc",
            "KV-cache usage. 1 means 100 percent usage.",
            (held / self.gpu_blocks as f64).min(1.0),
        );
        for (name, help, v) in [
            (
                "vllm:prefix_cache_queries",
                "Prefix cache queries, in terms of number of queried tokens.",
                &self.queries,
            ),
            (
                "vllm:prefix_cache_hits",
                "Prefix cache hits, in terms of number of cached tokens.",
                &self.hits,
            ),
            (
                "vllm:num_preemptions",
                "Cumulative number of preemption from the engine.",
                &self.preemptions,
            ),
            (
                "vllm:prompt_tokens",
                "Number of prefill tokens processed.",
                &self.prompt_tokens,
            ),
            (
                "vllm:generation_tokens",
                "Number of generation tokens processed.",
                &self.generation_tokens,
            ),
        ] {
            counter(&mut out, name, help, v);
        }
        {
            let h = self.hists.lock().expect("metrics lock");
            for (name, help, hist) in [
                (
                    "vllm:time_to_first_token_seconds",
                    "Histogram of time to first token in seconds.",
                    &h.ttft,
                ),
                (
                    "vllm:e2e_request_latency_seconds",
                    "Histogram of e2e request latency in seconds.",
                    &h.e2e,
                ),
                (
                    "vllm:request_queue_time_seconds",
                    "Histogram of time spent in WAITING phase for request.",
                    &h.queue,
                ),
                (
                    "vllm:request_prefill_time_seconds",
                    "Histogram of time spent in PREFILL phase for request.",
                    &h.prefill,
                ),
                (
                    "vllm:request_decode_time_seconds",
                    "Histogram of time spent in DECODE phase for request.",
                    &h.decode,
                ),
            ] {
                let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
                let mut cum = 0u64;
                for (i, c) in hist.counts.iter().enumerate() {
                    cum += c;
                    let le = hist
                        .bounds
                        .get(i)
                        .map(|b| format!("{b:?}"))
                        .unwrap_or_else(|| "+Inf".into());
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{engine=\"0\",le=\"{le}\",{}}} {:?}",
                        &labels["engine=\"0\",".len()..],
                        cum as f64
                    );
                }
                let _ = write!(
                    out,
                    "{name}_count{{{labels}}} {:?}\n{name}_sum{{{labels}}} {:?}\n",
                    cum as f64, hist.sum
                );
                created(&mut out, name, help);
            }
        }
        let _ = write!(
            out,
            "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n\
             # TYPE vllm:cache_config_info gauge\n\
             vllm:cache_config_info{{block_size=\"{}\",cache_dtype=\"auto\",enable_prefix_caching=\"True\",engine=\"0\",num_gpu_blocks=\"{}\"}} 1.0\n",
            self.block_tokens, self.gpu_blocks
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::parse::parse;
    use crate::scrape::vllm::Snapshot;
    use crate::state::Wall;

    #[test]
    fn the_page_reads_back_with_the_meanings_it_was_given() {
        let m = Arc::new(SimMetrics::new("sim \"model\"", 16, 1000));
        let a = m.admitted(1600, 1200);
        let _b = m.admitted(160, 0);
        m.generated(8);
        m.first_token(Duration::from_millis(30));
        m.finished(&Phases {
            queue: Duration::ZERO,
            prefill: Duration::from_millis(30),
            decode: Duration::from_millis(700),
            e2e: Duration::from_millis(730),
        });
        let s = Snapshot::read(&parse(&m.render()).unwrap(), "sim \"model\"", Wall(0)).unwrap();
        assert_eq!(s.model.as_deref(), Some("sim \"model\""));
        assert_eq!(s.counters["prefix_cache_queries"], 1760.0);
        assert_eq!(s.counters["prefix_cache_hits"], 1200.0);
        assert_eq!(s.counters["generation_tokens"], 8.0);
        assert_eq!(s.running, Some(2.0));
        assert_eq!(s.kv_usage, Some(0.11));
        assert_eq!(s.histograms["ttft"].count, 1.0);
        // One observation: its bucket (0.5-0.8 s) holds all, so the estimate is the mean.
        assert_eq!(s.histograms["decode"].quantile(1.0), Some(0.7));
        assert_eq!(s.cache_config.unwrap().capacity_tokens(), 16_000);
        drop(a);
        let s = Snapshot::read(&parse(&m.render()).unwrap(), "x", Wall(0)).unwrap();
        assert_eq!((s.running, s.kv_usage), (Some(1.0), Some(0.01)));
    }
}
