//! Reports: the human summary, the AgnosticD user-info block, results.json and
//! requests.csv. Every writer takes any `io::Write`, so reports are testable.

pub mod charts;
pub mod html;
pub mod serve;

use std::io::{self, Read, Write};
use std::path::Path;

use serde::Serialize;

use crate::config::Settings;
use crate::metrics::{RequestRecord, Stats, Summary};
use crate::verdict::{Thresholds, Verdict};

pub const BEGIN_MARKER: &str = "# BEGIN TURNBENCH USER INFO";
pub const END_MARKER: &str = "# END TURNBENCH USER INFO";

/// What was benchmarked.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The built-in simulator, started in-process because no URL was given.
    Simulator {
        url: String,
    },
    Endpoint {
        url: String,
    },
}

impl Target {
    pub fn url(&self) -> &str {
        match self {
            Target::Simulator { url } | Target::Endpoint { url } => url,
        }
    }
}

/// Everything a report shows about one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub version: &'static str,
    pub target: Target,
    pub model: Option<String>,
    pub seed: u64,
    #[serde(skip)]
    pub settings: Settings,
    pub thresholds: Thresholds,
    pub stats: Stats,
    pub verdict: Verdict,
    /// Why the run stopped early (a signal), when it did.
    pub partial: Option<String>,
    /// Why the endpoint could not be used at all, when it could not.
    pub endpoint_unusable: Option<String>,
    pub warmup_requests: u64,
    pub warmup_failed: u64,
    /// Requests still in flight when a stopped run's grace period ended.
    pub abandoned_requests: u64,
}

fn ms(v: f64) -> String {
    format!("{v:.2} ms")
}

fn opt2(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "N/A".into())
}

fn summary_block(out: &mut Vec<String>, title: &str, s: &Option<Summary>) {
    out.push(format!("{title}:"));
    match s {
        Some(s) => {
            for (label, v) in [
                ("Mean", s.mean_ms),
                ("P50", s.p50_ms),
                ("P95", s.p95_ms),
                ("P99", s.p99_ms),
                ("Min", s.min_ms),
                ("Max", s.max_ms),
            ] {
                out.push(format!("  {:<5} {:>12}", format!("{label}:"), ms(v)));
            }
        }
        None => out.push("  N/A (no successful request)".into()),
    }
}

impl RunReport {
    /// The report as lines a person reads; the summary on stdout and the user-info
    /// `msg` are both this text.
    pub fn lines(&self) -> Vec<String> {
        let s = &self.stats;
        let set = &self.settings;
        let mut out = Vec::new();
        let rule = "=".repeat(80);
        out.push(rule.clone());
        out.push("BENCHMARK SUMMARY".into());
        out.push(rule.clone());
        if let Some(why) = &self.partial {
            out.push(format!("PARTIAL RESULTS: {why}"));
        }
        if let Some(why) = &self.endpoint_unusable {
            out.push(format!("ENDPOINT NOT USABLE: {why}"));
        }
        match &self.target {
            Target::Simulator { url } => {
                out.push("TARGET: the built-in simulator (no URL given) — these figures describe the simulator, not a real endpoint".into());
                out.push(format!("Endpoint: {url} (simulator)"));
            }
            Target::Endpoint { url } => out.push(format!("Endpoint: {url}")),
        }
        out.push(format!("Model: {}", self.model.as_deref().unwrap_or("N/A")));
        out.push(format!("Seed: {}", self.seed));
        out.push(format!(
            "Workload: {} conversations x {} turns, {} parallel, think time {}-{} s, max_tokens {}, warm-up {} ({} failed)",
            set.conversations, set.turns, set.parallel, set.min_delay, set.max_delay, set.max_tokens,
            self.warmup_requests, self.warmup_failed
        ));
        if set.insecure {
            out.push("TLS certificate verification: OFF (--insecure)".into());
        }
        out.push(String::new());
        out.push(format!("Total time: {:.2}s", s.total_time_s));
        out.push(format!("Total requests: {}", s.total_requests));
        out.push(format!("Failed requests: {}", s.failed_requests));
        out.push(format!(
            "Completed conversations: {}/{}",
            s.conversations_completed, set.conversations
        ));
        out.push(format!("Requests per second: {:.2}", s.requests_per_second));
        if self.abandoned_requests > 0 {
            out.push(format!("Abandoned in flight: {}", self.abandoned_requests));
        }
        out.push(String::new());
        summary_block(&mut out, "Time to First Token (TTFT)", &s.ttft);
        out.push(String::new());
        summary_block(&mut out, "Total Request Time", &s.e2e);
        out.push(String::new());
        out.push("Other latencies (P50 / P95 / P99):".into());
        for (label, v) in [
            ("Time to first content token", &s.ttfc),
            ("Time to response headers", &s.ttfb),
            ("Connect (DNS+TCP+TLS)", &s.connect),
            ("Inter-token latency", &s.itl),
            ("Time per output token", &s.tpot),
        ] {
            match v {
                Some(x) => out.push(format!(
                    "  {label}: {:.2} / {:.2} / {:.2} ms",
                    x.p50_ms, x.p95_ms, x.p99_ms
                )),
                None => out.push(format!("  {label}: N/A")),
            }
        }
        out.push(format!(
            "Output tokens: {}{} ({:.2} tokens/s)",
            s.output_tokens,
            if s.output_tokens_approx {
                " (approximate: counted from stream events)"
            } else {
                ""
            },
            s.output_tokens_per_second
        ));
        match (s.prompt_tokens, s.cached_tokens) {
            (Some(p), Some(c)) if p > 0 => out.push(format!(
                "Prompt tokens: {p}, server-reported cached: {c} ({:.1}%)",
                100.0 * c as f64 / p as f64
            )),
            (Some(p), _) => out.push(format!(
                "Prompt tokens: {p}, server-reported cached: N/A (not reported by the server)"
            )),
            _ => out.push("Prompt tokens: N/A (the server sent no usage)".into()),
        }
        out.push(String::new());
        out.push("TTFT by Turn Number:".into());
        for (turn, x) in &s.ttft_by_turn {
            out.push(format!(
                "  Turn {turn}: {:.2} ms avg (P50 {:.2}, P95 {:.2}, n={})",
                x.mean_ms, x.p50_ms, x.p95_ms, x.count
            ));
        }
        out.push(String::new());
        out.push("TTFT by Document Type:".into());
        for (kind, x) in &s.ttft_by_doc_kind {
            out.push(format!("  {kind}: {:.2} ms avg (n={})", x.mean_ms, x.count));
        }
        out.push(String::new());
        out.push("First Turn vs Subsequent Turns (prefix caching):".into());
        out.push(format!(
            "  First turn avg: {}",
            s.first_turn_mean_ms.map(ms).unwrap_or_else(|| "N/A".into())
        ));
        out.push(format!(
            "  Later turns avg: {}",
            s.later_turns_mean_ms
                .map(ms)
                .unwrap_or_else(|| "N/A".into())
        ));
        out.push(format!(
            "  Speedup ratio: {}",
            s.speedup_ratio
                .map(|v| format!("{v:.2}x"))
                .unwrap_or_else(|| "N/A".into())
        ));
        out.push(format!(
            "  Ratio of medians: {}",
            s.speedup_ratio_of_medians
                .map(|v| format!("{v:.2}x"))
                .unwrap_or_else(|| "N/A".into())
        ));
        match &s.per_conversation_speedup {
            Some(p) => out.push(format!(
                "  Per-conversation speedup: min {:.2}x, median {:.2}x, max {:.2}x (n={})",
                p.min, p.p50, p.max, p.count
            )),
            None => out.push("  Per-conversation speedup: N/A".into()),
        }
        if !s.errors.is_empty() {
            out.push(String::new());
            out.push("Errors by kind:".into());
            for (kind, e) in &s.errors {
                out.push(format!(
                    "  {kind}: {} (first: {})",
                    e.count, e.first_message
                ));
            }
        }
        out.push(String::new());
        out.push(format!(
            "Status: {} ({})",
            self.verdict.status.label(),
            self.verdict.reasons.join("; ")
        ));
        out.push(format!(
            "Cache status: {} (speedup {} vs threshold {:.2}, excellent above {:.2})",
            self.verdict.cache_status.label(),
            opt2(s.speedup_ratio),
            self.thresholds.speedup,
            1.5 * self.thresholds.speedup
        ));
        out.push(format!(
            "Thresholds: TTFT P95 < {:.2} ms (WARN below {:.2} ms), speedup > {:.2}, error rate <= {:.2}%",
            self.thresholds.ttft_p95_ms,
            2.0 * self.thresholds.ttft_p95_ms,
            self.thresholds.speedup,
            self.thresholds.max_error_rate * 100.0
        ));
        out.push(rule);
        out
    }

    /// The user-info data keys (without prefix) and their string values.
    pub fn data(&self) -> Vec<(&'static str, String)> {
        let s = &self.stats;
        let t = s.ttft;
        vec![
            ("p50_ms", opt2(t.map(|x| x.p50_ms))),
            ("p95_ms", opt2(t.map(|x| x.p95_ms))),
            ("p99_ms", opt2(t.map(|x| x.p99_ms))),
            ("mean_ms", opt2(t.map(|x| x.mean_ms))),
            ("speedup_ratio", opt2(s.speedup_ratio)),
            ("status", self.verdict.status.label().into()),
            ("cache_status", self.verdict.cache_status.label().into()),
            ("total_time_seconds", format!("{:.2}", s.total_time_s)),
            ("total_requests", s.total_requests.to_string()),
            ("failed_requests", s.failed_requests.to_string()),
            (
                "requests_per_second",
                format!("{:.2}", s.requests_per_second),
            ),
            (
                "p95_threshold_ms",
                format!("{:.2}", self.thresholds.ttft_p95_ms),
            ),
            (
                "speedup_threshold",
                format!("{:.2}", self.thresholds.speedup),
            ),
            ("model", self.model.clone().unwrap_or_else(|| "N/A".into())),
            ("seed", self.seed.to_string()),
        ]
    }

    pub fn write_summary(&self, w: &mut dyn Write) -> io::Result<()> {
        for line in self.lines() {
            writeln!(w, "{line}")?;
        }
        Ok(())
    }

    /// The AgnosticD user-info block between its markers; valid YAML on its own.
    pub fn write_user_info(&self, w: &mut dyn Write) -> io::Result<()> {
        let prefix = &self.settings.user_info_prefix;
        writeln!(w, "{BEGIN_MARKER}")?;
        writeln!(w, "agnosticd_user_info:")?;
        writeln!(w, "  msg: |-")?;
        for line in self.lines().iter().filter(|l| !l.starts_with("====")) {
            let clean: String = line
                .chars()
                .map(|c| if yaml_plain(c) { c } else { ' ' })
                .collect();
            let clean = clean.trim_end();
            if clean.is_empty() {
                writeln!(w)?;
            } else {
                writeln!(w, "    {clean}")?;
            }
        }
        writeln!(w, "  data:")?;
        for (key, value) in self.data() {
            let quoted = yaml_quote(&value);
            writeln!(w, "    {prefix}_{key}: {quoted}")?;
        }
        writeln!(w, "{END_MARKER}")?;
        Ok(())
    }

    /// Summary then user-info block: what `turnbench run` prints on stdout.
    pub fn write_stdout(&self, w: &mut dyn Write) -> io::Result<()> {
        self.write_summary(w)?;
        writeln!(w)?;
        self.write_user_info(w)?;
        w.flush()
    }

    /// Everything a later `turnbench report` needs, the per-request rows included.
    pub fn results_json(
        &self,
        histograms: &std::collections::BTreeMap<String, String>,
        records: &[RequestRecord],
    ) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("report serializes");
        v["requests"] = request_rows(records);
        v["settings"] = self.settings.to_public_json();
        v["histograms"] = serde_json::to_value(histograms).expect("map serializes");
        v["histogram_bounds"] = serde_json::json!({
            "unit": "microseconds",
            "low": crate::metrics::HIST_LOW_US,
            "high": crate::metrics::HIST_HIGH_US,
            "significant_digits": crate::metrics::HIST_SIGFIG,
            "encoding": "HdrHistogram V2 deflate, base64",
        });
        v["user_info"] = serde_json::Value::Object(
            self.data()
                .into_iter()
                .map(|(k, v)| {
                    (
                        format!("{}_{k}", self.settings.user_info_prefix),
                        serde_json::Value::String(v),
                    )
                })
                .collect(),
        );
        v
    }
}

/// Whether `c` may stand as itself in a YAML block scalar: printable for YAML, and
/// not one of the characters YAML 1.1 (PyYAML, so Ansible) takes as a line break.
fn yaml_plain(c: char) -> bool {
    matches!(c, '\t' | ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

/// A YAML double-quoted scalar of `s`; everything not plain is a `\uXXXX` escape.
fn yaml_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if yaml_plain(c) && c != '\t' => out.push(c),
            // Everything not plain lies below U+10000.
            c => out.push_str(&format!("\\u{:04X}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Columns of results.json's `requests.rows`.
pub const REQUEST_COLUMNS: &[&str] = &[
    "conversation",
    "turn",
    "start_ms",
    "ttft_ms",
    "e2e_ms",
    "output_tokens",
    "prompt_tokens",
    "cached_tokens",
    "error_kind",
];

fn request_rows(records: &[RequestRecord]) -> serde_json::Value {
    let ms = |us: Option<u64>| us.map(|v| ((v as f64) / 10.0).round() / 100.0);
    let rows: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            serde_json::json!([
                r.conversation,
                r.turn,
                ms(Some(r.start_us)),
                ms(r.measured.ttft_us),
                ms(r.measured.e2e_us),
                r.measured.output_tokens,
                r.measured.prompt_tokens,
                r.measured.cached_tokens,
                r.measured.error.as_ref().map(|e| e.kind.label()),
            ])
        })
        .collect();
    serde_json::json!({ "columns": REQUEST_COLUMNS, "rows": rows })
}

pub const RESULTS_BEGIN: &str = "# BEGIN TURNBENCH RESULTS";
pub const RESULTS_END: &str = "# END TURNBENCH RESULTS";

/// At most this many request rows travel in the compact block (a ConfigMap holds
/// 1 MiB); beyond it rows are sampled evenly and the block says so.
pub const COMPACT_MAX_ROWS: usize = 20_000;

/// results.json, gzipped and base64-encoded between markers, for logs that are the
/// only thing left of a Job (`--print-results`).
pub fn write_results_block(w: &mut dyn Write, results: &serde_json::Value) -> io::Result<()> {
    let mut compact = results.clone();
    if let Some(rows) = compact["requests"]["rows"].as_array_mut() {
        if rows.len() > COMPACT_MAX_ROWS {
            // Exactly COMPACT_MAX_ROWS rows, spread evenly over the run.
            let total = rows.len();
            *rows = (0..COMPACT_MAX_ROWS)
                .map(|i| rows[i * total / COMPACT_MAX_ROWS].clone())
                .collect();
            compact["requests"]["sampled_from"] = total.into();
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    serde_json::to_writer(&mut gz, &compact).map_err(io::Error::other)?;
    let b64 = crate::metrics::base64_encode(&gz.finish()?);
    writeln!(w, "{RESULTS_BEGIN}")?;
    for line in b64.as_bytes().chunks(120) {
        w.write_all(line)?;
        writeln!(w)?;
    }
    writeln!(w, "{RESULTS_END}")
}

/// Read results from a results.json, or from any text (a Job's log) holding a block
/// written by [`write_results_block`].
pub fn read_results(text: &str) -> Result<serde_json::Value, String> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"));
    }
    let start = text
        .rfind(RESULTS_BEGIN)
        .ok_or("neither results.json nor a log with a TURNBENCH RESULTS block")?;
    let rest = &text[start + RESULTS_BEGIN.len()..];
    let end = rest
        .find(RESULTS_END)
        .ok_or("the TURNBENCH RESULTS block has no end marker")?;
    let b64: String = rest[..end].split_whitespace().collect();
    let gz = crate::metrics::base64_decode(&b64).ok_or("the results block is not valid base64")?;
    let mut json = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut json)
        .map_err(|e| format!("the results block is not valid gzip: {e}"))?;
    serde_json::from_str(&json).map_err(|e| format!("the results block is not valid JSON: {e}"))
}

/// Results read from `path` (results.json or a log with the block).
pub fn load_results(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    read_results(&text)
}

/// The HTML report of the results in `path`.
pub fn render_file(path: &Path) -> Result<String, String> {
    html::render(&load_results(path)?)
}

pub const CSV_HEADER: &str = "conversation,turn,doc_kind,start_ms,connect_ms,ttfb_ms,first_event_ms,ttft_ms,ttfc_ms,e2e_ms,output_tokens,tokens_approx,prompt_tokens,cached_tokens,prompt_bytes,ok,error_kind,http_status,error_message";

/// One row per request of the measured phase.
pub fn write_csv(w: &mut dyn Write, records: &[RequestRecord]) -> io::Result<()> {
    writeln!(w, "{CSV_HEADER}")?;
    let t = |v: Option<u64>| {
        v.map(|us| format!("{:.3}", us as f64 / 1000.0))
            .unwrap_or_default()
    };
    let n = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    for r in records {
        let (kind, status, msg) = match &r.measured.error {
            Some(e) => (
                e.kind.label(),
                n(e.status.map(u64::from)),
                csv_field(&e.message),
            ),
            None => ("", String::new(), String::new()),
        };
        writeln!(
            w,
            "{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.conversation,
            r.turn,
            r.doc_kind.label(),
            r.start_us as f64 / 1000.0,
            t(r.measured.connect_us),
            t(r.measured.ttfb_us),
            t(r.measured.first_event_us),
            t(r.measured.ttft_us),
            t(r.measured.ttfc_us),
            t(r.measured.e2e_us),
            n(r.measured.output_tokens),
            r.measured.tokens_approx,
            n(r.measured.prompt_tokens),
            n(r.measured.cached_tokens),
            r.prompt_bytes,
            r.ok(),
            kind,
            status,
            msg
        )?;
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Write `bytes` to `path` through a temporary file and a rename, so a reader never
/// sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// results.json, requests.csv and report.html in `dir` (created when missing).
pub fn write_output_dir(
    dir: &Path,
    results: &serde_json::Value,
    records: &[RequestRecord],
) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(results).expect("json serializes");
    write_atomic(&dir.join("results.json"), &json)?;
    let page = html::render(results).map_err(io::Error::other)?;
    write_atomic(&dir.join("report.html"), page.as_bytes())?;
    let mut csv = Vec::with_capacity(records.len() * 96 + 256);
    write_csv(&mut csv, records)?;
    write_atomic(&dir.join("requests.csv"), &csv)
}

/// Cut the user-info block out of text that holds it (a Job's log, say): the lines
/// strictly between the markers. The last block wins when there are several.
pub fn extract_user_info(text: &str) -> Option<String> {
    let start = text.rfind(BEGIN_MARKER)?;
    let rest = &text[start + BEGIN_MARKER.len()..];
    let end = rest.find(END_MARKER)?;
    Some(rest[..end].trim_start_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_servers_stays_valid_yaml() {
        let nasty =
            "over\u{2028}loaded\u{85} \"q\" \\ tab\there \u{7F}\u{1B}[31m \u{FEFF} ✓ 日本 🙂";
        let back: String = serde_yaml::from_str(&yaml_quote(nasty)).unwrap();
        assert_eq!(back, nasty);
        for c in [
            '\u{2028}', '\u{2029}', '\u{85}', '\u{7F}', '\u{FEFF}', '\u{1B}', '\n',
        ] {
            assert!(!yaml_plain(c), "{c:?} must not stand in a block scalar");
        }
        assert!(yaml_plain('✓') && yaml_plain('🙂') && yaml_plain('\t'));
    }

    #[test]
    fn the_compact_block_round_trips_and_caps_rows_at_exactly_the_maximum() {
        let rows: Vec<serde_json::Value> = (0..COMPACT_MAX_ROWS + 1000)
            .map(|i| serde_json::json!([i, 1, 0.1 + i as f64 / 3.0]))
            .collect();
        let results = serde_json::json!({"stats": {"x": 237.34044444444442}, "requests": {"columns": ["n"], "rows": rows}});
        let mut block = Vec::new();
        write_results_block(&mut block, &results).unwrap();
        let back =
            read_results(&format!("log line\n{}", String::from_utf8(block).unwrap())).unwrap();
        assert_eq!(back["stats"], results["stats"], "floats survive exactly");
        let rows = back["requests"]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), COMPACT_MAX_ROWS);
        assert_eq!(back["requests"]["sampled_from"], COMPACT_MAX_ROWS + 1000);
        assert_eq!(rows[0], results["requests"]["rows"][0]);
    }
}
