//! The simulator's Responses API: `POST /v1/responses` (stateful with
//! `previous_response_id` or a conversation, or stateless), `GET /v1/responses/{id}`,
//! `POST /v1/conversations`. The same prefix cache serves it as chat completions, so a
//! stateful turn hits it: the stored history is rendered as the chat prompt would be.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::{check_auth, error_response, faults, remember_reply, Shared, CHARS_PER_TOKEN, WORDS};

/// Responses and conversations kept at most (least recently used dropped beyond).
const STORE_CAPACITY: usize = 100_000;

/// One message of a stored history.
#[derive(Debug, Clone)]
pub(super) struct Item {
    role: String,
    text: String,
}

/// What the server holds: stored responses (their whole history, reply included) and
/// conversations.
pub(super) struct Store {
    responses: lru::LruCache<String, Arc<Vec<Item>>>,
    conversations: lru::LruCache<String, Vec<Item>>,
}

impl Default for Store {
    fn default() -> Self {
        let cap = std::num::NonZeroUsize::new(STORE_CAPACITY).expect("not zero");
        Store {
            responses: lru::LruCache::new(cap),
            conversations: lru::LruCache::new(cap),
        }
    }
}

pub(super) type SharedStore = Mutex<Store>;

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: serde_json::Value,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    conversation: Option<serde_json::Value>,
    #[serde(default = "yes")]
    store: bool,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    tools: Vec<serde_json::Value>,
}

fn yes() -> bool {
    true
}

/// Input items as messages: a string is one user message; an array holds messages
/// (`{role, content}` with a string or parts of `text`).
fn items(input: &serde_json::Value) -> Vec<Item> {
    match input {
        serde_json::Value::String(s) => vec![Item {
            role: "user".into(),
            text: s.clone(),
        }],
        serde_json::Value::Array(list) => list
            .iter()
            .filter_map(|m| {
                // Tool calls and their outputs take part in the prompt like messages.
                match m["type"].as_str() {
                    Some("function_call") => {
                        return Some(Item {
                            role: "assistant".into(),
                            text: format!(
                                "<tool_call {} {}>",
                                m["name"].as_str().unwrap_or(""),
                                m["arguments"].as_str().unwrap_or("")
                            ),
                        })
                    }
                    Some("function_call_output") => {
                        return Some(Item {
                            role: "tool".into(),
                            text: m["output"].as_str().unwrap_or("").to_string(),
                        })
                    }
                    _ => {}
                }
                let role = m["role"].as_str()?.to_string();
                let text = match &m["content"] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Array(parts) => {
                        parts.iter().filter_map(|p| p["text"].as_str()).collect()
                    }
                    _ => String::new(),
                };
                Some(Item { role, text })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The prompt as the chat endpoint renders it, so both APIs share cached prefixes.
fn render(history: &[Item]) -> String {
    let mut out = String::new();
    for m in history {
        out.push_str("<|");
        out.push_str(&m.role);
        out.push_str("|>\n");
        out.push_str(&m.text);
        out.push('\n');
    }
    out
}

fn conversation_id(v: &serde_json::Value) -> Option<String> {
    v.as_str().or_else(|| v["id"].as_str()).map(String::from)
}

/// `POST /v1/conversations`.
pub(super) async fn create_conversation(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&s, &headers) {
        return *r;
    }
    let id = format!("conv_sim_{}", s.next_id.fetch_add(1, Ordering::Relaxed));
    s.store
        .lock()
        .expect("store lock")
        .conversations
        .put(id.clone(), Vec::new());
    let body = serde_json::json!({"id": id, "object": "conversation", "created_at": s.created});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /v1/responses/{id}`: a stored response's output.
pub(super) async fn get_response(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_auth(&s, &headers) {
        return *r;
    }
    let found = s
        .store
        .lock()
        .expect("store lock")
        .responses
        .get(&id)
        .cloned();
    match found {
        Some(history) => {
            let reply = history.last().map(|i| i.text.clone()).unwrap_or_default();
            let body = response_json(&id, &s.cfg.model, &reply, "completed", None);
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        None => error_response(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            &format!("Response with id '{id}' not found."),
        ),
    }
}

fn response_json(
    id: &str,
    model: &str,
    text: &str,
    status: &str,
    usage: Option<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "object": "response",
        "status": status,
        "model": model,
        "output": [{
            "type": "message", "id": format!("msg_{id}"), "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]
        }],
        "usage": usage,
    })
}

/// `POST /v1/responses`.
pub(super) async fn create(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    if let Err(r) = check_auth(&s, &headers) {
        return *r;
    }
    let req: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("invalid JSON body: {e}"),
            )
        }
    };
    if let Some(m) = req.model.as_ref().filter(|m| *m != &s.cfg.model) {
        return error_response(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            &format!("The model `{m}` does not exist."),
        );
    }
    let input = items(&req.input);
    if input.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "input must not be empty",
        );
    }
    let n = s.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("resp_sim_{n}");
    let conversation = req.conversation.as_ref().and_then(conversation_id);
    // The history the answer continues: a stored response's, a conversation's, or none.
    let earlier: Result<Vec<Item>, String> = {
        let mut store = s.store.lock().expect("store lock");
        let unknown = req.previous_response_id.is_some()
            && unknown_response(&s.cfg.faults, s.chained.fetch_add(1, Ordering::Relaxed) + 1);
        match (&req.previous_response_id, &conversation) {
            (Some(prev), _) if unknown => Err(format!("Response with id '{prev}' not found.")),
            (Some(prev), _) => store
                .responses
                .get(prev)
                .map(|h| h.as_ref().clone())
                .ok_or_else(|| format!("Response with id '{prev}' not found.")),
            (None, Some(c)) => store
                .conversations
                .get(c)
                .cloned()
                .ok_or_else(|| format!("Conversation '{c}' not found.")),
            (None, None) => Ok(Vec::new()),
        }
    };
    let mut history = match earlier {
        Ok(h) => h,
        Err(why) if req.stream => {
            // As Llama Stack reports it: a 200 stream that opens, then an error event.
            let created = serde_json::json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}});
            let error = serde_json::json!({"type": "error", "code": "not_found", "message": why});
            let body = format!("data: {created}\n\ndata: {error}\n\n");
            return sse_response(Body::from(body));
        }
        Err(why) => return error_response(StatusCode::NOT_FOUND, "invalid_request_error", &why),
    };
    let answering_tool = input.last().is_some_and(|i| i.role == "tool");
    let call = super::tools::wants_call(&s, &req.tools, answering_tool);
    let mcp = super::tools::has_mcp(&req.tools) && !answering_tool;
    history.extend(input);
    let prompt = render(&history);
    let prompt_tokens = (prompt.chars().count().div_ceil(CHARS_PER_TOKEN)) as u64;
    let cached_tokens = s.cached_tokens(&prompt, prompt_tokens);
    let prefill = s.prefill(prompt_tokens - cached_tokens);
    let limit = req.max_output_tokens.unwrap_or(u32::MAX);
    let n_out = s.cfg.output_tokens.min(limit).max(1);
    let status = if n_out < s.cfg.output_tokens {
        "incomplete"
    } else {
        "completed"
    };
    let first_word = prompt.len() % WORDS.len();
    let text: String = match &call {
        Some(name) => format!(
            "<tool_call {name} {}>",
            super::tools::ARGUMENT_PIECES.concat()
        ),
        None => (0..n_out)
            .map(|i| WORDS[(first_word + i as usize) % WORDS.len()])
            .collect(),
    };
    let mcp_time = Duration::from_secs_f64(s.cfg.tools.mcp_call_ms / 1000.0);
    let usage = serde_json::json!({
        "input_tokens": prompt_tokens,
        "output_tokens": n_out,
        "total_tokens": prompt_tokens + u64::from(n_out),
        "input_tokens_details": {"cached_tokens": cached_tokens},
    });
    let itl = Duration::from_secs_f64(s.cfg.itl_ms / 1000.0);
    let keep = Kept {
        store: req.store,
        conversation,
        history,
        prompt,
    };
    if !req.stream {
        let Some((slot, first)) = prefill
            .first_token(&s, arrived, std::future::pending())
            .await
        else {
            unreachable!("a pending future never resolves");
        };
        s.timer
            .sleep_until(first + itl * n_out.saturating_sub(1))
            .await;
        drop(slot);
        keep.apply(&s, &id, &text);
        let body = response_json(&id, &s.cfg.model, &text, status, Some(usage));
        return (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let s2 = s.clone();
    tokio::spawn(async move {
        let send = |ev: serde_json::Value| {
            let name = ev["type"].as_str().unwrap_or("message").to_string();
            Bytes::from(format!("event: {name}\ndata: {ev}\n\n"))
        };
        let head = [
            serde_json::json!({"type": "response.created", "response": {"id": id, "status": "in_progress"}}),
            serde_json::json!({"type": "response.in_progress", "response": {"id": id, "status": "in_progress"}}),
            serde_json::json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "role": "assistant"}}),
            serde_json::json!({"type": "response.content_part.added", "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": ""}}),
        ];
        for ev in head {
            if tx.send(Ok(send(ev))).await.is_err() {
                return;
            }
        }
        let gone = tx.clone();
        let Some((_slot, first)) = prefill
            .first_token(&s2, arrived, async move { gone.closed().await })
            .await
        else {
            return;
        };
        let mut at = first;
        if mcp {
            // The server runs the MCP tool before it answers: the answer waits for it.
            let item = format!("mcp_{id}");
            let events = [
                serde_json::json!({"type": "response.output_item.added", "output_index": 1, "item": {"type": "mcp_call", "id": item}}),
                serde_json::json!({"type": "response.mcp_call.in_progress", "output_index": 1, "item_id": item}),
            ];
            for ev in events {
                if tx.send(Ok(send(ev))).await.is_err() {
                    return;
                }
            }
            s2.timer.sleep_until(Instant::now() + mcp_time).await;
            let done = serde_json::json!({"type": "response.mcp_call.completed", "output_index": 1, "item_id": item});
            if tx.send(Ok(send(done))).await.is_err() {
                return;
            }
            at = at.max(Instant::now());
        }
        if let Some(name) = &call {
            let call_id = format!("call_{id}");
            let added = serde_json::json!({"type": "response.output_item.added", "output_index": 0,
                "item": {"type": "function_call", "call_id": call_id, "name": name, "arguments": ""}});
            if tx.send(Ok(send(added))).await.is_err() {
                return;
            }
            for piece in super::tools::ARGUMENT_PIECES {
                s2.timer.sleep_until(at).await;
                let ev = serde_json::json!({"type": "response.function_call_arguments.delta", "output_index": 0, "delta": piece});
                if tx.send(Ok(send(ev))).await.is_err() {
                    return;
                }
                at += itl;
            }
            keep.apply(&s2, &id, &text);
            let item = serde_json::json!({"type": "function_call", "call_id": call_id, "name": name,
                "arguments": super::tools::ARGUMENT_PIECES.concat(), "status": "completed"});
            let done = serde_json::json!({"type": "response.output_item.done", "output_index": 0, "item": item});
            let mut response = response_json(&id, &s2.cfg.model, "", "completed", Some(usage));
            response["output"] = serde_json::json!([item]);
            let end = serde_json::json!({"type": "response.completed", "response": response});
            for ev in [done, end] {
                if tx.send(Ok(send(ev))).await.is_err() {
                    return;
                }
            }
            return;
        }
        for i in 0..n_out {
            s2.timer.sleep_until(at).await;
            let word = WORDS[(first_word + i as usize) % WORDS.len()];
            let ev = serde_json::json!({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": word});
            if tx.send(Ok(send(ev))).await.is_err() {
                return;
            }
            at += itl;
        }
        keep.apply(&s2, &id, &text);
        let done = serde_json::json!({"type": "response.output_text.done", "output_index": 0, "content_index": 0, "text": text});
        let mut final_response = response_json(&id, &s2.cfg.model, &text, status, Some(usage));
        final_response["status"] = status.into();
        let end =
            serde_json::json!({"type": format!("response.{status}"), "response": final_response});
        for ev in [done, end] {
            if tx.send(Ok(send(ev))).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    sse_response(Body::from_stream(stream))
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
        .expect("valid response")
}

/// What to remember once the answer is out: the reply's blocks in the prefix cache,
/// the response (when stored) and the conversation's new items.
struct Kept {
    store: bool,
    conversation: Option<String>,
    history: Vec<Item>,
    prompt: String,
}

impl Kept {
    fn apply(mut self, s: &Shared, id: &str, reply: &str) {
        remember_reply(s, &self.prompt, reply);
        self.history.push(Item {
            role: "assistant".into(),
            text: reply.to_string(),
        });
        let mut store = s.store.lock().expect("store lock");
        if let Some(c) = &self.conversation {
            store.conversations.put(c.clone(), self.history.clone());
        }
        if self.store {
            store.responses.put(id.to_string(), Arc::new(self.history));
        }
    }
}

/// Whether the `n`th request that names a previous response gets the fault of an
/// unknown id (counted among those requests only, so tests can count exactly).
pub(super) fn unknown_response(f: &faults::Faults, n: u64) -> bool {
    faults::picked(f.unknown_response_rate, n)
}
