//! The self-contained HTML report, rendered from a run's typed state alone (so a saved
//! run renders again exactly): no script, no external font or stylesheet, printable.

use super::charts;
use super::RunReport;

/// Every chart the report holds, by element id (the browser test checks them all).
pub const CHART_IDS: &[&str] = &[
    "chart-ttft-by-turn",
    "chart-ttft-cdf",
    "chart-ttft-over-time",
    "chart-e2e-over-time",
    "chart-tokens-per-second",
    "chart-cached-by-turn",
    "chart-errors-over-time",
];

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2} ms"))
        .unwrap_or_else(|| "N/A".into())
}

/// Render the report of a run: a function of its state alone, so a saved run
/// renders again byte for byte.
pub fn render(r: &RunReport) -> String {
    let stats = &r.stats;
    let state = &r.state;
    let meta = &state.meta;
    let t = &meta.thresholds;
    let turns: Vec<(u32, f64, f64)> = stats
        .by_turn
        .iter()
        .filter_map(|(k, v)| Some((*k, v.ttft?.p50_ms, v.ttft?.p95_ms)))
        .collect();
    let cached: Vec<(u32, f64, f64)> = stats
        .by_turn
        .iter()
        .filter_map(|(k, v)| Some((*k, v.mean_prompt_tokens?, v.mean_cached_tokens?)))
        .collect();
    let chart_svgs = [
        charts::ttft_by_turn(&turns),
        charts::ttft_cdf(&state.histograms.ttft, t.ttft_p95_ms),
        charts::ttft_over_time(state),
        charts::e2e_over_time(state),
        charts::throughput_over_time(state),
        charts::cached_by_turn(&cached),
        charts::errors_over_time(state),
    ];

    let mut h = String::with_capacity(256 * 1024);
    let model = meta.model.as_deref().unwrap_or("N/A");
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str(&format!(
        "<title>turnbench report: {}</title>\n",
        escape(model)
    ));
    h.push_str(STYLE);
    h.push_str("</head>\n<body>\n");
    h.push_str(&format!(
        "<header class=\"banner {}\" id=\"verdict\"><div class=\"status\">{}</div><div class=\"cache\">Cache: {}</div>\
         <div class=\"thresholds\">TTFT P95 threshold {:.0} ms (WARN below {:.0} ms) · speedup threshold {:.2} (EXCELLENT above {:.2}) · max error rate {:.1}%</div></header>\n",
        r.verdict.status.word(),
        escape(r.verdict.status.label()),
        escape(r.verdict.cache_status.label()),
        t.ttft_p95_ms,
        2.0 * t.ttft_p95_ms,
        t.speedup,
        1.5 * t.speedup,
        100.0 * t.max_error_rate
    ));
    if let Some(p) = r.partial() {
        h.push_str(&format!(
            "<p class=\"alert\">PARTIAL RESULTS: {}</p>\n",
            escape(&p)
        ));
    }
    if let Some(p) = &state.endpoint_unusable {
        h.push_str(&format!(
            "<p class=\"alert\">ENDPOINT NOT USABLE: {}</p>\n",
            escape(p)
        ));
    }
    if meta.target.is_simulator() {
        h.push_str("<p class=\"alert\">Target: the built-in simulator. These figures describe the simulator, not a real endpoint.</p>\n");
    }
    h.push_str(&format!(
        "<p class=\"meta\">Endpoint <code>{}</code> · model <code>{}</code> · seed <code>{}</code> · salt <code>{}</code> · turnbench {}</p>\n",
        escape(meta.target.url()),
        escape(model),
        meta.seed,
        escape(meta.salt.as_deref().unwrap_or("none")),
        escape(&meta.turnbench_version)
    ));

    let ttft = stats.ttft;
    let cards = [
        ("TTFT P50", fmt_ms(ttft.map(|x| x.p50_ms))),
        ("TTFT P95", fmt_ms(ttft.map(|x| x.p95_ms))),
        ("TTFT P99", fmt_ms(ttft.map(|x| x.p99_ms))),
        ("TTFT mean", fmt_ms(ttft.map(|x| x.mean_ms))),
        (
            "Speedup (first ÷ later turns)",
            stats
                .speedup_ratio
                .map(|s| format!("{s:.2}×"))
                .unwrap_or_else(|| "N/A".into()),
        ),
        (
            "Requests",
            format!(
                "{} ({} failed)",
                stats.total_requests, stats.failed_requests
            ),
        ),
        (
            "Requests per second",
            format!("{:.2}", stats.requests_per_second),
        ),
        ("Total time", format!("{:.2} s", stats.total_time_s)),
        ("Client lag P99", fmt_ms(stats.client_lag.map(|x| x.p99_ms))),
    ];
    h.push_str("<section class=\"cards\" id=\"headline\">\n");
    for (k, v) in cards {
        h.push_str(&format!(
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>\n",
            escape(k),
            escape(&v)
        ));
    }
    h.push_str("</section>\n");
    if !r.verdict.warnings.is_empty() {
        h.push_str("<section id=\"warnings\"><h2>Warnings</h2>\n<table><tr><th>id</th><th>count</th><th>message</th></tr>\n");
        for w in &r.verdict.warnings {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(w.id),
                w.count,
                escape(&w.message)
            ));
        }
        h.push_str("</table>\n</section>\n");
    }
    h.push_str("<section class=\"charts\">\n");
    for (id, svg) in CHART_IDS.iter().zip(chart_svgs.iter()) {
        let svg = match svg {
            Ok(svg) => svg.clone(),
            Err(e) => format!("<p>{}</p>", escape(e)),
        };
        h.push_str(&format!(
            "<figure id=\"{id}\" class=\"chart\">{svg}</figure>\n"
        ));
    }
    if let Some(o) = state.open_loop_stats() {
        let svg =
            super::open_loop::active_chart(&o).unwrap_or_else(|e| format!("<p>{}</p>", escape(&e)));
        h.push_str(&format!(
            "<figure id=\"{}\" class=\"chart\">{svg}</figure>\n",
            super::open_loop::ACTIVE_CHART_ID
        ));
    }
    h.push_str("</section>\n");
    let server_charts = [
        charts::kv_usage_over_time(state),
        charts::waiting_over_time(state),
        charts::reuse_by_turn(&stats.server.reuse_by_turn_p50_percent),
    ];
    h.push_str(&crate::scrape::report::html(
        state,
        &stats.server,
        &server_charts,
    ));

    h.push_str("<section id=\"errors\"><h2>Errors</h2>\n");
    if stats.errors.is_empty() {
        h.push_str("<p>No request failed.</p>\n");
    } else {
        h.push_str("<table><tr><th>kind</th><th>count</th><th>first message</th></tr>\n");
        for (kind, e) in &stats.errors {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                escape(kind),
                e.count,
                escape(&e.first_message)
            ));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n");

    h.push_str("<section id=\"settings\"><h2>Settings</h2>\n<table>\n");
    for (k, v) in &meta.settings {
        let shown = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "unset".into(),
            other => other.to_string(),
        };
        h.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>\n",
            escape(k),
            escape(&shown)
        ));
    }
    h.push_str("</table>\n</section>\n</body>\n</html>\n");
    h
}

pub(crate) const STYLE: &str = r#"<style>
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; margin: 0 auto; max-width: 1500px; padding: 16px; color: #1d1d1f; }
.banner { border-radius: 8px; padding: 14px 20px; color: #fff; }
.banner.pass { background: #2e7d32; } .banner.warn { background: #b26a00; } .banner.fail { background: #b71c1c; }
.banner .status { font-size: 28px; font-weight: 700; } .banner .cache { font-size: 18px; margin-top: 4px; }
.banner .thresholds { font-size: 13px; margin-top: 6px; opacity: .9; }
.alert { background: #fff3cd; border: 1px solid #e0c36c; padding: 8px 12px; border-radius: 6px; }
.meta { color: #555; } code { background: #f2f2f2; padding: 1px 4px; border-radius: 3px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; margin: 14px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; }
.card .k { font-size: 12px; color: #666; } .card .v { font-size: 20px; font-weight: 600; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(720px, 1fr)); gap: 12px; }
figure.chart { margin: 0; border: 1px solid #eee; border-radius: 6px; } figure.chart svg { width: 100%; height: auto; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; font-size: 13px; vertical-align: top; }
@media print { .charts { grid-template-columns: 1fr; } figure.chart { break-inside: avoid; } .banner { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
</style>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_server_is_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script>&"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
    }
}
