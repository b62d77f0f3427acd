//! Many conversations: file descriptors are planned for before the run starts.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_conversations_with_a_thousand_in_flight_complete() {
    // Against the in-process simulator: both ends of 1,000 connections live in one process.
    let args = [
        "run",
        "--conversations",
        "10000",
        "--turns",
        "1",
        "--parallel",
        "1000",
        "--warmup",
        "0",
        "--min-delay",
        "0",
        "--max-delay",
        "0",
        "--documents",
        "synthetic:1k",
        "--seed",
        "1",
    ];
    let out = turnbench(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    assert_eq!(data["litemaas_benchmark_total_requests"], "10000");
    assert_eq!(
        data["litemaas_benchmark_failed_requests"],
        "0",
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_low_a_hard_limit_is_refused_before_starting() {
    let script = format!(
        "ulimit -n 256 && exec '{}' run --parallel 1000 --conversations 10 --turns 1",
        env!("CARGO_BIN_EXE_turnbench")
    );
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("open files") && err.contains("ulimit -n"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_soft_limit_is_raised_when_the_hard_limit_allows() {
    let script = format!(
        "ulimit -Sn 256 && exec '{}' run --parallel 200 --conversations 400 --turns 1 --warmup 0 \
         --min-delay 0 --max-delay 0 --documents synthetic:1k",
        env!("CARGO_BIN_EXE_turnbench")
    );
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    // 2 x 200 sockets + margin > 256: without raising the limit, connections fail.
    assert_eq!(
        data["litemaas_benchmark_failed_requests"],
        "0",
        "{}",
        stdout(&out)
    );
}
