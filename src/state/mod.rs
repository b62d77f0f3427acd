//! A run's state as one typed value: everything it measured, mergeable exactly.
//!
//! Workers produce plain [`RequestRecord`]s; [`RunState::add`] folds them into HDR
//! histograms, exact sums and tallies; [`RunState::merge`] adds another run's state
//! (a shard of the same plan) as if its records had been added here. Every statistic
//! ([`stats`]), the verdict and every report are functions of this value, and
//! results.json is its serialized form ([`results`]).

pub mod hist;
pub mod open_loop;
pub mod results;
pub mod stats;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::client::{ErrorKind, Measured};
use crate::config::DocumentSource;
use crate::verdict::Thresholds;
use crate::workload::DocKind;
pub use hist::Hist;

/// Turns shown one by one; later turns are pooled in one tally (`TURN_POOL`), so that
/// a run of thousands of turns holds a bounded number of histograms.
pub const TURN_DETAIL: u32 = 30;
/// The key under which turns after [`TURN_DETAIL`] are pooled.
pub const TURN_POOL: u32 = TURN_DETAIL + 1;

/// A stream whose tokens all arrived within this of each other was buffered on the way.
pub const BUFFERED_WITHIN_US: u64 = 1_000;

/// One request of the measured phase: where it belongs and what it measured.
/// `start_us` counts from the start of the measured phase.
#[derive(Debug, Clone, Default)]
pub struct RequestRecord {
    pub conversation: u32,
    /// 1-based; turn 1 carries the document.
    pub turn: u32,
    pub doc_kind: DocKind,
    pub start_us: u64,
    pub prompt_bytes: u64,
    /// A follow-up request that carried tool outputs (its turn's second request).
    pub after_tool: bool,
    pub measured: Measured,
    /// Prompt plus reply tokens of the conversation's previous turn, as its usage
    /// counted them: the prefix this turn could reuse (`None` on a first turn, or when
    /// the previous turn failed or came without usage).
    pub reusable_tokens: Option<u64>,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.measured.ok()
    }
}

/// What was benchmarked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The built-in simulator, started in-process because no URL was given.
    Simulator {
        url: String,
    },
    Endpoint {
        url: String,
    },
}

impl Target {
    pub fn url(&self) -> &str {
        match self {
            Target::Simulator { url } | Target::Endpoint { url } => url,
        }
    }
    pub fn is_simulator(&self) -> bool {
        matches!(self, Target::Simulator { .. })
    }
}

/// The settings that shape the plan: shards of one run agree on all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    pub conversations: usize,
    pub turns: usize,
    pub parallel: usize,
    pub max_tokens: u32,
    pub min_delay: f64,
    pub max_delay: f64,
    pub warmup: usize,
    pub documents: DocumentSource,
    pub include_usage: bool,
    pub keep_alive: bool,
    #[serde(default = "chat")]
    pub api: crate::client::Api,
    #[serde(default)]
    pub history: Option<crate::config::History>,
    /// Function tools offered with every request.
    #[serde(default)]
    pub tools: usize,
}

fn chat() -> crate::client::Api {
    crate::client::Api::Chat
}

/// What ran: the same in every shard of a run but for the shard indices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub turnbench_version: String,
    pub target: Target,
    pub model: Option<String>,
    pub seed: u64,
    /// `None`: prompts without a salt line.
    pub salt: Option<String>,
    pub workload: WorkloadSpec,
    pub thresholds: Thresholds,
    pub user_info_prefix: String,
    pub insecure: bool,
    /// The shard indices this state holds, and how many the plan was split into.
    pub shards: Vec<u32>,
    pub shard_count: u32,
    /// Every setting as validated (the key only as `api_key_set`).
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl RunMeta {
    /// What a run with these settings records about itself.
    pub fn of(
        settings: &crate::config::Settings,
        target: Target,
        model: Option<String>,
        seed: u64,
        salt: Option<String>,
    ) -> RunMeta {
        let w = &settings.workload;
        RunMeta {
            turnbench_version: env!("CARGO_PKG_VERSION").into(),
            target,
            model,
            seed,
            salt,
            workload: WorkloadSpec {
                conversations: w.conversations,
                turns: w.turns,
                parallel: w.parallel,
                max_tokens: w.max_tokens,
                min_delay: w.min_delay,
                max_delay: w.max_delay,
                warmup: w.warmup,
                documents: w.documents.clone(),
                include_usage: settings.target.include_usage,
                keep_alive: settings.target.keep_alive,
                api: settings.target.api,
                history: settings.target.history,
                tools: w.tools,
            },
            thresholds: settings.thresholds,
            user_info_prefix: settings.output.user_info_prefix.clone(),
            insecure: settings.target.insecure,
            shards: vec![w.shard.index],
            shard_count: w.shard.count,
            settings: settings.public.clone(),
        }
    }

    /// The meta of a default run against a made-up endpoint, for unit tests.
    pub fn for_tests() -> RunMeta {
        RunMeta::of(
            &crate::config::Settings::default(),
            Target::Endpoint {
                url: "http://127.0.0.1:9/v1".into(),
            },
            Some("m".into()),
            1,
            None,
        )
    }
}

/// A wall-clock instant in µs since the Unix epoch, written as RFC 3339 (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wall(pub i64);

impl Wall {
    pub fn now() -> Wall {
        Wall::from(std::time::SystemTime::now())
    }
    pub fn plus_us(self, us: u64) -> Wall {
        Wall(self.0.saturating_add(us.min(i64::MAX as u64) as i64))
    }
    pub fn rfc3339(self) -> String {
        jiff::Timestamp::from_microsecond(self.0)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }
}

impl From<std::time::SystemTime> for Wall {
    fn from(t: std::time::SystemTime) -> Wall {
        match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => Wall(d.as_micros().min(i64::MAX as u128) as i64),
            Err(e) => Wall(-(e.duration().as_micros().min(i64::MAX as u128) as i64)),
        }
    }
}

impl Serialize for Wall {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Wall {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t: jiff::Timestamp = s.parse().map_err(serde::de::Error::custom)?;
        Ok(Wall(t.as_microsecond()))
    }
}

/// Every latency distribution, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histograms {
    pub ttft: Hist,
    pub ttft_first_turn: Hist,
    pub ttft_later_turns: Hist,
    pub ttfc: Hist,
    pub ttfb: Hist,
    pub connect: Hist,
    pub e2e: Hist,
    pub itl: Hist,
    pub tpot: Hist,
    /// How late the client's own timer woke up during the measured phase: a bound on
    /// the client's measurement error.
    pub client_lag: Hist,
    /// Requests that ended in a tool call: the time to it (their first output).
    pub time_to_tool_call: Hist,
    /// TTFT of the follow-up requests that carried tool outputs.
    pub ttft_after_tool: Hist,
    /// Server-side tool calls (MCP): from in progress to completed.
    pub server_tool: Hist,
    /// The overhead a gateway reported in a response header (`overhead_header`).
    #[serde(default)]
    pub gateway_overhead: Hist,
}

impl Histograms {
    fn each_mut(&mut self) -> [&mut Hist; 14] {
        [
            &mut self.ttft,
            &mut self.ttft_first_turn,
            &mut self.ttft_later_turns,
            &mut self.ttfc,
            &mut self.ttfb,
            &mut self.connect,
            &mut self.e2e,
            &mut self.itl,
            &mut self.tpot,
            &mut self.client_lag,
            &mut self.time_to_tool_call,
            &mut self.ttft_after_tool,
            &mut self.server_tool,
            &mut self.gateway_overhead,
        ]
    }
    fn merge(&mut self, o: &Histograms) {
        let theirs = [
            &o.ttft,
            &o.ttft_first_turn,
            &o.ttft_later_turns,
            &o.ttfc,
            &o.ttfb,
            &o.connect,
            &o.e2e,
            &o.itl,
            &o.tpot,
            &o.client_lag,
            &o.time_to_tool_call,
            &o.ttft_after_tool,
            &o.server_tool,
            &o.gateway_overhead,
        ];
        for (mine, theirs) in self.each_mut().into_iter().zip(theirs) {
            mine.add(theirs);
        }
    }
}

/// Exact sums and counts: the means behind the headline, and every count a warning
/// or a report needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub failed: u64,
    /// Failures that say the endpoint cannot be used at all.
    pub fatal_failed: u64,
    pub first_turn_ttft_sum_us: u64,
    pub first_turns_timed: u64,
    pub later_turn_ttft_sum_us: u64,
    pub later_turns_timed: u64,
    pub output_tokens: u64,
    /// Requests whose output tokens were counted from events, not reported by usage.
    pub output_tokens_approx: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    /// Requests with usage, and those whose usage carried cached tokens.
    pub usage_reported: u64,
    pub cached_reported: u64,
    pub prompt_bytes: u64,
    /// Successful requests answered as an event stream, and as a whole JSON body.
    pub streamed: u64,
    pub not_streamed: u64,
    /// Successful requests that carried no output token.
    pub no_output: u64,
    /// Streams whose tokens arrived together (several tokens within 1 ms).
    pub buffered: u64,
    /// Values above the histograms' top, recorded at the top.
    pub clamped: u64,
    /// First turns whose server-reported cached tokens exceed half their prompt.
    pub warm_first_turns: u64,
    pub first_turns_with_usage: u64,
    /// Requests in flight when a stopped run's grace period ended.
    pub abandoned: u64,
    /// Failed turns of server-held histories: the next turn continues from the last
    /// successful response.
    #[serde(default)]
    pub chain_breaks: u64,
    /// Successful requests that ended in tool calls, and the follow-ups that answered.
    #[serde(default)]
    pub tool_calls: u64,
    #[serde(default)]
    pub tool_followups: u64,
    pub warmup_requests: u64,
    pub warmup_failed: u64,
}

impl Counts {
    fn merge(&mut self, o: &Counts) {
        let Counts {
            requests,
            failed,
            fatal_failed,
            first_turn_ttft_sum_us,
            first_turns_timed,
            later_turn_ttft_sum_us,
            later_turns_timed,
            output_tokens,
            output_tokens_approx,
            prompt_tokens,
            cached_tokens,
            usage_reported,
            cached_reported,
            prompt_bytes,
            streamed,
            not_streamed,
            no_output,
            buffered,
            clamped,
            warm_first_turns,
            first_turns_with_usage,
            abandoned,
            chain_breaks,
            tool_calls,
            tool_followups,
            warmup_requests,
            warmup_failed,
        } = o;
        for (mine, theirs) in [
            (&mut self.requests, requests),
            (&mut self.failed, failed),
            (&mut self.fatal_failed, fatal_failed),
            (&mut self.first_turn_ttft_sum_us, first_turn_ttft_sum_us),
            (&mut self.first_turns_timed, first_turns_timed),
            (&mut self.later_turn_ttft_sum_us, later_turn_ttft_sum_us),
            (&mut self.later_turns_timed, later_turns_timed),
            (&mut self.output_tokens, output_tokens),
            (&mut self.output_tokens_approx, output_tokens_approx),
            (&mut self.prompt_tokens, prompt_tokens),
            (&mut self.cached_tokens, cached_tokens),
            (&mut self.usage_reported, usage_reported),
            (&mut self.cached_reported, cached_reported),
            (&mut self.prompt_bytes, prompt_bytes),
            (&mut self.streamed, streamed),
            (&mut self.not_streamed, not_streamed),
            (&mut self.no_output, no_output),
            (&mut self.buffered, buffered),
            (&mut self.clamped, clamped),
            (&mut self.warm_first_turns, warm_first_turns),
            (&mut self.first_turns_with_usage, first_turns_with_usage),
            (&mut self.abandoned, abandoned),
            (&mut self.chain_breaks, chain_breaks),
            (&mut self.tool_calls, tool_calls),
            (&mut self.tool_followups, tool_followups),
            (&mut self.warmup_requests, warmup_requests),
            (&mut self.warmup_failed, warmup_failed),
        ] {
            *mine = mine.saturating_add(*theirs);
        }
    }
}

/// One turn number's share (or the pool of turns after [`TURN_DETAIL`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TurnTally {
    pub ttft: Hist,
    pub requests: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    /// Successful requests of this turn whose usage carried cached tokens.
    pub usage_reported: u64,
    pub prompt_bytes: u64,
}

impl TurnTally {
    fn merge(&mut self, o: &TurnTally) {
        self.ttft.add(&o.ttft);
        self.requests += o.requests;
        self.failed += o.failed;
        self.prompt_tokens += o.prompt_tokens;
        self.cached_tokens += o.cached_tokens;
        self.usage_reported += o.usage_reported;
        self.prompt_bytes += o.prompt_bytes;
    }
}

/// One conversation's tally: its own speedup, and whether it completed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConversationTally {
    /// (turn, TTFT µs) of every timed request: the per-conversation samples a
    /// bootstrap over conversations resamples.
    #[serde(default)]
    pub ttfts: Vec<(u32, u64)>,
    pub first_ttft_us: Option<u64>,
    pub later_ttft_sum_us: u64,
    pub later_timed: u32,
    pub ok_turns: u32,
    pub failed_turns: u32,
    #[serde(default)]
    pub tool_round_trips: u32,
}

/// Errors of one kind: how many, and the first message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCount {
    pub count: u64,
    pub first_message: String,
}

/// One second of the run (by wall clock): enough for the "over time" charts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Second {
    pub requests: u64,
    pub failed: u64,
    pub ttft_sum_us: u64,
    pub ttft_n: u64,
    pub ttft_max_us: u64,
    pub e2e_sum_us: u64,
    pub e2e_n: u64,
    pub output_tokens: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
}

impl Second {
    fn merge(&mut self, o: &Second) {
        self.requests += o.requests;
        self.failed += o.failed;
        self.ttft_sum_us += o.ttft_sum_us;
        self.ttft_n += o.ttft_n;
        self.ttft_max_us = self.ttft_max_us.max(o.ttft_max_us);
        self.e2e_sum_us += o.e2e_sum_us;
        self.e2e_n += o.e2e_n;
        self.output_tokens += o.output_tokens;
        for (k, n) in &o.errors {
            *self.errors.entry(*k).or_default() += n;
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub meta: RunMeta,
    /// Wall-clock start and end of the measured phase (UTC); `None` when nothing was
    /// measured. Merged shards span from the earliest start to the latest end.
    pub started_at: Option<Wall>,
    pub ended_at: Option<Wall>,
    pub histograms: Histograms,
    pub counts: Counts,
    pub by_turn: BTreeMap<u32, TurnTally>,
    pub by_doc_kind: BTreeMap<DocKind, Hist>,
    pub conversations: BTreeMap<u32, ConversationTally>,
    pub errors: BTreeMap<ErrorKind, ErrorCount>,
    /// Per second of wall-clock time, keyed by Unix second.
    pub timeline: BTreeMap<i64, Second>,
    /// Why the run stopped early (a signal), when it did.
    pub partial: Option<String>,
    /// Why the endpoint could not be used at all, when it could not.
    pub endpoint_unusable: Option<String>,
    /// Open loop only: arrivals, conversations active over time, achieved rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_loop: Option<open_loop::OpenLoop>,
    /// The server's metrics over the measured phase (`metrics_url`); `None` without.
    #[serde(default)]
    pub server: Option<crate::scrape::ServerRun>,
    /// How much of each turn's reusable prefix the server reported cached.
    #[serde(default)]
    pub reuse: crate::scrape::ReuseTally,
}

impl RunState {
    pub fn new(meta: RunMeta) -> RunState {
        RunState {
            meta,
            started_at: None,
            ended_at: None,
            histograms: Histograms::default(),
            counts: Counts::default(),
            by_turn: BTreeMap::new(),
            by_doc_kind: BTreeMap::new(),
            conversations: BTreeMap::new(),
            errors: BTreeMap::new(),
            timeline: BTreeMap::new(),
            partial: None,
            endpoint_unusable: None,
            open_loop: None,
            server: None,
            reuse: Default::default(),
        }
    }

    /// Measured-phase wall time in seconds (0 when nothing was measured).
    pub fn wall_s(&self) -> f64 {
        match (self.started_at, self.ended_at) {
            (Some(a), Some(b)) if b.0 > a.0 => (b.0 - a.0) as f64 / 1e6,
            _ => 0.0,
        }
    }

    fn rec(&mut self, h: fn(&mut Histograms) -> &mut Hist, us: u64) {
        if !h(&mut self.histograms).record(us) {
            self.counts.clamped += 1;
        }
    }

    /// Fold one record in. Its ITL gaps are moved out (they can be many).
    pub fn add(&mut self, r: &mut RequestRecord) {
        if let Some(o) = &mut self.open_loop {
            o.add(r, self.started_at, self.meta.workload.turns as u32);
        }
        let m = &mut r.measured;
        let c = &mut self.counts;
        c.requests += 1;
        c.prompt_bytes = c.prompt_bytes.saturating_add(r.prompt_bytes);
        let turn_key = r.turn.min(TURN_POOL);
        let turn = self.by_turn.entry(turn_key).or_default();
        turn.requests += 1;
        turn.prompt_bytes = turn.prompt_bytes.saturating_add(r.prompt_bytes);
        let conv = self.conversations.entry(r.conversation).or_default();
        let second = self
            .started_at
            .map(|s| s.plus_us(r.start_us).0.div_euclid(1_000_000));
        let second = second.map(|s| self.timeline.entry(s).or_default());

        if let Some(err) = &m.error {
            c.failed += 1;
            c.chain_breaks +=
                u64::from(self.meta.workload.history == Some(crate::config::History::Server));
            c.fatal_failed += u64::from(err.is_fatal());
            turn.failed += 1;
            conv.failed_turns += 1;
            if let Some(sec) = second {
                sec.requests += 1;
                sec.failed += 1;
                *sec.errors.entry(err.kind).or_default() += 1;
            }
            self.errors
                .entry(err.kind)
                .and_modify(|e| e.count += 1)
                .or_insert_with(|| ErrorCount {
                    count: 1,
                    first_message: err.message.clone(),
                });
            m.itl_us = Vec::new();
            return;
        }
        conv.ok_turns += 1;
        if m.streamed {
            c.streamed += 1;
        } else {
            c.not_streamed += 1;
        }
        let tokens = m.output_tokens.unwrap_or(0);
        let no_output = if m.streamed {
            m.ttft_us.is_none()
        } else {
            tokens == 0
        };
        c.no_output += u64::from(no_output);
        if let (true, Some(ttft), Some(e2e)) = (m.streamed, m.ttft_us, m.e2e_us) {
            c.buffered += u64::from(tokens >= 3 && e2e.saturating_sub(ttft) < BUFFERED_WITHIN_US);
        }
        c.output_tokens = c.output_tokens.saturating_add(tokens);
        c.output_tokens_approx += u64::from(m.output_tokens.is_some() && m.tokens_approx);
        if m.prompt_tokens.is_some() || m.cached_tokens.is_some() {
            c.usage_reported += 1;
            c.prompt_tokens = c.prompt_tokens.saturating_add(m.prompt_tokens.unwrap_or(0));
            c.cached_tokens = c.cached_tokens.saturating_add(m.cached_tokens.unwrap_or(0));
        }
        if let Some(cached) = m.cached_tokens {
            c.cached_reported += 1;
            turn.usage_reported += 1;
            turn.prompt_tokens = turn
                .prompt_tokens
                .saturating_add(m.prompt_tokens.unwrap_or(0));
            turn.cached_tokens = turn.cached_tokens.saturating_add(cached);
            self.reuse.add(turn_key, r.reusable_tokens, Some(cached));
            if r.turn == 1 && !r.after_tool {
                c.first_turns_with_usage += 1;
                let prompt = m.prompt_tokens.unwrap_or(0);
                c.warm_first_turns += u64::from(prompt > 0 && cached * 2 > prompt);
            }
        }
        if let Some(sec) = second {
            sec.requests += 1;
            sec.output_tokens = sec.output_tokens.saturating_add(tokens);
            if let Some(t) = m.ttft_us {
                sec.ttft_sum_us = sec.ttft_sum_us.saturating_add(t);
                sec.ttft_n += 1;
                sec.ttft_max_us = sec.ttft_max_us.max(t);
            }
            if let Some(t) = m.e2e_us {
                sec.e2e_sum_us = sec.e2e_sum_us.saturating_add(t);
                sec.e2e_n += 1;
            }
        }
        if !m.tool_calls.is_empty() {
            c.tool_calls += 1;
        }
        for us in std::mem::take(&mut m.server_tool_us) {
            self.counts.clamped += u64::from(!self.histograms.server_tool.record(us));
        }
        if r.after_tool {
            // A follow-up is not a turn of its own: it stays out of the per-turn and
            // first-versus-later figures, and has its own TTFT.
            self.counts.tool_followups += 1;
            conv.tool_round_trips += 1;
            if let Some(t) = m.ttft_us {
                self.rec(|h| &mut h.ttft_after_tool, t);
                self.rec(|h| &mut h.ttft, t);
            }
            if let Some(t) = m.e2e_us {
                self.rec(|h| &mut h.e2e, t);
            }
            r.measured.itl_us = Vec::new();
            return;
        }
        if let (false, Some(t)) = (m.tool_calls.is_empty(), m.ttft_us) {
            self.counts.clamped += u64::from(!self.histograms.time_to_tool_call.record(t));
        }
        let m = &mut r.measured;
        let c = &mut self.counts;
        let turn = self.by_turn.entry(turn_key).or_default();
        let conv = self.conversations.entry(r.conversation).or_default();
        let mut clamped = 0;
        if let Some(t) = m.ttft_us {
            clamped += u64::from(!turn.ttft.record(t));
            conv.ttfts.push((r.turn, t));
            if r.turn == 1 {
                c.first_turn_ttft_sum_us = c.first_turn_ttft_sum_us.saturating_add(t);
                c.first_turns_timed += 1;
                conv.first_ttft_us = Some(t);
            } else {
                c.later_turn_ttft_sum_us = c.later_turn_ttft_sum_us.saturating_add(t);
                c.later_turns_timed += 1;
                conv.later_ttft_sum_us = conv.later_ttft_sum_us.saturating_add(t);
                conv.later_timed += 1;
            }
            clamped += u64::from(!self.by_doc_kind.entry(r.doc_kind).or_default().record(t));
        }
        self.counts.clamped += clamped;
        let tpot = m.tpot_us();
        let (ttft, ttfc, ttfb, connect, e2e) =
            (m.ttft_us, m.ttfc_us, m.ttfb_us, m.connect_us, m.e2e_us);
        let first = r.turn == 1;
        if let Some(t) = ttft {
            self.rec(|h| &mut h.ttft, t);
            if first {
                self.rec(|h| &mut h.ttft_first_turn, t);
            } else {
                self.rec(|h| &mut h.ttft_later_turns, t);
            }
        }
        for (v, h) in [
            (ttfc, (|h| &mut h.ttfc) as fn(&mut Histograms) -> &mut Hist),
            (ttfb, |h| &mut h.ttfb),
            (connect, |h| &mut h.connect),
            (e2e, |h| &mut h.e2e),
            (tpot, |h| &mut h.tpot),
        ] {
            if let Some(v) = v {
                self.rec(h, v);
            }
        }
        if let Some(us) = r.measured.gateway_overhead_us {
            self.rec(|h| &mut h.gateway_overhead, us);
        }
        for gap in std::mem::take(&mut r.measured.itl_us) {
            self.rec(|h| &mut h.itl, u64::from(gap));
        }
    }

    /// Add another state of the same run (another shard): afterwards this state is
    /// exactly what adding all of both runs' records would have made. Check
    /// [`RunState::mergeable`] first.
    pub fn merge(&mut self, o: &RunState) {
        self.histograms.merge(&o.histograms);
        self.counts.merge(&o.counts);
        for (k, t) in &o.by_turn {
            self.by_turn.entry(*k).or_default().merge(t);
        }
        for (k, h) in &o.by_doc_kind {
            self.by_doc_kind.entry(*k).or_default().add(h);
        }
        for (k, c) in &o.conversations {
            let mine = self.conversations.entry(*k).or_default();
            if mine.first_ttft_us.is_none() {
                mine.first_ttft_us = c.first_ttft_us;
            }
            mine.ttfts.extend_from_slice(&c.ttfts);
            mine.later_ttft_sum_us += c.later_ttft_sum_us;
            mine.later_timed += c.later_timed;
            mine.ok_turns += c.ok_turns;
            mine.tool_round_trips += c.tool_round_trips;
            mine.failed_turns += c.failed_turns;
        }
        for (k, e) in &o.errors {
            self.errors
                .entry(*k)
                .and_modify(|mine| mine.count += e.count)
                .or_insert_with(|| e.clone());
        }
        for (k, s) in &o.timeline {
            self.timeline.entry(*k).or_default().merge(s);
        }
        match (&mut self.open_loop, &o.open_loop) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, Some(theirs)) => *mine = Some(theirs.clone()),
            _ => {}
        }
        self.started_at = min_some(self.started_at, o.started_at);
        self.ended_at = self.ended_at.max(o.ended_at);
        self.meta.shards.extend(&o.meta.shards);
        self.meta.shards.sort_unstable();
        if self.partial.is_none() {
            self.partial.clone_from(&o.partial);
        }
        if self.endpoint_unusable.is_none() {
            self.endpoint_unusable.clone_from(&o.endpoint_unusable);
        }
        crate::scrape::merge_server(&mut self.server, &o.server);
        self.reuse.merge(&o.reuse);
    }

    /// Why `o` is not another shard of this run, if it is not.
    pub fn mergeable(&self, o: &RunState) -> Result<(), String> {
        let (a, b) = (&self.meta, &o.meta);
        if a.seed != b.seed {
            return Err(format!("seeds differ ({} and {})", a.seed, b.seed));
        }
        if a.salt != b.salt {
            return Err(format!(
                "salts differ ({} and {})",
                a.salt.as_deref().unwrap_or("none"),
                b.salt.as_deref().unwrap_or("none")
            ));
        }
        if a.workload != b.workload {
            return Err("the workloads differ (conversations, turns, parallel, max_tokens, delays, warm-up, documents, usage or keep-alive)".into());
        }
        let same_loop = match (&self.open_loop, &o.open_loop) {
            (Some(x), Some(y)) => x.same_plan(y),
            (x, y) => x.is_none() == y.is_none(),
        };
        if !same_loop {
            return Err("the arrivals differ (open loop, rate or duration)".into());
        }
        if a.shard_count != b.shard_count {
            return Err(format!(
                "the shard counts differ ({} and {})",
                a.shard_count, b.shard_count
            ));
        }
        if let Some(i) = b.shards.iter().find(|i| a.shards.contains(i)) {
            return Err(format!("shard {i} appears twice"));
        }
        Ok(())
    }
}

fn min_some(a: Option<Wall>, b: Option<Wall>) -> Option<Wall> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ErrorKind, RequestError};
    use proptest::prelude::*;

    fn ok(conv: u32, turn: u32, ttft_ms: u64) -> RequestRecord {
        RequestRecord {
            conversation: conv,
            turn,
            measured: Measured {
                ttft_us: Some(ttft_ms * 1000),
                e2e_us: Some(ttft_ms * 1000 + 10_000),
                output_tokens: Some(11),
                streamed: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn state() -> RunState {
        let mut s = RunState::new(RunMeta::for_tests());
        s.started_at = Some(Wall(1_700_000_000_000_000));
        s.ended_at = Some(Wall(1_700_000_002_000_000));
        s
    }

    #[test]
    fn speedup_is_the_ratio_of_pooled_means_and_failures_stay_out_of_latencies() {
        let mut a = state();
        a.meta.workload.turns = 3;
        for mut r in [
            ok(0, 1, 300),
            ok(0, 2, 100),
            ok(0, 3, 50),
            ok(1, 1, 100),
            ok(1, 2, 50),
        ] {
            a.add(&mut r);
        }
        let mut failed = ok(1, 3, 9_000);
        failed.measured.error = Some(RequestError::new(ErrorKind::Timeout, "slow".into()));
        a.add(&mut failed);
        let s = a.stats();
        // first turns: mean 200; later: (100 + 50 + 50) / 3
        assert!((s.speedup_ratio.unwrap() - 200.0 / (200.0 / 3.0)).abs() < 1e-9);
        assert_eq!(s.total_requests, 6);
        assert_eq!(s.failed_requests, 1);
        assert_eq!(s.ttft.unwrap().count, 5);
        assert!(
            s.ttft.unwrap().max_ms < 301.0,
            "the failed request is not in the histogram"
        );
        assert_eq!(s.errors["timeout"].count, 1);
        assert_eq!(s.conversations_completed, 1);
        let per = s.per_conversation_speedup.unwrap();
        assert_eq!(per.count, 2);
        assert!((per.min - 2.0).abs() < 1e-9 && (per.max - 4.0).abs() < 1e-9);
        assert_eq!(s.requests_per_second, 3.0);
        assert_eq!(s.tpot.unwrap().count, 5);
    }

    #[test]
    fn only_connect_and_auth_or_not_found_failures_are_fatal() {
        let mut a = state();
        for status in [401, 500] {
            let mut r = ok(0, 1, 1);
            r.measured.error = Some(
                RequestError::new(ErrorKind::HttpStatus, format!("HTTP {status}"))
                    .with_status(status),
            );
            a.add(&mut r);
        }
        let mut r = ok(1, 1, 1);
        r.measured.error = Some(RequestError::new(ErrorKind::Connect, "refused".into()));
        a.add(&mut r);
        // The 500 is not fatal, though the first http_status message was a 401.
        assert_eq!((a.counts.failed, a.counts.fatal_failed), (3, 2));
    }

    #[test]
    fn a_first_turn_mostly_served_from_cache_is_warm() {
        let mut a = state();
        for (turn, prompt, cached) in [(1, 1000, 990), (1, 1000, 100), (2, 2000, 1900)] {
            let mut r = ok(turn, turn, 10);
            r.measured.prompt_tokens = Some(prompt);
            r.measured.cached_tokens = Some(cached);
            a.add(&mut r);
        }
        assert_eq!(a.counts.warm_first_turns, 1);
    }

    #[test]
    fn later_turns_pool_beyond_the_detail_limit() {
        let mut a = state();
        for turn in 1..=5000 {
            a.add(&mut ok(0, turn, 5));
        }
        assert_eq!(a.by_turn.len(), TURN_POOL as usize);
        assert_eq!(
            a.by_turn[&TURN_POOL].requests,
            5000 - u64::from(TURN_DETAIL)
        );
        assert_eq!(a.stats().by_turn[&TURN_POOL].label, "31+");
    }

    #[test]
    fn a_json_answer_has_no_ttft_but_counts_and_a_buffered_stream_is_seen() {
        let mut a = state();
        let mut json = ok(0, 1, 10);
        json.measured.streamed = false;
        json.measured.ttft_us = None;
        a.add(&mut json);
        let mut buffered = ok(1, 1, 10);
        buffered.measured.e2e_us = Some(10_300);
        a.add(&mut buffered);
        assert_eq!((a.counts.not_streamed, a.counts.streamed), (1, 1));
        assert_eq!(a.counts.buffered, 1);
        assert_eq!(a.histograms.e2e.len(), 2);
        assert_eq!(a.histograms.ttft.len(), 1);
    }

    fn arb_record() -> impl Strategy<Value = RequestRecord> {
        (
            0u32..12,
            1u32..40,
            any::<bool>(),
            1u64..5_000_000,
            0u64..200,
            prop::option::of((0u64..5000, 0u64..5000)),
            prop::collection::vec(1u32..100_000, 0..6),
            0u8..10,
            0u64..4_000_000,
        )
            .prop_map(
                |(conv, turn, code, ttft, tokens, usage, itl, fail, start)| {
                    let mut m = Measured {
                        ttft_us: Some(ttft),
                        ttfc_us: Some(ttft + 3),
                        ttfb_us: Some(ttft / 2),
                        connect_us: (tokens % 3 == 0).then_some(400),
                        e2e_us: Some(ttft + tokens * 1000),
                        output_tokens: Some(tokens),
                        prompt_tokens: usage.map(|u| u.0),
                        cached_tokens: usage.map(|u| u.1),
                        streamed: tokens % 7 != 0,
                        itl_us: itl,
                        ..Default::default()
                    };
                    if fail == 0 {
                        m.error = Some(RequestError::new(
                            ErrorKind::HttpStatus,
                            format!("HTTP 500 ({conv})"),
                        ));
                    }
                    if tokens % 5 == 0 {
                        m.tool_calls = vec![crate::client::ToolCall::default()];
                        m.server_tool_us = vec![tokens * 100];
                    }
                    RequestRecord {
                        conversation: conv,
                        turn,
                        doc_kind: if code { DocKind::Code } else { DocKind::Text },
                        start_us: start,
                        prompt_bytes: tokens * 4,
                        after_tool: tokens % 11 == 0,
                        // Reuse efficiency and gateway overhead merge exactly too.
                        reusable_tokens: usage.map(|u| u.0 / 2 + 1),
                        measured: Measured {
                            gateway_overhead_us: Some(ttft / 3),
                            ..m
                        },
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Shards merged are exactly the state of all their records together.
        #[test]
        fn merging_shards_is_exactly_adding_all_their_records(
            records in prop::collection::vec(arb_record(), 0..120),
            shard_count in 1u32..5,
        ) {
            let mut whole = state();
            let mut shards: Vec<RunState> = (0..shard_count)
                .map(|i| {
                    let mut s = state();
                    s.meta.shards = vec![i];
                    s.meta.shard_count = shard_count;
                    s
                })
                .collect();
            for r in &records {
                whole.add(&mut r.clone());
                shards[(r.conversation % shard_count) as usize].add(&mut r.clone());
            }
            let mut merged = shards.remove(0);
            for s in &shards {
                prop_assert!(merged.mergeable(s).is_ok());
                merged.merge(s);
            }
            whole.meta.shards = (0..shard_count).collect();
            whole.meta.shard_count = shard_count;
            // First messages differ by which shard saw its kind first; the rest is exact.
            for (k, e) in &mut merged.errors {
                e.first_message.clone_from(&whole.errors[k].first_message);
            }
            prop_assert_eq!(&merged, &whole);
            prop_assert_eq!(serde_json::to_string(&merged.stats()).unwrap(),
                serde_json::to_string(&whole.stats()).unwrap());
        }
    }

    #[test]
    fn shards_of_another_run_or_a_repeated_shard_do_not_merge() {
        let a = state();
        let mut b = state();
        b.meta.seed = 2;
        assert!(a.mergeable(&b).unwrap_err().contains("seeds differ"));
        let mut b = state();
        b.meta.salt = Some("x".into());
        assert!(a.mergeable(&b).unwrap_err().contains("salts differ"));
        let mut b = state();
        b.meta.workload.turns = 3;
        assert!(a.mergeable(&b).unwrap_err().contains("workloads differ"));
        assert!(a
            .mergeable(&state())
            .unwrap_err()
            .contains("shard 0 appears twice"));
    }
}
