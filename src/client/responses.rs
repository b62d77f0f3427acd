//! What the events of a Responses API stream mean: output deltas, completion with
//! usage, failure. Events come with or without `event:` lines (Llama Stack sends only
//! `data:` with a `type` field) and without `[DONE]`.

use serde::Deserialize;

use super::sse::Event;
use super::{ErrorKind, Measured, RequestError};

#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    response: Option<Response>,
    /// `error` events carry the message at the top level.
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    item: Option<Item>,
    #[serde(default)]
    item_id: Option<String>,
}

/// An output item: a function call carries its id, name and (when done) arguments.
#[derive(Deserialize, Default)]
struct Item {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize, Default)]
struct Response {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
}

#[derive(Deserialize, Default)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// Progress through one Responses stream.
#[derive(Debug, Default)]
pub struct StreamState {
    /// `response.completed` or `response.incomplete` seen: the answer is whole.
    pub done: bool,
    /// Server-side tool calls under way: item id and start time.
    server_tools: Vec<(String, u64)>,
    token_events: u64,
    last_token_us: Option<u64>,
}

fn message_of(v: &serde_json::Value) -> Option<String> {
    v["message"]
        .as_str()
        .or_else(|| v.as_str())
        .map(String::from)
}

impl StreamState {
    /// Apply one event received `t` µs after the request started.
    pub fn on_event(&mut self, ev: &Event, t: u64, m: &mut Measured) -> Result<(), RequestError> {
        m.first_event_us.get_or_insert(t);
        let data = ev.data.trim();
        if data == "[DONE]" {
            // Not sent by the Responses API, but harmless where a gateway adds it.
            return Ok(());
        }
        let env: Envelope = serde_json::from_str(data).map_err(|e| {
            RequestError::new(
                ErrorKind::BadEvent,
                format!("malformed event ({e}): {data}"),
            )
        })?;
        let kind = env.kind.as_deref().or(ev.event.as_deref()).unwrap_or("");
        let failed = |what: &str, msg: Option<String>| {
            RequestError::new(
                ErrorKind::ServerErrorEvent,
                format!(
                    "{what} event in stream: {}",
                    msg.unwrap_or_else(|| "(no message)".into())
                ),
            )
        };
        match kind {
            "response.output_item.added" | "response.output_item.done" => {
                if let Some(item) = env
                    .item
                    .filter(|i| i.kind.as_deref() == Some("function_call"))
                {
                    let id = item.call_id.or(item.id).unwrap_or_default();
                    let found = m.tool_calls.iter().position(|c| c.id == id);
                    let at = found.unwrap_or_else(|| {
                        m.tool_calls.push(super::ToolCall {
                            id,
                            ..Default::default()
                        });
                        m.tool_calls.len() - 1
                    });
                    let call = &mut m.tool_calls[at];
                    if let Some(n) = item.name {
                        call.name = n;
                    }
                    if let Some(a) = item.arguments {
                        call.arguments = a;
                    }
                }
            }
            "response.mcp_call.in_progress" => {
                self.server_tools.push((env.item_id.unwrap_or_default(), t));
            }
            "response.mcp_call.completed" | "response.mcp_call.failed" => {
                let id = env.item_id.unwrap_or_default();
                if let Some(i) = self.server_tools.iter().position(|(x, _)| *x == id) {
                    let (_, since) = self.server_tools.swap_remove(i);
                    m.server_tool_us.push(t.saturating_sub(since));
                }
            }
            "response.created" | "response.in_progress" => {
                if let Some(id) = env.response.and_then(|r| r.id) {
                    m.response_id = Some(id);
                }
            }
            "response.output_text.delta"
            | "response.reasoning_text.delta"
            | "response.reasoning_summary_text.delta"
            | "response.function_call_arguments.delta" => {
                let delta = env.delta.unwrap_or_default();
                if delta.is_empty() {
                    return Ok(());
                }
                if kind == "response.output_text.delta" {
                    m.ttfc_us.get_or_insert(t);
                    if m.reply.len() < super::chunk::MAX_REPLY_BYTES {
                        m.reply.push_str(&delta);
                    }
                }
                if kind == "response.function_call_arguments.delta" {
                    if let Some(call) = m.tool_calls.last_mut() {
                        if call.arguments.len() < super::chunk::MAX_REPLY_BYTES {
                            call.arguments.push_str(&delta);
                        }
                    }
                }
                m.ttft_us.get_or_insert(t);
                if let Some(last) = self.last_token_us {
                    m.itl_us.push((t - last).min(u32::MAX as u64) as u32);
                }
                self.last_token_us = Some(t);
                self.token_events += 1;
            }
            "response.completed" | "response.incomplete" => {
                // `incomplete`: the output limit was reached, an answer all the same.
                self.done = true;
                if let Some(r) = env.response {
                    if let Some(id) = r.id {
                        m.response_id = Some(id);
                    }
                    if let Some(u) = r.usage {
                        if u.output_tokens.is_some() {
                            m.output_tokens = u.output_tokens;
                            m.tokens_approx = false;
                        }
                        m.prompt_tokens = u.input_tokens.or(m.prompt_tokens);
                        if let Some(c) = u.input_tokens_details.and_then(|d| d.cached_tokens) {
                            m.cached_tokens = Some(c);
                        }
                    }
                }
            }
            "response.failed" => {
                let msg = env
                    .response
                    .and_then(|r| r.error)
                    .as_ref()
                    .and_then(message_of);
                return Err(failed("response.failed", msg));
            }
            "error" => {
                let msg = env
                    .message
                    .or_else(|| env.error.as_ref().and_then(message_of));
                return Err(failed("error", msg));
            }
            _ => {}
        }
        Ok(())
    }

    /// The stream ended: success when the response completed, else a broken stream.
    pub fn finish(&self, m: &mut Measured) -> Result<(), RequestError> {
        if !self.done {
            return Err(RequestError::new(
                ErrorKind::StreamBroken,
                "stream ended without response.completed".to_string(),
            ));
        }
        if m.output_tokens.is_none() {
            m.output_tokens = Some(self.token_events);
            m.tokens_approx = true;
        }
        Ok(())
    }
}

/// A non-streamed Responses body received whole: usage and the output text.
pub fn apply_whole_response(body: &[u8], m: &mut Measured) -> Result<(), RequestError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        RequestError::new(ErrorKind::BadEvent, format!("malformed JSON response: {e}"))
    })?;
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        return Err(RequestError::new(
            ErrorKind::ServerErrorEvent,
            format!(
                "error in response: {}",
                message_of(e).unwrap_or_else(|| e.to_string())
            ),
        ));
    }
    m.response_id = v["id"].as_str().map(String::from);
    let mut text = String::new();
    for item in v["output"].as_array().into_iter().flatten() {
        for part in item["content"].as_array().into_iter().flatten() {
            if let Some(t) = part["text"].as_str() {
                text.push_str(t);
            }
        }
    }
    m.output_tokens = v["usage"]["output_tokens"]
        .as_u64()
        .or(Some(u64::from(!text.is_empty())));
    m.tokens_approx = v["usage"]["output_tokens"].is_null();
    m.prompt_tokens = v["usage"]["input_tokens"].as_u64();
    m.cached_tokens = v["usage"]["input_tokens_details"]["cached_tokens"].as_u64();
    m.reply = text;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(events: &[(Option<&str>, &str, u64)]) -> (Result<(), RequestError>, Measured) {
        let mut st = StreamState::default();
        let mut m = Measured::default();
        for (name, d, t) in events {
            let ev = Event {
                event: name.map(String::from),
                data: d.to_string(),
            };
            if let Err(e) = st.on_event(&ev, *t, &mut m) {
                return (Err(e), m);
            }
        }
        let r = st.finish(&mut m);
        (r, m)
    }

    const COMPLETED: &str = r#"{"type":"response.completed","response":{"id":"resp_1","usage":{"input_tokens":40,"output_tokens":2,"input_tokens_details":{"cached_tokens":32}}}}"#;

    #[test]
    fn ttft_is_the_first_output_delta_and_usage_comes_with_completion() {
        let (r, m) = run(&[
            (
                None,
                r#"{"type":"response.created","response":{"id":"resp_1"}}"#,
                5,
            ),
            (None, r#"{"type":"response.output_item.added"}"#, 6),
            (
                None,
                r#"{"type":"response.reasoning_text.delta","delta":"hm"}"#,
                20,
            ),
            (
                None,
                r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
                30,
            ),
            (
                None,
                r#"{"type":"response.output_text.delta","delta":" you"}"#,
                41,
            ),
            (None, COMPLETED, 42),
        ]);
        r.unwrap();
        assert_eq!(m.first_event_us, Some(5));
        assert_eq!((m.ttft_us, m.ttfc_us), (Some(20), Some(30)));
        assert_eq!(m.reply, "Hi you");
        assert_eq!(m.itl_us, vec![10, 11]);
        assert_eq!(
            (m.output_tokens, m.prompt_tokens, m.cached_tokens),
            (Some(2), Some(40), Some(32))
        );
        assert_eq!(m.response_id.as_deref(), Some("resp_1"));
    }

    #[test]
    fn event_lines_alone_name_the_event_too() {
        let (r, m) = run(&[
            (Some("response.output_text.delta"), r#"{"delta":"A"}"#, 9),
            (
                Some("response.completed"),
                r#"{"response":{"id":"r2"}}"#,
                10,
            ),
        ]);
        r.unwrap();
        assert_eq!(m.ttft_us, Some(9));
        assert_eq!(m.output_tokens, Some(1));
        assert!(m.tokens_approx);
    }

    #[test]
    fn an_error_after_created_and_a_failed_response_are_server_errors() {
        let (r, _) = run(&[
            (
                None,
                r#"{"type":"response.created","response":{"id":"r"}}"#,
                1,
            ),
            (
                None,
                r#"{"type":"error","message":"Response with id 'resp_x' not found"}"#,
                2,
            ),
        ]);
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::ServerErrorEvent);
        assert!(e.message.contains("resp_x' not found"), "{}", e.message);
        let (r, _) = run(&[(
            None,
            r#"{"type":"response.failed","response":{"error":{"message":"overloaded"}}}"#,
            2,
        )]);
        assert!(r.unwrap_err().message.contains("overloaded"));
        let (r, _) = run(&[(
            None,
            r#"{"type":"response.output_text.delta","delta":"A"}"#,
            2,
        )]);
        assert_eq!(r.unwrap_err().kind, ErrorKind::StreamBroken);
    }

    #[test]
    fn a_function_call_is_output_with_its_id_name_and_arguments() {
        let (r, m) = run(&[
            (
                None,
                r#"{"type":"response.output_item.added","item":{"type":"function_call","call_id":"call_1","name":"lookup","arguments":""}}"#,
                3,
            ),
            (
                None,
                r#"{"type":"response.function_call_arguments.delta","delta":"{\"q\":"}"#,
                7,
            ),
            (
                None,
                r#"{"type":"response.function_call_arguments.delta","delta":"2}"}"#,
                8,
            ),
            (
                None,
                r#"{"type":"response.mcp_call.in_progress","item_id":"mcp_1"}"#,
                9,
            ),
            (
                None,
                r#"{"type":"response.mcp_call.completed","item_id":"mcp_1"}"#,
                29,
            ),
            (None, COMPLETED, 30),
        ]);
        r.unwrap();
        assert_eq!(m.ttft_us, Some(7));
        assert_eq!(m.tool_calls.len(), 1);
        assert_eq!(
            (
                m.tool_calls[0].id.as_str(),
                m.tool_calls[0].name.as_str(),
                m.tool_calls[0].arguments.as_str()
            ),
            ("call_1", "lookup", "{\"q\":2}")
        );
        assert_eq!(m.server_tool_us, vec![20]);
    }

    #[test]
    fn an_incomplete_response_is_a_success() {
        let (r, _) = run(&[
            (
                None,
                r#"{"type":"response.output_text.delta","delta":"A"}"#,
                2,
            ),
            (
                None,
                r#"{"type":"response.incomplete","response":{"id":"r"}}"#,
                3,
            ),
        ]);
        r.unwrap();
    }

    use proptest::prelude::*;

    /// A Responses stream as SSE, with `event:` lines or (as Llama Stack) without.
    fn body(events: &[serde_json::Value], event_lines: bool) -> Vec<u8> {
        let mut out = String::new();
        for ev in events {
            if event_lines {
                out.push_str(&format!("event: {}\n", ev["type"].as_str().unwrap()));
            }
            out.push_str(&format!("data: {ev}\n\n"));
        }
        out.into_bytes()
    }

    fn outcome(
        body: &[u8],
        cuts: &[usize],
    ) -> (Option<ErrorKind>, Option<u64>, String, Option<u64>, usize) {
        let mut parser = crate::client::sse::Parser::new();
        let mut st = StreamState::default();
        let mut m = Measured::default();
        let mut err = None;
        let mut last = 0;
        for (t, c) in cuts
            .iter()
            .copied()
            .chain(std::iter::once(body.len()))
            .enumerate()
        {
            let t = t as u64 + 1;
            parser
                .feed(&body[last..c], &mut |ev| {
                    if err.is_none() {
                        if let Err(e) = st.on_event(&ev, t, &mut m) {
                            err = Some(e.kind);
                        }
                    }
                })
                .unwrap();
            last = c;
        }
        if err.is_none() {
            err = st.finish(&mut m).err().map(|e| e.kind);
        }
        // Times depend on where the cuts fall; what the stream says does not.
        (
            err,
            m.output_tokens,
            m.reply,
            m.cached_tokens,
            m.itl_us.len(),
        )
    }

    fn events() -> impl Strategy<Value = Vec<serde_json::Value>> {
        let ev = prop_oneof![
            Just(serde_json::json!({"type": "response.created", "response": {"id": "r1"}})),
            Just(serde_json::json!({"type": "response.in_progress", "response": {"id": "r1"}})),
            "[a-zé ✓]{0,6}".prop_map(
                |d| serde_json::json!({"type": "response.output_text.delta", "delta": d})
            ),
            "[a-z]{0,4}".prop_map(
                |d| serde_json::json!({"type": "response.reasoning_text.delta", "delta": d})
            ),
            Just(
                serde_json::json!({"type": "response.function_call_arguments.delta", "delta": "{\"a\":1}"})
            ),
            Just(serde_json::json!({"type": "error", "message": "unknown previous_response_id"})),
        ];
        let end = prop_oneof![
            Just(
                serde_json::json!({"type": "response.completed", "response": {"id": "r1", "usage": {"input_tokens": 9, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 4}}}})
            ),
            Just(serde_json::json!({"type": "response.incomplete", "response": {"id": "r1"}})),
            Just(serde_json::json!({"type": "response.output_item.added"})),
        ];
        (proptest::collection::vec(ev, 0..12), end).prop_map(|(mut v, e)| {
            v.push(e);
            v
        })
    }

    proptest! {
        #[test]
        fn any_chunking_and_either_framing_say_the_same(
            evs in events(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
        ) {
            let with = body(&evs, true);
            let without = body(&evs, false);
            let cut = |b: &[u8]| {
                let mut c: Vec<usize> = cuts.iter().map(|i| i.index(b.len() + 1)).collect();
                c.sort_unstable();
                c
            };
            let whole = outcome(&with, &[]);
            prop_assert_eq!(&outcome(&with, &cut(&with)), &whole);
            prop_assert_eq!(&outcome(&without, &cut(&without)), &whole);
        }
    }
}
