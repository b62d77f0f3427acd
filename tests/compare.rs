//! `turnbench compare` and `run --baseline`: the difference between two endpoints (or
//! two runs) with its 95% interval, against real servers on 127.0.0.1.

mod common;

use common::*;
use turnbench::config::Secret;
use turnbench::sim::SimConfig;

fn compare_args(a: &str, b: &str, extra: &[&str]) -> Vec<String> {
    let mut v = strings(&["compare", a, b]);
    v.extend(small(&["--conversations", "8", "--turns", "3"]));
    v.extend(strings(extra));
    v
}

fn delta(data: &std::collections::BTreeMap<String, String>, key: &str) -> f64 {
    data[&format!("litemaas_benchmark_{key}")].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_compared_with_itself_shows_no_detectable_difference() {
    let sim = start_sim(fast_sim()).await;
    let mut contains_zero = [0; 2];
    for seed in ["1", "2", "3"] {
        let out = turnbench(
            &compare_args(&sim.url(), &sim.url(), &["--seed", seed]),
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let (_, data) = user_info(&text);
        for (i, m) in ["ttft_p50", "ttft_p95"].iter().enumerate() {
            let (lo, hi) = (
                delta(&data, &format!("{m}_delta_ci_low_ms")),
                delta(&data, &format!("{m}_delta_ci_high_ms")),
            );
            if lo <= 0.0 && hi >= 0.0 {
                contains_zero[i] += 1;
                let label = if i == 0 { "TTFT P50" } else { "TTFT P95" };
                assert!(
                    text.contains(&format!("{label}: no difference this run can detect")),
                    "{text}"
                );
            }
        }
        // Each side keeps its own run verdict, and the same plan with its own salt.
        assert_eq!(data["litemaas_benchmark_baseline_status"], "PASS ✓");
        assert_eq!(data["litemaas_benchmark_baseline_seed"], seed);
        assert_eq!(data["litemaas_benchmark_candidate_seed"], seed);
        assert_ne!(
            data["litemaas_benchmark_baseline_salt"],
            data["litemaas_benchmark_candidate_salt"]
        );
        assert_eq!(data["litemaas_benchmark_overhead_status"], "N/A");
    }
    // A 95% interval misses a true zero one time in twenty: two seeds of three must hold.
    assert!(
        contains_zero.iter().all(|n| *n >= 2),
        "intervals containing 0: {contains_zero:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_endpoint_shows_its_difference_and_fails_an_overhead_bound() {
    let fast = start_sim(fast_sim()).await;
    let slow = start_sim(SimConfig {
        base_ttft_ms: fast_sim().base_ttft_ms + 20.0,
        ..fast_sim()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("cmp");
    let out = turnbench(
        &compare_args(
            &fast.url(),
            &slow.url(),
            &[
                "--max-overhead-ms",
                "5",
                "--candidate-name",
                "gateway",
                "--output-dir",
                out_dir.to_str().unwrap(),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let (_, data) = user_info(&text);
    let d = delta(&data, "ttft_p50_delta_ms");
    let (lo, hi) = (
        delta(&data, "ttft_p50_delta_ci_low_ms"),
        delta(&data, "ttft_p50_delta_ci_high_ms"),
    );
    assert!((d - 20.0).abs() < 3.0, "P50 difference {d}");
    assert!(lo <= d && d <= hi && lo > 0.0, "{lo} {d} {hi}");
    assert!(text.contains("gateway adds "), "{text}");
    assert_eq!(data["litemaas_benchmark_overhead_status"], "FAIL ✗");

    // comparison.json reads back; each side has its own results; the page its charts.
    let c = turnbench::compare::load(&out_dir.join("comparison.json")).unwrap();
    assert_eq!(c.candidate_name, "gateway");
    assert!(c.paired);
    for side in ["baseline", "candidate"] {
        let saved =
            turnbench::state::results::Saved::load(&out_dir.join(side).join("results.json"))
                .unwrap();
        assert_eq!(saved.run.counts.requests, 24);
    }
    let page = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(page.contains("chart-ttft-cdf-overlay") && page.contains("chart-ttft-by-turn-both"));

    // --strict: the overhead FAIL is exit 1.
    let out = turnbench(
        &compare_args(
            &fast.url(),
            &slow.url(),
            &[
                "--max-overhead-ms",
                "5",
                "--strict",
                "--order",
                "sequential",
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("Order: sequential"));
}

/// A TCP forwarder to `target`: the candidate reaches the same simulator another way.
async fn forwarder(target: std::net::SocketAddr) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_of_one_backend_see_its_full_speedup() {
    let sim = start_sim(fast_sim()).await;
    let proxied = forwarder(sim.addr).await;
    let out = turnbench(&compare_args(&sim.url(), &proxied, &[]), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    for side in ["baseline", "candidate"] {
        let speedup = delta(&data, &format!("{side}_speedup_ratio"));
        assert!(speedup > 2.0, "{side} speedup {speedup}");
        assert_eq!(
            data[&format!("litemaas_benchmark_{side}_warm_first_turns")],
            "0"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_side_is_named_exit_3_and_the_other_side_still_reports() {
    let sim = start_sim(fast_sim()).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let out = turnbench(&compare_args(&sim.url(), &closed, &[]), &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("NOT USABLE: candidate: "), "{text}");
    let (_, data) = user_info(&text);
    assert_eq!(data["litemaas_benchmark_baseline_total_requests"], "24");
    assert_eq!(data["litemaas_benchmark_candidate_total_requests"], "0");

    // A refused key on one side; each side's key stays out of every output.
    let secured = start_sim(SimConfig {
        api_key: Some(Secret::new("sk-right-key-0001")),
        ..fast_sim()
    })
    .await;
    let out = turnbench(
        &compare_args(
            &secured.url(),
            &secured.url(),
            &[
                "--baseline-api-key",
                "sk-right-key-0001",
                "--candidate-name",
                "gw",
            ],
        ),
        &[("TURNBENCH_API_KEY", "sk-wrong-key-0002")],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("gw: authentication refused"), "{all}");
    for key in ["sk-right-key-0001", "sk-wrong-key-0002"] {
        assert!(!all.contains(key), "{key} printed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_against_an_earlier_result_gives_a_regression_verdict() {
    let fast = start_sim(fast_sim()).await;
    let slow = start_sim(SimConfig {
        base_ttft_ms: 60.0,
        prefill_us_per_token: 40.0,
        ..fast_sim()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let base_dir = dir.path().join("base");
    let out = turnbench(
        &[
            &["run".to_string(), fast.url()][..],
            &small(&["--output-dir", base_dir.to_str().unwrap()]),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    let file = base_dir.join("results.json");
    let file = file.to_str().unwrap();

    let out = turnbench(
        &[
            &["run".to_string(), fast.url()][..],
            &small(&["--baseline", file, "--strict"]),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    assert_eq!(
        data["litemaas_benchmark_regression_status"],
        "PASS ✓",
        "{}",
        stdout(&out)
    );

    let out = turnbench(
        &[
            &["run".to_string(), slow.url()][..],
            &small(&["--baseline", file, "--strict"]),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    assert_eq!(data["litemaas_benchmark_regression_status"], "FAIL ✗");
    assert!(
        stdout(&out).contains("TTFT P95 worse by at least"),
        "{}",
        stdout(&out)
    );

    // Another workload: refused with the reason, after the run's own report.
    let out = turnbench(
        &[
            &["run".to_string(), fast.url()][..],
            &small(&["--baseline", file, "--turns", "2"]),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("another workload"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_without_two_urls_or_with_a_bad_order_is_a_config_error() {
    for (args, needle) in [
        (
            strings(&["compare", "http://127.0.0.1:9/v1"]),
            "CANDIDATE_URL",
        ),
        (
            strings(&["compare", "sim", "sim", "--order", "random"]),
            "--order=\"random\": expected alternate or sequential",
        ),
        (
            strings(&["compare", "sim", "sim", "--candidate-name", "baseline"]),
            "--candidate-name",
        ),
    ] {
        let out = turnbench(&args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
}
