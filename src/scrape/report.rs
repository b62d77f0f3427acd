//! The server's part of every report: the summary's "Server" section, its user-info
//! data keys, its warnings and its HTML section.

use super::stats::{MetricsStats, ServerLatency, ServerStats};
use crate::report::html::escape;
use crate::state::RunState;
use crate::verdict::Warning;

/// The warning ids this module raises (also in `verdict::WARNING_IDS`).
pub const WARNING_IDS: &[&str] = &[
    "metrics_unavailable",
    "counter_reset",
    "metrics_other_traffic",
];

/// Charts of the HTML section, by element id.
pub const CHART_IDS: &[&str] = &[
    "chart-kv-usage-over-time",
    "chart-waiting-over-time",
    "chart-reuse-by-turn",
];

fn f2(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "N/A".into())
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2} ms"))
        .unwrap_or_else(|| "N/A".into())
}

fn percent(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}%"))
        .unwrap_or_else(|| "N/A".into())
}

fn whole(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "N/A".into())
}

/// "of 120.00 ms TTFT: network and gateway 8.00 ms, queue 30.00 ms, prefill 82.00 ms".
pub fn breakdown(m: &MetricsStats) -> Option<String> {
    let client = m.client_ttft_mean_ms?;
    let overhead = m.overhead_ms?;
    let mean = |l: Option<ServerLatency>| l.and_then(|l| l.mean_ms);
    let mut s = format!("of {client:.2} ms TTFT: network and gateway {overhead:.2} ms");
    if let Some(q) = mean(m.queue) {
        s.push_str(&format!(", queue {q:.2} ms"));
    }
    if let Some(p) = mean(m.prefill) {
        s.push_str(&format!(", prefill {p:.2} ms"));
    }
    if let Some(o) = m.other_server_ms.filter(|o| o.abs() >= 0.01) {
        s.push_str(&format!(", other server time {o:.2} ms"));
    }
    Some(s)
}

/// Why there are no server figures, when there are none.
fn unavailable(state: &RunState, m: Option<&MetricsStats>) -> Option<String> {
    match m {
        None if state.server.is_none() => Some("N/A (no --metrics-url)".into()),
        None => Some("N/A".into()),
        Some(m) if m.pods_with_data == 0 => {
            let first = m
                .pods
                .iter()
                .find_map(|p| p.first_error.as_ref().map(|e| format!("{}: {e}", p.url)))
                .unwrap_or_else(|| "too few successful scrapes".into());
            Some(format!("N/A (no pod's metrics could be read; {first})"))
        }
        Some(_) => None,
    }
}

/// The summary's "Server" section.
pub fn lines(state: &RunState, s: &ServerStats, out: &mut Vec<String>) {
    let m = s.metrics.as_ref();
    match m {
        Some(m) if m.pods_with_data > 0 => {
            let source = if m.simulator {
                "the built-in simulator's /metrics".to_string()
            } else {
                format!(
                    "vLLM /metrics of {} of {} pods",
                    m.pods_with_data,
                    m.pods.len()
                )
            };
            out.push(format!(
                "Server ({source}, deltas over the measured phase):"
            ));
            out.push(format!(
                "  Prefix cache hit rate: {} ({} of {} queried tokens); client-side cached share {}; gap {} points",
                percent(m.hit_rate_percent),
                whole(m.prefix_cache_hits),
                whole(m.prefix_cache_queries),
                percent(m.client_cached_percent),
                f2(m.gap_points)
            ));
            match breakdown(m) {
                Some(b) => out.push(format!("  TTFT breakdown: {b}")),
                None => out.push("  TTFT breakdown: N/A (no server TTFT or no client TTFT)".into()),
            }
            let mean = |v: Option<ServerLatency>| ms(v.and_then(|v| v.mean_ms));
            out.push(format!(
                "  Server latencies, mean: TTFT {} (~P50 {}, ~P95 {} from buckets), queue {}, prefill {}, decode {}, e2e {}",
                mean(m.ttft),
                ms(m.ttft.and_then(|t| t.p50_ms)),
                ms(m.ttft.and_then(|t| t.p95_ms)),
                mean(m.queue),
                mean(m.prefill),
                mean(m.decode),
                mean(m.e2e)
            ));
            out.push(format!(
                "  Requests finished by the pods: {} (this run sent {}); prompt tokens {}, generation tokens {}",
                whole(m.requests_finished),
                state.counts.requests,
                whole(m.prompt_tokens),
                whole(m.generation_tokens)
            ));
            out.push(format!(
                "  KV cache usage: mean {}, peak {}{}; waiting requests: peak {}, mean {}; running: peak {}; preemptions: {}",
                percent(m.kv_usage_mean_percent),
                percent(m.kv_usage_max_percent),
                m.kv_capacity_tokens
                    .map(|c| format!(" of {c} tokens"))
                    .unwrap_or_default(),
                whole(m.waiting_max),
                f2(m.waiting_mean),
                whole(m.running_max),
                whole(m.preemptions)
            ));
            if m.pods.len() > 1 {
                for p in &m.pods {
                    out.push(format!(
                        "  Pod {}: hit rate {}, {} requests, peak KV {}, {} of {} scrapes failed, {} resets",
                        p.url,
                        percent(p.hit_rate_percent),
                        whole(p.requests_finished),
                        percent(p.kv_usage_max_percent),
                        p.failed_scrapes,
                        p.scrapes,
                        p.resets
                    ));
                }
            }
            for note in m.pods.iter().filter_map(|p| p.model_note.as_ref()).take(3) {
                out.push(format!("  Note: {note}"));
            }
            if !m.covers_run {
                out.push("  Note: a scrape before or after the measured phase failed: the deltas cover only part of it".into());
            }
            out.push("  Caveat: the pods count all the traffic they served during the run, other clients' and other shards' too".into());
        }
        _ => {
            out.push("Server:".into());
            out.push(format!(
                "  Server metrics: {}",
                unavailable(state, m).unwrap_or_default()
            ));
            for p in m.map(|m| &m.pods[..]).unwrap_or_default().iter().take(10) {
                if let Some(e) = &p.first_error {
                    out.push(format!("  Pod {}: {e}", p.url));
                }
            }
        }
    }
    if let Some(g) = &s.gateway_overhead {
        out.push(format!(
            "  Gateway-reported overhead ({}): mean {:.2} ms, P50 {:.2} / P95 {:.2} / P99 {:.2} ms (n={})",
            overhead_header(state),
            g.mean_ms,
            g.p50_ms,
            g.p95_ms,
            g.p99_ms,
            g.count
        ));
    }
    match s.reuse_p50_percent {
        Some(p50) => {
            out.push(format!(
                "  Reuse efficiency (cached ÷ the previous turn's prompt and reply): P50 {p50:.2}%, token-weighted {} (n={})",
                percent(s.reuse_weighted_percent),
                s.reuse_samples
            ));
            let turns: Vec<String> = s
                .reuse_by_turn_p50_percent
                .iter()
                .map(|(t, p)| {
                    let label = if *t == crate::state::TURN_POOL {
                        format!("{t}+")
                    } else {
                        t.to_string()
                    };
                    format!("{label}: {p:.0}%")
                })
                .collect();
            out.push(format!("    by turn (P50): {}", turns.join(", ")));
        }
        None => out.push(
            "  Reuse efficiency: N/A (needs later turns with usage and cached tokens)".into(),
        ),
    }
}

fn overhead_header(state: &RunState) -> String {
    state
        .meta
        .settings
        .get("overhead_header")
        .and_then(|v| v.as_str())
        .unwrap_or("gateway header")
        .to_string()
}

/// The user-info data keys (without prefix).
pub fn data(s: &ServerStats) -> Vec<(&'static str, String)> {
    let m = s.metrics.as_ref().filter(|m| m.pods_with_data > 0);
    vec![
        (
            "server_prefix_cache_hit_rate",
            f2(m.and_then(|m| m.hit_rate_percent)),
        ),
        (
            "server_ttft_p50_ms",
            f2(m.and_then(|m| m.ttft).and_then(|t| t.p50_ms)),
        ),
        (
            "queue_time_mean_ms",
            f2(m.and_then(|m| m.queue).and_then(|t| t.mean_ms)),
        ),
        ("overhead_ms", f2(m.and_then(|m| m.overhead_ms))),
        (
            "kv_cache_usage_max",
            f2(m.and_then(|m| m.kv_usage_max_percent)),
        ),
        ("preemptions", whole(m.and_then(|m| m.preemptions))),
        ("reuse_efficiency", f2(s.reuse_p50_percent)),
    ]
}

/// The warnings of the server's side.
pub fn warnings(state: &RunState, s: &ServerStats) -> Vec<Warning> {
    let mut out = Vec::new();
    let Some(m) = &s.metrics else {
        return out;
    };
    if m.failed_scrapes > 0 {
        let first = m
            .pods
            .iter()
            .find_map(|p| p.first_error.as_ref().map(|e| format!("{}: {e}", p.url)))
            .unwrap_or_default();
        let effect = if m.pods_with_data == 0 {
            "the server figures are N/A"
        } else {
            "the server figures cover only the scrapes that succeeded"
        };
        out.push(Warning {
            id: "metrics_unavailable",
            count: u64::from(m.failed_scrapes),
            message: format!(
                "{} of {} scrapes of the server's metrics failed (first: {first}): {effect}",
                m.failed_scrapes, m.scrapes
            ),
        });
    }
    if m.resets > 0 {
        out.push(Warning {
            id: "counter_reset",
            count: u64::from(m.resets),
            message: format!(
                "a pod's counters went backwards {} times (a restart, or a Service URL that reaches a different pod each scrape): increases after it are counted from zero; what it counted between the scrape before and the restart is missing",
                m.resets
            ),
        });
    }
    if let Some(finished) = m.requests_finished {
        let sent = state.counts.requests as f64;
        if finished > sent * 1.1 + 2.0 {
            out.push(Warning {
                id: "metrics_other_traffic",
                count: (finished - sent).round() as u64,
                message: format!(
                    "the pods finished {finished:.0} requests during the run, this run sent {sent:.0}: other clients' (or other shards') traffic is in the server figures"
                ),
            });
        }
    }
    out
}

/// The HTML "Server" section, with its charts.
pub fn html(state: &RunState, s: &ServerStats, charts: &[Result<String, String>]) -> String {
    let mut h = String::from("<section id=\"server\"><h2>Server</h2>\n");
    let m = s.metrics.as_ref().filter(|m| m.pods_with_data > 0);
    match m {
        Some(m) => {
            let cards = [
                ("Server prefix-cache hit rate", percent(m.hit_rate_percent)),
                ("Client-side cached share", percent(m.client_cached_percent)),
                ("Gap (points)", f2(m.gap_points)),
                ("Network and gateway (mean)", ms(m.overhead_ms)),
                ("Server TTFT ~P50", ms(m.ttft.and_then(|t| t.p50_ms))),
                ("Queue time (mean)", ms(m.queue.and_then(|t| t.mean_ms))),
                ("Prefill time (mean)", ms(m.prefill.and_then(|t| t.mean_ms))),
                ("Peak KV cache usage", percent(m.kv_usage_max_percent)),
                ("Peak waiting requests", whole(m.waiting_max)),
                ("Preemptions", whole(m.preemptions)),
                ("Reuse efficiency P50", percent(s.reuse_p50_percent)),
            ];
            h.push_str("<div class=\"cards\">\n");
            for (k, v) in cards {
                h.push_str(&format!(
                    "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>\n",
                    escape(k),
                    escape(&v)
                ));
            }
            h.push_str("</div>\n");
            if let Some(b) = breakdown(m) {
                h.push_str(&format!(
                    "<p id=\"ttft-breakdown\">TTFT breakdown: {}</p>\n",
                    escape(&b)
                ));
            }
            h.push_str("<table><tr><th>pod</th><th>hit rate</th><th>requests</th><th>peak KV</th><th>scrapes (failed)</th><th>resets</th><th>note</th></tr>\n");
            for p in &m.pods {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td></tr>\n",
                    escape(&p.url),
                    percent(p.hit_rate_percent),
                    whole(p.requests_finished),
                    percent(p.kv_usage_max_percent),
                    p.scrapes,
                    p.failed_scrapes,
                    p.resets,
                    escape(p.model_note.as_deref().or(p.first_error.as_deref()).unwrap_or(""))
                ));
            }
            h.push_str("</table>\n<p class=\"meta\">The pods count all the traffic they served during the run, other clients' too. Means are exact; percentiles are estimated within the server's histogram buckets.</p>\n");
        }
        None => h.push_str(&format!(
            "<p>Server metrics: {}</p>\n",
            escape(&unavailable(state, s.metrics.as_ref()).unwrap_or_default())
        )),
    }
    if let Some(g) = &s.gateway_overhead {
        h.push_str(&format!(
            "<p id=\"gateway-overhead\">Gateway-reported overhead ({}): mean {:.2} ms, P50 {:.2}, P95 {:.2}, P99 {:.2} ms (n={})</p>\n",
            escape(&overhead_header(state)),
            g.mean_ms,
            g.p50_ms,
            g.p95_ms,
            g.p99_ms,
            g.count
        ));
    }
    h.push_str("<div class=\"charts\">\n");
    for (id, svg) in CHART_IDS.iter().zip(charts) {
        let svg = match svg {
            Ok(svg) => svg.clone(),
            Err(e) => format!("<p>{}</p>", escape(e)),
        };
        h.push_str(&format!(
            "<figure id=\"{id}\" class=\"chart\">{svg}</figure>\n"
        ));
    }
    h.push_str("</div>\n</section>\n");
    h
}
