//! Micro-benchmarks of the client's hot path: the SSE parser and the interpretation
//! of chat completion chunks, per streamed response of 64 tokens.
//!
//!     cargo bench --bench hot_path
//!
//! Figures are per call; compare them as ratios within one run.

use turnbench::client::chunk::StreamState;
use turnbench::client::sse::Parser;
use turnbench::client::Measured;

fn main() {
    divan::main();
}

/// A vLLM-shaped stream: the role chunk, 64 content chunks, usage, `[DONE]`.
fn stream() -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-8c1f","object":"chat.completion.chunk","created":1733000000,"model":"granite-3-8b","choices":[{"index":0,"delta":"#;
    let mut s = format!("data: {head}{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n");
    for i in 0..64 {
        let fin = if i == 63 { "\"stop\"" } else { "null" };
        s.push_str(&format!(
            "data: {head}{{\"content\":\" tok\\u00e9n{i}\"}},\"logprobs\":null,\"finish_reason\":{fin}}}]}}\n\n"
        ));
    }
    s.push_str(r#"data: {"id":"chatcmpl-8c1f","object":"chat.completion.chunk","created":1733000000,"model":"granite-3-8b","choices":[],"usage":{"prompt_tokens":2048,"completion_tokens":64,"total_tokens":2112,"prompt_tokens_details":{"cached_tokens":1984}}}"#);
    s.push_str("\n\ndata: [DONE]\n\n");
    s.into_bytes()
}

/// The stream cut the way a socket delivers it: one read per event.
fn pieces(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, w) in body.windows(2).enumerate() {
        if w == b"\n\n" {
            out.push(&body[start..i + 2]);
            start = i + 2;
        }
    }
    out
}

#[divan::bench]
fn sse_parse(bencher: divan::Bencher) {
    let body = stream();
    let reads = pieces(&body);
    bencher.bench(|| {
        let mut p = Parser::new();
        let mut n = 0usize;
        for r in &reads {
            p.feed(divan::black_box(r), &mut |e| n += e.data.len())
                .unwrap();
        }
        n
    });
}

#[divan::bench]
fn parse_and_interpret(bencher: divan::Bencher) {
    let body = stream();
    let reads = pieces(&body);
    bencher.bench(|| {
        let mut p = Parser::new();
        let mut st = StreamState::default();
        let mut m = Measured::default();
        for (t, r) in reads.iter().enumerate() {
            p.feed(divan::black_box(r), &mut |e| {
                st.on_event(&e, t as u64, &mut m).unwrap();
            })
            .unwrap();
        }
        st.finish(&mut m).unwrap();
        m.output_tokens
    });
}
