//! SIGTERM/SIGINT on a real turnbench process mid-run: the partial report is printed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use turnbench::sim::SimConfig;

/// Requests of ~0.5 s each, so a run of many conversations is surely mid-way after 1.5 s.
fn slow_sim() -> SimConfig {
    SimConfig {
        base_ttft_ms: 20.0,
        itl_ms: 25.0,
        output_tokens: 20,
        ..SimConfig::default()
    }
}

async fn spawn_run(url: &str, extra: &[&str]) -> tokio::process::Child {
    let mut args = vec![
        "run",
        url,
        "--conversations",
        "50",
        "--turns",
        "10",
        "--parallel",
        "4",
        "--warmup",
        "0",
        "--min-delay",
        "0",
        "--max-delay",
        "0.05",
        "--seed",
        "3",
    ];
    args.extend_from_slice(extra);
    tokio::process::Command::new(env!("CARGO_BIN_EXE_turnbench"))
        .args(&args)
        .env_remove("TURNBENCH_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn signal(child: &tokio::process::Child, sig: i32) {
    let pid = child.id().expect("running") as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

async fn finish(child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(PROCESS_LIMIT, child.wait_with_output())
        .await
        .expect("exits")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_prints_the_partial_report_and_exits_143() {
    let sim = start_sim(slow_sim()).await;
    let child = spawn_run(&sim.url(), &[]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&child, libc::SIGTERM);
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("PARTIAL RESULTS: terminated by SIGTERM"),
        "{text}"
    );
    let (msg, data) = user_info(&text);
    assert!(msg.contains("PARTIAL RESULTS"));
    let total: u64 = data["litemaas_benchmark_total_requests"].parse().unwrap();
    assert!(total > 0 && total < 500, "measured some, not all: {total}");
    // In-flight requests were given the grace period and finished: no failures.
    assert_eq!(data["litemaas_benchmark_failed_requests"], "0");
    // A conversation cut short is not complete.
    assert!(!text.contains("Completed conversations: 50/50"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_warm_up_is_bounded_by_the_grace_period() {
    use turnbench::sim::Faults;
    let faults = Faults {
        stall_rate: 1.0,
        stall_before_headers_ms: 30_000.0,
        ..Faults::default()
    };
    let sim = start_sim(SimConfig {
        faults,
        ..SimConfig::default()
    })
    .await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_turnbench"))
        .args([
            "run",
            &sim.url(),
            "--warmup",
            "2",
            "--grace-period",
            "0.5",
            "--conversations",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = Instant::now();
    signal(&child, libc::SIGTERM);
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    // Bound, not benchmark: without the grace period it would wait out the 30 s stall.
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(stdout(&out).contains("PARTIAL RESULTS: terminated by SIGTERM"));
    user_info(&stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_is_exit_130_with_the_partial_report() {
    let sim = start_sim(slow_sim()).await;
    let child = spawn_run(&sim.url(), &[]).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    signal(&child, libc::SIGINT);
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(130));
    assert!(stdout(&out).contains("PARTIAL RESULTS: interrupted by SIGINT"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    // Requests of ~30 s and a 60 s grace: only the second signal can end this quickly.
    let sim = start_sim(SimConfig {
        itl_ms: 1000.0,
        output_tokens: 30,
        ..SimConfig::default()
    })
    .await;
    let child = spawn_run(&sim.url(), &["--grace-period", "60"]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let started = Instant::now();
    signal(&child, libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, libc::SIGTERM);
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(143));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "exited at the second signal"
    );
    assert!(stderr(&out).contains("second signal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_ends_with_requests_abandoned_and_said_so() {
    let sim = start_sim(SimConfig {
        itl_ms: 1000.0,
        output_tokens: 30,
        ..SimConfig::default()
    })
    .await;
    let child = spawn_run(&sim.url(), &["--grace-period", "0.5"]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    signal(&child, libc::SIGTERM);
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(143));
    let text = stdout(&out);
    assert!(text.contains("Abandoned in flight: 4"), "{text}");
    user_info(&text);
}
