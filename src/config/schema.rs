//! The one declaration of every setting: its name, group, type, default and help.
//!
//! Everything else is derived from [`SCHEMA`]: the command-line flags (kebab case),
//! the `TURNBENCH_*` variables (upper snake case), the config-file keys (snake case),
//! the help text with its defaults, and the public JSON of results.json.

/// Which part of the run a setting shapes; [`super::Settings`] has one field per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Target,
    Workload,
    Thresholds,
    /// `sweep` and `capacity`: how load levels are chosen and judged.
    Levels,
    Output,
    Compare,
    Metrics,
}

impl Group {
    pub fn heading(self) -> &'static str {
        match self {
            Group::Target => "Target",
            Group::Workload => "Workload",
            Group::Thresholds => "Thresholds",
            Group::Levels => "Sweep and capacity",
            Group::Output => "Output",
            Group::Compare => "Comparison",
            Group::Metrics => "Server metrics",
        }
    }
}

/// The type of a setting's value: how it is parsed from a flag or a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text, never read as a number ("1.10" stays "1.10").
    Text,
    /// Text never shown anywhere (the API key).
    Secret,
    /// A whole number.
    Uint,
    /// A number.
    Float,
    /// A switch; `negated` flags spell the `false` form (`--no-include-usage`).
    Bool { negated: bool },
    /// Several texts: a flag given again adds one, a variable separates them by commas,
    /// a file holds a list (or one comma-separated string).
    List,
}

/// A built-in default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Initial {
    None,
    Uint(u64),
    Float(f64),
    Bool(bool),
    Text(&'static str),
}

/// Which commands take a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every measuring command.
    All,
    /// `turnbench run` only.
    Run,
    /// `turnbench compare` only.
    Compare,
}

impl Scope {
    /// Whether a command of scope `command` takes a setting of this scope.
    pub fn within(self, command: Scope) -> bool {
        self == Scope::All || self == command
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub scope: Scope,
    pub group: Group,
    pub kind: Kind,
    pub default: Initial,
    pub value_name: &'static str,
    pub help: &'static str,
}

impl Setting {
    /// `--max-delay`; a negated switch: `--no-include-usage`.
    pub fn flag(&self) -> String {
        match self.kind {
            Kind::Bool { negated: true } => format!("no-{}", self.key.replace('_', "-")),
            _ => self.key.replace('_', "-"),
        }
    }

    /// `TURNBENCH_MAX_DELAY`.
    pub fn env(&self) -> String {
        super::env_name(self.key)
    }

    /// The default as help shows it (`None` when there is nothing useful to show).
    pub fn default_text(&self) -> Option<String> {
        match self.default {
            Initial::None => None,
            Initial::Uint(v) => Some(v.to_string()),
            Initial::Float(v) => Some(v.to_string()),
            Initial::Bool(_) => None,
            Initial::Text(s) => Some(s.to_string()),
        }
    }
}

const fn s(
    key: &'static str,
    group: Group,
    kind: Kind,
    default: Initial,
    value_name: &'static str,
    help: &'static str,
) -> Setting {
    in_scope(Scope::All, key, group, kind, default, value_name, help)
}

const fn in_scope(
    scope: Scope,
    key: &'static str,
    group: Group,
    kind: Kind,
    default: Initial,
    value_name: &'static str,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        scope,
        group,
        kind,
        default,
        value_name,
        help,
    }
}

use Group::*;
use Initial as D;
use Kind::*;
const SWITCH: Kind = Bool { negated: false };

/// Every setting of every measuring command.
pub const SCHEMA: &[Setting] = &[
    s("url", Target, Text, D::None, "URL", "Base URL including /v1, e.g. https://gateway.example/v1 (also the positional URL) [default: the built-in simulator]"),
    s("api_key", Target, Secret, D::None, "KEY", "Bearer key; prefer TURNBENCH_API_KEY or OPENAI_API_KEY, which stay out of `ps`"),
    s("model", Target, Text, D::None, "MODEL", "Model id [default: the first id listed by GET {url}/models]"),
    s("api", Target, Text, D::Text("chat"), "API", "chat (chat completions: the client resends the history) or responses (the Responses API)"),
    s("history", Target, Text, D::None, "MODE", "With --api responses: server (previous_response_id, store), client (the whole conversation as input, no store) or conversation (the Conversations API) [default: server]"),
    s("mcp_server", Target, Text, D::None, "URL[,URL...]", "With --api responses: MCP servers passed as tools (type mcp, require_approval never), run by the server; comma-separated"),
    s("ca_cert", Target, Text, D::None, "FILE", "PEM file of a CA to trust besides the bundled roots (OpenShift service CA)"),
    s("insecure", Target, SWITCH, D::Bool(false), "", "Do not verify TLS certificates (the report says so)"),
    s("keep_alive", Target, SWITCH, D::Bool(false), "", "Reuse connections instead of opening one per request"),
    s("include_usage", Target, Bool { negated: true }, D::Bool(true), "", "Do not ask for usage in the stream (for servers that reject stream_options)"),
    s("timeout", Target, Float, D::Float(300.0), "SECONDS", "Limit on one whole request, seconds"),
    s("connect_timeout", Target, Float, D::Float(10.0), "SECONDS", "Limit on opening a connection, seconds"),
    s("idle_timeout", Target, Float, D::Float(60.0), "SECONDS", "Limit on silence between two reads of a stream, seconds"),
    s("conversations", Workload, Uint, D::Uint(20), "N", "Conversations to run"),
    s("turns", Workload, Uint, D::Uint(10), "N", "Turns per conversation, the first included"),
    s("parallel", Workload, Uint, D::Uint(4), "N", "Requests in flight at most"),
    s("max_tokens", Workload, Uint, D::Uint(500), "N", "max_tokens of every measured request"),
    s("min_delay", Workload, Float, D::Float(0.5), "SECONDS", "Shortest think time before a request, seconds"),
    s("max_delay", Workload, Float, D::Float(2.0), "SECONDS", "Longest think time before a request, seconds"),
    s("tools", Workload, Uint, D::Uint(0), "N", "Offer every request N function tools; when the model calls one, the turn sends the tool's output in a follow-up request"),
    s("warmup", Workload, Uint, D::Uint(20), "N", "Short sequential requests before measuring, excluded from statistics"),
    s("seed", Workload, Uint, D::None, "N", "Seed of every random choice; printed in the report [default: random]"),
    s("salt", Workload, Text, D::None, "VALUE", "Cache salt: a line unique to the run and the conversation in every opening, so no first turn is served from a cache an earlier run filled; `none` sends no salt line [default: random, printed]"),
    s("documents", Workload, Text, D::Text("bundled"), "SOURCE", "bundled, a directory of .py .go .rs .md .txt ... files, or synthetic:SIZE (e.g. synthetic:20k)"),
    s("shard_index", Workload, Uint, D::None, "I", "Run only the conversations i with i % shard_count == I [default: JOB_COMPLETION_INDEX when set, else 0]"),
    s("shard_count", Workload, Uint, D::Uint(1), "N", "Number of shards the plan is split into (pods of an Indexed Job)"),
    s("start_at", Workload, Text, D::None, "TIME", "Hold the measured phase until this RFC 3339 time, so shards start together (warm-up runs before it)"),
    s("users", Workload, Text, D::None, "U", "Users: each one conversation with think time, so conversations = parallel = U (both overridden). sweep: a list 1,4,16,64 or a geometric range 1..64x2; capacity: where the doubling starts [default: capacity starts at 1]"),
    s("arrival_rate", Workload, Float, D::None, "PER_S", "Open loop: new conversations per second (Poisson, seeded), started whether or not the server keeps up; parallel does not apply [default: closed loop]"),
    s("duration", Workload, Float, D::None, "SECONDS", "Open loop: how long conversations keep arriving, seconds [default: 60 with --arrival-rate]"),
    s("ttft_p95_threshold_ms", Thresholds, Float, D::Float(500.0), "MS", "PASS when TTFT P95 is below this, WARN below twice this"),
    s("speedup_threshold", Thresholds, Float, D::Float(2.0), "RATIO", "Cache GOOD above this speedup, EXCELLENT above 1.5x it"),
    s("max_error_rate", Thresholds, Float, D::Float(0.05), "FRACTION", "FAIL when the share of failed requests exceeds this fraction"),
    s("max_users", Levels, Uint, D::None, "N", "capacity: the most users the search tries (required by capacity)"),
    s("require_cache", Levels, SWITCH, D::Bool(false), "", "sweep and capacity: a level passes only when its cache status is GOOD or better too"),
    s("output_dir", Output, Text, D::None, "DIR", "Write results.json, requests.csv and report.html here"),
    s("user_info_prefix", Output, Text, D::Text("litemaas_benchmark"), "PREFIX", "Prefix of the user-info data keys"),
    s("strict", Output, SWITCH, D::Bool(false), "", "Exit 1 when the verdict is FAIL"),
    s("grace_period", Output, Float, D::Float(5.0), "SECONDS", "After SIGINT/SIGTERM, wait this long for requests in flight, seconds"),
    s("overhead_header", Target, Text, D::Text("x-litellm-overhead-duration-ms"), "NAME", "Response header in which a gateway reports its own overhead in ms, recorded per request; `none` reads none"),
    s("metrics_url", Metrics, List, D::None, "URL", "A vLLM pod's /metrics URL, scraped after the warm-up, every --metrics-interval and after the measured phase; give it once per pod (TURNBENCH_METRICS_URL: comma-separated) [default: none; the built-in simulator's when it is the target]"),
    s("metrics_api_key", Metrics, Secret, D::None, "KEY", "Bearer key for the metrics URLs (never the endpoint's key); prefer TURNBENCH_METRICS_API_KEY"),
    s("metrics_interval", Metrics, Float, D::Float(5.0), "SECONDS", "Seconds between scrapes of the metrics URLs during the measured phase"),
    s("print_results", Output, SWITCH, D::Bool(false), "", "Also print results.json (gzip, base64) between TURNBENCH RESULTS markers on stdout, for `turnbench report` and `turnbench merge` to read from a Job's log"),
];

/// Settings of `compare` (per side, and the overhead verdict) and of `run --baseline`.
pub const COMPARE_SCHEMA: &[Setting] = &[
    in_scope(Scope::Compare, "baseline_url", Compare, Text, D::None, "URL", "Base URL of the baseline side (also the first positional URL); `sim`: an in-process simulator"),
    in_scope(Scope::Compare, "candidate_url", Compare, Text, D::None, "URL", "Base URL of the candidate side (also the second positional URL); `sim`: an in-process simulator"),
    in_scope(Scope::Compare, "baseline_api_key", Compare, Secret, D::None, "KEY", "Key of the baseline side [default: the shared api_key]"),
    in_scope(Scope::Compare, "candidate_api_key", Compare, Secret, D::None, "KEY", "Key of the candidate side [default: the shared api_key]"),
    in_scope(Scope::Compare, "baseline_model", Compare, Text, D::None, "MODEL", "Model of the baseline side [default: the shared model, else discovered]"),
    in_scope(Scope::Compare, "candidate_model", Compare, Text, D::None, "MODEL", "Model of the candidate side [default: the shared model, else discovered]"),
    in_scope(Scope::Compare, "baseline_ca_cert", Compare, Text, D::None, "FILE", "CA of the baseline side [default: the shared ca_cert]"),
    in_scope(Scope::Compare, "candidate_ca_cert", Compare, Text, D::None, "FILE", "CA of the candidate side [default: the shared ca_cert]"),
    in_scope(Scope::Compare, "baseline_api", Compare, Text, D::None, "API", "API of the baseline side: chat or responses [default: the shared api]"),
    in_scope(Scope::Compare, "candidate_api", Compare, Text, D::None, "API", "API of the candidate side: chat or responses [default: the shared api]"),
    in_scope(Scope::Compare, "baseline_history", Compare, Text, D::None, "MODE", "Responses history of the baseline side [default: the shared history]"),
    in_scope(Scope::Compare, "candidate_history", Compare, Text, D::None, "MODE", "Responses history of the candidate side [default: the shared history]"),
    in_scope(Scope::Compare, "baseline_name", Compare, Text, D::Text("baseline"), "NAME", "Name of the baseline side in the report"),
    in_scope(Scope::Compare, "candidate_name", Compare, Text, D::Text("candidate"), "NAME", "Name of the candidate side in the report"),
    in_scope(Scope::Compare, "order", Compare, Text, D::Text("alternate"), "ORDER", "alternate: every turn goes to both sides one right after the other (paired); sequential: one side's whole run, then the other's"),
    in_scope(Scope::Compare, "max_overhead_ms", Compare, Float, D::None, "MS", "Overhead PASS when the upper end of the 95% interval of the TTFT P95 difference is at most this"),
    in_scope(Scope::Compare, "max_overhead_pct", Compare, Float, D::None, "PCT", "Overhead PASS when that upper end is at most this percentage of the baseline's TTFT P95"),
    in_scope(Scope::Run, "baseline", Compare, Text, D::None, "FILE", "Compare this run with an earlier results.json: the same table and intervals, and a regression verdict"),
    in_scope(Scope::Run, "max_regression_pct", Compare, Float, D::Float(10.0), "PCT", "With --baseline: FAIL when TTFT P95 or the speedup is worse than the baseline's by more than this, with confidence"),
];

/// Every setting of every command.
pub fn all() -> impl Iterator<Item = &'static Setting> {
    SCHEMA.iter().chain(COMPARE_SCHEMA)
}

/// The setting called `key`.
pub fn find(key: &str) -> Option<&'static Setting> {
    all().find(|s| s.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_snake_case_and_defaults_fit_their_kind() {
        let mut keys: Vec<&str> = all().map(|s| s.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), all().count(), "a key is declared twice");
        for s in all() {
            assert!(s
                .key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
            let fits = match (s.kind, s.default) {
                (_, Initial::None) => !matches!(s.kind, Kind::Bool { .. }),
                (Kind::Uint, Initial::Uint(_)) => true,
                (Kind::Float, Initial::Float(_)) => true,
                (Kind::Bool { .. }, Initial::Bool(_)) => true,
                (Kind::Text, Initial::Text(_)) => true,
                _ => false,
            };
            assert!(fits, "{}: default does not fit its kind", s.key);
        }
    }
}
