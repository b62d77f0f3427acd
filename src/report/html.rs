//! The self-contained HTML report, rendered from results.json alone (so a saved run
//! renders again exactly): no script, no external font or stylesheet, printable.

use serde_json::Value;

use super::charts::{self, Point};

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

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn fmt_ms(v: &Value) -> String {
    num(v)
        .map(|x| format!("{x:.2} ms"))
        .unwrap_or_else(|| "N/A".into())
}

/// The per-request rows of results.json as chart points.
pub fn points(results: &Value) -> Vec<Point> {
    let cols: Vec<&str> = results["requests"]["columns"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
        .unwrap_or_default();
    let idx = |name: &str| cols.iter().position(|c| *c == name);
    let (turn, start, ttft, e2e, out, prompt, cached, error) = (
        idx("turn"),
        idx("start_ms"),
        idx("ttft_ms"),
        idx("e2e_ms"),
        idx("output_tokens"),
        idx("prompt_tokens"),
        idx("cached_tokens"),
        idx("error_kind"),
    );
    let get =
        |row: &Vec<Value>, i: Option<usize>| i.and_then(|i| row.get(i)).and_then(|v| v.as_f64());
    results["requests"]["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| r.as_array())
                .map(|r| Point {
                    turn: get(r, turn).unwrap_or(1.0) as u32,
                    start_s: get(r, start).unwrap_or(0.0) / 1000.0,
                    ttft_ms: get(r, ttft),
                    e2e_ms: get(r, e2e),
                    output_tokens: get(r, out),
                    prompt_tokens: get(r, prompt),
                    cached_tokens: get(r, cached),
                    error: error
                        .and_then(|i| r.get(i))
                        .and_then(|v| v.as_str())
                        .map(String::from),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Render the report. `Err` names what results.json lacks.
pub fn render(results: &Value) -> Result<String, String> {
    let stats = &results["stats"];
    if !stats.is_object() {
        return Err("not a turnbench results.json: no \"stats\"".into());
    }
    let prefix = results["settings"]["user_info_prefix"]
        .as_str()
        .unwrap_or("litemaas_benchmark");
    let info = &results["user_info"];
    let field = |k: &str| {
        info[format!("{prefix}_{k}")]
            .as_str()
            .unwrap_or("N/A")
            .to_string()
    };
    let status = field("status");
    let status_class = match status.split_whitespace().next() {
        Some("PASS") => "pass",
        Some("WARN") => "warn",
        _ => "fail",
    };
    let t = &results["thresholds"];
    let threshold_ms = num(&t["ttft_p95_ms"]).unwrap_or(500.0);
    let pts = points(results);

    let mut turns: Vec<(u32, f64, f64)> = stats["ttft_by_turn"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((k.parse().ok()?, num(&v["p50_ms"])?, num(&v["p95_ms"])?))
                })
                .collect()
        })
        .unwrap_or_default();
    turns.sort_by_key(|t| t.0);
    let wall = num(&stats["total_time_s"]).unwrap_or(0.0);

    let chart_svgs = [
        charts::ttft_by_turn(&turns)?,
        charts::ttft_cdf(&pts, threshold_ms)?,
        charts::ttft_over_time(&pts)?,
        charts::e2e_over_time(&pts)?,
        charts::tokens_per_second(&pts)?,
        charts::cached_by_turn(&pts)?,
        charts::errors_over_time(&pts, wall)?,
    ];

    let mut h = String::with_capacity(256 * 1024);
    let target = &results["target"];
    let url = target["url"].as_str().unwrap_or("");
    let is_sim = target["kind"].as_str() == Some("simulator");
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str(&format!(
        "<title>turnbench report: {}</title>\n",
        escape(&field("model"))
    ));
    h.push_str(STYLE);
    h.push_str("</head>\n<body>\n");
    h.push_str(&format!(
        "<header class=\"banner {status_class}\" id=\"verdict\"><div class=\"status\">{}</div><div class=\"cache\">Cache: {}</div>\
         <div class=\"thresholds\">TTFT P95 threshold {:.0} ms (WARN below {:.0} ms) · speedup threshold {:.2} (EXCELLENT above {:.2}) · max error rate {:.1}%</div></header>\n",
        escape(&status),
        escape(&field("cache_status")),
        threshold_ms,
        2.0 * threshold_ms,
        num(&t["speedup"]).unwrap_or(2.0),
        1.5 * num(&t["speedup"]).unwrap_or(2.0),
        100.0 * num(&t["max_error_rate"]).unwrap_or(0.0)
    ));
    if let Some(p) = results["partial"].as_str() {
        h.push_str(&format!(
            "<p class=\"alert\">PARTIAL RESULTS: {}</p>\n",
            escape(p)
        ));
    }
    if let Some(p) = results["endpoint_unusable"].as_str() {
        h.push_str(&format!(
            "<p class=\"alert\">ENDPOINT NOT USABLE: {}</p>\n",
            escape(p)
        ));
    }
    if is_sim {
        h.push_str("<p class=\"alert\">Target: the built-in simulator. These figures describe the simulator, not a real endpoint.</p>\n");
    }
    h.push_str(&format!(
        "<p class=\"meta\">Endpoint <code>{}</code> · model <code>{}</code> · seed <code>{}</code> · turnbench {}</p>\n",
        escape(url),
        escape(&field("model")),
        escape(&field("seed")),
        escape(results["version"].as_str().unwrap_or(""))
    ));

    let ttft = &stats["ttft"];
    let speedup = num(&stats["speedup_ratio"])
        .map(|s| format!("{s:.2}×"))
        .unwrap_or_else(|| "N/A".into());
    let cards = [
        ("TTFT P50", fmt_ms(&ttft["p50_ms"])),
        ("TTFT P95", fmt_ms(&ttft["p95_ms"])),
        ("TTFT P99", fmt_ms(&ttft["p99_ms"])),
        ("TTFT mean", fmt_ms(&ttft["mean_ms"])),
        ("Speedup (first ÷ later turns)", speedup),
        (
            "Requests",
            format!(
                "{} ({} failed)",
                stats["total_requests"], stats["failed_requests"]
            ),
        ),
        (
            "Requests per second",
            num(&stats["requests_per_second"])
                .map(|x| format!("{x:.2}"))
                .unwrap_or_default(),
        ),
        ("Total time", format!("{wall:.2} s")),
    ];
    h.push_str("<section class=\"cards\" id=\"headline\">\n");
    for (k, v) in cards {
        h.push_str(&format!(
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>\n",
            escape(k),
            escape(&v)
        ));
    }
    h.push_str("</section>\n<section class=\"charts\">\n");
    for (id, svg) in CHART_IDS.iter().zip(chart_svgs.iter()) {
        h.push_str(&format!(
            "<figure id=\"{id}\" class=\"chart\">{svg}</figure>\n"
        ));
    }
    h.push_str("</section>\n");

    h.push_str("<section id=\"errors\"><h2>Errors</h2>\n");
    match stats["errors"].as_object() {
        Some(errors) if !errors.is_empty() => {
            h.push_str("<table><tr><th>kind</th><th>count</th><th>first message</th></tr>\n");
            for (kind, e) in errors {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    escape(kind),
                    e["count"],
                    escape(e["first_message"].as_str().unwrap_or(""))
                ));
            }
            h.push_str("</table>\n");
        }
        _ => h.push_str("<p>No request failed.</p>\n"),
    }
    h.push_str("</section>\n");

    h.push_str("<section id=\"settings\"><h2>Settings</h2>\n<table>\n");
    if let Some(settings) = results["settings"].as_object() {
        for (k, v) in settings {
            let shown = match v {
                Value::String(s) => s.clone(),
                Value::Null => "unset".into(),
                other => other.to_string(),
            };
            h.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>\n",
                escape(k),
                escape(&shown)
            ));
        }
    }
    h.push_str("</table>\n</section>\n</body>\n</html>\n");
    Ok(h)
}

const STYLE: &str = r#"<style>
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

    #[test]
    fn something_that_is_not_results_json_is_refused() {
        assert!(render(&serde_json::json!({"a": 1}))
            .unwrap_err()
            .contains("no \"stats\""));
    }
}
