//! The Responses API against the simulator: each history mode, the bytes each turn
//! sends, an unknown previous_response_id mid-run, and bad combinations of settings.

mod common;

use common::*;
use turnbench::sim::{Faults, SimConfig};

async fn run(url: &str, extra: &[&str]) -> (std::process::Output, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = strings(&["run", url, "--api", "responses"]);
    args.extend(small(&[
        "--conversations",
        "4",
        "--turns",
        "4",
        "--output-dir",
        dir.path().to_str().unwrap(),
    ]));
    args.extend(strings(extra));
    let out = turnbench(&args, &[]).await;
    let json = std::fs::read(dir.path().join("results.json"))
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or_default();
    (out, json)
}

fn bytes_by_turn(json: &serde_json::Value) -> Vec<f64> {
    let turns = json["stats"]["by_turn"].as_object().unwrap();
    (1..=4)
        .map(|t| turns[&t.to_string()]["mean_prompt_bytes"].as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_history_mode_completes_and_shows_the_cache_speedup() {
    let sim = start_sim(fast_sim()).await;
    let mut sent = Vec::new();
    for history in ["server", "client", "conversation"] {
        let (out, json) = run(&sim.url(), &["--history", history]).await;
        assert_eq!(out.status.code(), Some(0), "{history}: {}", stderr(&out));
        let (_, data) = user_info(&stdout(&out));
        assert_eq!(data["litemaas_benchmark_total_requests"], "16", "{history}");
        assert_eq!(
            data["litemaas_benchmark_failed_requests"],
            "0",
            "{history}: {}",
            stdout(&out)
        );
        assert_eq!(data["litemaas_benchmark_api"], "responses");
        assert_eq!(data["litemaas_benchmark_history"], history);
        let speedup: f64 = data["litemaas_benchmark_speedup_ratio"].parse().unwrap();
        assert!(speedup > 2.0, "{history}: speedup {speedup}");
        assert!(json["run"]["counts"]["cached_tokens"].as_u64().unwrap() > 0);
        sent.push(bytes_by_turn(&json));
    }
    // Server-held histories send only the new message: later turns stay flat, small;
    // the client-held history grows with every turn.
    for flat in [&sent[0], &sent[2]] {
        assert!(flat[1..].iter().all(|b| *b < 200.0), "{flat:?}");
    }
    let client = &sent[1];
    assert!(client.windows(2).all(|w| w[1] > w[0]), "{client:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_previous_response_is_a_counted_failure_and_the_chain_resumes() {
    let sim = start_sim(SimConfig {
        faults: Faults {
            unknown_response_rate: 0.25,
            ..Faults::default()
        },
        ..fast_sim()
    })
    .await;
    let (out, json) = run(&sim.url(), &["--parallel", "1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // 4 conversations x 3 chained turns = 12 requests naming a previous response: 3 fail.
    let counts = &json["run"]["counts"];
    assert_eq!(counts["failed"], 3, "{}", stdout(&out));
    assert_eq!(counts["chain_breaks"], 3);
    let errors = &json["run"]["errors"]["server_error_event"];
    assert_eq!(errors["count"], 3);
    assert!(
        errors["first_message"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{errors}"
    );
    // Every later turn still succeeds: the chain goes on from the last good response.
    assert_eq!(counts["requests"], 16);
    assert!(stdout(&out).contains("3 broken chains"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_is_the_default_and_history_needs_the_responses_api() {
    let sim = start_sim(fast_sim()).await;
    let out = turnbench(
        &[&["run".to_string(), sim.url()][..], &small(&[])].concat(),
        &[],
    )
    .await;
    let (_, data) = user_info(&stdout(&out));
    assert_eq!(data["litemaas_benchmark_api"], "chat");
    assert_eq!(data["litemaas_benchmark_history"], "N/A");
    for (args, needle) in [
        (
            vec!["--history", "client"],
            "--history=\"client\": expected only with --api responses",
        ),
        (
            vec!["--api", "grpc"],
            "--api=\"grpc\": expected chat or responses",
        ),
        (
            vec!["--api", "responses", "--history", "yes"],
            "expected server, client or conversation",
        ),
    ] {
        let mut full = strings(&["run", "http://127.0.0.1:9/v1"]);
        full.extend(strings(&args));
        let out = turnbench(&full, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_sets_the_api_per_side_stateful_against_stateless() {
    let sim = start_sim(fast_sim()).await;
    let mut args = strings(&["compare", &sim.url(), &sim.url(), "--baseline-api", "chat", "--candidate-api", "responses", "--candidate-history", "server"]);
    args.extend(small(&[]));
    let out = turnbench(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    assert_eq!(data["litemaas_benchmark_baseline_api"], "chat");
    assert_eq!(data["litemaas_benchmark_candidate_api"], "responses");
    assert_eq!(data["litemaas_benchmark_candidate_history"], "server");
    for side in ["baseline", "candidate"] {
        assert_eq!(data[&format!("litemaas_benchmark_{side}_failed_requests")], "0");
        let speedup: f64 = data[&format!("litemaas_benchmark_{side}_speedup_ratio")].parse().unwrap();
        assert!(speedup > 2.0, "{side}: {speedup}");
    }
}
