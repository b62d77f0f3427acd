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
    let mut args = strings(&[
        "compare",
        &sim.url(),
        &sim.url(),
        "--baseline-api",
        "chat",
        "--candidate-api",
        "responses",
        "--candidate-history",
        "server",
    ]);
    args.extend(small(&[]));
    let out = turnbench(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&stdout(&out));
    assert_eq!(data["litemaas_benchmark_baseline_api"], "chat");
    assert_eq!(data["litemaas_benchmark_candidate_api"], "responses");
    assert_eq!(data["litemaas_benchmark_candidate_history"], "server");
    for side in ["baseline", "candidate"] {
        assert_eq!(
            data[&format!("litemaas_benchmark_{side}_failed_requests")],
            "0"
        );
        let speedup: f64 = data[&format!("litemaas_benchmark_{side}_speedup_ratio")]
            .parse()
            .unwrap();
        assert!(speedup > 2.0, "{side}: {speedup}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_get_one_follow_up_each_counted_and_timed() {
    for api in ["chat", "responses"] {
        let (url, bodies) = recording_sim(fast_sim()).await;
        let dir = tempfile::tempdir().unwrap();
        let mut args = strings(&[
            "run",
            &url,
            "--api",
            api,
            "--tools",
            "2",
            "--output-dir",
            dir.path().to_str().unwrap(),
        ]);
        args.extend(small(&[
            "--conversations",
            "4",
            "--turns",
            "3",
            "--warmup",
            "0",
        ]));
        let out = turnbench(&args, &[]).await;
        assert_eq!(out.status.code(), Some(0), "{api}: {}", stderr(&out));
        // The simulator calls a tool for half the requests that offer tools (6 of 12):
        // each gets one follow-up with the tool's output.
        let (_, data) = user_info(&stdout(&out));
        assert_eq!(data["litemaas_benchmark_total_requests"], "18", "{api}");
        assert_eq!(
            data["litemaas_benchmark_failed_requests"],
            "0",
            "{api}: {}",
            stdout(&out)
        );
        assert_eq!(data["litemaas_benchmark_tool_round_trips"], "6", "{api}");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap())
                .unwrap();
        assert_eq!(json["stats"]["tool_calls"], 6);
        assert_eq!(json["stats"]["time_to_tool_call"]["count"], 6);
        assert_eq!(json["stats"]["ttft_after_tool"]["count"], 6);
        let sent: Vec<serde_json::Value> = bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        assert!(
            sent.iter()
                .all(|b| b["tools"].as_array().is_some_and(|t| t.len() == 2)),
            "{api}: tools offered with every request"
        );
        let outputs = sent
            .iter()
            .filter(|b| {
                let items = if api == "chat" {
                    &b["messages"]
                } else {
                    &b["input"]
                };
                items
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["role"] == "tool" || m["type"] == "function_call_output")
            })
            .count();
        assert!(
            outputs >= 6,
            "{api}: {outputs} requests carried tool outputs"
        );
    }
    // --tools 0 (the default) sends no tools at all.
    let (url, bodies) = recording_sim(fast_sim()).await;
    let out = turnbench(
        &[&["run".to_string(), url][..], &small(&["--warmup", "0"])].concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(bodies
        .lock()
        .unwrap()
        .iter()
        .all(|b| !String::from_utf8_lossy(b).contains("\"tools\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_server_is_passed_to_the_server_and_its_tool_time_reported() {
    let (url, bodies) = recording_sim(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = strings(&[
        "run",
        &url,
        "--api",
        "responses",
        "--mcp-server",
        "http://127.0.0.1:9/mcp",
        "--output-dir",
        dir.path().to_str().unwrap(),
    ]);
    args.extend(small(&["--warmup", "0"]));
    let out = turnbench(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first: serde_json::Value = serde_json::from_slice(&bodies.lock().unwrap()[0]).unwrap();
    assert_eq!(first["tools"][0]["type"], "mcp");
    assert_eq!(first["tools"][0]["server_url"], "http://127.0.0.1:9/mcp");
    assert_eq!(first["tools"][0]["require_approval"], "never");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    let server_tool = &json["stats"]["server_tool"];
    assert_eq!(server_tool["count"], 12);
    assert!(
        server_tool["p50_ms"].as_f64().unwrap() >= 19.0,
        "{server_tool}"
    );
    // MCP tools are the Responses API's.
    let out = turnbench(
        &strings(&[
            "run",
            "http://127.0.0.1:9/v1",
            "--mcp-server",
            "http://127.0.0.1:9/mcp",
        ]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "--mcp-server=\"http://127.0.0.1:9/mcp\": expected only with --api responses"
        ),
        "{}",
        stderr(&out)
    );
}
