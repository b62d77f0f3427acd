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
