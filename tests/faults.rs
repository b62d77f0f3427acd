//! Every fault the simulator injects: the run completes, every request is accounted
//! for under its kind, the report and block are printed, and the key never shows.

mod common;

use common::*;
use turnbench::config::Secret;
use turnbench::sim::{Faults, SimConfig};

const KEY: &str = "sk-fault-test-9d8c7b6a";

struct Outcome {
    code: Option<i32>,
    text: String,
    err: String,
    data: std::collections::BTreeMap<String, String>,
}

/// 4 conversations x 3 turns = 12 requests, no warm-up, so a fault at rate r hits
/// exactly floor(12 r) of the measured requests.
async fn run_with(faults: Faults, extra: &[&str]) -> Outcome {
    let sim = start_sim(SimConfig {
        api_key: Some(Secret::new(KEY)),
        faults,
        ..fast_sim()
    })
    .await;
    let mut args = vec!["run".to_string(), sim.url()];
    args.extend(
        [
            "--conversations",
            "4",
            "--turns",
            "3",
            "--parallel",
            "2",
            "--warmup",
            "0",
            "--min-delay",
            "0",
            "--max-delay",
            "0.02",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = turnbench(&args, &[("TURNBENCH_API_KEY", KEY)]).await;
    let text = stdout(&out);
    let err = stderr(&out);
    assert!(!text.contains(KEY) && !err.contains(KEY), "the key leaked");
    assert!(!err.contains("panicked"), "{err}");
    let (_, data) = user_info(&text);
    Outcome {
        code: out.status.code(),
        text,
        err,
        data,
    }
}

fn assert_failed(o: &Outcome, kind: &str, count: u32, first: &str) {
    assert_eq!(o.code, Some(0), "{}", o.err);
    assert_eq!(o.data["litemaas_benchmark_total_requests"], "12");
    assert_eq!(
        o.data["litemaas_benchmark_failed_requests"],
        count.to_string(),
        "{}",
        o.text
    );
    let line = format!("  {kind}: {count} (first: ");
    let at = o
        .text
        .find(&line)
        .unwrap_or_else(|| panic!("no {line:?} in\n{}", o.text));
    assert!(
        o.text[at..].lines().next().unwrap().contains(first),
        "{}",
        o.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_counted_and_fail_the_verdict_above_the_error_rate() {
    let o = run_with(
        Faults {
            error_rate: 0.25,
            ..Faults::default()
        },
        &[],
    )
    .await;
    assert_failed(&o, "http_status", 3, "HTTP 500: simulated failure");
    assert_eq!(o.data["litemaas_benchmark_status"], "FAIL ✗");
    assert!(o.text.contains("error rate 25.00% > 5.00%"));
    // The same faults under a looser --max-error-rate: latency decides.
    let o = run_with(
        Faults {
            error_rate: 0.25,
            ..Faults::default()
        },
        &["--max-error-rate", "0.3"],
    )
    .await;
    assert_eq!(o.data["litemaas_benchmark_status"], "PASS ✓");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_is_reported_not_hidden() {
    let o = run_with(
        Faults {
            error_rate: 0.5,
            error_status: 429,
            ..Faults::default()
        },
        &[],
    )
    .await;
    assert_failed(&o, "http_status", 6, "HTTP 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_midway_is_a_broken_stream() {
    let o = run_with(
        Faults {
            cut_rate: 0.5,
            cut_after_events: 2,
            ..Faults::default()
        },
        &[],
    )
    .await;
    assert_failed(&o, "stream_broken", 6, "stream broken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_is_a_bad_event() {
    let o = run_with(
        Faults {
            malformed_rate: 0.25,
            ..Faults::default()
        },
        &[],
    )
    .await;
    assert_failed(&o, "bad_event", 3, "malformed event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_midway_is_a_server_error_event() {
    let o = run_with(
        Faults {
            error_event_rate: 0.25,
            ..Faults::default()
        },
        &[],
    )
    .await;
    assert_failed(&o, "server_error_event", 3, "simulated error mid-stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_done_or_finish_reason_is_broken() {
    let o = run_with(
        Faults {
            no_end_rate: 0.25,
            ..Faults::default()
        },
        &[],
    )
    .await;
    assert_failed(&o, "stream_broken", 3, "without [DONE] or a finish_reason");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_before_headers_times_out_instead_of_hanging() {
    let started = std::time::Instant::now();
    let faults = Faults {
        stall_rate: 0.25,
        stall_before_headers_ms: 20_000.0,
        ..Faults::default()
    };
    let o = run_with(faults, &["--timeout", "0.5"]).await;
    assert_failed(
        &o,
        "timeout",
        3,
        "timed out after 500ms waiting for response headers",
    );
    // Bound, not benchmark: a hung request would take the 20 s stall.
    assert!(started.elapsed().as_secs() < 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_between_events_hits_the_idle_timeout() {
    let faults = Faults {
        stall_rate: 0.25,
        stall_between_events_ms: 20_000.0,
        ..Faults::default()
    };
    let o = run_with(faults, &["--idle-timeout", "0.3"]).await;
    assert_failed(&o, "timeout", 3, "idle timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_content_chunks_and_very_long_lines_are_fine() {
    let o = run_with(
        Faults {
            null_content: true,
            long_line_bytes: 300_000,
            ..Faults::default()
        },
        &[],
    )
    .await;
    assert_eq!(o.code, Some(0));
    assert_eq!(
        o.data["litemaas_benchmark_failed_requests"], "0",
        "{}",
        o.text
    );
}
