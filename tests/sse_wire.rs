//! Streams as real servers write them, split across reads at awkward places.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bare HTTP/1.1 server: `/v1/models` answers a list; every chat request gets
/// `stream` written in pieces of `piece` bytes with a pause between them.
async fn piecewise_server(stream: &'static str, piece: usize) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = sock.set_nodelay(true);
                let mut buf = Vec::new();
                let mut tmp = [0u8; 8192];
                // Read headers, then the body by Content-Length.
                let (head_end, len) = loop {
                    let n = sock.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                    if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        break (pos + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = sock.read(&mut tmp).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&tmp[..n]);
                }
                if buf.starts_with(b"GET /v1/models") {
                    let body = r#"{"data":[{"id":"wire"}]}"#;
                    let resp = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                    let _ = sock.write_all(resp.as_bytes()).await;
                    return;
                }
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
                    .await;
                for chunk in stream.as_bytes().chunks(piece) {
                    if sock.write_all(chunk).await.is_err() {
                        return;
                    }
                    let _ = sock.flush().await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

/// vLLM-like stream with every awkward part: a comment, a role-only chunk,
/// `content: null`, multi-byte UTF-8, CRLF endings, a usage chunk with empty choices.
const STREAM: &str = concat!(
    ": keep-alive\r\n\r\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\r\n\r\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":null}}]}\r\n\r\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"héllo wörld ✓ 日本\"}}]}\r\n\r\n",
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" again\"},\"finish_reason\":\"stop\"}]}\r\n\r\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":40,\"completion_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":32}}}\r\n\r\n",
    "data: [DONE]\r\n\r\n",
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_split_anywhere_are_measured_whole() {
    for piece in [1, 3, 7] {
        let url = piecewise_server(STREAM, piece).await;
        let dir = tempfile::tempdir().unwrap();
        let args = [
            "run",
            &url,
            "--conversations",
            "2",
            "--turns",
            "2",
            "--warmup",
            "0",
            "--min-delay",
            "0",
            "--max-delay",
            "0",
            "--output-dir",
            dir.path().to_str().unwrap(),
        ];
        let out = turnbench(&args, &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let (_, data) = user_info(&stdout(&out));
        assert_eq!(
            data["litemaas_benchmark_failed_requests"],
            "0",
            "piece {piece}: {}",
            stdout(&out)
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("results.json")).unwrap())
                .unwrap();
        let stats = &json["stats"];
        assert_eq!(
            stats["output_tokens"], 20,
            "usage.completion_tokens of 4 requests"
        );
        assert_eq!(stats["output_tokens_approx"], false);
        assert_eq!(stats["cached_tokens"], 128);
        // TTFT is the content event, after the role chunk: strictly later than the first event.
        let csv = std::fs::read_to_string(dir.path().join("requests.csv")).unwrap();
        for row in csv.lines().skip(1) {
            let f: Vec<&str> = row.split(',').collect();
            let (first_event, ttft): (f64, f64) = (f[6].parse().unwrap(), f[7].parse().unwrap());
            assert!(
                ttft > first_event,
                "piece {piece}: ttft {ttft} first event {first_event}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_before_done_is_a_broken_stream() {
    const CUT: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"partial\"}}]}\n\n";
    let url = piecewise_server(CUT, 16).await;
    let args = [
        "run",
        &url,
        "--conversations",
        "1",
        "--turns",
        "2",
        "--warmup",
        "0",
        "--min-delay",
        "0",
        "--max-delay",
        "0",
    ];
    let out = turnbench(&args, &[]).await;
    assert_eq!(out.status.code(), Some(0), "the run completes and reports");
    let text = stdout(&out);
    let (_, data) = user_info(&text);
    assert_eq!(data["litemaas_benchmark_failed_requests"], "2");
    assert_eq!(data["litemaas_benchmark_status"], "FAIL ✗");
    assert!(
        text.contains("stream_broken: 2 (first: stream ended without [DONE] or a finish_reason)"),
        "{text}"
    );
}

/// The chunked-encoding frames of one streamed answer from the simulator, read off a
/// bare socket: each frame is one write of the server.
async fn sim_frames(cfg: turnbench::sim::SimConfig) -> Vec<String> {
    let sim = start_sim(cfg).await;
    let mut tcp = tokio::net::TcpStream::connect(sim.addr).await.unwrap();
    let body = r#"{"model":"turnbench-sim","messages":[{"role":"user","content":"hello"}],"max_tokens":4,"stream":true,"stream_options":{"include_usage":true}}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("the answer ends")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, mut rest) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let mut frames = Vec::new();
    loop {
        let (len, tail) = rest.split_once("\r\n").unwrap();
        let len = usize::from_str_radix(len, 16).unwrap();
        if len == 0 {
            break;
        }
        frames.push(tail[..len].to_string());
        rest = &tail[len + 2..];
    }
    frames
}

#[tokio::test]
async fn events_due_together_leave_the_simulator_in_one_write() {
    // Tokens 30 ms apart: each goes on its own; the last token, the usage and [DONE]
    // are due at one instant and go in one write (one read and one wake-up for the
    // client, not three).
    let frames = sim_frames(turnbench::sim::SimConfig {
        base_ttft_ms: 5.0,
        itl_ms: 30.0,
        output_tokens: 4,
        ..turnbench::sim::SimConfig::default()
    })
    .await;
    assert_eq!(
        frames.len(),
        5,
        "role, 3 tokens, then the rest: {frames:#?}"
    );
    assert!(frames[0].contains(r#""role":"assistant""#));
    let last = &frames[4];
    assert!(
        last.contains(r#""finish_reason":"stop""#)
            && last.contains(r#""usage""#)
            && last.ends_with("data: [DONE]\n\n"),
        "{last}"
    );
    assert_eq!(last.matches("data: ").count(), 3, "{last}");

    // With no time between tokens, every token is due at once: role chunk, then all.
    let frames = sim_frames(turnbench::sim::SimConfig {
        base_ttft_ms: 5.0,
        itl_ms: 0.0,
        output_tokens: 4,
        ..turnbench::sim::SimConfig::default()
    })
    .await;
    assert_eq!(frames.len(), 2, "{frames:#?}");
    assert_eq!(frames[1].matches("data: ").count(), 6, "{}", frames[1]);
}
