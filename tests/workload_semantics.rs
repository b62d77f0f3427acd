//! The workload as the design defines it, observed from a purpose-built server:
//! at most P in flight, one turn in flight per conversation, a growing history that
//! includes the replies, think time before every request, a connection per request.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use common::*;

#[derive(Default)]
struct Seen {
    in_flight: usize,
    max_in_flight: usize,
    conv_in_flight: HashSet<String>,
    overlap_in_conversation: bool,
    /// Per conversation (its opening's first line): (arrival, done, message roles, contents).
    requests: HashMap<String, Vec<SeenRequest>>,
    peers: HashSet<SocketAddr>,
    chat_requests: usize,
}

/// (arrival, done, message roles, message contents)
type SeenRequest = (Instant, Option<Instant>, Vec<String>, Vec<String>);

type Shared = Arc<Mutex<Seen>>;

async fn chat(
    State(seen): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: String,
) -> Response {
    let req: serde_json::Value = serde_json::from_str(&body).unwrap();
    let msgs = req["messages"].as_array().unwrap();
    let roles: Vec<String> = msgs
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_string())
        .collect();
    let contents: Vec<String> = msgs
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    // Warm-up requests are single short messages; conversations open with a document.
    let key = contents[0].lines().take(4).collect::<Vec<_>>().join("|");
    let measured = contents[0].contains("```");
    let idx;
    {
        let mut s = seen.lock().unwrap();
        s.peers.insert(peer);
        s.chat_requests += 1;
        if measured {
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            if !s.conv_in_flight.insert(key.clone()) {
                s.overlap_in_conversation = true;
            }
        }
        let list = s.requests.entry(key.clone()).or_default();
        list.push((Instant::now(), None, roles, contents));
        idx = list.len() - 1;
    }
    // Hold the request a little so that concurrency limits are exercised.
    tokio::time::sleep(Duration::from_millis(15)).await;
    {
        let mut s = seen.lock().unwrap();
        if measured {
            s.in_flight -= 1;
            s.conv_in_flight.remove(&key);
        }
        s.requests.get_mut(&key).unwrap()[idx].1 = Some(Instant::now());
    }
    let reply = format!("reply number {idx}");
    let body = format!(
        "data: {{\"choices\":[{{\"delta\":{{\"content\":\"{reply}\"}},\"finish_reason\":\"stop\"}}]}}\n\ndata: [DONE]\n\n"
    );
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(body))
        .unwrap()
}

async fn start() -> (String, Shared) {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/v1/models", get(|| async { r#"{"data":[{"id":"m"}]}"# }))
        .route("/v1/chat/completions", post(chat))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (url, seen)
}

fn args(url: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "run",
        url,
        "--conversations",
        "6",
        "--turns",
        "4",
        "--parallel",
        "3",
        "--warmup",
        "2",
        "--min-delay",
        "0.03",
        "--max-delay",
        "0.06",
        "--seed",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_follow_the_designed_semantics() {
    let (url, seen) = start().await;
    let out = turnbench(&args(&url, &[]), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        user_info(&stdout(&out)).1["litemaas_benchmark_total_requests"],
        "24"
    );

    let s = seen.lock().unwrap();
    assert!(
        s.max_in_flight <= 3,
        "at most --parallel in flight, saw {}",
        s.max_in_flight
    );
    assert!(
        s.max_in_flight >= 2,
        "requests of different conversations interleave"
    );
    assert!(
        !s.overlap_in_conversation,
        "a conversation never has two turns in flight"
    );

    let convs: BTreeMap<&String, _> = s
        .requests
        .iter()
        .filter(|(_, v)| v[0].3[0].contains("```"))
        .collect();
    assert_eq!(
        convs.len(),
        6,
        "6 documents open 6 conversations (bundled set has more than 6)"
    );
    for reqs in convs.values() {
        assert_eq!(reqs.len(), 4);
        for (turn, (_, _, roles, contents)) in reqs.iter().enumerate() {
            // user, then (assistant, user) per earlier turn: the whole history is resent.
            assert_eq!(roles.len(), 2 * turn + 1);
            assert!(roles
                .iter()
                .enumerate()
                .all(|(i, r)| r == if i % 2 == 0 { "user" } else { "assistant" }));
            for earlier in 0..turn {
                assert_eq!(contents[2 * earlier + 1], format!("reply number {earlier}"));
                // the prefix is exactly the previous request's messages
                assert_eq!(&contents[..2 * earlier + 1], &reqs[earlier].3[..]);
            }
        }
        // Think time (≥ 30 ms) separates the end of a turn from the next request.
        for w in reqs.windows(2) {
            let gap = w[1].0.duration_since(w[0].1.unwrap());
            assert!(
                gap >= Duration::from_millis(28),
                "think time before every request, gap {gap:?}"
            );
        }
    }
    // Without keep-alive every request opens its own connection.
    assert_eq!(s.chat_requests, 24 + 2, "measured requests plus warm-up");
    assert_eq!(s.peers.len(), s.chat_requests, "one connection per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reuses_connections() {
    let (url, seen) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = turnbench(
        &args(
            &url,
            &["--keep-alive", "--output-dir", dir.path().to_str().unwrap()],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Only requests that opened a connection carry a connect time.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    let connects = json["stats"]["connect"]["count"].as_u64().unwrap();
    assert!(connects <= 3, "connect times recorded {connects}");
    let s = seen.lock().unwrap();
    assert!(
        s.peers.len() <= 3 + 1,
        "at most one connection per slot, saw {} for {} requests",
        s.peers.len(),
        s.chat_requests
    );
}
