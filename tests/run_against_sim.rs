//! The real `turnbench run` against the simulator on a free loopback port.

mod common;

use common::*;
use turnbench::config::Secret;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_prints_the_summary_then_a_complete_user_info_block() {
    let sim = start_sim(fast_sim()).await;
    let out = turnbench(
        &[&["run".to_string(), sim.url()][..], &small(&[])].concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    for label in [
        "Total time:",
        "Total requests: 12",
        "Requests per second:",
        "Time to First Token (TTFT):",
        "Speedup ratio:",
    ] {
        assert!(text.contains(label), "summary lacks {label:?}:\n{text}");
    }
    // The TTFT block starts with Mean, then P50, P95, P99 (scrapers rely on the order).
    let ttft = &text[text.find("Time to First Token (TTFT):").unwrap()..];
    let order: Vec<usize> = ["Mean:", "P50:", "P95:", "P99:"]
        .iter()
        .map(|l| ttft.find(l).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    // The block is last on stdout.
    assert!(text.trim_end().ends_with(turnbench::report::END_MARKER));

    let (msg, data) = user_info(&text);
    for key in DATA_KEYS {
        assert!(
            data.contains_key(&format!("litemaas_benchmark_{key}")),
            "missing {key}"
        );
    }
    assert_eq!(data.len(), DATA_KEYS.len());
    assert_eq!(data["litemaas_benchmark_total_requests"], "12");
    assert_eq!(data["litemaas_benchmark_failed_requests"], "0");
    assert_eq!(data["litemaas_benchmark_model"], "turnbench-sim");
    assert_eq!(data["litemaas_benchmark_seed"], "7");
    assert_eq!(data["litemaas_benchmark_p95_threshold_ms"], "500.00");
    let p95: f64 = data["litemaas_benchmark_p95_ms"].parse().unwrap();
    assert!(p95 > 0.0);
    // The msg is the card (src/report/card.rs), with the LiteMaaS role's labels.
    assert!(msg.contains("Speedup Ratio:"));
    assert!(msg.contains("Overall Status: PASS"));
    // The prefix cache makes later turns faster.
    let speedup: f64 = data["litemaas_benchmark_speedup_ratio"].parse().unwrap();
    assert!(speedup > 2.0, "speedup {speedup}");
    assert!(
        text.contains("server-reported cached:"),
        "usage with cached_tokens is reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_url_the_built_in_simulator_is_benchmarked_and_said_so() {
    let out = turnbench(&[&["run".to_string()][..], &small(&[])].concat(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("TARGET: the built-in simulator"), "{text}");
    assert!(stderr(&out).contains("BUILT-IN SIMULATOR"));
    assert!(
        !stderr(&out).contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );
    let (msg, data) = user_info(&text);
    assert!(msg.contains("built-in simulator"));
    // With default simulator timings the cache speedup is well above 2.
    let speedup: f64 = data["litemaas_benchmark_speedup_ratio"].parse().unwrap();
    assert!(speedup > 3.0, "speedup {speedup}");
    assert_eq!(data["litemaas_benchmark_status"], "PASS ✓");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_dir_holds_results_json_and_one_csv_row_per_request() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let args = [
        &["run".to_string(), sim.url()][..],
        &small(&["--output-dir", out_dir.to_str().unwrap()]),
    ]
    .concat();
    let out = turnbench(&args, &[("TURNBENCH_API_KEY", "sk-not-needed-here-123")]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["stats"]["total_requests"], 12);
    assert_eq!(json["run"]["meta"]["settings"]["api_key_set"], true);
    assert!(json["run"]["meta"]["settings"].get("api_key").is_none());
    assert_eq!(json["run"]["meta"]["seed"], 7);
    assert_eq!(json["run"]["meta"]["model"], "turnbench-sim");
    // Histograms travel serialized and come back with every sample.
    let h =
        turnbench::state::Hist::from_base64(json["run"]["histograms"]["ttft"].as_str().unwrap())
            .unwrap();
    assert_eq!(h.len(), 12);
    assert_eq!(json["user_info"]["litemaas_benchmark_total_requests"], "12");

    let csv = std::fs::read_to_string(out_dir.join("requests.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), turnbench::report::csv_header());
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 12);
    assert!(
        rows.iter().all(|r| r.contains(",true,true,,,")),
        "every row ok: {rows:?}"
    );
    for f in ["results.json", "requests.csv"] {
        let body = std::fs::read_to_string(out_dir.join(f)).unwrap();
        assert!(
            !body.contains("sk-not-needed-here-123"),
            "{f} holds the key"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_key_works_and_never_appears_in_any_output() {
    let key = "sk-secret-4f9a2b7c";
    let sim = start_sim(turnbench::sim::SimConfig {
        api_key: Some(Secret::new(key)),
        ..fast_sim()
    })
    .await;
    let run = |env: Vec<(&'static str, &'static str)>| {
        let args = [&["run".to_string(), sim.url()][..], &small(&[])].concat();
        async move { turnbench(&args, &env).await }
    };
    for env in [
        vec![("TURNBENCH_API_KEY", key)],
        vec![("OPENAI_API_KEY", key)],
    ] {
        let out = run(env).await;
        assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
        assert!(!stdout(&out).contains(key) && !stderr(&out).contains(key));
        assert_eq!(
            user_info(&stdout(&out)).1["litemaas_benchmark_failed_requests"],
            "0"
        );
    }
    // The flag too, with RUST_LOG at its most verbose.
    let args = [
        &["run".to_string(), sim.url(), "--api-key".into(), key.into()][..],
        &small(&[]),
    ]
    .concat();
    let out = turnbench(&args, &[("RUST_LOG", "trace")]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains(key) && !stderr(&out).contains(key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_exit_3_with_a_report_that_says_why() {
    let sim = start_sim(turnbench::sim::SimConfig {
        api_key: Some(Secret::new("right")),
        ..fast_sim()
    })
    .await;
    let wrong = "sk-wrong-key-0000";
    let out = turnbench(
        &[&["run".to_string(), sim.url()][..], &small(&[])].concat(),
        &[("TURNBENCH_API_KEY", wrong)],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    let text = stdout(&out);
    assert!(
        text.contains("ENDPOINT NOT USABLE: authentication refused"),
        "{text}"
    );
    let (_, data) = user_info(&text);
    assert_eq!(data["litemaas_benchmark_status"], "FAIL ✗");
    assert_eq!(data["litemaas_benchmark_p95_ms"], "N/A");
    assert!(!text.contains(wrong) && !stderr(&out).contains(wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_or_unknown_model_is_exit_3() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let out = turnbench(&[&["run".to_string(), url][..], &small(&[])].concat(), &[]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).contains("ENDPOINT NOT USABLE: cannot reach"),
        "{}",
        stdout(&out)
    );
    user_info(&stdout(&out));

    let sim = start_sim(fast_sim()).await;
    let out = turnbench(
        &[
            &[
                "run".to_string(),
                sim.url(),
                "--model".into(),
                "nope".into(),
            ][..],
            &small(&[]),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).contains("model \"nope\" not found"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_turns_a_fail_into_exit_1_and_only_then() {
    let sim = start_sim(fast_sim()).await;
    let tight = ["--ttft-p95-threshold-ms", "0.001"];
    let out = turnbench(
        &[&["run".to_string(), sim.url()][..], &small(&tight)].concat(),
        &[],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "a FAIL verdict alone still exits 0"
    );
    assert_eq!(
        user_info(&stdout(&out)).1["litemaas_benchmark_status"],
        "FAIL ✗"
    );
    let out = turnbench(
        &[
            &["run".to_string(), sim.url(), "--strict".into()][..],
            &small(&tight),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let out = turnbench(
        &[
            &["run".to_string(), sim.url(), "--strict".into()][..],
            &small(&[]),
        ]
        .concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_sends_the_same_workload() {
    let sim = start_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut csvs = Vec::new();
    for name in ["a", "b"] {
        let d = dir.path().join(name);
        let args = [
            &["run".to_string(), sim.url()][..],
            &small(&["--output-dir", d.to_str().unwrap()]),
        ]
        .concat();
        let out = turnbench(&args, &[]).await;
        assert_eq!(out.status.code(), Some(0));
        // conversation, turn, kind and prompt size are decided by the seed alone
        let csv = std::fs::read_to_string(d.join("requests.csv")).unwrap();
        let mut rows: Vec<String> = csv
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                format!("{},{},{},{}", f[0], f[1], f[2], f[14])
            })
            .collect();
        rows.sort();
        csvs.push(rows);
    }
    assert_eq!(csvs[0], csvs[1]);
}
