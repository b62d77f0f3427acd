//! Reports, all functions of a run's state: the human summary, the AgnosticD
//! user-info block, results.json, requests.csv and the HTML page. Every writer takes
//! any `io::Write`, so reports are testable; [`write_stdout`] is the one order in
//! which a measuring command prints.

mod card;
pub mod charts;
pub mod html;
pub mod open_loop;
pub mod serve;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

use crate::state::hist::Bounds;
use crate::state::results::{self, RequestRow, Requests, Saved, SCHEMA_VERSION};
use crate::state::stats::{Stats, Summary};
use crate::state::{RunState, Target};
use crate::verdict::{judge, Verdict};

pub const BEGIN_MARKER: &str = "# BEGIN TURNBENCH USER INFO";
pub const END_MARKER: &str = "# END TURNBENCH USER INFO";
pub use crate::state::results::{RESULTS_BEGIN, RESULTS_END};

/// A run's state with what is derived from it: statistics and verdict.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub state: RunState,
    pub stats: Stats,
    pub verdict: Verdict,
    /// The per-request rows, when they were kept.
    pub requests: Option<Requests>,
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
        None => out.push("  N/A (no successful request with a first token)".into()),
    }
}

impl RunReport {
    pub fn new(state: RunState, requests: Option<Requests>) -> RunReport {
        let stats = state.stats();
        let verdict = judge(&state, &stats);
        RunReport {
            state,
            stats,
            verdict,
            requests,
        }
    }

    /// A saved run, read back.
    pub fn from_saved(saved: Saved) -> RunReport {
        RunReport::new(saved.run, saved.requests)
    }

    pub fn prefix(&self) -> &str {
        &self.state.meta.user_info_prefix
    }

    /// Whether the report covers less than the plan (a signal, missing shards).
    pub fn partial(&self) -> Option<String> {
        let meta = &self.state.meta;
        let missing = meta.shard_count as usize - meta.shards.len().min(meta.shard_count as usize);
        match (&self.state.partial, missing) {
            (Some(p), _) => Some(p.clone()),
            (None, 0) => None,
            (None, n) => Some(format!(
                "{} of {} shards merged ({n} missing)",
                meta.shards.len(),
                meta.shard_count
            )),
        }
    }

    /// The report as lines a person reads: the summary on stdout.
    pub fn lines(&self) -> Vec<String> {
        let s = &self.stats;
        let st = &self.state;
        let meta = &st.meta;
        let w = &meta.workload;
        let mut out = Vec::new();
        let rule = "=".repeat(80);
        out.push(rule.clone());
        out.push("BENCHMARK SUMMARY".into());
        out.push(rule.clone());
        if let Some(why) = self.partial() {
            out.push(format!("PARTIAL RESULTS: {why}"));
        }
        if let Some(why) = &st.endpoint_unusable {
            out.push(format!("ENDPOINT NOT USABLE: {why}"));
        }
        match &meta.target {
            Target::Simulator { url } => {
                out.push("TARGET: the built-in simulator (no URL given) — these figures describe the simulator, not a real endpoint".into());
                out.push(format!("Endpoint: {url} (simulator)"));
            }
            Target::Endpoint { url } => out.push(format!("Endpoint: {url}")),
        }
        out.push(format!("Model: {}", meta.model.as_deref().unwrap_or("N/A")));
        out.push(format!("Seed: {}", meta.seed));
        out.push(format!(
            "Salt: {}",
            meta.salt
                .as_deref()
                .unwrap_or("none (prompts as the tool this replaces sent them)")
        ));
        if meta.shard_count > 1 {
            let shards: Vec<String> = meta.shards.iter().map(u32::to_string).collect();
            out.push(format!(
                "Shards: {} of {} ({})",
                meta.shards.len(),
                meta.shard_count,
                shards.join(", ")
            ));
        }
        out.push(format!(
            "Workload: {} conversations x {} turns, {} parallel, think time {}-{} s, max_tokens {}, warm-up {} ({} failed)",
            w.conversations, w.turns, w.parallel, w.min_delay, w.max_delay, w.max_tokens,
            st.counts.warmup_requests, st.counts.warmup_failed
        ));
        out.push(format!(
            "API: {}",
            match (w.api, w.history) {
                (crate::client::Api::Chat, _) =>
                    "chat completions (the client resends the history)".to_string(),
                (crate::client::Api::Responses, Some(h)) => format!(
                    "Responses API, history held by the {} ({} broken chains)",
                    match h {
                        crate::config::History::Server => "server (previous_response_id)",
                        crate::config::History::Client => "client (whole input)",
                        crate::config::History::Conversation => "Conversations API",
                    },
                    st.counts.chain_breaks
                ),
                (crate::client::Api::Responses, None) => "Responses API".to_string(),
            }
        ));
        if let Some(o) = st.open_loop_stats() {
            out.extend(open_loop::lines(&o));
        }
        if let (Some(a), Some(b)) = (st.started_at, st.ended_at) {
            out.push(format!("Measured: {} to {}", a.rfc3339(), b.rfc3339()));
        }
        if meta.insecure {
            out.push("TLS certificate verification: OFF (--insecure)".into());
        }
        out.push(String::new());
        out.push(format!("Total time: {:.2}s", s.total_time_s));
        out.push(format!("Total requests: {}", s.total_requests));
        out.push(format!("Failed requests: {}", s.failed_requests));
        out.push(format!(
            "Completed conversations: {}/{}",
            s.conversations_completed, w.conversations
        ));
        out.push(format!("Requests per second: {:.2}", s.requests_per_second));
        if st.counts.abandoned > 0 {
            out.push(format!("Abandoned in flight: {}", st.counts.abandoned));
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
            ("Client lag (own timer lateness)", &s.client_lag),
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
        out.push(format!(
            "Warm first turns (mostly cached): {}",
            s.warm_first_turns
        ));
        if w.tools > 0 || s.tool_calls > 0 || s.server_tool.is_some() {
            let p50 = |x: &Option<Summary>| {
                x.map(|x| format!("{:.2} ms", x.p50_ms))
                    .unwrap_or_else(|| "N/A".into())
            };
            let convs = st.conversations.len().max(1) as f64;
            out.push(format!(
                "Tools: {} offered, {} calls, {} round trips ({:.2} per conversation); P50 time to the tool call {}, TTFT after a tool output {}, server-side tool time {}",
                w.tools,
                s.tool_calls,
                s.tool_round_trips,
                s.tool_round_trips as f64 / convs,
                p50(&s.time_to_tool_call),
                p50(&s.ttft_after_tool),
                p50(&s.server_tool)
            ));
        }
        out.push(String::new());
        out.push("TTFT by Turn Number:".into());
        for t in s.by_turn.values() {
            match &t.ttft {
                Some(x) => out.push(format!(
                    "  Turn {}: {:.2} ms avg (P50 {:.2}, P95 {:.2}, n={}), {:.0} bytes of messages sent",
                    t.label, x.mean_ms, x.p50_ms, x.p95_ms, x.count, t.mean_prompt_bytes
                )),
                None => out.push(format!("  Turn {}: N/A (n=0)", t.label)),
            }
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
        out.push(String::new());
        crate::scrape::report::lines(st, &s.server, &mut out);
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
        if !self.verdict.warnings.is_empty() {
            out.push(String::new());
            out.push("Warnings:".into());
            for w in &self.verdict.warnings {
                out.push(format!("  {}: {}", w.id, w.message));
            }
        }
        let t = &meta.thresholds;
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
            t.speedup,
            1.5 * t.speedup
        ));
        out.push(format!(
            "Thresholds: TTFT P95 < {:.2} ms (WARN below {:.2} ms), speedup > {:.2}, error rate <= {:.2}%",
            t.ttft_p95_ms,
            2.0 * t.ttft_p95_ms,
            t.speedup,
            t.max_error_rate * 100.0
        ));
        out.push(rule);
        out
    }

    /// The user-info data keys (without prefix) and their string values.
    pub fn data(&self) -> Vec<(&'static str, String)> {
        let s = &self.stats;
        let meta = &self.state.meta;
        let t = s.ttft;
        let threshold = format!("{:.2}", meta.thresholds.ttft_p95_ms);
        let mut data = vec![
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
            ("p95_threshold_ms", threshold.clone()),
            // The LiteMaaS benchmark role's name for the same value.
            ("p95_threshold", threshold),
            (
                "speedup_threshold",
                format!("{:.2}", meta.thresholds.speedup),
            ),
            ("model", meta.model.clone().unwrap_or_else(|| "N/A".into())),
            ("seed", meta.seed.to_string()),
            ("salt", meta.salt.clone().unwrap_or_else(|| "none".into())),
            ("warm_first_turns", s.warm_first_turns.to_string()),
            ("warnings", self.verdict.warnings.len().to_string()),
            (
                "api",
                match meta.workload.api {
                    crate::client::Api::Chat => "chat".into(),
                    crate::client::Api::Responses => "responses".into(),
                },
            ),
            ("tool_round_trips", s.tool_round_trips.to_string()),
            (
                "history",
                meta.workload
                    .history
                    .map(|h| h.label().to_string())
                    .unwrap_or_else(|| "N/A".into()),
            ),
        ];
        data.extend(crate::scrape::report::data(&s.server));
        if let Some(o) = self.state.open_loop_stats() {
            data.extend(open_loop::data(&o));
        }
        data
    }

    /// The data keys with their prefix.
    pub fn prefixed_data(&self) -> BTreeMap<String, String> {
        self.data()
            .into_iter()
            .map(|(k, v)| (format!("{}_{k}", self.prefix()), v))
            .collect()
    }

    /// The lines of the user-info `msg`: the LiteMaaS role's card a person reads in
    /// the catalog (the full summary stays on stdout and in the HTML report).
    pub fn card_lines(&self) -> Vec<String> {
        card::card_lines(self)
    }

    pub fn write_summary(&self, w: &mut dyn Write) -> io::Result<()> {
        for line in self.lines() {
            writeln!(w, "{line}")?;
        }
        Ok(())
    }

    /// The AgnosticD user-info block between its markers; valid YAML on its own.
    pub fn write_user_info(&self, w: &mut dyn Write) -> io::Result<()> {
        let data: Vec<(String, String)> = self
            .data()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        write_user_info_block(w, &self.card_lines(), self.prefix(), &data)
    }

    /// results.json: the state, with its derived figures for readers (recomputed,
    /// never read back) and the rows when kept.
    pub fn results_json(&self) -> serde_json::Value {
        serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "histogram_bounds": Bounds::ours(),
            "run": self.state,
            "stats": self.stats,
            "verdict": self.verdict,
            "user_info": self.prefixed_data(),
            "requests": self.requests,
        })
    }
}

/// What a measuring command prints on stdout, in order: the summary, the compact
/// results block when asked, and the user-info block last.
pub fn write_stdout(w: &mut dyn Write, report: &RunReport, print_results: bool) -> io::Result<()> {
    write_stdout_with(w, report, print_results, &[], &[])
}

/// [`write_stdout`] with lines after the summary and data keys after the run's, in the
/// block too (`run --baseline` adds its comparison so).
pub fn write_stdout_with(
    w: &mut dyn Write,
    report: &RunReport,
    print_results: bool,
    extra_lines: &[String],
    extra_data: &[(String, String)],
) -> io::Result<()> {
    report.write_summary(w)?;
    for l in extra_lines {
        writeln!(w, "{l}")?;
    }
    writeln!(w)?;
    if print_results {
        results::write_block(w, &report.results_json())?;
        writeln!(w)?;
    }
    let mut card = report.card_lines();
    card.extend(
        extra_lines
            .iter()
            .filter(|l| !l.starts_with("===="))
            .cloned(),
    );
    let mut data: Vec<(String, String)> = report
        .data()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    data.extend(extra_data.iter().cloned());
    write_user_info_block(w, &card, report.prefix(), &data)?;
    w.flush()
}

/// The AgnosticD user-info block: `msg` from `lines`, `data` as `<prefix>_<key>`.
pub fn write_user_info_block(
    w: &mut dyn Write,
    lines: &[String],
    prefix: &str,
    data: &[(String, String)],
) -> io::Result<()> {
    writeln!(w, "{BEGIN_MARKER}")?;
    writeln!(w, "agnosticd_user_info:")?;
    writeln!(w, "  msg: |-")?;
    for line in lines {
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
    for (key, value) in data {
        writeln!(w, "    {prefix}_{key}: {}", yaml_quote(value))?;
    }
    writeln!(w, "{END_MARKER}")
}

/// Whether `c` may stand as itself in a YAML block scalar: printable for YAML, and
/// not one of the characters YAML 1.1 (PyYAML, so Ansible) takes as a line break.
pub(crate) fn yaml_plain(c: char) -> bool {
    matches!(c, '\t' | ' '..='~' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}')
}

/// A YAML double-quoted scalar of `s`; everything not plain is a `\uXXXX` escape.
pub(crate) fn yaml_quote(s: &str) -> String {
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

/// The header line of requests.csv.
pub fn csv_header() -> String {
    results::REQUEST_COLUMNS.join(",")
}

/// One row per request of the measured phase.
pub fn write_csv(w: &mut dyn Write, rows: &[RequestRow]) -> io::Result<()> {
    writeln!(w, "{}", csv_header())?;
    let t = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    let n = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    for r in rows {
        writeln!(
            w,
            "{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            r.conversation,
            r.turn,
            r.doc_kind.label(),
            r.start_ms,
            t(r.connect_ms),
            t(r.ttfb_ms),
            t(r.first_event_ms),
            t(r.ttft_ms),
            t(r.ttfc_ms),
            t(r.e2e_ms),
            n(r.output_tokens),
            r.tokens_approx,
            n(r.prompt_tokens),
            n(r.cached_tokens),
            r.prompt_bytes,
            r.streamed,
            r.ok(),
            r.error_kind.map(|k| k.label()).unwrap_or(""),
            n(r.http_status.map(u64::from)),
            r.error_message
                .as_deref()
                .map(csv_field)
                .unwrap_or_default(),
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

/// results.json, report.html and requests.csv (when rows were kept) in `dir`,
/// created when missing.
pub fn write_output_dir(dir: &Path, report: &RunReport) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(&report.results_json()).expect("json serializes");
    write_atomic(&dir.join("results.json"), &json)?;
    write_atomic(&dir.join("report.html"), html::render(report).as_bytes())?;
    let rows = report
        .requests
        .as_ref()
        .map(|r| r.rows.as_slice())
        .unwrap_or(&[]);
    let mut csv = Vec::with_capacity(rows.len() * 128 + 256);
    write_csv(&mut csv, rows)?;
    write_atomic(&dir.join("requests.csv"), &csv)
}

/// The HTML report of the saved run in `path` (results.json or a log with the block).
pub fn render_file(path: &Path) -> Result<String, String> {
    Ok(html::render(&RunReport::from_saved(Saved::load(path)?)))
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
    use crate::client::{ErrorKind, Measured, RequestError};
    use crate::state::{RequestRecord, RunMeta, Wall};

    fn report(rows: usize) -> RunReport {
        let mut state = RunState::new(RunMeta::for_tests());
        state.started_at = Some(Wall(1_700_000_000_123_456));
        let mut records = Vec::new();
        for i in 0..rows {
            let mut r = RequestRecord {
                conversation: (i % 7) as u32,
                turn: (i / 7 + 1) as u32,
                start_us: i as u64 * 1_337,
                prompt_bytes: 100 + i as u64,
                measured: Measured {
                    ttft_us: Some(1_000 + i as u64 * 17),
                    e2e_us: Some(9_000 + i as u64 * 31),
                    output_tokens: Some(8),
                    prompt_tokens: Some(50),
                    cached_tokens: Some(10),
                    streamed: true,
                    itl_us: vec![300, 410],
                    ..Default::default()
                },
                ..Default::default()
            };
            if i % 11 == 3 {
                r.measured.error = Some(
                    RequestError::new(
                        ErrorKind::HttpStatus,
                        "HTTP 503: \"busy\", try later".into(),
                    )
                    .with_status(503),
                );
            }
            state.add(&mut r);
            records.push(r);
        }
        state.ended_at = state
            .started_at
            .map(|s| s.plus_us(rows as u64 * 1_337 + 5_000));
        crate::run::finish(state, &records)
    }

    #[test]
    fn results_json_reads_back_into_the_same_state_and_writes_the_same_bytes() {
        let r = report(40);
        let json = serde_json::to_string_pretty(&r.results_json()).unwrap();
        let saved = Saved::parse(&json).unwrap();
        assert_eq!(saved.run, r.state);
        assert_eq!(saved.requests, r.requests);
        let again = RunReport::from_saved(saved);
        assert_eq!(
            serde_json::to_string_pretty(&again.results_json()).unwrap(),
            json
        );
        assert_eq!(html::render(&again), html::render(&r));
    }

    #[test]
    fn the_compact_block_round_trips_and_caps_rows_at_exactly_the_maximum() {
        let r = report(results::COMPACT_MAX_ROWS + 10);
        let mut block = Vec::new();
        results::write_block(&mut block, &r.results_json()).unwrap();
        let log = format!("log line\n{}\nmore log", String::from_utf8(block).unwrap());
        let saved = Saved::parse(&log).unwrap();
        assert_eq!(saved.run, r.state, "the state travels whole");
        let rows = saved.requests.unwrap();
        assert_eq!(rows.rows.len(), results::COMPACT_MAX_ROWS);
        assert_eq!(rows.sampled_from, Some(results::COMPACT_MAX_ROWS + 10));
        assert_eq!(rows.rows[0], r.requests.unwrap().rows[0]);
    }

    #[test]
    fn other_schema_versions_and_other_files_are_refused_with_the_reason() {
        let mut v = report(3).results_json();
        v["schema_version"] = 1.into();
        assert!(Saved::parse(&v.to_string())
            .unwrap_err()
            .contains("schema version 1"));
        assert!(Saved::parse("{\"a\": 1}")
            .unwrap_err()
            .contains("no schema_version"));
        assert!(Saved::parse("just a log")
            .unwrap_err()
            .contains("neither results.json"));
    }

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
}
