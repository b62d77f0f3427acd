//! Per-run deltas of one pod's metrics, from its snapshots in order: counters and
//! histogram buckets add up pair by pair, so a counter that went backwards (the pod
//! restarted) counts from zero after the restart instead of turning into a negative
//! rate, as Prometheus' `increase()` reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::vllm::{CacheConfig, Snapshot};
use crate::state::Wall;

/// A Prometheus histogram: finite upper bounds (`le`), cumulative counts per bound plus
/// the `+Inf` one last, the sum and the count. `bounds` is empty when two histograms
/// with other bounds were added (the sum and count stay exact, percentiles are lost).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Buckets {
    pub bounds: Vec<f64>,
    pub cumulative: Vec<f64>,
    pub sum: f64,
    pub count: f64,
}

impl Buckets {
    /// From `(le, cumulative count)` samples of one or more engines: equal bounds add.
    pub fn from_samples(samples: &[(f64, f64)], sum: f64, count: f64) -> Buckets {
        let mut by_le: Vec<(f64, f64)> = Vec::new();
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (le, c) in sorted {
            match by_le.last_mut() {
                Some(last) if last.0 == le => last.1 += c,
                _ => by_le.push((le, c)),
            }
        }
        let (mut bounds, mut cumulative): (Vec<f64>, Vec<f64>) = by_le.into_iter().unzip();
        if bounds.last().is_some_and(|b| b.is_infinite()) {
            bounds.pop();
        } else {
            // No +Inf bucket: the count stands for it.
            cumulative.push(count);
        }
        Buckets {
            bounds,
            cumulative,
            sum: sum.max(0.0),
            count: count.max(0.0),
        }
    }

    fn same_bounds(&self, o: &Buckets) -> bool {
        self.bounds == o.bounds && self.cumulative.len() == o.cumulative.len()
    }

    /// Whether `self` (later) holds fewer observations than `earlier` somewhere: a
    /// restart, as a histogram never loses any.
    fn went_back(&self, earlier: &Buckets) -> bool {
        self.count < earlier.count
            || (self.same_bounds(earlier)
                && self
                    .cumulative
                    .iter()
                    .zip(&earlier.cumulative)
                    .any(|(a, b)| a < b))
    }

    /// `self − earlier`, each part at least 0.
    fn minus(&self, earlier: &Buckets) -> Buckets {
        let mut d = Buckets {
            bounds: self.bounds.clone(),
            cumulative: self.cumulative.clone(),
            sum: (self.sum - earlier.sum).max(0.0),
            count: (self.count - earlier.count).max(0.0),
        };
        if self.same_bounds(earlier) {
            for (c, e) in d.cumulative.iter_mut().zip(&earlier.cumulative) {
                *c = (*c - e).max(0.0);
            }
        } else {
            d.bounds.clear();
            d.cumulative.clear();
        }
        d
    }

    /// Add another histogram's observations (another interval, pod or shard).
    pub fn add(&mut self, o: &Buckets) {
        if self.count == 0.0 && self.cumulative.iter().all(|c| *c == 0.0) && self.sum == 0.0 {
            *self = o.clone();
            return;
        }
        self.sum += o.sum;
        self.count += o.count;
        if self.same_bounds(o) && !self.cumulative.is_empty() {
            for (a, b) in self.cumulative.iter_mut().zip(&o.cumulative) {
                *a += b;
            }
        } else if !(o.count == 0.0 && o.cumulative.iter().all(|c| *c == 0.0)) {
            self.bounds.clear();
            self.cumulative.clear();
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q` quantile as Prometheus' `histogram_quantile` estimates it: linear within
    /// the bucket that holds it; in the `+Inf` bucket, the highest finite bound. When one
    /// bucket holds every observation, the mean, which lies in it too: vLLM's first
    /// latency bucket spans 0-300 ms, and its midpoint would say 150 ms of queue time
    /// for a queue that took none.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = *self.cumulative.last()?;
        if total <= 0.0 || self.bounds.is_empty() {
            return None;
        }
        let mut below = 0.0;
        for c in &self.cumulative {
            if *c - below >= total {
                return self.mean();
            }
            if *c > below {
                break;
            }
            below = *c;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let i = self.cumulative.iter().position(|c| *c >= rank)?;
        if i >= self.bounds.len() {
            return self.bounds.last().copied();
        }
        let (lower, below) = if i == 0 {
            (0.0f64.min(self.bounds[0]), 0.0)
        } else {
            (self.bounds[i - 1], self.cumulative[i - 1])
        };
        let upper = self.bounds[i];
        let in_bucket = self.cumulative[i] - below;
        if in_bucket <= 0.0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / in_bucket)
    }
}

/// The gauges of one scrape of one pod, for the over-time charts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GaugePoint {
    pub at: Wall,
    /// Which scrape round of the run this was (pods scraped together share it).
    pub round: u32,
    #[serde(default)]
    pub running: Option<f64>,
    #[serde(default)]
    pub waiting: Option<f64>,
    #[serde(default)]
    pub kv_usage: Option<f64>,
}

/// One pod's share of a run: deltas between its first and last successful scrape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodRun {
    pub url: String,
    /// The `model_name` its samples were filtered by, when its page has that label.
    pub model: Option<String>,
    pub model_note: Option<String>,
    pub scrapes: u32,
    pub failed_scrapes: u32,
    pub first_error: Option<String>,
    /// Whether the scrape before and the one after the measured phase both succeeded:
    /// otherwise the deltas cover only part of it.
    pub covers_run: bool,
    pub from: Option<Wall>,
    pub to: Option<Wall>,
    /// Counter increases over the run, by turnbench's names (`vllm::COUNTERS`).
    pub counters: BTreeMap<String, f64>,
    /// Histogram increases over the run, by turnbench's names (`vllm::HISTOGRAMS`).
    pub histograms: BTreeMap<String, Buckets>,
    /// Times a counter went backwards between two scrapes (a restart).
    pub resets: u32,
    pub series: Vec<GaugePoint>,
    pub cache_config: Option<CacheConfig>,
    /// Metric families on its pages that could not be read.
    pub unreadable_families: u32,
}

impl PodRun {
    pub fn new(url: &str) -> PodRun {
        PodRun {
            url: url.to_string(),
            ..Default::default()
        }
    }

    /// Fold in the scrape after the last one. `prev` is the last successful snapshot.
    pub fn add(&mut self, prev: Option<&Snapshot>, s: &Snapshot, round: u32) {
        if let Some(prev) = prev {
            let restarted = matches!((prev.created, s.created), (Some(a), Some(b)) if (a - b).abs() > 1e-3)
                || s.counters
                    .iter()
                    .any(|(k, v)| prev.counters.get(k).is_some_and(|p| v < p))
                || s.histograms
                    .iter()
                    .any(|(k, h)| prev.histograms.get(k).is_some_and(|p| h.went_back(p)));
            if restarted {
                self.resets += 1;
            }
            for (k, v) in &s.counters {
                // After a restart the counter started again from zero.
                let before = if restarted {
                    0.0
                } else {
                    prev.counters.get(k).copied().unwrap_or(0.0)
                };
                *self.counters.entry(k.to_string()).or_default() += (v - before).max(0.0);
            }
            for (k, h) in &s.histograms {
                let inc = match prev.histograms.get(k) {
                    Some(p) if !restarted => h.minus(p),
                    _ => h.clone(),
                };
                self.histograms.entry(k.to_string()).or_default().add(&inc);
            }
        } else {
            // The baseline: every metric it has starts at zero increase.
            for k in s.counters.keys() {
                self.counters.entry(k.to_string()).or_default();
            }
            for (k, h) in &s.histograms {
                let zero = Buckets {
                    bounds: h.bounds.clone(),
                    cumulative: vec![0.0; h.cumulative.len()],
                    sum: 0.0,
                    count: 0.0,
                };
                self.histograms.entry(k.to_string()).or_insert(zero);
            }
            self.from = s.at;
        }
        self.to = s.at;
        self.model.clone_from(&s.model);
        if s.model_note.is_some() {
            self.model_note.clone_from(&s.model_note);
        }
        if s.cache_config.is_some() {
            self.cache_config = s.cache_config;
        }
        if let Some(at) = s.at {
            self.series.push(GaugePoint {
                at,
                round,
                running: s.running,
                waiting: s.waiting,
                kv_usage: s.kv_usage,
            });
        }
    }

    /// Whether any successful scrape pair gave deltas.
    pub fn has_deltas(&self) -> bool {
        self.series.len() >= 2
    }

    /// The span its deltas cover, in seconds.
    pub fn window_s(&self) -> f64 {
        match (self.from, self.to) {
            (Some(a), Some(b)) => (b.0 - a.0) as f64 / 1e6,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(at: i64, queries: f64, hits: f64, count: f64) -> Snapshot {
        let mut s = Snapshot {
            at: Some(Wall(at)),
            ..Default::default()
        };
        s.counters.insert("prefix_cache_queries", queries);
        s.counters.insert("prefix_cache_hits", hits);
        s.histograms.insert(
            "ttft",
            Buckets::from_samples(
                &[(0.1, count / 2.0), (1.0, count), (f64::INFINITY, count)],
                count * 0.2,
                count,
            ),
        );
        s
    }

    fn fold(snaps: &[Snapshot]) -> PodRun {
        let mut pod = PodRun::new("http://pod/metrics");
        for (i, s) in snaps.iter().enumerate() {
            pod.add(i.checked_sub(1).map(|j| &snaps[j]), s, i as u32);
        }
        pod
    }

    #[test]
    fn deltas_are_last_minus_first_without_a_restart() {
        let pod = fold(&[
            snap(0, 100.0, 10.0, 4.0),
            snap(1, 250.0, 70.0, 8.0),
            snap(2, 1100.0, 610.0, 20.0),
        ]);
        assert_eq!(pod.counters["prefix_cache_queries"], 1000.0);
        assert_eq!(pod.counters["prefix_cache_hits"], 600.0);
        let h = &pod.histograms["ttft"];
        assert_eq!(
            (h.count, h.cumulative.clone()),
            (16.0, vec![8.0, 16.0, 16.0])
        );
        assert!((h.sum - 3.2).abs() < 1e-9);
        assert_eq!(pod.resets, 0);
        assert!(pod.has_deltas());
    }

    #[test]
    fn a_counter_that_went_backwards_counts_from_zero_and_is_reported() {
        // +150 before the restart, then the new process counted 40 and 90.
        let pod = fold(&[
            snap(0, 100.0, 10.0, 4.0),
            snap(1, 250.0, 60.0, 6.0),
            snap(2, 40.0, 5.0, 1.0),
            snap(3, 90.0, 30.0, 3.0),
        ]);
        assert_eq!(pod.resets, 1);
        assert_eq!(pod.counters["prefix_cache_queries"], 150.0 + 40.0 + 50.0);
        assert_eq!(pod.counters["prefix_cache_hits"], 50.0 + 5.0 + 25.0);
        assert_eq!(pod.histograms["ttft"].count, 2.0 + 1.0 + 2.0);
        assert!(pod.counters.values().all(|v| *v >= 0.0));
    }

    #[test]
    fn a_metric_missing_from_one_page_is_not_counted_again_when_it_returns() {
        let mut pod = PodRun::new("http://pod/metrics");
        let a = snap(0, 100.0, 10.0, 4.0);
        let mut b = snap(1, 200.0, 20.0, 6.0);
        b.counters.remove("prefix_cache_queries");
        b.histograms.clear();
        let c = snap(2, 300.0, 30.0, 8.0);
        pod.add(None, &a, 0);
        pod.add(Some(&a), &b, 1);
        b.fill_from(&a);
        pod.add(Some(&b), &c, 2);
        assert_eq!(pod.counters["prefix_cache_queries"], 200.0);
        assert_eq!(pod.counters["prefix_cache_hits"], 20.0);
        assert_eq!(pod.histograms["ttft"].count, 4.0);
        assert_eq!(pod.resets, 0);
    }

    #[test]
    fn a_changed_created_time_is_a_restart_even_when_values_grew() {
        let mut a = snap(0, 100.0, 10.0, 4.0);
        a.created = Some(1.0e9);
        let mut b = snap(1, 500.0, 50.0, 9.0);
        b.created = Some(1.0e9 + 60.0);
        let pod = fold(&[a, b]);
        assert_eq!(pod.resets, 1);
        assert_eq!(pod.counters["prefix_cache_queries"], 500.0);
    }

    #[test]
    fn quantiles_interpolate_within_buckets_like_histogram_quantile() {
        let b = Buckets::from_samples(
            &[(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)],
            12.0,
            100.0,
        );
        assert!((b.quantile(0.5).unwrap() - 0.1).abs() < 1e-12);
        assert!((b.quantile(0.75).unwrap() - 0.15).abs() < 1e-12);
        assert!((b.quantile(0.25).unwrap() - 0.05).abs() < 1e-12);
        let inf = Buckets::from_samples(&[(0.1, 1.0), (f64::INFINITY, 10.0)], 50.0, 10.0);
        assert_eq!(inf.quantile(0.99), Some(0.1));
        // All in one bucket: the mean, not the bucket's midpoint.
        let one = Buckets::from_samples(&[(0.3, 4.0), (0.5, 4.0), (f64::INFINITY, 4.0)], 0.02, 4.0);
        assert_eq!(one.quantile(0.5), Some(0.005));
        assert_eq!(b.mean(), Some(0.12));
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn histograms_with_other_bounds_keep_sum_and_count_but_no_quantiles() {
        let mut a = Buckets::from_samples(&[(0.1, 1.0), (f64::INFINITY, 2.0)], 1.0, 2.0);
        a.add(&Buckets::from_samples(
            &[(0.5, 1.0), (f64::INFINITY, 3.0)],
            2.0,
            3.0,
        ));
        assert_eq!((a.sum, a.count), (3.0, 5.0));
        assert_eq!(a.quantile(0.5), None);
    }
}
