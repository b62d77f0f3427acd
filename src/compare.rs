//! `turnbench compare`: one plan against two endpoints, and every difference with its
//! 95% confidence interval (a bootstrap over conversations, paired when the sides
//! alternate); `run --baseline FILE` compares a run with an earlier one the same way.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::{Order, SaltSetting, Settings, Side};
use crate::report::{self, RunReport};
use crate::run::{self, Lane, Refused, RunResult, StopReason, StopRx};
use crate::state::RunState;

/// Version of comparison.json's layout.
pub const SCHEMA_VERSION: u32 = 1;

/// Bootstrap resamples behind every interval.
const RESAMPLES: usize = 1000;

/// One compared figure: each side's value, candidate − baseline, and its 95% interval
/// when the figure can be resampled over conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub metric: String,
    pub unit: String,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    pub diff: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    Pass,
    Fail,
    /// No bound was set, or the figure could not be computed.
    NotJudged,
}

impl Judgement {
    pub fn label(self) -> &'static str {
        match self {
            Judgement::Pass => "PASS ✓",
            Judgement::Fail => "FAIL ✗",
            Judgement::NotJudged => "N/A",
        }
    }
}

/// A judgement and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub status: Judgement,
    pub reason: String,
}

/// The comparison of two runs of one plan: comparison.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub schema_version: u32,
    pub baseline_name: String,
    pub candidate_name: String,
    pub order: Order,
    /// Whether the intervals pair each conversation with itself on the other side.
    pub paired: bool,
    pub bootstrap_seed: u64,
    pub deltas: Vec<Delta>,
    /// One sentence per headline difference, for people.
    pub sentences: Vec<String>,
    /// `compare`: the overhead verdict; `run --baseline`: the regression verdict.
    pub verdict: Verdict,
}

impl Comparison {
    pub fn delta(&self, metric: &str) -> Option<&Delta> {
        self.deltas.iter().find(|d| d.metric == metric)
    }
}

/// The per-conversation samples of a state: (turn, TTFT µs) of each timed request.
fn samples(state: &RunState) -> BTreeMap<u32, Vec<(u32, u64)>> {
    state
        .conversations
        .iter()
        .filter(|(_, t)| !t.ttfts.is_empty())
        .map(|(k, t)| (*k, t.ttfts.clone()))
        .collect()
}

/// The figures resampled: TTFT mean, P50, P95, P99 (ms) and the speedup.
const RESAMPLED: [(&str, &str); 5] = [
    ("ttft_mean", "ms"),
    ("ttft_p50", "ms"),
    ("ttft_p95", "ms"),
    ("ttft_p99", "ms"),
    ("speedup", "x"),
];

/// The resampled figures of a set of conversations' samples (TTFT quantiles as
/// HdrHistogram defines them, on the exact values).
fn estimate<'a>(convs: impl Iterator<Item = &'a Vec<(u32, u64)>>) -> [Option<f64>; 5] {
    let mut all: Vec<u64> = Vec::new();
    let (mut first, mut nfirst, mut later, mut nlater) = (0u64, 0u64, 0u64, 0u64);
    for c in convs {
        for &(turn, t) in c {
            all.push(t);
            if turn == 1 {
                first += t;
                nfirst += 1;
            } else {
                later += t;
                nlater += 1;
            }
        }
    }
    if all.is_empty() {
        return [None; 5];
    }
    all.sort_unstable();
    let q = |p: f64| {
        let rank = ((p * all.len() as f64).ceil() as usize).clamp(1, all.len());
        Some(all[rank - 1] as f64 / 1000.0)
    };
    let mean = all.iter().sum::<u64>() as f64 / all.len() as f64 / 1000.0;
    let speedup = (nfirst > 0 && nlater > 0 && later > 0)
        .then(|| (first as f64 / nfirst as f64) / (later as f64 / nlater as f64));
    [Some(mean), q(0.5), q(0.95), q(0.99), speedup]
}

/// The 2.5th and 97.5th percentiles of candidate − baseline over resamples of the
/// conversations: the same draw for both sides when `paired`.
fn bootstrap(
    base: &BTreeMap<u32, Vec<(u32, u64)>>,
    cand: &BTreeMap<u32, Vec<(u32, u64)>>,
    paired: bool,
    seed: u64,
) -> [Option<(f64, f64)>; 5] {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys_b: Vec<&u32> = base.keys().collect();
    let keys_c: Vec<&u32> = cand.keys().collect();
    let shared: Vec<&u32> = keys_b
        .iter()
        .copied()
        .filter(|k| cand.contains_key(k))
        .collect();
    if keys_b.is_empty() || keys_c.is_empty() || (paired && shared.is_empty()) {
        return [None; 5];
    }
    let mut diffs: [Vec<f64>; 5] = Default::default();
    for _ in 0..RESAMPLES {
        let (eb, ec) = if paired {
            let draw: Vec<&u32> = (0..shared.len())
                .map(|_| shared[rng.random_range(0..shared.len())])
                .collect();
            (
                estimate(draw.iter().map(|k| &base[k])),
                estimate(draw.iter().map(|k| &cand[k])),
            )
        } else {
            let db: Vec<&u32> = (0..keys_b.len())
                .map(|_| keys_b[rng.random_range(0..keys_b.len())])
                .collect();
            let dc: Vec<&u32> = (0..keys_c.len())
                .map(|_| keys_c[rng.random_range(0..keys_c.len())])
                .collect();
            (
                estimate(db.iter().map(|k| &base[k])),
                estimate(dc.iter().map(|k| &cand[k])),
            )
        };
        for i in 0..5 {
            if let (Some(b), Some(c)) = (eb[i], ec[i]) {
                diffs[i].push(c - b);
            }
        }
    }
    diffs.map(|mut d| {
        if d.len() < RESAMPLES / 2 {
            return None;
        }
        d.sort_by(f64::total_cmp);
        let at = |p: f64| d[((d.len() - 1) as f64 * p).round() as usize];
        Some((at(0.025), at(0.975)))
    })
}

/// Compare two runs of one plan. `paired`: conversation i of one is conversation i of
/// the other in time as well (the alternate order).
pub fn compare(
    base: &RunReport,
    cand: &RunReport,
    names: (&str, &str),
    order: Order,
    paired: bool,
    seed: u64,
) -> Comparison {
    let (sb, sc) = (samples(&base.state), samples(&cand.state));
    let (eb, ec) = (estimate(sb.values()), estimate(sc.values()));
    let cis = bootstrap(&sb, &sc, paired, seed);
    let mut deltas: Vec<Delta> = RESAMPLED
        .iter()
        .enumerate()
        .map(|(i, (metric, unit))| Delta {
            metric: metric.to_string(),
            unit: unit.to_string(),
            baseline: eb[i],
            candidate: ec[i],
            diff: eb[i].zip(ec[i]).map(|(b, c)| c - b),
            ci_low: cis[i].map(|c| c.0),
            ci_high: cis[i].map(|c| c.1),
        })
        .collect();
    // Figures without per-conversation samples: the plain difference.
    let (b, c) = (&base.stats, &cand.stats);
    let cached = |r: &RunReport| match (r.stats.prompt_tokens, r.stats.cached_tokens) {
        (Some(p), Some(c)) if p > 0 => Some(100.0 * c as f64 / p as f64),
        _ => None,
    };
    for (metric, unit, vb, vc) in [
        (
            "e2e_p50",
            "ms",
            b.e2e.map(|x| x.p50_ms),
            c.e2e.map(|x| x.p50_ms),
        ),
        (
            "e2e_p95",
            "ms",
            b.e2e.map(|x| x.p95_ms),
            c.e2e.map(|x| x.p95_ms),
        ),
        (
            "itl_p50",
            "ms",
            b.itl.map(|x| x.p50_ms),
            c.itl.map(|x| x.p50_ms),
        ),
        (
            "tpot_p50",
            "ms",
            b.tpot.map(|x| x.p50_ms),
            c.tpot.map(|x| x.p50_ms),
        ),
        (
            "requests_per_second",
            "/s",
            Some(b.requests_per_second),
            Some(c.requests_per_second),
        ),
        (
            "output_tokens_per_second",
            "/s",
            Some(b.output_tokens_per_second),
            Some(c.output_tokens_per_second),
        ),
        ("cached_share", "%", cached(base), cached(cand)),
        (
            "error_rate",
            "%",
            Some(100.0 * b.error_rate),
            Some(100.0 * c.error_rate),
        ),
    ] {
        deltas.push(Delta {
            metric: metric.into(),
            unit: unit.into(),
            baseline: vb,
            candidate: vc,
            diff: vb.zip(vc).map(|(b, c)| c - b),
            ci_low: None,
            ci_high: None,
        });
    }
    let sentences = ["ttft_p50", "ttft_p95"]
        .iter()
        .filter_map(|m| deltas.iter().find(|d| d.metric == *m))
        .map(|d| sentence(names.1, d))
        .collect();
    Comparison {
        schema_version: SCHEMA_VERSION,
        baseline_name: names.0.into(),
        candidate_name: names.1.into(),
        order,
        paired,
        bootstrap_seed: seed,
        deltas,
        sentences,
        verdict: Verdict {
            status: Judgement::NotJudged,
            reason: "no bound set".into(),
        },
    }
}

fn metric_label(metric: &str) -> String {
    match metric {
        "ttft_mean" => "TTFT mean".into(),
        "ttft_p50" => "TTFT P50".into(),
        "ttft_p95" => "TTFT P95".into(),
        "ttft_p99" => "TTFT P99".into(),
        other => other.replace('_', " "),
    }
}

/// "candidate adds 7.4 ms to TTFT P50 (95% CI 6.9 to 8.0 ms)", or "no difference".
pub fn sentence(candidate: &str, d: &Delta) -> String {
    let what = metric_label(&d.metric);
    match (d.diff, d.ci_low, d.ci_high) {
        (Some(_), Some(lo), Some(hi)) if lo > 0.0 => format!(
            "{candidate} adds {:.1} {} to {what} (95% CI {lo:.1} to {hi:.1} {})",
            d.diff.unwrap_or(0.0),
            d.unit,
            d.unit
        ),
        (Some(diff), Some(lo), Some(hi)) if hi < 0.0 => format!(
            "{candidate} takes {:.1} {} off {what} (95% CI {lo:.1} to {hi:.1} {})",
            -diff, d.unit, d.unit
        ),
        (Some(_), Some(lo), Some(hi)) => format!(
            "{what}: no difference this run can detect (95% CI {lo:.1} to {hi:.1} {})",
            d.unit
        ),
        _ => format!("{what}: not enough successful requests to compare"),
    }
}

/// PASS when the upper end of the interval of the TTFT P95 difference is within every
/// bound set.
pub fn overhead_verdict(c: &Comparison, max_ms: Option<f64>, max_pct: Option<f64>) -> Verdict {
    if max_ms.is_none() && max_pct.is_none() {
        return Verdict {
            status: Judgement::NotJudged,
            reason: "no --max-overhead-ms or --max-overhead-pct set".into(),
        };
    }
    let Some(d) = c.delta("ttft_p95") else {
        unreachable!("ttft_p95 is always compared")
    };
    let (Some(hi), Some(base)) = (d.ci_high, d.baseline) else {
        return Verdict {
            status: Judgement::Fail,
            reason: "the TTFT P95 difference could not be computed".into(),
        };
    };
    let mut failed = Vec::new();
    if let Some(ms) = max_ms.filter(|ms| hi > *ms) {
        failed.push(format!("{hi:.2} ms > {ms:.2} ms"));
    }
    if let Some(pct) = max_pct.filter(|pct| hi > base * pct / 100.0) {
        failed.push(format!("{hi:.2} ms > {pct:.1}% of {base:.2} ms"));
    }
    if failed.is_empty() {
        Verdict {
            status: Judgement::Pass,
            reason: format!("upper end of the TTFT P95 difference {hi:.2} ms is within the bound"),
        }
    } else {
        Verdict {
            status: Judgement::Fail,
            reason: format!(
                "upper end of the TTFT P95 difference: {}",
                failed.join(", ")
            ),
        }
    }
}

/// FAIL when TTFT P95 is worse by more than `pct` percent, or the speedup lower by
/// more than `pct` percent, with confidence (the whole interval beyond the bound).
pub fn regression_verdict(c: &Comparison, pct: f64) -> Verdict {
    let mut worse = Vec::new();
    let mut unknown = Vec::new();
    match c.delta("ttft_p95") {
        Some(Delta {
            baseline: Some(b),
            ci_low: Some(lo),
            ..
        }) => {
            if *lo > b * pct / 100.0 {
                worse.push(format!(
                    "TTFT P95 worse by at least {lo:.2} ms (> {pct}% of {b:.2} ms)"
                ));
            }
        }
        _ => unknown.push("TTFT P95"),
    }
    match c.delta("speedup") {
        Some(Delta {
            baseline: Some(b),
            ci_high: Some(hi),
            ..
        }) => {
            if *hi < -b * pct / 100.0 {
                worse.push(format!(
                    "speedup lower by at least {:.2}x (> {pct}% of {b:.2}x)",
                    -hi
                ));
            }
        }
        _ => unknown.push("speedup"),
    }
    if !worse.is_empty() {
        Verdict {
            status: Judgement::Fail,
            reason: worse.join("; "),
        }
    } else if unknown.len() == 2 {
        Verdict {
            status: Judgement::NotJudged,
            reason: "neither TTFT P95 nor the speedup could be compared".into(),
        }
    } else {
        Verdict {
            status: Judgement::Pass,
            reason: format!("no regression beyond {pct}% this run can show"),
        }
    }
}

/// The lines of the comparison a person reads.
pub fn lines(c: &Comparison, reports: [&RunReport; 2]) -> Vec<String> {
    let rule = "=".repeat(80);
    let mut out = vec![rule.clone(), "COMPARISON".into(), rule.clone()];
    out.push(format!(
        "Baseline: {} ({}), candidate: {} ({})",
        c.baseline_name,
        reports[0].state.meta.target.url(),
        c.candidate_name,
        reports[1].state.meta.target.url()
    ));
    out.push(format!(
        "Order: {}; intervals: 95%, bootstrap over conversations ({} resamples{})",
        match c.order {
            Order::Alternate => "alternate (each turn to both sides, one right after the other)",
            Order::Sequential => "sequential (one side's whole run, then the other's)",
        },
        RESAMPLES,
        if c.paired { ", paired" } else { "" }
    ));
    for (name, r) in [
        (&c.baseline_name, reports[0]),
        (&c.candidate_name, reports[1]),
    ] {
        let meta = &r.state.meta;
        out.push(format!(
            "{name}: model {}, seed {}, salt {}, {} requests ({} failed), status {}, cache {}{}",
            meta.model.as_deref().unwrap_or("N/A"),
            meta.seed,
            meta.salt.as_deref().unwrap_or("none"),
            r.stats.total_requests,
            r.stats.failed_requests,
            r.verdict.status.label(),
            r.verdict.cache_status.label(),
            r.state
                .endpoint_unusable
                .as_deref()
                .map(|w| format!(" — NOT USABLE: {w}"))
                .unwrap_or_default()
        ));
    }
    out.push(String::new());
    let w = 26;
    out.push(format!(
        "{:<w$} {:>12} {:>12} {:>12}  95% interval",
        "figure", c.baseline_name, c.candidate_name, "difference"
    ));
    let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "N/A".into());
    for d in &c.deltas {
        let ci = match (d.ci_low, d.ci_high) {
            (Some(lo), Some(hi)) => format!("{lo:.2} to {hi:.2}"),
            _ if RESAMPLED.iter().any(|(m, _)| *m == d.metric) => "N/A".into(),
            _ => "-".into(),
        };
        out.push(format!(
            "{:<w$} {:>12} {:>12} {:>12}  {ci}",
            format!("{} ({})", metric_label(&d.metric), d.unit),
            f(d.baseline),
            f(d.candidate),
            f(d.diff)
        ));
    }
    out.push(String::new());
    for s in &c.sentences {
        out.push(s.clone());
    }
    out.push(format!(
        "Verdict: {} ({})",
        c.verdict.status.label(),
        c.verdict.reason
    ));
    out.push(rule);
    out
}

/// The TTFT differences with their intervals, and the verdict under `verdict_key`.
pub fn data_deltas(c: &Comparison, verdict_key: &str) -> Vec<(String, String)> {
    let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "N/A".into());
    let mut out = Vec::new();
    for m in ["ttft_p50", "ttft_p95"] {
        let d = c.delta(m);
        out.push((format!("{m}_delta_ms"), f(d.and_then(|d| d.diff))));
        out.push((format!("{m}_delta_ci_low_ms"), f(d.and_then(|d| d.ci_low))));
        out.push((
            format!("{m}_delta_ci_high_ms"),
            f(d.and_then(|d| d.ci_high)),
        ));
    }
    out.push((verdict_key.into(), c.verdict.status.label().into()));
    out
}

/// Keys of the user-info data: every run key per side (`baseline_p50_ms`, ...), the
/// TTFT differences with their intervals, and the verdict under `verdict_key`.
pub fn data(c: &Comparison, reports: [&RunReport; 2], verdict_key: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (side, r) in ["baseline", "candidate"].iter().zip(reports) {
        for (k, v) in r.data() {
            out.push((format!("{side}_{k}"), v));
        }
    }
    out.extend(data_deltas(c, verdict_key));
    out
}

/// The HTML page of a comparison: the two TTFT distributions overlaid, TTFT by turn of
/// both sides, and every difference with its interval.
pub fn render_html(c: &Comparison, reports: [&RunReport; 2]) -> String {
    use crate::report::charts;
    use crate::report::html::escape;
    let threshold = reports[0].state.meta.thresholds.ttft_p95_ms;
    let cdf = charts::cdf(
        "TTFT distributions (cumulative)",
        &[
            (&c.baseline_name, &reports[0].state.histograms.ttft),
            (&c.candidate_name, &reports[1].state.histograms.ttft),
        ],
        threshold,
    );
    let turns = |r: &RunReport| -> Vec<(u32, f64)> {
        r.stats
            .by_turn
            .iter()
            .filter_map(|(k, t)| Some((*k, t.ttft?.p50_ms)))
            .collect()
    };
    let by_turn = charts::by_turn(
        "TTFT P50 by turn",
        &[
            (c.baseline_name.clone(), turns(reports[0])),
            (c.candidate_name.clone(), turns(reports[1])),
        ],
    );
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>turnbench comparison</title>\n<style>body{font-family:sans-serif;max-width:1500px;margin:0 auto;padding:16px}table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:4px 8px;font-size:13px;text-align:right}th:first-child,td:first-child{text-align:left}figure{margin:0;border:1px solid #eee}figure svg{width:100%;height:auto}.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(720px,1fr));gap:12px}</style>\n</head>\n<body>\n",
    );
    h.push_str(&format!(
        "<h1 id=\"verdict\">{} vs {}: {}</h1>\n<p>{}</p>\n<ul>\n",
        escape(&c.candidate_name),
        escape(&c.baseline_name),
        escape(c.verdict.status.label()),
        escape(&c.verdict.reason)
    ));
    for s in &c.sentences {
        h.push_str(&format!("<li>{}</li>\n", escape(s)));
    }
    h.push_str("</ul>\n<table id=\"differences\"><tr><th>figure</th>");
    h.push_str(&format!(
        "<th>{}</th><th>{}</th><th>difference</th><th>95% interval</th></tr>\n",
        escape(&c.baseline_name),
        escape(&c.candidate_name)
    ));
    let f = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "N/A".into());
    for d in &c.deltas {
        let ci = match (d.ci_low, d.ci_high) {
            (Some(lo), Some(hi)) => format!("{lo:.2} to {hi:.2}"),
            _ => "-".into(),
        };
        h.push_str(&format!(
            "<tr><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&metric_label(&d.metric)),
            escape(&d.unit),
            f(d.baseline),
            f(d.candidate),
            f(d.diff),
            ci
        ));
    }
    h.push_str("</table>\n<section class=\"charts\">\n");
    for (id, svg) in [
        ("chart-ttft-cdf-overlay", cdf),
        ("chart-ttft-by-turn-both", by_turn),
    ] {
        let svg = svg.unwrap_or_else(|e| format!("<p>{}</p>", escape(&e)));
        h.push_str(&format!("<figure id=\"{id}\">{svg}</figure>\n"));
    }
    h.push_str("</section>\n</body>\n</html>\n");
    h
}

/// comparison.json, each side's results.json and report.html (under its role's
/// name), and the comparison's report.html in `dir`.
pub fn write_output_dir(dir: &Path, c: &Comparison, reports: [&RunReport; 2]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (side, r) in ["baseline", "candidate"].iter().zip(reports) {
        report::write_output_dir(&dir.join(side), r)?;
    }
    let json = serde_json::to_vec_pretty(c).expect("comparison serializes");
    report::write_atomic(&dir.join("comparison.json"), &json)?;
    report::write_atomic(&dir.join("report.html"), render_html(c, reports).as_bytes())
}

/// Read comparison.json back.
pub fn load(path: &Path) -> Result<Comparison, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let c: Comparison =
        serde_json::from_str(&text).map_err(|e| format!("not a comparison.json: {e}"))?;
    if c.schema_version != SCHEMA_VERSION {
        return Err(format!("comparison schema version {}", c.schema_version));
    }
    Ok(c)
}

/// Print a comparison: each side's summary is in its own files; stdout holds the
/// comparison and one user-info block.
pub fn write_stdout(
    w: &mut dyn Write,
    c: &Comparison,
    reports: [&RunReport; 2],
    verdict_key: &str,
) -> io::Result<()> {
    let lines = lines(c, reports);
    for l in &lines {
        writeln!(w, "{l}")?;
    }
    writeln!(w)?;
    let prefix = reports[0].prefix().to_string();
    let card: Vec<String> = lines
        .into_iter()
        .filter(|l| !l.starts_with("===="))
        .collect();
    report::write_user_info_block(w, &card, &prefix, &data(c, reports, verdict_key))?;
    w.flush()
}

/// What a compare produced.
pub struct CompareResult {
    pub comparison: Comparison,
    pub reports: [RunReport; 2],
    pub stopped_by: Option<StopReason>,
}

impl CompareResult {
    /// A side that could not be used at all, when there was one.
    pub fn unusable(&self) -> Option<&RunReport> {
        self.reports
            .iter()
            .find(|r| r.state.endpoint_unusable.is_some())
    }
}

/// The settings of one side: the shared ones with the side's target, and a salt of its
/// own so neither side warms the other's cache (they often share one backend).
fn side_settings(shared: &Settings, side: &Side, seed: u64) -> Settings {
    let mut s = shared.clone();
    s.target = side.target.clone();
    s.workload.seed = Some(seed);
    s.workload.salt = match &shared.workload.salt {
        SaltSetting::Fixed(salt) => SaltSetting::Fixed(format!("{salt}-{}", side.name)),
        other => other.clone(),
    };
    s.public.insert(
        "url".into(),
        side.target.url.as_ref().map(|u| u.as_str()).into(),
    );
    s.public
        .insert("model".into(), side.target.model.clone().into());
    s
}

/// `turnbench compare`: both sides prepared, checked and warmed up, then measured in
/// the chosen order, then compared.
pub async fn execute(settings: Settings, mut stop: StopRx) -> anyhow::Result<CompareResult> {
    let sides = settings.compare.sides.clone().ok_or_else(|| {
        crate::error::ConfigError::new("compare needs BASELINE_URL and CANDIDATE_URL")
    })?;
    let seed = settings
        .workload
        .seed
        .unwrap_or_else(crate::workload::random_seed);
    let prepared = [
        run::prepare(&side_settings(&settings, &sides[0], seed))?,
        run::prepare(&side_settings(&settings, &sides[1], seed))?,
    ];
    let mut usable = Vec::new();
    let mut refused: [Option<RunResult>; 2] = [None, None];
    for (i, p) in prepared.iter().enumerate() {
        let name = &sides[i].name;
        let outcome = match run::preflight(p, &mut stop).await {
            Ok(model) => match run::warm_up(p, &model, &mut stop).await {
                Ok(warm) => Ok((model, warm)),
                Err(why) => Err((Some(model), why)),
            },
            Err(why) => Err((p.settings.target.model.clone(), why)),
        };
        match outcome {
            Ok((model, warm)) => usable.push((
                i,
                Lane {
                    prepared: p,
                    model,
                    warm,
                },
            )),
            Err((model, why)) => {
                let why = match why {
                    Refused::Unusable(w) => Refused::Unusable(format!("{name}: {w}")),
                    other => other,
                };
                refused[i] = Some(run::refused(p, model, why));
            }
        }
    }
    if let Err(why) = run::wait_for_start(settings.workload.start_at, &mut stop).await {
        for (i, lane) in &usable {
            refused[*i] = Some(run::refused(
                lane.prepared,
                Some(lane.model.clone()),
                why_clone(&why),
            ));
        }
        usable.clear();
    }
    let keep = settings.output.output_dir.is_some() || settings.output.print_results;
    let mut measured: [Option<run::Measurement>; 2] = [None, None];
    let mut stopped_by = None;
    let lanes: Vec<Lane<'_>> = usable
        .iter()
        .map(|(_, l)| Lane {
            prepared: l.prepared,
            model: l.model.clone(),
            warm: l.warm,
        })
        .collect();
    let index: Vec<usize> = usable.iter().map(|(i, _)| *i).collect();
    if settings.compare.order == Order::Alternate && lanes.len() == 2 {
        let out = run::measure_lanes(&lanes, seed, &mut stop, keep).await;
        for (i, m) in index.iter().zip(out) {
            stopped_by = stopped_by.or(m.stopped_by);
            measured[*i] = Some(m);
        }
    } else {
        for (i, lane) in index.iter().zip(&lanes) {
            let m = run::measure(lane.prepared, &lane.model, lane.warm, &mut stop, keep).await;
            stopped_by = stopped_by.or(m.stopped_by);
            measured[*i] = Some(m);
        }
    }
    let reports = [0, 1].map(|i| match (measured[i].take(), refused[i].take()) {
        (Some(m), _) => run::finish(m.state, &m.records),
        (None, Some(r)) => {
            stopped_by = stopped_by.or(r.stopped_by);
            r.report
        }
        (None, None) => unreachable!("every side is measured or refused"),
    });
    let paired = settings.compare.order == Order::Alternate;
    let mut comparison = compare(
        &reports[0],
        &reports[1],
        (&sides[0].name, &sides[1].name),
        settings.compare.order,
        paired,
        seed,
    );
    comparison.verdict = overhead_verdict(
        &comparison,
        settings.compare.max_overhead_ms,
        settings.compare.max_overhead_pct,
    );
    Ok(CompareResult {
        comparison,
        reports,
        stopped_by,
    })
}

fn why_clone(r: &Refused) -> Refused {
    match r {
        Refused::Unusable(w) => Refused::Unusable(w.clone()),
        Refused::Stopped(s) => Refused::Stopped(*s),
    }
}

/// `run --baseline FILE`: this run against an earlier one, unpaired (another time,
/// another load), with the regression verdict. Refuses a file of another workload.
pub fn against_baseline(
    run: &RunReport,
    file: &Path,
    max_pct: f64,
) -> Result<(Comparison, RunReport), String> {
    let saved =
        crate::state::results::Saved::load(file).map_err(|e| format!("{}: {e}", file.display()))?;
    if saved.run.meta.workload != run.state.meta.workload {
        return Err(format!(
            "--baseline {}: another workload (conversations, turns, parallel, max_tokens, delays, warm-up, documents, usage or keep-alive differ): the figures would not compare",
            file.display()
        ));
    }
    let base = RunReport::from_saved(saved);
    let mut c = compare(
        &base,
        run,
        ("baseline", "this run"),
        Order::Sequential,
        false,
        run.state.meta.seed,
    );
    c.verdict = regression_verdict(&c, max_pct);
    Ok((c, base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Measured;
    use crate::state::{RequestRecord, RunMeta, Wall};

    fn report(offset_us: u64, conversations: u32, seed: u64) -> RunReport {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut state = RunState::new(RunMeta::for_tests());
        state.started_at = Some(Wall(0));
        state.ended_at = Some(Wall(10_000_000));
        for c in 0..conversations {
            for turn in 1..=4 {
                let base = if turn == 1 { 100_000 } else { 20_000 };
                let t = base + rng.random_range(0..5_000) + offset_us;
                state.add(&mut RequestRecord {
                    conversation: c,
                    turn,
                    measured: Measured {
                        ttft_us: Some(t),
                        e2e_us: Some(t + 30_000),
                        streamed: true,
                        ..Default::default()
                    },
                    ..Default::default()
                });
            }
        }
        RunReport::new(state, None)
    }

    #[test]
    fn a_known_difference_lies_in_its_interval_and_none_is_found_where_none_is() {
        let base = report(0, 30, 1);
        let slower = report(20_000, 30, 2);
        let c = compare(&base, &slower, ("b", "c"), Order::Alternate, true, 7);
        let d = c.delta("ttft_p50").unwrap();
        assert!(
            d.ci_low.unwrap() > 15.0 && d.ci_high.unwrap() < 25.0,
            "{d:?}"
        );
        assert!(c.sentences[0].starts_with("c adds "), "{}", c.sentences[0]);
        let same = compare(
            &base,
            &report(0, 30, 1),
            ("b", "c"),
            Order::Alternate,
            true,
            7,
        );
        let d = same.delta("ttft_p95").unwrap();
        assert!(
            d.ci_low.unwrap() <= 0.0 && d.ci_high.unwrap() >= 0.0,
            "{d:?}"
        );
        assert!(same.sentences[1].contains("no difference this run can detect"));
    }

    #[test]
    fn the_overhead_verdict_judges_the_upper_end_of_the_interval() {
        let base = report(0, 30, 1);
        let c = compare(
            &base,
            &report(20_000, 30, 2),
            ("b", "c"),
            Order::Alternate,
            true,
            7,
        );
        assert_eq!(
            overhead_verdict(&c, None, None).status,
            Judgement::NotJudged
        );
        assert_eq!(
            overhead_verdict(&c, Some(30.0), None).status,
            Judgement::Pass
        );
        assert_eq!(
            overhead_verdict(&c, Some(10.0), None).status,
            Judgement::Fail
        );
        assert_eq!(
            overhead_verdict(&c, None, Some(10.0)).status,
            Judgement::Fail
        );
        assert_eq!(
            overhead_verdict(&c, None, Some(40.0)).status,
            Judgement::Pass
        );
        assert_eq!(regression_verdict(&c, 10.0).status, Judgement::Fail);
        let same = compare(
            &base,
            &report(0, 30, 3),
            ("b", "c"),
            Order::Sequential,
            false,
            7,
        );
        assert_eq!(regression_verdict(&same, 10.0).status, Judgement::Pass);
    }

    #[test]
    fn comparison_json_reads_back() {
        let c = compare(
            &report(0, 5, 1),
            &report(10, 5, 2),
            ("b", "c"),
            Order::Sequential,
            false,
            1,
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("comparison.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        assert_eq!(load(&path).unwrap(), c);
    }
}
