//! The server's side of a run: vLLM's `/metrics` scraped before, during and after the
//! measured phase (one URL per pod), turned into per-run deltas ([`ServerRun`], kept in
//! the run state); the reuse efficiency of each turn, from usage ([`ReuseTally`]); and
//! the figures and report lines made of them ([`stats`], [`report`]).
//!
//! Nothing here can fail a benchmark: a pod that cannot be scraped, or serves no vLLM
//! metrics, is a warning and its figures are N/A.

pub mod delta;
pub mod parse;
pub mod report;
pub mod reuse;
pub mod stats;
pub mod vllm;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::config::{Secret, Settings};
use crate::state::{Target, Wall};
pub use delta::{Buckets, GaugePoint, PodRun};
pub use reuse::ReuseTally;
use vllm::Snapshot;

/// Largest metrics page read (a vLLM page is ~100 KB).
pub const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;

/// After the measured phase, how long vLLM gets to record the last requests before
/// the final scrape (its logger runs after the output is sent).
const SETTLE: Duration = Duration::from_millis(500);

/// Where and how to scrape, validated (`--metrics-url`, `--metrics-api-key`,
/// `--metrics-interval`).
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub urls: Vec<reqwest::Url>,
    pub auth: Option<crate::config::Auth>,
    pub interval: Duration,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            urls: Vec::new(),
            auth: None,
            interval: Duration::from_secs(5),
        }
    }
}

/// The server metrics of a run: one entry per pod, keyed by its metrics URL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerRun {
    pub pods: BTreeMap<String, PodRun>,
    /// The metrics URL was the built-in simulator's, found without `--metrics-url`.
    #[serde(default)]
    pub simulator: bool,
}

impl ServerRun {
    /// Add another shard's pods. A pod that several shards scraped saw all their traffic
    /// in each scrape, so it counts once: the scrape window that covered the most.
    pub fn merge(&mut self, o: &ServerRun) {
        for (url, pod) in &o.pods {
            match self.pods.get(url) {
                Some(mine) if !better(pod, mine) => {}
                _ => {
                    self.pods.insert(url.clone(), pod.clone());
                }
            }
        }
        self.simulator |= o.simulator;
    }
}

fn better(a: &PodRun, b: &PodRun) -> bool {
    (a.has_deltas(), a.covers_run, a.window_s()) > (b.has_deltas(), b.covers_run, b.window_s())
}

/// Merge two optional server runs.
pub fn merge_server(mine: &mut Option<ServerRun>, theirs: &Option<ServerRun>) {
    match (mine.as_mut(), theirs) {
        (Some(a), Some(b)) => a.merge(b),
        (None, Some(b)) => *mine = Some(b.clone()),
        _ => {}
    }
}

/// One pod being scraped: its accumulated run and its last good snapshot.
struct Pod {
    url: reqwest::Url,
    http: reqwest::Client,
    run: PodRun,
    last: Option<Snapshot>,
    /// Whether the latest attempt succeeded (the final one decides `covers_run`).
    last_ok: bool,
}

struct Ctx {
    auth: Option<HeaderValue>,
    key: Option<Secret>,
    model: String,
    timeout: Duration,
}

impl Pod {
    async fn scrape(&mut self, ctx: &Ctx, round: u32) {
        self.run.scrapes += 1;
        let at = Wall::now();
        let got = fetch(&self.http, &self.url, ctx).await.and_then(|text| {
            let page = parse::parse(&text)?;
            self.run.unreadable_families = self
                .run
                .unreadable_families
                .max(page.unreadable_families as u32);
            Snapshot::read(&page, &ctx.model, at)
        });
        match got {
            Ok(mut s) => {
                self.run.add(self.last.as_ref(), &s, round);
                // A metric missing from this page (a family that did not read) keeps its
                // last value, or its next appearance would count from zero.
                if let Some(prev) = &self.last {
                    s.fill_from(prev);
                }
                self.last = Some(s);
                self.last_ok = true;
            }
            Err(e) => {
                let e = crate::client::redact(&e, ctx.key.as_ref());
                // Once per pod: an unreachable pod would say it at every interval.
                if self.run.failed_scrapes == 0 {
                    tracing::warn!("metrics {}: {e}", self.url);
                } else {
                    tracing::debug!("metrics {}: {e}", self.url);
                }
                self.run.failed_scrapes += 1;
                self.run.first_error.get_or_insert(e);
                self.last_ok = false;
            }
        }
    }
}

async fn fetch(http: &reqwest::Client, url: &reqwest::Url, ctx: &Ctx) -> Result<String, String> {
    let mut req = http
        .get(url.clone())
        .header(ACCEPT, "text/plain;version=0.0.4;q=1,*/*;q=0.1");
    if let Some(a) = &ctx.auth {
        req = req.header(AUTHORIZATION, a.clone());
    }
    let send = async {
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach it: {}", crate::client::error_chain(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(format!(
                "HTTP {}: the metrics key was refused or is missing (--metrics-api-key)",
                status.as_u16()
            ));
        }
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the page: {}", crate::client::error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(format!("the page is larger than {MAX_PAGE_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| "the page is not UTF-8 text".to_string())
    };
    match tokio::time::timeout(ctx.timeout, send).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", ctx.timeout)),
    }
}

/// Scrapes every pod at an interval while the measured phase runs.
pub struct Scraper {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<ServerRun>,
    settle: Duration,
}

impl Scraper {
    /// The pods to scrape: `--metrics-url`, else the built-in simulator's `/metrics`.
    /// `None` when there is none. Scrapes every pod once (the baseline) before
    /// returning, so call it just before the measured phase.
    pub async fn start(settings: &Settings, target: &Target, model: &str) -> Option<Scraper> {
        let m = &settings.metrics;
        let mut simulator = false;
        let urls: Vec<reqwest::Url> = if !m.urls.is_empty() {
            m.urls.clone()
        } else if let Target::Simulator { url } = target {
            simulator = true;
            let base = url.trim_end_matches('/').trim_end_matches("/v1");
            vec![reqwest::Url::parse(&format!("{base}/metrics")).ok()?]
        } else {
            return None;
        };
        let timeout = m
            .interval
            .clamp(Duration::from_secs(1), Duration::from_secs(10));
        let t = &settings.target;
        let mut pods = Vec::new();
        for url in urls {
            let mut b = reqwest::Client::builder()
                .connect_timeout(t.connect_timeout.min(timeout))
                .user_agent(concat!("turnbench/", env!("CARGO_PKG_VERSION")));
            for cert in &t.ca_certs {
                b = b.add_root_certificate(cert.clone());
            }
            if t.insecure {
                b = b.danger_accept_invalid_certs(true);
            }
            if url
                .host_str()
                .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]")
            {
                b = b.no_proxy();
            }
            let http = b.build().ok()?;
            pods.push(Pod {
                run: PodRun::new(url.as_str()),
                url,
                http,
                last: None,
                last_ok: false,
            });
        }
        let ctx = Ctx {
            auth: m.auth.as_ref().map(|a| a.header.clone()),
            key: m.auth.as_ref().map(|a| a.key.clone()),
            model: model.to_string(),
            timeout,
        };
        scrape_all(&mut pods, &ctx, 0).await;
        let baseline_ok: Vec<bool> = pods.iter().map(|p| p.last_ok).collect();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let interval = m.interval;
        let task = tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut round = 1;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticker.tick() => {
                        scrape_all(&mut pods, &ctx, round).await;
                        round += 1;
                    }
                }
            }
            scrape_all(&mut pods, &ctx, round).await;
            let mut run = ServerRun {
                pods: BTreeMap::new(),
                simulator,
            };
            for (p, first_ok) in pods.into_iter().zip(baseline_ok) {
                let mut pod = p.run;
                pod.covers_run = first_ok && p.last_ok;
                run.pods.insert(pod.url.clone(), pod);
            }
            run
        });
        let settle = if simulator { Duration::ZERO } else { SETTLE };
        Some(Scraper { stop, task, settle })
    }

    /// The last scrape, after the measured phase; the run's server metrics.
    pub async fn finish(self) -> Option<ServerRun> {
        tokio::time::sleep(self.settle).await;
        let _ = self.stop.send(());
        self.task.await.ok()
    }
}

async fn scrape_all(pods: &mut [Pod], ctx: &Ctx, round: u32) {
    futures_util::future::join_all(pods.iter_mut().map(|p| p.scrape(ctx, round))).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RunReport;
    use crate::state::results::Saved;
    use crate::state::{RunMeta, RunState};

    fn pod(url: &str, queries: f64, window_s: i64) -> PodRun {
        let mut p = PodRun::new(url);
        p.counters.insert("prefix_cache_queries".into(), queries);
        p.counters.insert("prefix_cache_hits".into(), queries / 2.0);
        p.histograms.insert(
            "ttft".into(),
            Buckets::from_samples(&[(0.1, 2.0), (f64::INFINITY, 4.0)], 0.3, 4.0),
        );
        p.covers_run = true;
        p.from = Some(Wall(1_700_000_000_000_000));
        p.to = Some(Wall(1_700_000_000_000_000 + window_s * 1_000_000));
        for (i, at) in [p.from.unwrap(), p.to.unwrap()].into_iter().enumerate() {
            p.series.push(GaugePoint {
                at,
                round: i as u32,
                running: Some(2.0),
                waiting: Some(1.0),
                kv_usage: Some(0.25),
            });
        }
        p
    }

    fn run(pods: &[PodRun]) -> ServerRun {
        ServerRun {
            pods: pods.iter().map(|p| (p.url.clone(), p.clone())).collect(),
            simulator: false,
        }
    }

    #[test]
    fn shards_sum_other_pods_and_count_a_shared_pod_once() {
        let mut a = run(&[
            pod("http://a/metrics", 1000.0, 10),
            pod("http://c/metrics", 300.0, 9),
        ]);
        let b = run(&[
            pod("http://b/metrics", 500.0, 10),
            pod("http://c/metrics", 310.0, 11),
        ]);
        a.merge(&b);
        assert_eq!(a.pods.len(), 3);
        // The shared pod: the scrape window that covered more.
        assert_eq!(
            a.pods["http://c/metrics"].counters["prefix_cache_queries"],
            310.0
        );
        let mut state = RunState::new(RunMeta::for_tests());
        state.server = Some(a);
        let m = stats::server_stats(&state).metrics.unwrap();
        assert_eq!(m.prefix_cache_queries, Some(1810.0));
        assert_eq!(m.hit_rate_percent, Some(50.0));
        assert_eq!(m.ttft.unwrap().count, 12.0);
        // Waiting adds up over the pods of one scrape round.
        assert_eq!(m.waiting_max, Some(3.0));
        assert_eq!(m.kv_usage_max_percent, Some(25.0));
    }

    #[test]
    fn server_figures_travel_in_results_json_and_read_back_exactly() {
        let mut state = RunState::new(RunMeta::for_tests());
        let mut s = run(&[pod("http://a/metrics", 1234.5, 10)]);
        s.pods.get_mut("http://a/metrics").unwrap().resets = 2;
        state.server = Some(s);
        state.reuse.add(2, Some(1000), Some(990));
        state.histograms.gateway_overhead.record(4_200);
        let json = RunReport::new(state.clone(), None)
            .results_json()
            .to_string();
        let back = Saved::parse(&json).unwrap();
        assert_eq!(back.run, state);
        // A results.json written before these fields existed still reads.
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        for k in ["server", "reuse"] {
            old["run"].as_object_mut().unwrap().remove(k);
        }
        old["run"]["histograms"]
            .as_object_mut()
            .unwrap()
            .remove("gateway_overhead");
        let back = Saved::parse(&old.to_string()).unwrap();
        assert_eq!(back.run.server, None);
    }
}
