//! The simulator's tool calls: when a request offers function tools, a share of them
//! (picked evenly by arrival, like the faults) is answered with a call of the first
//! tool instead of text; the follow-up that carries the tool's output gets text. MCP
//! tools of the Responses API are "run" by the server for a while before the answer.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use bytes::Bytes;

use super::{faults, Shared};

/// How the simulator treats tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSim {
    /// Share (0–1) of requests offering function tools that get a tool call.
    pub call_rate: f64,
    /// How long a server-side (MCP) tool call takes.
    pub mcp_call_ms: f64,
}

impl Default for ToolSim {
    fn default() -> Self {
        ToolSim {
            call_rate: 0.5,
            mcp_call_ms: 20.0,
        }
    }
}

/// The name of the function tool to call, when this request gets a call: it offers
/// function tools, does not already carry a tool's output, and is picked.
pub(super) fn wants_call(
    s: &Shared,
    tools: &[serde_json::Value],
    answering_tool: bool,
) -> Option<String> {
    let name = tools.iter().find_map(|t| {
        (t["type"] == "function").then(|| {
            t["function"]["name"]
                .as_str()
                .or_else(|| t["name"].as_str())
                .unwrap_or("tool")
                .to_string()
        })
    })?;
    if answering_tool {
        return None;
    }
    let n = s.tool_offers.fetch_add(1, Ordering::Relaxed) + 1;
    faults::picked(s.cfg.tools.call_rate, n).then_some(name)
}

/// Whether the request offers an MCP tool (Responses API).
pub(super) fn has_mcp(tools: &[serde_json::Value]) -> bool {
    tools.iter().any(|t| t["type"] == "mcp")
}

/// What a request costs before its first token: the fixed part, its own prefill, and
/// the tokens to prefill (for a shared prefill budget).
#[derive(Debug, Clone, Copy)]
pub(super) struct Prefill {
    pub base: Duration,
    pub own: Duration,
    pub uncached: u64,
}

impl Prefill {
    /// Wait for a slot (in arrival order; `None` when `gone` resolves first), then the
    /// instant the first token is due.
    pub(super) async fn first_token<'a>(
        self,
        s: &'a Shared,
        arrived: Instant,
        gone: impl std::future::Future<Output = ()>,
    ) -> Option<(super::queue::Admitted<'a>, Instant)> {
        let slot = s.scheduler.admit(arrived, gone).await?;
        let at = s
            .scheduler
            .first_token_at(slot.at, self.base, self.own, self.uncached);
        Some((slot, at))
    }
}

/// The arguments of the simulated call, in the pieces they are streamed in.
pub(super) const ARGUMENT_PIECES: [&str; 3] =
    ["{\"query\":", "\"the section on", " error handling\"}"];

/// A chat completion stream whose answer is a call of `name`: the role chunk at once,
/// the call's pieces from the time to first token on, `finish_reason: tool_calls`.
pub(super) fn chat_call(
    s: std::sync::Arc<Shared>,
    id: u64,
    arrived: Instant,
    prefill: Prefill,
    name: String,
    usage: Option<String>,
) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::spawn(async move {
        let gone = tx.clone();
        let Some((_slot, first_token)) = prefill
            .first_token(&s, arrived, async move { gone.closed().await })
            .await
        else {
            return;
        };
        let head = format!(
            r#"data: {{"id":"chatcmpl-sim-{id}","object":"chat.completion.chunk","created":{},"model":{},"choices":[{{"index":0,"delta":"#,
            s.created, s.model_json
        );
        let chunk = |delta: String, finish: &str| {
            format!("{head}{delta},\"finish_reason\":{finish}}}]}}\n\n")
        };
        let itl = Duration::from_secs_f64(s.cfg.itl_ms / 1000.0);
        let mut events = vec![chunk(
            r#"{"role":"assistant","content":null}"#.into(),
            "null",
        )];
        let opening = serde_json::json!({"tool_calls": [{"index": 0, "id": format!("call_sim_{id}"), "type": "function",
            "function": {"name": name, "arguments": ""}}]});
        events.push(chunk(opening.to_string(), "null"));
        for (i, piece) in ARGUMENT_PIECES.iter().enumerate() {
            let d =
                serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]});
            let fin = if i + 1 == ARGUMENT_PIECES.len() {
                "\"tool_calls\""
            } else {
                "null"
            };
            events.push(chunk(d.to_string(), fin));
        }
        if let Some(u) = usage {
            events.push(format!(
                r#"data: {{"id":"chatcmpl-sim-{id}","object":"chat.completion.chunk","created":{},"model":{},"choices":[],"usage":{u}}}"#,
                s.created, s.model_json
            ) + "\n\n");
        }
        events.push("data: [DONE]\n\n".into());
        let mut at = first_token;
        for (i, ev) in events.into_iter().enumerate() {
            if i >= 1 {
                s.timer.sleep_until(at).await;
                at += itl;
            }
            if tx.send(Ok(Bytes::from(ev))).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .expect("valid response")
}
