//! What the events of a chat completion stream mean: output, finish, usage, errors.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::sse::Event;
use super::{ErrorKind, Measured, RequestError};

// Chunks are read borrowed from the event's text, fields that matter only: a token's
// text is copied once, into the reply, and nothing else is allocated per token.
#[derive(Deserialize, Default)]
struct Chunk<'a> {
    #[serde(default, borrow)]
    choices: Vec<Choice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct Choice<'a> {
    #[serde(default, borrow)]
    delta: Option<Delta<'a>>,
    /// Non-streamed responses carry the whole message here.
    #[serde(default, borrow)]
    message: Option<Delta<'a>>,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a tool call: streamed calls come in pieces joined by `index`.
#[derive(Deserialize, Default)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize, Default)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// Join the pieces of tool calls into `calls`.
fn apply_tool_deltas(deltas: &[ToolCallDelta], calls: &mut Vec<super::ToolCall>) {
    for (i, d) in deltas.iter().enumerate() {
        let at = d.index.unwrap_or(i).min(63);
        if calls.len() <= at {
            calls.resize_with(at + 1, Default::default);
        }
        let c = &mut calls[at];
        if let Some(id) = &d.id {
            c.id.clone_from(id);
        }
        if let Some(f) = &d.function {
            if let Some(n) = &f.name {
                c.name.push_str(n);
            }
            if let Some(a) = &f.arguments {
                if c.arguments.len() < MAX_REPLY_BYTES {
                    c.arguments.push_str(a);
                }
            }
        }
    }
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// Longest reply kept for the conversation's history.
pub const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// Progress through one stream.
#[derive(Debug, Default)]
pub struct StreamState {
    /// `[DONE]` seen: nothing after it is read.
    pub done: bool,
    finished: bool,
    token_events: u64,
    last_token_us: Option<u64>,
}

impl StreamState {
    /// Apply one event received `t` µs after the request started.
    pub fn on_event(&mut self, ev: &Event, t: u64, m: &mut Measured) -> Result<(), RequestError> {
        m.first_event_us.get_or_insert(t);
        let data = ev.data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        if ev.event.as_deref() == Some("error") {
            return Err(server_error(data));
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            RequestError::new(
                ErrorKind::BadEvent,
                format!("malformed event ({e}): {data}"),
            )
        })?;
        if chunk.error.is_some() {
            return Err(server_error(data));
        }
        let mut output = false;
        for choice in &chunk.choices {
            if let Some(d) = &choice.delta {
                let content = d.content.as_deref().unwrap_or("");
                let has_content = !content.is_empty();
                let has_reasoning = d
                    .reasoning_content
                    .as_deref()
                    .is_some_and(|s| !s.is_empty())
                    || d.reasoning.as_deref().is_some_and(|s| !s.is_empty());
                let has_tool = d.tool_calls.as_ref().is_some_and(|t| !t.is_empty());
                if let Some(t) = &d.tool_calls {
                    apply_tool_deltas(t, &mut m.tool_calls);
                }
                if has_content {
                    m.ttfc_us.get_or_insert(t);
                    // A server that ignores max_tokens must not grow the history without end.
                    if m.reply.len() < MAX_REPLY_BYTES {
                        m.reply.push_str(content);
                    }
                }
                output |= has_content || has_reasoning || has_tool;
            }
            if choice.finish_reason.is_some() {
                self.finished = true;
            }
        }
        if output {
            m.ttft_us.get_or_insert(t);
            if let Some(last) = self.last_token_us {
                m.itl_us.push((t - last).min(u32::MAX as u64) as u32);
            }
            self.last_token_us = Some(t);
            self.token_events += 1;
        }
        if let Some(u) = chunk.usage {
            apply_usage(&u, m);
        }
        Ok(())
    }

    /// The stream ended: success when it ended properly, else a broken stream.
    pub fn finish(&self, m: &mut Measured) -> Result<(), RequestError> {
        if !self.done && !self.finished {
            return Err(RequestError::new(
                ErrorKind::StreamBroken,
                "stream ended without [DONE] or a finish_reason".to_string(),
            ));
        }
        if m.output_tokens.is_none() {
            m.output_tokens = Some(self.token_events);
            m.tokens_approx = true;
        }
        Ok(())
    }
}

fn apply_usage(u: &Usage, m: &mut Measured) {
    if u.completion_tokens.is_some() {
        m.output_tokens = u.completion_tokens;
        m.tokens_approx = false;
    }
    if u.prompt_tokens.is_some() {
        m.prompt_tokens = u.prompt_tokens;
    }
    if let Some(c) = u
        .prompt_tokens_details
        .as_ref()
        .and_then(|d| d.cached_tokens)
    {
        m.cached_tokens = Some(c);
    }
}

fn server_error(data: &str) -> RequestError {
    let msg = super::error_message(data.as_bytes());
    RequestError::new(
        ErrorKind::ServerErrorEvent,
        format!("error event in stream: {msg}"),
    )
}

/// A non-streamed JSON completion, received whole. It has no first token to time:
/// TTFT stays unset (the run warns `not_streamed`), E2E and tokens still count.
pub fn apply_whole_response(body: &[u8], m: &mut Measured) -> Result<(), RequestError> {
    let chunk: Chunk = serde_json::from_slice(body).map_err(|e| {
        RequestError::new(ErrorKind::BadEvent, format!("malformed JSON response: {e}"))
    })?;
    if chunk.error.is_some() {
        return Err(server_error(&String::from_utf8_lossy(body)));
    }
    let mut output = false;
    for c in &chunk.choices {
        if let Some(msg) = &c.message {
            if let Some(text) = msg.content.as_deref().filter(|s| !s.is_empty()) {
                m.reply.push_str(text);
                output = true;
            }
            output |= msg.tool_calls.as_ref().is_some_and(|v| !v.is_empty());
            if let Some(t) = &msg.tool_calls {
                apply_tool_deltas(t, &mut m.tool_calls);
            }
        }
    }
    if let Some(u) = chunk.usage {
        apply_usage(&u, m);
    }
    if m.output_tokens.is_none() {
        m.output_tokens = Some(u64::from(output));
        m.tokens_approx = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> Event {
        Event {
            event: None,
            data: data.into(),
        }
    }

    fn run(events: &[(&str, u64)]) -> (Result<(), RequestError>, Measured) {
        let mut st = StreamState::default();
        let mut m = Measured::default();
        for (d, t) in events {
            if let Err(e) = st.on_event(&ev(d), *t, &mut m) {
                return (Err(e), m);
            }
            if st.done {
                break;
            }
        }
        let r = st.finish(&mut m);
        (r, m)
    }

    #[test]
    fn ttft_is_the_first_output_event_never_the_role_chunk() {
        let (r, m) = run(&[
            (
                r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
                10,
            ),
            (r#"{"choices":[{"delta":{"content":null}}]}"#, 15),
            (r#"{"choices":[{"delta":{"content":"Hi"}}]}"#, 40),
            (
                r#"{"choices":[{"delta":{"content":" there"},"finish_reason":"stop"}]}"#,
                55,
            ),
            (
                r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":8}}}"#,
                56,
            ),
            ("[DONE]", 57),
        ]);
        r.unwrap();
        assert_eq!(m.first_event_us, Some(10));
        assert_eq!(m.ttft_us, Some(40));
        assert_eq!(m.ttfc_us, Some(40));
        assert_eq!(m.reply, "Hi there");
        assert_eq!(m.output_tokens, Some(2));
        assert!(!m.tokens_approx);
        assert_eq!(m.cached_tokens, Some(8));
        assert_eq!(m.itl_us, vec![15]);
    }

    #[test]
    fn reasoning_counts_for_ttft_but_not_for_time_to_first_content() {
        let (r, m) = run(&[
            (r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#, 20),
            (
                r#"{"choices":[{"delta":{"content":"A"},"finish_reason":"stop"}]}"#,
                30,
            ),
        ]);
        r.unwrap();
        assert_eq!(m.ttft_us, Some(20));
        assert_eq!(m.ttfc_us, Some(30));
        assert_eq!(m.output_tokens, Some(2));
        assert!(m.tokens_approx, "no usage: counted from events");
    }

    #[test]
    fn a_stream_without_done_or_finish_reason_is_broken() {
        let (r, _) = run(&[(r#"{"choices":[{"delta":{"content":"A"}}]}"#, 20)]);
        assert_eq!(r.unwrap_err().kind, ErrorKind::StreamBroken);
    }

    #[test]
    fn error_events_and_malformed_json_fail_the_request() {
        let (r, _) = run(&[(r#"{"error":{"message":"overloaded"}}"#, 20)]);
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ServerErrorEvent);
        assert!(e.message.contains("overloaded"));
        let (r, _) = run(&[(r#"{"choices":[{"delta""#, 20)]);
        assert_eq!(r.unwrap_err().kind, ErrorKind::BadEvent);
    }

    #[test]
    fn tool_call_deltas_are_output() {
        let (r, m) = run(&[
            (
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}"#,
                12,
            ),
            ("[DONE]", 13),
        ]);
        r.unwrap();
        assert_eq!(m.ttft_us, Some(12));
        assert_eq!(m.ttfc_us, None);
        assert_eq!(m.tool_calls.len(), 1);
        assert_eq!(m.tool_calls[0].name, "f");
    }

    #[test]
    fn streamed_tool_call_pieces_are_joined_by_index() {
        let (r, m) = run(&[
            (
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"lookup","arguments":""}}]}}]}"#,
                10,
            ),
            (
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"q\":"}}]}}]}"#,
                11,
            ),
            (
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":"tool_calls"}]}"#,
                12,
            ),
        ]);
        r.unwrap();
        assert_eq!(
            m.tool_calls,
            vec![crate::client::ToolCall {
                id: "c1".into(),
                name: "lookup".into(),
                arguments: "{\"q\":1}".into()
            }]
        );
    }
}
