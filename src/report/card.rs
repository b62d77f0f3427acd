//! The card: the user-info `msg` a person reads in the catalog. It keeps the headings
//! and labels of the LiteMaaS benchmark role's message (TTFT, cache, load, overall
//! status between box rules) so that a catalog item looks the same after the switch;
//! the full summary stays on stdout and in the HTML report.

use super::RunReport;
use crate::state::Target;

/// The rule above and below the card, as the LiteMaaS role draws it.
const RULE: &str = "════════════════════════════════════════════════════════════════";
/// The card stays short enough to read at a glance; the role appends one `Report:` line.
const MAX_LINES: usize = 24;
/// A warning line is cut here: messages from servers can be long.
const MAX_WARNING_CHARS: usize = 110;

fn item(label: &str, value: impl std::fmt::Display) -> String {
    format!("  • {:<16}{value}", format!("{label}:"))
}

fn ms(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2} ms"))
        .unwrap_or_else(|| "N/A".into())
}

fn cut(s: &str) -> String {
    if s.chars().count() <= MAX_WARNING_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_WARNING_CHARS - 1).collect();
    out.push('…');
    out
}

/// The card's lines, at most [`MAX_LINES`]: notices that change how to read the
/// figures first (simulator, partial run, unusable endpoint, TLS off), then the
/// LiteMaaS role's blocks, failed requests and warnings when there are any, and the
/// overall status.
pub fn card_lines(report: &RunReport) -> Vec<String> {
    let s = &report.stats;
    let t = s.ttft;
    let mut notices = Vec::new();
    if let Target::Simulator { .. } = report.state.meta.target {
        notices.push("TARGET: the built-in simulator (no URL given) — these figures describe the simulator, not a real endpoint".to_string());
    }
    if let Some(why) = &report.partial() {
        notices.push(format!("PARTIAL RESULTS: {why}"));
    }
    if let Some(why) = &report.state.endpoint_unusable {
        notices.push(cut(&format!("ENDPOINT NOT USABLE: {why}")));
    }
    if report.state.meta.insecure {
        notices.push("TLS certificate verification: OFF (--insecure)".to_string());
    }

    let mut body = vec![
        String::new(),
        "Time to First Token (TTFT):".to_string(),
        item("Mean", ms(t.map(|x| x.mean_ms))),
        item("P50 (Median)", ms(t.map(|x| x.p50_ms))),
        item("P95", ms(t.map(|x| x.p95_ms))),
        item("P99", ms(t.map(|x| x.p99_ms))),
        String::new(),
        "Cache Performance:".to_string(),
        item(
            "Speedup Ratio",
            s.speedup_ratio
                .map(|v| format!("{v:.2}x"))
                .unwrap_or_else(|| "N/A".into()),
        ),
        item("Status", report.verdict.cache_status.label()),
        String::new(),
        "Load Testing Results:".to_string(),
        item("Total Time", format!("{:.2} seconds", s.total_time_s)),
        item("Total Requests", s.total_requests),
        item("Requests/sec", format!("{:.2}", s.requests_per_second)),
    ];
    if s.failed_requests > 0 {
        body.push(item(
            "Failed",
            format!(
                "{} ({:.2}% of requests)",
                s.failed_requests,
                100.0 * s.error_rate
            ),
        ));
    }

    let mut warnings: Vec<String> = s
        .errors
        .iter()
        .map(|(kind, e)| cut(&format!("{kind}: {} (first: {})", e.count, e.first_message)))
        .collect();
    warnings.extend(
        report
            .verdict
            .warnings
            .iter()
            .map(|w| cut(&format!("{}: {}", w.id, w.message))),
    );
    if report.state.counts.abandoned > 0 {
        warnings.push(format!(
            "abandoned in flight: {}",
            report.state.counts.abandoned
        ));
    }

    let mut tail = vec![
        String::new(),
        format!("Overall Status: {}", report.verdict.status.label()),
        RULE.to_string(),
    ];
    if !warnings.is_empty() && 3 + notices.len() + body.len() + tail.len() >= MAX_LINES {
        // Room for the warnings' line rather than for a blank one.
        tail.remove(0);
    }
    let fixed = 3 + notices.len() + body.len() + tail.len();
    let mut out = vec![
        RULE.to_string(),
        "LiteMaaS Benchmark Results".into(),
        RULE.into(),
    ];
    out.extend(notices);
    out.extend(body);
    if !warnings.is_empty() {
        // Under the load figures (no blank line: the card is kept short), as many as
        // the budget leaves, the rest counted in one line.
        let budget = MAX_LINES.saturating_sub(fixed);
        if budget < 2 {
            out.push(format!("Warnings: {} (see the log)", warnings.len()));
        } else {
            let room = budget - 1;
            out.push("Warnings:".into());
            let shown = if warnings.len() <= room {
                warnings.len()
            } else {
                room - 1
            };
            let hidden = warnings.len() - shown;
            out.extend(warnings.into_iter().take(shown).map(|w| format!("  • {w}")));
            if hidden > 0 && shown > 0 {
                out.push(format!("  • … and {hidden} more (see the log)"));
            } else if hidden > 0 {
                out.push(format!("  • {hidden} warnings (see the log)"));
            }
        }
    }
    out.extend(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::stats::Summary;
    use crate::state::{ErrorCount, RunMeta, RunState};
    use crate::verdict::judge;

    fn report(target: Target, failed: u64, error_kinds: usize) -> RunReport {
        let mut meta = RunMeta::for_tests();
        meta.target = target;
        meta.thresholds.max_error_rate = 0.5;
        let mut state = RunState::new(meta);
        // One streamed request, so that the endpoint counts as streaming.
        state.counts.streamed = 1;
        state.counts.usage_reported = 110;
        let mut stats = state.stats();
        stats.total_time_s = 242.75;
        stats.total_requests = 110;
        stats.failed_requests = failed;
        stats.succeeded_requests = 110 - failed;
        stats.error_rate = failed as f64 / 110.0;
        stats.requests_per_second = 0.45;
        stats.ttft = Some(Summary {
            count: 110 - failed,
            mean_ms: 120.98,
            p50_ms: 92.09,
            p95_ms: 271.6,
            p99_ms: 674.21,
            min_ms: 10.0,
            max_ms: 700.0,
        });
        stats.speedup_ratio = Some(3.84);
        for i in 0..error_kinds {
            stats.errors.insert(
                format!("kind_{i}"),
                ErrorCount {
                    count: 1,
                    first_message: "x".repeat(300),
                },
            );
        }
        let verdict = judge(&state, &stats);
        RunReport {
            state,
            stats,
            verdict,
            requests: None,
        }
    }

    fn endpoint() -> Target {
        Target::Endpoint {
            url: "https://litellm.example.com/v1".into(),
        }
    }

    #[test]
    fn a_clean_run_is_the_litemaas_card_line_for_line() {
        let lines = card_lines(&report(endpoint(), 0, 0));
        let expected = [
            RULE,
            "LiteMaaS Benchmark Results",
            RULE,
            "",
            "Time to First Token (TTFT):",
            "  • Mean:           120.98 ms",
            "  • P50 (Median):   92.09 ms",
            "  • P95:            271.60 ms",
            "  • P99:            674.21 ms",
            "",
            "Cache Performance:",
            "  • Speedup Ratio:  3.84x",
            "  • Status:         EXCELLENT ✓",
            "",
            "Load Testing Results:",
            "  • Total Time:     242.75 seconds",
            "  • Total Requests: 110",
            "  • Requests/sec:   0.45",
            "",
            "Overall Status: PASS ✓",
            RULE,
        ];
        assert_eq!(lines, expected);
        assert_eq!(RULE.chars().count(), 64);
    }

    #[test]
    fn failures_warnings_and_the_simulator_are_said_within_the_line_budget() {
        let sim = Target::Simulator {
            url: "http://127.0.0.1:1/v1".into(),
        };
        let mut r = report(sim, 3, 2);
        r.state.partial = Some("terminated by SIGTERM".into());
        let lines = card_lines(&r);
        assert!(lines[3].starts_with("TARGET: the built-in simulator"));
        assert_eq!(lines[4], "PARTIAL RESULTS: terminated by SIGTERM");
        assert!(lines.contains(&"  • Failed:         3 (2.73% of requests)".to_string()));
        // No room left under two notices: the warnings are counted in one line.
        assert_eq!(lines.len(), MAX_LINES, "{lines:#?}");
        assert_eq!(
            lines[lines.len() - 3..lines.len() - 1],
            ["Warnings: 2 (see the log)", "Overall Status: PASS ✓"]
        );
        assert_eq!(lines.last().unwrap(), RULE);

        // A long message from the server is cut.
        let lines = card_lines(&report(endpoint(), 3, 1));
        let w = lines.iter().position(|l| l == "Warnings:").unwrap();
        assert_eq!(lines[w - 1], "  • Failed:         3 (2.73% of requests)");
        assert!(lines[w + 1].starts_with("  • kind_0: 1 (first: xxx"));
        assert!(lines[w + 1].ends_with('…'));
        assert_eq!(lines[w + 1].chars().count(), MAX_WARNING_CHARS + 4);

        // Many kinds of error: the card still fits, the rest is counted.
        let many = card_lines(&report(endpoint(), 20, 12));
        assert_eq!(many.len(), MAX_LINES, "{many:#?}");
        assert_eq!(
            many[many.len() - 5..many.len() - 3],
            ["Warnings:", "  • 12 warnings (see the log)"]
        );
        // With room for some of them: the first ones, then how many more.
        let some = card_lines(&report(endpoint(), 0, 5));
        assert_eq!(some.len(), MAX_LINES, "{some:#?}");
        let w = some.iter().position(|l| l == "Warnings:").unwrap();
        assert_eq!(some[w - 1], "  • Requests/sec:   0.45");
        let first = format!(
            "  • kind_0: 1 (first: {}…",
            "x".repeat(MAX_WARNING_CHARS - 19)
        );
        assert_eq!(
            some[w + 1..w + 3],
            [first, "  • … and 4 more (see the log)".to_string()]
        );
        // Two warnings and no failed request: both shown.
        let two = card_lines(&report(endpoint(), 0, 2));
        let w = two.iter().position(|l| l == "Warnings:").unwrap();
        assert!(two[w + 2].starts_with("  • kind_1: 1 (first: x"));
        assert_eq!(two[w + 3], "");
    }

    #[test]
    fn without_a_successful_request_the_figures_are_not_available() {
        let mut r = report(endpoint(), 110, 1);
        r.stats.ttft = None;
        r.stats.speedup_ratio = None;
        r.verdict = judge(&r.state, &r.stats);
        let lines = card_lines(&r);
        assert!(lines.contains(&"  • P95:            N/A".to_string()));
        assert!(lines.contains(&"  • Speedup Ratio:  N/A".to_string()));
        assert!(lines.contains(&"Overall Status: FAIL ✗".to_string()));
    }
}
