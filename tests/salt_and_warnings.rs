//! Every first turn cold, every number trustworthy: the cache salt, warm first turns,
//! and the warnings that say when a measurement cannot be believed.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use common::*;

fn warnings_of(text: &str) -> Vec<String> {
    let Some(at) = text.find("\nWarnings:\n") else {
        return vec![];
    };
    text[at + 11..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().split(':').next().unwrap().to_string())
        .collect()
}

/// Warnings but the client's own lag, which depends on how busy this machine is.
fn endpoint_warnings(text: &str) -> Vec<String> {
    warnings_of(text)
        .into_iter()
        .filter(|w| w != "client_lag")
        .collect()
}

async fn run(url: &str, extra: &[&str]) -> (std::process::Output, String) {
    let out = turnbench(
        &[&["run".to_string(), url.to_string()][..], &small(extra)].concat(),
        &[],
    )
    .await;
    let text = stdout(&out);
    (out, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_against_one_simulator_both_see_cold_first_turns() {
    let sim = start_sim(fast_sim()).await;
    for _ in 0..2 {
        // The same seed both times: only the salt keeps the second run's first turns cold.
        let (out, text) = run(&sim.url(), &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let (_, data) = user_info(&text);
        let speedup: f64 = data["litemaas_benchmark_speedup_ratio"].parse().unwrap();
        assert!(speedup > 2.0, "speedup {speedup}\n{text}");
        assert_eq!(data["litemaas_benchmark_warm_first_turns"], "0");
        assert_eq!(endpoint_warnings(&text), Vec::<String>::new(), "{text}");
        assert_ne!(data["litemaas_benchmark_salt"], "none");
        assert!(text.contains(&format!("Salt: {}", data["litemaas_benchmark_salt"])));
        assert!(
            text.contains("Client lag (own timer lateness): "),
            "the lag is always reported"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_conversations_over_twelve_documents_have_no_warm_first_turn() {
    let sim = start_sim(fast_sim()).await;
    let (out, text) = run(
        &sim.url(),
        &["--conversations", "20", "--turns", "1", "--parallel", "6"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (_, data) = user_info(&text);
    assert_eq!(data["litemaas_benchmark_total_requests"], "20");
    assert_eq!(data["litemaas_benchmark_warm_first_turns"], "0", "{text}");
}

fn sorted(bodies: &Arc<Mutex<Vec<Bytes>>>) -> Vec<Bytes> {
    let mut v = std::mem::take(&mut *bodies.lock().unwrap());
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_and_salt_repeat_a_run_byte_for_byte_and_find_it_warm() {
    let (url, bodies) = recording_sim(fast_sim()).await;
    let args = ["--salt", "repeat-me", "--warmup", "0"];
    let (out, first) = run(&url, &args).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let first_bodies = sorted(&bodies);
    assert_eq!(first_bodies.len(), 12);
    let opening = String::from_utf8_lossy(&first_bodies[0]).into_owned();
    assert!(
        opening.contains("Run repeat-me, conversation "),
        "{opening}"
    );
    assert_eq!(
        user_info(&first).1["litemaas_benchmark_warm_first_turns"],
        "0"
    );

    let (out, second) = run(&url, &args).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        sorted(&bodies),
        first_bodies,
        "byte-identical request bodies"
    );
    // The second run meets the cache the first one filled, and says so.
    let (_, data) = user_info(&second);
    assert_eq!(data["litemaas_benchmark_warm_first_turns"], "4", "{second}");
    assert!(
        warnings_of(&second).contains(&"warm_first_turns".to_string()),
        "{second}"
    );
    assert!(second.contains("Warm first turns (mostly cached): 4"));

    // `--salt none`: the prompts of the tool this replaces, instruction then document.
    let (out, text) = run(&url, &["--salt", "none", "--warmup", "0", "--turns", "1"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(user_info(&text).1["litemaas_benchmark_salt"], "none");
    for b in sorted(&bodies) {
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        let content = v["messages"][0]["content"].as_str().unwrap();
        assert!(!content.contains("Run "), "{content}");
        let (_, rest) = content.split_once("\n\n").unwrap();
        assert!(
            rest.starts_with("```"),
            "the document follows the instruction: {rest:.40}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salt_that_is_not_one_line_is_refused() {
    let out = turnbench(
        &strings(&["run", "http://127.0.0.1:9/v1", "--salt", "a\nb"]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--salt"), "{}", stderr(&out));
}

/// A server that answers every chat request with `body` as `content_type`.
async fn fixed_server(content_type: &'static str, body: String) -> String {
    let body = Arc::new(body);
    let app = Router::new()
        .route(
            "/v1/models",
            get(|| async { axum::Json(serde_json::json!({"data": [{"id": "m"}]})) }),
        )
        .route(
            "/v1/chat/completions",
            post(move |State(b): State<Arc<String>>| async move {
                // Answer after a while, so a buffered answer is not mistaken for speed.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Response::builder()
                    .header(CONTENT_TYPE, content_type)
                    .body(Body::from(b.to_string()))
                    .unwrap()
                    .into_response()
            }),
        )
        .with_state(body);
    serve(app).await
}

fn sse(events: &[serde_json::Value]) -> String {
    let mut s: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    s.push_str("data: [DONE]\n\n");
    s
}

fn usage() -> serde_json::Value {
    serde_json::json!({"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 0}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_stream_is_a_fail_with_the_reason_never_a_silent_pass() {
    let body = serde_json::json!({
        "choices": [{"message": {"role": "assistant", "content": "a whole answer"}, "finish_reason": "stop"}],
        "usage": usage(),
    });
    let url = fixed_server("application/json", body.to_string()).await;
    let (out, text) = run(&url, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (msg, data) = user_info(&text);
    assert_eq!(data["litemaas_benchmark_p95_ms"], "N/A");
    assert_eq!(data["litemaas_benchmark_status"], "FAIL ✗");
    assert!(
        text.contains("the endpoint does not stream: TTFT cannot be measured"),
        "{text}"
    );
    assert!(warnings_of(&text).contains(&"not_streamed".to_string()));
    assert!(
        msg.contains("not_streamed"),
        "the card shows warnings: {msg}"
    );
    // E2E and tokens still count.
    assert!(text.contains("Output tokens: 60 "), "{text}");
    let out = turnbench(
        &[&["run".to_string(), url][..], &small(&["--strict"])].concat(),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_arrives_in_one_piece_is_a_buffered_stream() {
    let words: Vec<serde_json::Value> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|w| serde_json::json!({"choices": [{"delta": {"content": w}}]}))
        .chain([serde_json::json!({"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": usage()})])
        .collect();
    let url = fixed_server("text/event-stream", sse(&words)).await;
    let (out, text) = run(&url, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        endpoint_warnings(&text),
        vec!["buffered_stream".to_string()],
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_without_output_is_counted_and_warned() {
    let events = [
        serde_json::json!({"choices": [{"delta": {"role": "assistant", "content": ""}}]}),
        serde_json::json!({"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": usage()}),
    ];
    let url = fixed_server("text/event-stream", sse(&events)).await;
    let (out, text) = run(&url, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        warnings_of(&text).contains(&"no_output".to_string()),
        "{text}"
    );
    assert!(
        text.contains("no_output: 12 successful requests carried no output token"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_above_conversations_and_missing_usage_are_warned() {
    let sim = start_sim(fast_sim()).await;
    let (out, text) = run(&sim.url(), &["--parallel", "9"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        endpoint_warnings(&text),
        vec!["parallel_exceeds_conversations".to_string()],
        "{text}"
    );
    let (out, text) = run(&sim.url(), &["--no-include-usage"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        endpoint_warnings(&text),
        vec!["usage_missing".to_string()],
        "{text}"
    );
    assert_eq!(
        user_info(&text).1["litemaas_benchmark_warnings"],
        warnings_of(&text).len().to_string()
    );
}
