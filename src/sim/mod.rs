//! The simulator: an OpenAI-compatible server with a prefix cache, so that a
//! benchmark against it shows a real speedup on later turns. `turnbench sim` serves it;
//! `turnbench run` without a URL starts it in-process.

mod cache;
mod clock;
mod faults;
mod metrics;
mod queue;
mod responses;
mod tools;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::oneshot;

use crate::config::Secret;
pub use cache::{PrefixCache, BLOCK_BYTES};
pub use faults::Faults;
pub use queue::{Capacity, CapacityArgs, SchedulerStats};
pub use tools::ToolSim;

/// Timing and behaviour of the simulated model.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub model: String,
    /// Fixed part of the time to first token.
    pub base_ttft_ms: f64,
    /// Prefill cost of each prompt token not found in the prefix cache.
    pub prefill_us_per_token: f64,
    /// Interval between output tokens.
    pub itl_ms: f64,
    /// Tokens generated per request (fewer when the request's max_tokens is lower).
    pub output_tokens: u32,
    /// Prefix-cache capacity; least recently used blocks are evicted beyond it.
    pub cache_capacity_tokens: u64,
    /// When set, requests without `Authorization: Bearer <key>` get 401.
    pub api_key: Option<Secret>,
    pub faults: Faults,
    pub tools: ToolSim,
    /// How many requests it serves at once, and how prefills share compute.
    pub capacity: Capacity,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model: "turnbench-sim".into(),
            base_ttft_ms: 15.0,
            prefill_us_per_token: 20.0,
            itl_ms: 3.0,
            output_tokens: 64,
            cache_capacity_tokens: 1_000_000,
            api_key: None,
            faults: Faults::default(),
            tools: ToolSim::default(),
            capacity: Capacity::default(),
        }
    }
}

/// Largest request body the simulator accepts.
pub const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// Prompt tokens are estimated as characters / 4, as the design says.
pub const CHARS_PER_TOKEN: usize = 4;

struct Shared {
    cfg: SimConfig,
    timer: clock::PreciseTimer,
    model_json: String,
    cache: Mutex<PrefixCache>,
    next_id: AtomicU64,
    created: u64,
    /// How late the first token left, against its planned time: the simulator's own
    /// error, which a client benchmark must not be blamed for.
    lateness: Mutex<hdrhistogram::Histogram<u64>>,
    /// The Responses API's stored responses and conversations.
    store: responses::SharedStore,
    /// Requests that named a previous response, for the unknown-id fault.
    chained: AtomicU64,
    /// Requests that offered function tools, for picking tool calls.
    tool_offers: AtomicU64,
    scheduler: queue::Scheduler,
    /// What `GET /metrics` shows, with vLLM's names and meanings.
    metrics: Arc<metrics::SimMetrics>,
}

impl Shared {
    /// Prompt tokens found in the prefix cache (its blocks inserted as a side effect).
    fn cached_tokens(&self, prompt: &str, prompt_tokens: u64) -> u64 {
        let hit_blocks = self
            .cache
            .lock()
            .expect("cache lock")
            .lookup_insert(prompt.as_bytes());
        // Tokens are characters / 4: count the characters of the cached bytes, not the
        // bytes, or prose in accented languages would look more cached than it is.
        let hit_chars = prompt.as_bytes()[..hit_blocks * BLOCK_BYTES]
            .iter()
            .filter(|b| (**b & 0xC0) != 0x80)
            .count();
        ((hit_chars / CHARS_PER_TOKEN) as u64).min(prompt_tokens)
    }

    /// What a prompt with `uncached` tokens to prefill costs before its first token.
    fn prefill(&self, uncached: u64) -> tools::Prefill {
        tools::Prefill {
            base: Duration::from_secs_f64(self.cfg.base_ttft_ms / 1000.0),
            own: Duration::from_secs_f64(
                uncached as f64 * self.cfg.prefill_us_per_token / 1_000_000.0,
            ),
            uncached,
        }
    }
}

/// A simulator serving on a local address until dropped or shut down.
pub struct RunningSim {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// The base URL including `/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stop accepting and wait for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Bind `addr` (port 0: any free port) and serve in the background.
pub async fn start(cfg: SimConfig, addr: SocketAddr) -> std::io::Result<RunningSim> {
    let listener = listen(addr)?;
    let addr = listener.local_addr()?;
    // Small SSE writes must leave at once: Nagle plus a delayed ACK would add 40 ms
    // stalls on reused connections.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(cfg);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(RunningSim {
        addr,
        shutdown: Some(tx),
        task,
    })
}

/// A thousand clients connecting at one instant must all find room in the accept
/// queue: tokio's `bind` asks for 1,024, and an overflow costs a SYN retransmit (a
/// second or more) that would land in the client's connect time. The kernel caps the
/// request at `net.core.somaxconn` (4,096 on current kernels).
const LISTEN_BACKLOG: u32 = 8192;

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted simulator can take its port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A simulator serving from a thread and runtime of its own, so that a benchmark of
/// it measures the simulator, not two workloads competing for one scheduler.
pub struct SimThread {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    _thread: std::thread::JoinHandle<()>,
}

impl SimThread {
    /// The base URL including `/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for SimThread {
    fn drop(&mut self) {
        // Signal only: a graceful shutdown waits for idle keep-alive connections,
        // which the client may still hold; the thread ends with the process.
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Start the simulator on `addr` in a thread with its own runtime.
pub fn start_thread(cfg: SimConfig, addr: SocketAddr) -> std::io::Result<SimThread> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("turnbench-sim".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("turnbench-sim")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match start(cfg, addr).await {
                    Ok(sim) => {
                        let _ = ready_tx.send(Ok(sim.addr));
                        let _ = stop_rx.await;
                        sim.shutdown().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })?;
    let addr = ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("the simulator thread ended before serving"))??;
    Ok(SimThread {
        addr,
        shutdown: Some(stop_tx),
        _thread: thread,
    })
}

/// The simulator's routes, for embedding in another server or a test.
pub fn router(cfg: SimConfig) -> Router {
    let blocks = (cfg.cache_capacity_tokens as usize).saturating_mul(CHARS_PER_TOKEN) / BLOCK_BYTES;
    let metrics = Arc::new(metrics::SimMetrics::new(
        &cfg.model,
        (BLOCK_BYTES / CHARS_PER_TOKEN) as u64,
        blocks as u64,
    ));
    let shared = Arc::new(Shared {
        scheduler: queue::Scheduler::new(cfg.capacity),
        timer: clock::PreciseTimer::new(),
        model_json: serde_json::to_string(&cfg.model).expect("string serializes"),
        cfg,
        cache: Mutex::new(PrefixCache::new(blocks)),
        next_id: AtomicU64::new(1),
        lateness: Mutex::new(crate::state::Hist::default().0),
        store: Mutex::default(),
        chained: AtomicU64::new(0),
        tool_offers: AtomicU64::new(0),
        metrics,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    });
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/responses", post(responses::create))
        .route("/v1/responses/{id}", get(responses::get_response))
        .route("/v1/conversations", post(responses::create_conversation))
        .route("/health", get(|| async { "ok" }))
        .route("/sim/stats", get(stats))
        .route("/metrics", get(metrics_page))
        // Long conversations resend everything: axum's 2 MB default is far too small.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared)
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "error": { "message": message, "type": kind, "code": status.as_u16() }
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn check_auth(s: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(key) = &s.cfg.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(key.expose()) {
        Ok(())
    } else {
        Err(Box::new(error_response(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "Invalid or missing API key",
        )))
    }
}

async fn models(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = check_auth(&s, &headers) {
        return *r;
    }
    let body = format!(
        r#"{{"object":"list","data":[{{"id":{},"object":"model","created":{},"owned_by":"turnbench"}}]}}"#,
        s.model_json, s.created
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /sim/stats`: requests served and the first token's lateness percentiles (µs).
async fn stats(State(s): State<Arc<Shared>>) -> Response {
    let h = s.lateness.lock().expect("lateness lock").clone();
    let q = |p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    let body = serde_json::json!({
        "requests": s.next_id.load(Ordering::Relaxed) - 1,
        "first_token_lateness_us": { "count": h.len(), "p50": q(0.5), "p99": q(0.99), "max": h.max() },
        "scheduler": s.scheduler.stats(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /metrics`, unauthenticated as vLLM's is.
async fn metrics_page(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    tools: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: serde_json::Value,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The prompt as the model would see it: role tags and contents, in order.
fn render(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str("<|");
        out.push_str(&m.role);
        out.push_str("|>\n");
        match &m.content {
            serde_json::Value::String(s) => out.push_str(s),
            serde_json::Value::Array(parts) => {
                for p in parts {
                    if let Some(t) = p["text"].as_str() {
                        out.push_str(t);
                    }
                }
            }
            _ => {}
        }
        out.push('\n');
    }
    out
}

/// Words the simulated model "generates", one per token.
const WORDS: &[&str] = &[
    " the", " cache", " keeps", " every", " prefix", " warm", " and", " later", " turns", " start",
    " sooner", " because", " only", " new", " tokens", " need", " prefill", " while", " old",
    " blocks", " stay", " in", " memory", " until", " evicted", " by", " newer", " ones", " so",
    " long", " talks", " win",
];

async fn chat(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    if let Err(r) = check_auth(&s, &headers) {
        return *r;
    }
    let req: ChatRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &format!("invalid JSON body: {e}"),
            )
        }
    };
    if let Some(m) = &req.model {
        if m != &s.cfg.model {
            return error_response(
                StatusCode::NOT_FOUND,
                "NotFoundError",
                &format!("The model `{m}` does not exist."),
            );
        }
    }
    if req.messages.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages must not be empty",
        );
    }
    let prompt = render(&req.messages);
    let prompt_tokens = (prompt.chars().count().div_ceil(CHARS_PER_TOKEN)) as u64;
    let cached_tokens = s.cached_tokens(&prompt, prompt_tokens);
    let uncached = prompt_tokens - cached_tokens;
    let tools::Prefill {
        base,
        own: own_prefill,
        ..
    } = s.prefill(uncached);
    let limit = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(u32::MAX);
    let n_out = s.cfg.output_tokens.min(limit).max(1);
    let finish = if n_out < s.cfg.output_tokens {
        "length"
    } else {
        "stop"
    };
    let id = s.next_id.fetch_add(1, Ordering::Relaxed);
    let fault = s.cfg.faults.draw(id);
    if fault.stall {
        let stall = Duration::from_secs_f64(s.cfg.faults.stall_before_headers_ms / 1000.0);
        tokio::time::sleep(stall).await;
    }
    if fault.error {
        let status = StatusCode::from_u16(s.cfg.faults.error_status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = error_response(status, "server_error", "simulated failure");
        if status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, s.cfg.faults.retry_after_s.into());
        }
        return r;
    }
    // Counted in the prefix-cache metrics and running until it ends; its queue time
    // is the wait for a slot (none without --max-num-seqs).
    let in_flight = s.metrics.admitted(prompt_tokens, cached_tokens);
    // The reply depends on the prompt alone, as a greedy model's would: the same seed
    // then sends the same conversations whatever the order of arrival.
    let first_word = prompt.len() % WORDS.len();
    let itl = Duration::from_secs_f64(s.cfg.itl_ms / 1000.0);
    let usage = format!(
        r#"{{"prompt_tokens":{prompt_tokens},"completion_tokens":{n_out},"total_tokens":{},"prompt_tokens_details":{{"cached_tokens":{cached_tokens}}}}}"#,
        prompt_tokens + u64::from(n_out)
    );

    let answering_tool = req.messages.last().is_some_and(|m| m.role == "tool");
    if let Some(name) = tools::wants_call(&s, &req.tools, answering_tool).filter(|_| req.stream) {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        let prefill = tools::Prefill {
            base,
            own: own_prefill,
            uncached,
        };
        return tools::chat_call(
            s,
            id,
            arrived,
            prefill,
            name,
            include_usage.then_some(usage),
        );
    }
    if !req.stream {
        let Some(slot) = s.scheduler.admit(arrived, std::future::pending()).await else {
            unreachable!("a pending future never resolves");
        };
        let first = s
            .scheduler
            .first_token_at(slot.at, base, own_prefill, uncached);
        s.timer
            .sleep_until(first + itl * n_out.saturating_sub(1))
            .await;
        s.metrics.first_token(first - arrived);
        s.metrics.generated(u64::from(n_out));
        s.metrics.finished(&metrics::Phases {
            queue: slot.at - arrived,
            prefill: first.saturating_duration_since(slot.at),
            decode: Instant::now().saturating_duration_since(first),
            e2e: arrived.elapsed(),
        });
        drop(in_flight);
        drop(slot);
        let text: String = (0..n_out)
            .map(|i| WORDS[(first_word + i as usize) % WORDS.len()])
            .collect();
        remember_reply(&s, &prompt, &text);
        let body = format!(
            r#"{{"id":"chatcmpl-sim-{id}","object":"chat.completion","created":{},"model":{},"choices":[{{"index":0,"message":{{"role":"assistant","content":{}}},"finish_reason":"{finish}"}}],"usage":{usage}}}"#,
            s.created,
            s.model_json,
            serde_json::to_string(&text).expect("string serializes")
        );
        return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    }

    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let writer = StreamWriter {
        tx,
        buf: String::new(),
        sent: 0,
        cut_after: fault.cut.then_some(s.cfg.faults.cut_after_events),
    };
    let plan = StreamPlan {
        id,
        arrived,
        base,
        own_prefill,
        uncached,
        itl,
        n_out,
        first_word,
        finish,
        usage: include_usage.then_some(usage),
        fault,
        _in_flight: in_flight,
    };
    tokio::spawn(write_stream(s.clone(), prompt, plan, writer));
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

/// Cache the blocks of the reply too, as a real server keeps the KV of generated tokens.
fn remember_reply(s: &Shared, prompt: &str, reply: &str) {
    let mut full = String::with_capacity(prompt.len() + reply.len() + 16);
    full.push_str(prompt);
    full.push_str("<|assistant|>\n");
    full.push_str(reply);
    full.push('\n');
    s.cache
        .lock()
        .expect("cache lock")
        .lookup_insert(full.as_bytes());
}

/// What one streamed answer will contain.
struct StreamPlan {
    id: u64,
    arrived: Instant,
    base: Duration,
    own_prefill: Duration,
    uncached: u64,
    itl: Duration,
    n_out: u32,
    first_word: usize,
    finish: &'static str,
    usage: Option<String>,
    fault: faults::Draw,
    /// Held until the stream ends: the request counts as running, its blocks as used.
    _in_flight: metrics::InFlight,
}

/// Sends events down the body, counting them; resets the connection once the count
/// reaches `cut_after`. Events due at the same instant (the last token, the usage and
/// `[DONE]`; tokens that a late wake-up finds already due) are written together, as
/// one read for the client and one wake-up for the connection, instead of one each.
struct StreamWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: String,
    sent: u32,
    cut_after: Option<u32>,
}

impl StreamWriter {
    /// Queue one event. `Err(())` when the stream is over: the client went away or a
    /// cut happened (after what was queued before it).
    async fn push(&mut self, event: &str) -> Result<(), ()> {
        if self.cut_after == Some(self.sent) {
            self.flush().await?;
            let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated cut");
            let _ = self.tx.send(Err(reset)).await;
            return Err(());
        }
        self.sent += 1;
        self.buf.push_str(event);
        Ok(())
    }

    /// Write what is queued.
    async fn flush(&mut self) -> Result<(), ()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let bytes = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.send(Ok(bytes)).await.map_err(|_| ())
    }

    /// Queue one event and write everything queued.
    async fn send(&mut self, event: &str) -> Result<(), ()> {
        self.push(event).await?;
        self.flush().await
    }
}

async fn write_stream(s: Arc<Shared>, prompt: String, p: StreamPlan, mut w: StreamWriter) {
    let faults = &s.cfg.faults;
    let head = format!(
        r#"data: {{"id":"chatcmpl-sim-{}","object":"chat.completion.chunk","created":{},"model":{},"choices":[{{"index":0,"delta":"#,
        p.id, s.created, s.model_json
    );
    let chunk = |delta: &str, finish: Option<&str>| -> String {
        let finish = finish
            .map(|f| format!("\"{f}\""))
            .unwrap_or_else(|| "null".into());
        format!("{head}{delta},\"finish_reason\":{finish}}}]}}\n\n")
    };
    // The role chunk comes at once, before any output: it must not count as TTFT.
    if w.send(&chunk(r#"{"role":"assistant","content":""}"#, None))
        .await
        .is_err()
    {
        return;
    }
    // Served once a slot is free (at once without --max-num-seqs); the wait is part of
    // the time to first token, as a request queued by vLLM's scheduler sees it.
    let tx = w.tx.clone();
    let Some(slot) = s
        .scheduler
        .admit(p.arrived, async move { tx.closed().await })
        .await
    else {
        return;
    };
    let mut at = s
        .scheduler
        .first_token_at(slot.at, p.base, p.own_prefill, p.uncached);
    let mut text = String::new();
    let mut first_at = at;
    for i in 0..p.n_out {
        if at > Instant::now() {
            // Nothing more is due before `at`: what is queued goes now.
            if w.flush().await.is_err() {
                return;
            }
            s.timer.sleep_until(at).await;
        }
        if faults.null_content && w.push(&chunk(r#"{"content":null}"#, None)).await.is_err() {
            return;
        }
        if i == 0 {
            first_at = Instant::now();
            s.metrics.first_token(first_at - p.arrived);
            let late = crate::client::micros(Instant::now().saturating_duration_since(at));
            s.lateness
                .lock()
                .expect("lateness lock")
                .saturating_record(late.max(1));
        }
        let word = if i == 0 && faults.long_line_bytes > 0 {
            "x".repeat(faults.long_line_bytes)
        } else {
            WORDS[(p.first_word + i as usize) % WORDS.len()].to_string()
        };
        text.push_str(&word);
        let delta = format!(r#"{{"content":"{word}"}}"#);
        let fin = (i + 1 == p.n_out && !p.fault.no_end).then_some(p.finish);
        if w.push(&chunk(&delta, fin)).await.is_err() {
            return;
        }
        s.metrics.generated(1);
        if i == 0 {
            if p.fault.malformed {
                let _ = w.send(&format!("{head}{{\"content\":\"broken\"\n\n")).await;
                return;
            }
            if p.fault.error_event {
                let _ = w
                    .send("data: {\"error\":{\"message\":\"simulated error mid-stream\",\"type\":\"server_error\",\"code\":500}}\n\n")
                    .await;
                return;
            }
            if p.fault.stall {
                at += Duration::from_secs_f64(faults.stall_between_events_ms / 1000.0);
            }
        }
        at += p.itl;
    }
    remember_reply(&s, &prompt, &text);
    // Recorded before [DONE], so a scrape after the client's last read has it all.
    let end = Instant::now();
    s.metrics.finished(&metrics::Phases {
        queue: slot.at - p.arrived,
        prefill: first_at.saturating_duration_since(slot.at),
        decode: end.saturating_duration_since(first_at),
        e2e: end - p.arrived,
    });
    if p.fault.no_end {
        let _ = w.flush().await;
        return;
    }
    if let Some(usage) = &p.usage {
        let u = format!(
            r#"data: {{"id":"chatcmpl-sim-{}","object":"chat.completion.chunk","created":{},"model":{},"choices":[],"usage":{usage}}}"#,
            p.id, s.created, s.model_json
        );
        if w.push(&format!("{u}\n\n")).await.is_err() {
            return;
        }
    }
    let _ = w.send("data: [DONE]\n\n").await;
}
