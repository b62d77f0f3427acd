//! What one request measured: the client's output, which the run state folds in.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Connect,
    Timeout,
    HttpStatus,
    StreamBroken,
    BadEvent,
    ServerErrorEvent,
}

impl ErrorKind {
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::StreamBroken => "stream_broken",
            ErrorKind::BadEvent => "bad_event",
            ErrorKind::ServerErrorEvent => "server_error_event",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestError {
    pub kind: ErrorKind,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

impl RequestError {
    /// Whether this failure means the endpoint cannot serve us at all (unreachable, key
    /// refused, model or path not found), rather than a bad moment.
    pub fn is_fatal(&self) -> bool {
        self.kind == ErrorKind::Connect || matches!(self.status, Some(401 | 403 | 404))
    }

    pub fn new(kind: ErrorKind, message: String) -> Self {
        RequestError {
            kind,
            message,
            status: None,
        }
    }
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
}

/// What one request measured. Times in µs from the request's start (once its
/// connection is ready); `reply` is moved out before the record is kept.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Opening the connection (DNS, TCP, TLS); `None` when one was reused.
    pub connect_us: Option<u64>,
    /// From the call to the moment the connection was ready: add it to the time the
    /// call was made to get the request's start.
    pub ready_after_us: u64,
    pub ttfb_us: Option<u64>,
    pub first_event_us: Option<u64>,
    pub ttft_us: Option<u64>,
    pub ttfc_us: Option<u64>,
    pub e2e_us: Option<u64>,
    /// The answer was an event stream (false: a whole JSON body, no TTFT to measure).
    pub streamed: bool,
    /// Reads of the response body that carried stream events.
    pub reads: u32,
    pub output_tokens: Option<u64>,
    pub tokens_approx: bool,
    pub prompt_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    /// Gaps between token-bearing events.
    pub itl_us: Vec<u32>,
    pub error: Option<RequestError>,
    /// The overhead a gateway reported in a response header (`overhead_header`, LiteLLM's
    /// `x-litellm-overhead-duration-ms`), in µs.
    pub gateway_overhead_us: Option<u64>,
    /// The generated text (content only), appended to the conversation's history.
    pub reply: String,
    /// The Responses API's id of this response (the next turn's previous_response_id).
    pub response_id: Option<String>,
    /// The tools the model called (their arguments whole), in order.
    pub tool_calls: Vec<super::ToolCall>,
    /// Server-side tool calls (MCP): each one's time from start to completion, µs.
    pub server_tool_us: Vec<u64>,
}

impl Measured {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// TPOT = (E2E − TTFT) / (output tokens − 1), when defined.
    pub fn tpot_us(&self) -> Option<u64> {
        let (e2e, ttft, n) = (self.e2e_us?, self.ttft_us?, self.output_tokens?);
        (n > 1).then(|| e2e.saturating_sub(ttft) / (n - 1))
    }
}
