//! HTTP client for OpenAI-compatible endpoints: model discovery and streamed chat
//! completions, timed from one monotonic clock.

pub mod chunk;
mod connect_timing;
pub mod diagnose;
pub mod measured;
mod resolve;
pub mod responses;
pub mod sse;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;

use crate::config::{Secret, TargetSettings};
pub use measured::{ErrorKind, Measured, RequestError};

/// A chat message as sent: its content is the concatenation of `parts`, borrowed so
/// that the document text shared by conversations is never copied.
#[derive(Debug)]
pub struct Message<'a> {
    pub role: &'a str,
    pub parts: &'a [&'a str],
    pub kind: MessageKind<'a>,
}

/// What a message is besides text: the model's tool calls, or a tool's output.
#[derive(Debug, Clone, Copy, Default)]
pub enum MessageKind<'a> {
    #[default]
    Text,
    /// The assistant called these tools (its `parts` are empty).
    ToolCalls(&'a [ToolCall]),
    /// The output (`parts`) of the tool call with this id.
    ToolOutput { call_id: &'a str },
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

struct Joined<'a>(&'a [&'a str]);

impl std::fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|p| f.write_str(p))
    }
}

struct Content<'a>(&'a [&'a str]);

impl Serialize for Content<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [one] => s.serialize_str(one),
            parts => s.collect_str(&Joined(parts)),
        }
    }
}

/// A message as chat completions take it.
impl Serialize for Message<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Message", 3)?;
        st.serialize_field("role", self.role)?;
        match self.kind {
            MessageKind::Text => st.serialize_field("content", &Content(self.parts))?,
            MessageKind::ToolCalls(calls) => {
                let calls: Vec<serde_json::Value> = calls
                    .iter()
                    .map(|c| {
                        serde_json::json!({"id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments}})
                    })
                    .collect();
                st.serialize_field("content", &Option::<&str>::None)?;
                st.serialize_field("tool_calls", &calls)?;
            }
            MessageKind::ToolOutput { call_id } => {
                st.serialize_field("tool_call_id", call_id)?;
                st.serialize_field("content", &Content(self.parts))?;
            }
        }
        st.end()
    }
}

/// Messages as the Responses API's input items: tool calls are `function_call` items,
/// tool outputs `function_call_output` items.
struct ResponseInput<'a>(&'a [Message<'a>]);

impl Serialize for ResponseInput<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(None)?;
        for m in self.0 {
            match m.kind {
                MessageKind::Text => seq.serialize_element(m)?,
                MessageKind::ToolCalls(calls) => {
                    for c in calls {
                        seq.serialize_element(&serde_json::json!({"type": "function_call",
                            "call_id": c.id, "name": c.name, "arguments": c.arguments}))?;
                    }
                }
                MessageKind::ToolOutput { call_id } => {
                    seq.serialize_element(&serde_json::json!({"type": "function_call_output",
                        "call_id": call_id, "output": Joined(m.parts).to_string()}))?;
                }
            }
        }
        seq.end()
    }
}

impl Message<'_> {
    /// Bytes of the content.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [Message<'a>],
    max_tokens: u32,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tools: &'a [serde_json::Value],
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// Which API a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `POST /chat/completions`.
    Chat,
    /// `POST /responses`.
    Responses,
}

/// How a Responses request ties into the conversation's earlier turns.
#[derive(Debug, Clone, Copy)]
pub enum Chain<'a> {
    /// The whole conversation is in the input.
    None,
    /// `previous_response_id`: the server holds the history.
    Previous(Option<&'a str>),
    /// `conversation`: the Conversations API holds the history.
    Conversation(&'a str),
}

#[derive(Serialize)]
struct ResponsesRequest<'a> {
    model: &'a str,
    input: ResponseInput<'a>,
    max_output_tokens: u32,
    stream: bool,
    store: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_response_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tools: &'a [serde_json::Value],
}

/// Why the endpoint cannot be used at all (exit code 3).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

/// A configured endpoint: base URL, credentials, TLS and timeouts.
#[derive(Clone)]
pub struct Endpoint {
    base: String,
    chat_url: reqwest::Url,
    responses_url: reqwest::Url,
    auth: Option<HeaderValue>,
    key: Option<Secret>,
    http: reqwest::Client,
    timeout: Duration,
    idle_timeout: Duration,
    include_usage: bool,
    keep_alive: bool,
    /// The response header in which a gateway reports its own overhead, in ms.
    overhead_header: Option<reqwest::header::HeaderName>,
    /// The base URL that a 404 on chat completions suggests: probed once.
    not_found_probe: Arc<tokio::sync::OnceCell<Option<String>>>,
}

impl Endpoint {
    /// Build the client for `base` (the URL including `/v1`) from the validated
    /// target settings: certificates and the auth header are ready-made there.
    pub fn new(base: &reqwest::Url, t: &TargetSettings) -> anyhow::Result<Endpoint> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(t.connect_timeout)
            .tcp_nodelay(true)
            .connector_layer(connect_timing::TimingLayer)
            .dns_resolver(Arc::new(resolve::Resolver))
            // Never resend: a benchmark must see every failure as it happened. reqwest's
            // default policy (for HTTP/2 refusals) also copies each request's headers
            // and holds its body until the answer ends: at 10,000 users with 20 KB
            // prompts, most of the client's memory.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .user_agent(concat!("turnbench/", env!("CARGO_PKG_VERSION")));
        if !t.keep_alive {
            // A new connection per request, so a load balancer sees every request.
            builder = builder.pool_max_idle_per_host(0);
        }
        for cert in &t.ca_certs {
            builder = builder.add_root_certificate(cert.clone());
        }
        if t.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let host_is_loopback = base
            .host_str()
            .is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "[::1]");
        if host_is_loopback {
            builder = builder.no_proxy();
        }
        let base_text = base.as_str().trim_end_matches('/').to_string();
        Ok(Endpoint {
            chat_url: reqwest::Url::parse(&format!("{base_text}/chat/completions"))?,
            responses_url: reqwest::Url::parse(&format!("{base_text}/responses"))?,
            base: base_text,
            auth: t.auth.as_ref().map(|a| a.header.clone()),
            key: t.auth.as_ref().map(|a| a.key.clone()),
            http: builder.build()?,
            timeout: t.timeout,
            idle_timeout: t.idle_timeout,
            include_usage: t.include_usage,
            keep_alive: t.keep_alive,
            overhead_header: t.overhead_header.clone(),
            not_found_probe: Arc::default(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Text from the server made fit to show: the API key removed (error bodies
    /// sometimes echo it), then shortened. In that order, so no part of the key
    /// survives a cut.
    pub fn public(&self, text: &str) -> String {
        shorten(&redact(text, self.key.as_ref()), MAX_MESSAGE_CHARS)
    }

    fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        req
    }

    /// `GET {base}/models`: the ids it lists. An error means the endpoint cannot be
    /// used (connection refused, TLS, auth), or that it has no usable list
    /// (`Ok(None)`: 404 and the like, when a model is given anyway).
    pub async fn list_models(&self) -> Result<Option<Vec<String>>, Unusable> {
        let url = reqwest::Url::parse(&format!("{}/models", self.base))
            .map_err(|e| Unusable(format!("bad URL: {e}")))?;
        let resp = match tokio::time::timeout(
            self.timeout,
            self.request(reqwest::Method::GET, url).send(),
        )
        .await
        {
            Err(_) => {
                return Err(Unusable(format!(
                    "GET {}/models: no answer within {:?}",
                    self.base, self.timeout
                )))
            }
            Ok(Err(e)) => return Err(self.unreachable(&e).await),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        let body = tokio::time::timeout(self.timeout, resp.bytes())
            .await
            .ok()
            .and_then(|b| b.ok())
            .unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Unusable(self.public(&format!(
                "authentication refused by {} (HTTP {}): {}",
                self.base,
                status.as_u16(),
                error_message(&body)
            ))));
        }
        if !status.is_success() {
            if diagnose::says_plain_http_to_tls(&error_message(&body)) {
                if let Some(why) = diagnose::expects_tls(&self.base) {
                    return Err(Unusable(
                        self.public(&format!("cannot reach {}: {why}", self.base)),
                    ));
                }
            }
            return Ok(None);
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let ids = parsed["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["id"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(ids))
    }

    /// Serialize a chat request. Done before the clock starts, so a long history's
    /// serialization is never part of a latency.
    pub fn chat_body(
        &self,
        model: &str,
        messages: &[Message<'_>],
        max_tokens: u32,
        tools: &[serde_json::Value],
    ) -> Bytes {
        let req = ChatRequest {
            model,
            messages,
            max_tokens,
            tools,
            stream: true,
            stream_options: self.include_usage.then_some(StreamOptions {
                include_usage: true,
            }),
        };
        // Sized up front: growing by doubling would leave up to half of every body,
        // held while its request is in flight, as unused capacity.
        let text: usize = messages.iter().map(|m| m.len() + 32).sum();
        let mut buf = Vec::with_capacity(text + text / 16 + 256);
        serde_json::to_writer(&mut buf, &req).expect("chat request serializes");
        Bytes::from(buf)
    }

    /// Send one streamed chat completion and time it. Never panics on what the server
    /// sends; every failure is an error of a kind in the result.
    pub async fn chat(&self, body: Bytes) -> Measured {
        self.send(Api::Chat, body).await
    }

    /// Serialize a Responses API request (see [`Endpoint::chat_body`]).
    pub fn responses_body(
        &self,
        model: &str,
        input: &[Message<'_>],
        max_tokens: u32,
        chain: Chain<'_>,
        tools: &[serde_json::Value],
    ) -> Bytes {
        let (previous_response_id, conversation, store) = match chain {
            Chain::None => (None, None, false),
            Chain::Previous(id) => (id, None, true),
            Chain::Conversation(id) => (None, Some(id), true),
        };
        let req = ResponsesRequest {
            model,
            input: ResponseInput(input),
            tools,
            max_output_tokens: max_tokens,
            stream: true,
            store,
            previous_response_id,
            conversation,
        };
        let text: usize = input.iter().map(|m| m.len() + 32).sum();
        let mut buf = Vec::with_capacity(text + text / 16 + 256);
        serde_json::to_writer(&mut buf, &req).expect("responses request serializes");
        Bytes::from(buf)
    }

    /// `POST {base}/conversations`: a new conversation of the Conversations API.
    pub async fn create_conversation(&self) -> Result<String, RequestError> {
        let url = reqwest::Url::parse(&format!("{}/conversations", self.base))
            .map_err(|e| RequestError::new(ErrorKind::Connect, format!("bad URL: {e}")))?;
        let send = self
            .request(reqwest::Method::POST, url)
            .header(CONTENT_TYPE, "application/json")
            .body("{}")
            .send();
        let resp = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => return Err(timeout_error("creating a conversation", self.timeout)),
            Ok(Err(e)) => {
                let mut err = send_error(&e, &self.base);
                err.message = self.public(&err.message);
                return Err(err);
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let body = tokio::time::timeout(self.timeout, resp.bytes())
            .await
            .ok()
            .and_then(|b| b.ok())
            .unwrap_or_default();
        if !status.is_success() {
            return Err(RequestError::new(
                ErrorKind::HttpStatus,
                self.public(&format!(
                    "creating a conversation: HTTP {}: {}",
                    status.as_u16(),
                    error_message(&body)
                )),
            )
            .with_status(status.as_u16()));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        v["id"].as_str().map(String::from).ok_or_else(|| {
            RequestError::new(
                ErrorKind::BadEvent,
                "creating a conversation: the answer has no id".into(),
            )
        })
    }

    /// Send one streamed request to `api` and time it. Never panics on what the server
    /// sends; every failure is an error of a kind in the result.
    pub async fn send(&self, api: Api, body: Bytes) -> Measured {
        let start = Instant::now();
        let deadline = start + self.timeout;
        let mut m = Measured::default();
        let (result, connected) =
            connect_timing::scope(self.send_inner(api, body, start, deadline, &mut m)).await;
        if let Err(mut err) = result {
            if err.status == Some(404) && diagnose::is_path_not_found(&err.message) {
                // Outside the timing scope: the probe's connections are not this request's.
                err.message = format!("{}: {}", err.message, self.chat_not_found().await);
            }
            err.message = self.public(&err.message);
            m.error = Some(err);
        } else if m.e2e_us.is_none() {
            m.e2e_us = Some(micros(start.elapsed()));
        }
        if let Some(c) = connected {
            // The design starts the clock when the request is written, which is once the
            // connection is ready: connecting is reported on its own, not inside TTFT.
            m.connect_us = Some(c.took_us);
            let shift = micros(c.ready_at.saturating_duration_since(start));
            m.ready_after_us = shift;
            for v in [
                &mut m.ttfb_us,
                &mut m.first_event_us,
                &mut m.ttft_us,
                &mut m.ttfc_us,
                &mut m.e2e_us,
            ]
            .into_iter()
            .flatten()
            {
                *v = v.saturating_sub(shift);
            }
        }
        m
    }

    async fn send_inner(
        &self,
        api: Api,
        body: Bytes,
        start: Instant,
        deadline: Instant,
        m: &mut Measured,
    ) -> Result<(), RequestError> {
        let send = self
            .request(
                reqwest::Method::POST,
                match api {
                    Api::Chat => self.chat_url.clone(),
                    Api::Responses => self.responses_url.clone(),
                },
            )
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send();
        let resp = match tokio::time::timeout_at(deadline.into(), send).await {
            Err(_) => return Err(timeout_error("waiting for response headers", self.timeout)),
            Ok(Err(e)) => return Err(send_error(&e, &self.base)),
            Ok(Ok(r)) => r,
        };
        m.ttfb_us = Some(micros(start.elapsed()));
        if let Some(name) = &self.overhead_header {
            m.gateway_overhead_us = overhead_us(resp.headers().get(name));
        }
        let status = resp.status();
        if !status.is_success() {
            let body = tokio::time::timeout(Duration::from_secs(5), resp.bytes())
                .await
                .ok()
                .and_then(|b| b.ok())
                .unwrap_or_default();
            return Err(RequestError::new(
                ErrorKind::HttpStatus,
                format!("HTTP {}: {}", status.as_u16(), error_message(&body)),
            )
            .with_status(status.as_u16()));
        }
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let mut resp = resp;
        let idle = tokio::time::sleep_until(deadline.into());
        tokio::pin!(idle);
        if is_json {
            // A server that ignored `stream: true`: the whole answer arrives at once.
            let mut buf = Vec::new();
            while let Some(b) = self.next_chunk(&mut resp, deadline, &mut idle).await? {
                if buf.len() + b.len() > sse::MAX_LINE_BYTES {
                    return Err(RequestError::new(
                        ErrorKind::BadEvent,
                        format!("JSON response longer than {} bytes", sse::MAX_LINE_BYTES),
                    ));
                }
                buf.extend_from_slice(&b);
            }
            let t = micros(start.elapsed());
            m.first_event_us = Some(t);
            m.e2e_us = Some(t);
            return match api {
                Api::Chat => chunk::apply_whole_response(&buf, m),
                Api::Responses => responses::apply_whole_response(&buf, m),
            };
        }
        m.streamed = true;

        let mut parser = sse::Parser::new();
        let mut state = Interpreter::new(api);
        loop {
            let Some(bytes) = self.next_chunk(&mut resp, deadline, &mut idle).await? else {
                break;
            };
            let t = micros(start.elapsed());
            m.reads = m.reads.saturating_add(1);
            let mut failure = None;
            parser
                .feed(&bytes, &mut |ev| {
                    if failure.is_none() && !state.done() {
                        if let Err(e) = state.on_event(&ev, t, m) {
                            failure = Some(e);
                        }
                    }
                })
                .map_err(|e| RequestError::new(ErrorKind::BadEvent, e.to_string()))?;
            if let Some(e) = failure {
                return Err(e);
            }
            if state.done() {
                break;
            }
        }
        state.finish(m)?;
        if self.keep_alive && state.done() {
            // The connection returns to the pool only once its body is read to the
            // end (the chunked terminator usually follows [DONE] at once).
            m.e2e_us = Some(micros(start.elapsed()));
            let drain_until = (Instant::now() + Duration::from_millis(50)).min(deadline);
            while let Ok(Ok(Some(_))) =
                tokio::time::timeout_at(drain_until.into(), resp.chunk()).await
            {}
        }
        Ok(())
    }

    /// The next piece of the body, within the idle timeout and the request's deadline.
    /// `idle` is one timer for the whole request, moved at each read: a timer made and
    /// dropped per read cost a registration in tokio's wheel every token.
    async fn next_chunk(
        &self,
        resp: &mut reqwest::Response,
        deadline: Instant,
        idle: &mut std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Result<Option<Bytes>, RequestError> {
        let now = Instant::now();
        if now >= deadline {
            return Err(timeout_error("reading the stream", self.timeout));
        }
        let idle_deadline = (now + self.idle_timeout).min(deadline);
        idle.as_mut().reset(idle_deadline.into());
        tokio::select! {
            biased;
            chunk = resp.chunk() => match chunk {
                Err(e) => Err(RequestError::new(
                    ErrorKind::StreamBroken,
                    format!("stream broken: {}", error_chain(&e)),
                )),
                Ok(chunk) => Ok(chunk),
            },
            _ = idle.as_mut() => if idle_deadline == deadline {
                Err(timeout_error("reading the stream", self.timeout))
            } else {
                Err(RequestError::new(
                    ErrorKind::Timeout,
                    format!(
                        "no data for {:?} (idle timeout) while reading the stream",
                        self.idle_timeout
                    ),
                ))
            },
        }
    }
}

/// The meaning of a stream's events, by API.
enum Interpreter {
    Chat(chunk::StreamState),
    Responses(responses::StreamState),
}

impl Interpreter {
    fn new(api: Api) -> Interpreter {
        match api {
            Api::Chat => Interpreter::Chat(Default::default()),
            Api::Responses => Interpreter::Responses(Default::default()),
        }
    }
    fn on_event(&mut self, ev: &sse::Event, t: u64, m: &mut Measured) -> Result<(), RequestError> {
        match self {
            Interpreter::Chat(s) => s.on_event(ev, t, m),
            Interpreter::Responses(s) => s.on_event(ev, t, m),
        }
    }
    /// Nothing after this is read.
    fn done(&self) -> bool {
        match self {
            Interpreter::Chat(s) => s.done,
            Interpreter::Responses(s) => s.done,
        }
    }
    fn finish(&self, m: &mut Measured) -> Result<(), RequestError> {
        match self {
            Interpreter::Chat(s) => s.finish(m),
            Interpreter::Responses(s) => s.finish(m),
        }
    }
}

fn timeout_error(what: &str, limit: Duration) -> RequestError {
    RequestError::new(
        ErrorKind::Timeout,
        format!("request timed out after {limit:?} {what}"),
    )
}

fn send_error(e: &reqwest::Error, base: &str) -> RequestError {
    let kind = if e.is_connect() {
        ErrorKind::Connect
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::StreamBroken
    };
    let message = diagnose::explain(diagnose::classify(e), base).unwrap_or_else(|| error_chain(e));
    RequestError::new(kind, message)
}

/// `e` and its sources on one line: reqwest's top-level message alone rarely says
/// what went wrong ("error sending request").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    msg
}

/// The `error.message` of an OpenAI-style error body, else the body's first line.
pub fn error_message(body: &[u8]) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let from_json = parsed.as_ref().and_then(|v| {
        v["error"]["message"]
            .as_str()
            .or_else(|| v["error"].as_str())
            .or_else(|| v["message"].as_str())
            .or_else(|| v["detail"].as_str())
            .map(String::from)
    });
    let text = from_json.unwrap_or_else(|| {
        String::from_utf8_lossy(body)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    });
    // Not shortened here: the key must be redacted from the whole text first
    // (`Endpoint::public`), or a cut could leave part of it.
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text.to_string()
    }
}

/// Longest server text kept in an error message.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// `text` cut to `max` characters, with an ellipsis when cut.
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Replace every occurrence of the key with `***`.
pub fn redact(text: &str, key: Option<&Secret>) -> String {
    match key {
        Some(k) if !k.expose().is_empty() && text.contains(k.expose()) => {
            text.replace(k.expose(), "***")
        }
        _ => text.to_string(),
    }
}

/// A gateway's overhead header (milliseconds, as LiteLLM writes it) in µs.
fn overhead_us(v: Option<&HeaderValue>) -> Option<u64> {
    let ms: f64 = v?.to_str().ok()?.trim().parse().ok()?;
    (ms.is_finite() && ms >= 0.0).then(|| (ms * 1000.0).round() as u64)
}

pub fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_overhead_header_reads_as_microseconds_and_junk_as_none() {
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        assert_eq!(overhead_us(v("12.3456").as_ref()), Some(12_346));
        assert_eq!(overhead_us(v(" 7 ").as_ref()), Some(7_000));
        for junk in ["", "-1", "NaN", "soon", "inf"] {
            assert_eq!(overhead_us(v(junk).as_ref()), None, "{junk}");
        }
        assert_eq!(overhead_us(None), None);
    }

    #[test]
    fn no_part_of_an_echoed_key_survives_shortening() {
        let key = "sk-SECRET-0123456789abcdefghij";
        let mut target = crate::config::Settings::default().target;
        target.auth = Some(crate::config::Auth {
            key: Secret::new(key),
            header: HeaderValue::from_static("Bearer x"),
        });
        let ep = Endpoint::new(&"http://127.0.0.1:9/v1".parse().unwrap(), &target).unwrap();
        // The key straddles the cut: shortening first would keep its first part.
        let text = format!("{} received {key}", "x".repeat(MAX_MESSAGE_CHARS - 15));
        let shown = ep.public(&text);
        assert!(!shown.contains("sk-SECRET"), "{shown}");
        assert!(shown.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }
}
