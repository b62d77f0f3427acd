//! Configuration: one validated [`Settings`] value, layered with figment.
//!
//! Layers, lowest first: built-in defaults → config file (`--config`) → environment
//! (`TURNBENCH_*`, `OPENAI_API_KEY` for the key) → command-line flags. Every setting is
//! declared once, in [`schema::SCHEMA`]; [`load`] reads each from the layers and
//! validates it into the grouped, ready-to-use [`Settings`], naming in every error the
//! flag, variable or file key the user actually wrote.

pub mod levels;
mod metrics;
pub mod schema;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use figment::providers::{Format, Serialized, Toml, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::verdict::Thresholds;
pub use levels::{Arrival, LevelSettings, Users};
use schema::{Kind, Setting, SCHEMA};

/// Prefix of every environment variable turnbench reads.
pub const ENV_PREFIX: &str = "TURNBENCH_";

/// Set by Kubernetes in each pod of an Indexed Job: the shard index when none is given.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

/// An API key. Its `Debug` and `Display` never show the value, so it cannot leak
/// through a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The key itself, for the places that need it: the header, and redaction.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The key and the `Authorization` header made from it once, at validation.
#[derive(Clone)]
pub struct Auth {
    pub key: Secret,
    pub header: HeaderValue,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Auth(***)")
    }
}

/// Where the documents of the conversations come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DocumentSource {
    /// The documents embedded in the binary.
    Bundled,
    /// Every file with a known extension in a directory.
    Directory { path: PathBuf },
    /// Generated documents of this many bytes each.
    Synthetic { bytes: usize },
}

/// The cache salt as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaltSetting {
    /// A new random salt for this run.
    Random,
    /// `--salt none`: prompts without a salt line, as the tool this replaces sent them.
    Off,
    Fixed(String),
}

/// Which part of the plan this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Whether conversation `i` of the full plan belongs to this shard.
    pub fn owns(&self, i: usize) -> bool {
        i % self.count as usize == self.index as usize
    }
}

/// Who holds a conversation's history with the Responses API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum History {
    /// `previous_response_id` and `store: true`: each turn sends only its new message.
    Server,
    /// The whole conversation as input, `store: false`.
    Client,
    /// The Conversations API: a conversation created once, each turn sent into it.
    Conversation,
}

impl History {
    pub fn label(self) -> &'static str {
        match self {
            History::Server => "server",
            History::Client => "client",
            History::Conversation => "conversation",
        }
    }
}

/// The endpoint and how to talk to it, parsed once: the client builds from this.
#[derive(Debug, Clone)]
pub struct TargetSettings {
    pub api: crate::client::Api,
    /// With the Responses API: who holds the history (`None` with chat completions).
    pub history: Option<History>,
    /// MCP servers offered as tools (Responses API only).
    pub mcp_servers: Vec<reqwest::Url>,
    /// Base URL including `/v1`, without a trailing slash; `None`: the built-in simulator.
    pub url: Option<reqwest::Url>,
    pub auth: Option<Auth>,
    pub model: Option<String>,
    /// Extra roots from `ca_cert`, read and parsed at validation.
    pub ca_certs: Vec<reqwest::Certificate>,
    pub insecure: bool,
    pub keep_alive: bool,
    pub include_usage: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// Where a gateway reports its own overhead (`overhead_header`); `None`: nowhere.
    pub overhead_header: Option<reqwest::header::HeaderName>,
}

/// What the run sends, and when.
#[derive(Debug, Clone)]
pub struct WorkloadSettings {
    /// Function tools offered with every request.
    pub tools: usize,
    pub conversations: usize,
    pub turns: usize,
    pub parallel: usize,
    pub max_tokens: u32,
    pub min_delay: f64,
    pub max_delay: f64,
    pub warmup: usize,
    pub seed: Option<u64>,
    pub salt: SaltSetting,
    pub documents: DocumentSource,
    pub shard: Shard,
    pub start_at: Option<SystemTime>,
    /// Open loop: conversations arrive on their own clock; `None`: closed loop.
    pub arrival: Option<Arrival>,
}

/// Where results go and how the process ends.
#[derive(Debug, Clone)]
pub struct OutputSettings {
    pub output_dir: Option<PathBuf>,
    pub user_info_prefix: String,
    pub strict: bool,
    pub grace_period: Duration,
    /// Print results.json compressed between markers on stdout, for Jobs whose files
    /// vanish with their pod.
    pub print_results: bool,
}

/// How `compare` sends a turn to its two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Each turn to both sides, one right after the other: paired differences.
    Alternate,
    /// One side's whole run, then the other's.
    Sequential,
}

/// One side of a compare.
#[derive(Debug, Clone)]
pub struct Side {
    pub name: String,
    pub target: TargetSettings,
}

/// `compare`'s sides and overhead bounds, and `run --baseline`'s regression check.
#[derive(Debug, Clone)]
pub struct CompareSettings {
    pub order: Order,
    pub max_overhead_ms: Option<f64>,
    pub max_overhead_pct: Option<f64>,
    /// Baseline and candidate, when both URLs are given (the compare command).
    pub sides: Option<[Side; 2]>,
    /// `run --baseline FILE`.
    pub baseline_file: Option<PathBuf>,
    pub max_regression_pct: f64,
}

/// Validated settings of every measuring command.
#[derive(Debug, Clone)]
pub struct Settings {
    pub target: TargetSettings,
    pub workload: WorkloadSettings,
    pub thresholds: Thresholds,
    pub levels: LevelSettings,
    pub output: OutputSettings,
    pub compare: CompareSettings,
    pub metrics: crate::scrape::MetricsSettings,
    /// Every setting as validated, the key only said to be set or not: results.json's
    /// `settings`, derived from the schema.
    pub public: serde_json::Map<String, serde_json::Value>,
}

impl Default for Settings {
    fn default() -> Self {
        load(&Dict::new(), &Sources::default()).expect("built-in defaults are valid")
    }
}

/// The layer a value came from, so an error can name what the user wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Default,
    File(PathBuf),
    Env,
    OpenAiEnv,
    JobIndex,
    Flag,
}

impl Origin {
    fn from_metadata(meta: &Metadata) -> Origin {
        match meta.name.as_ref() {
            "flag" => Origin::Flag,
            "env" => Origin::Env,
            "openai-env" => Origin::OpenAiEnv,
            "job-index" => Origin::JobIndex,
            "file" => match &meta.source {
                Some(figment::Source::File(p)) => Origin::File(p.clone()),
                _ => Origin::File(PathBuf::from("config file")),
            },
            _ => Origin::Default,
        }
    }

    /// How the user wrote `key` in this layer: `--max-delay`, `TURNBENCH_MAX_DELAY`, …
    pub fn describe(&self, key: &str) -> String {
        match self {
            Origin::Default => format!("default {key}"),
            Origin::File(p) => format!("{key} (in {})", p.display()),
            Origin::Env => env_name(key),
            Origin::OpenAiEnv => "OPENAI_API_KEY".into(),
            Origin::JobIndex => JOB_COMPLETION_INDEX.into(),
            Origin::Flag => match schema::find(key) {
                Some(s) => format!("--{}", s.flag()),
                None => format!("--{}", key.replace('_', "-")),
            },
        }
    }
}

/// `max_delay` → `TURNBENCH_MAX_DELAY`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// A figment provider under a name we recognise in [`Origin::from_metadata`].
struct Named<P> {
    name: &'static str,
    /// The file the values came from, when they did.
    source: Option<PathBuf>,
    inner: P,
}

impl<P> Named<P> {
    fn new(name: &'static str, inner: P) -> Named<P> {
        Named {
            name,
            source: None,
            inner,
        }
    }
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        let mut meta = self.inner.metadata();
        meta.name = self.name.into();
        if let Some(p) = &self.source {
            meta.source = Some(figment::Source::File(p.clone()));
        }
        meta
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// Inputs to the layering that come from outside the process' arguments, so tests can
/// supply them without touching the real environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `(name, value)` of every environment variable.
    pub env: Vec<(String, String)>,
    /// `--config FILE` (or `TURNBENCH_CONFIG`).
    pub config_file: Option<PathBuf>,
}

impl Sources {
    pub fn from_process(config_file: Option<PathBuf>) -> Sources {
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let config_file = config_file.or_else(|| {
            env.iter()
                .find(|(k, _)| k == "TURNBENCH_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        Sources { env, config_file }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `TURNBENCH_*` variables that name no setting, each with the closest known name.
    pub fn unknown_variables(&self) -> Vec<(String, String)> {
        let known: Vec<String> = schema::all().map(Setting::env).collect();
        self.env
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != "TURNBENCH_CONFIG")
            .filter(|(k, _)| !known.contains(k) && !k.starts_with("TURNBENCH_SIM_"))
            .map(|(k, _)| (k.clone(), closest(k, known.iter().map(String::as_str))))
            .collect()
    }
}

fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    candidates
        .max_by(|a, b| strsim::jaro_winkler(word, a).total_cmp(&strsim::jaro_winkler(word, b)))
        .unwrap_or("")
        .to_string()
}

/// The figment of every layer, and how to read one setting from it.
struct Layers<'a> {
    figment: Figment,
    sources: &'a Sources,
    flags: &'a Dict,
}

impl Layers<'_> {
    fn origin(&self, key: &str) -> Origin {
        self.figment
            .find_metadata(key)
            .map(Origin::from_metadata)
            .unwrap_or(Origin::Default)
    }

    /// How the user wrote `key`, for messages.
    fn name(&self, key: &str) -> String {
        self.origin(key).describe(key)
    }

    fn value(&self, key: &str) -> Option<Value> {
        self.figment.find_value(key).ok()
    }

    /// The value as the user wrote it, for messages (never the key's).
    fn shown(&self, key: &str) -> String {
        if schema::find(key).is_some_and(|s| s.kind == Kind::Secret) {
            return "***".into();
        }
        match self.origin(key) {
            Origin::Env => self.sources.var(&env_name(key)).unwrap_or("").to_string(),
            Origin::JobIndex => self.sources.var(JOB_COMPLETION_INDEX).unwrap_or("").into(),
            Origin::Flag => self.flags.get(key).map(value_text).unwrap_or_default(),
            _ => self.value(key).as_ref().map(value_text).unwrap_or_default(),
        }
    }

    fn bad(&self, key: &str, expected: &str) -> ConfigError {
        ConfigError::new(format!(
            "{}={:?}: expected {expected}",
            self.name(key),
            self.shown(key)
        ))
    }

    fn text(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.value(key) {
            None | Some(Value::Empty(..)) => Ok(None),
            Some(Value::String(_, s)) => Ok(Some(s)),
            Some(Value::Num(..) | Value::Bool(..) | Value::Char(..)) => Ok(Some(
                self.value(key).as_ref().map(value_text).unwrap_or_default(),
            )),
            Some(_) => Err(self.bad(key, "a string")),
        }
    }

    fn uint(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.value(key) {
            None | Some(Value::Empty(..)) => Ok(None),
            Some(v) => as_u64(&v)
                .map(Some)
                .ok_or_else(|| self.bad(key, "a whole number")),
        }
    }

    fn float(&self, key: &str) -> Result<f64, ConfigError> {
        self.value(key)
            .as_ref()
            .and_then(as_f64)
            .ok_or_else(|| self.bad(key, "a number"))
    }

    /// A number that may be unset.
    fn float_opt(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        match self.value(key) {
            None | Some(Value::Empty(..)) => Ok(None),
            Some(v) => as_f64(&v)
                .map(Some)
                .ok_or_else(|| self.bad(key, "a number")),
        }
    }

    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        match self.value(key) {
            Some(Value::Bool(_, b)) => Ok(b),
            Some(Value::String(_, s)) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(Value::String(_, s)) if s.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(self.bad(key, "true or false")),
        }
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Num(_, n) => n.to_u128_lossy().and_then(|u| u64::try_from(u).ok()),
        Value::String(_, s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Num(_, n) => n
            .to_f64()
            .or_else(|| n.to_u128_lossy().map(|u| u as f64))
            .or_else(|| n.to_i128().map(|i| i as f64)),
        Value::String(_, s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(_, s) => s.clone(),
        Value::Num(_, n) => match n.to_f64() {
            Some(f) => f.to_string(),
            None => as_u64(v)
                .map(|u| u.to_string())
                .or_else(|| n.to_i128().map(|i| i.to_string()))
                .unwrap_or_default(),
        },
        Value::Bool(_, b) => b.to_string(),
        Value::Char(_, c) => c.to_string(),
        other => format!("{other:?}"),
    }
}

/// The built-in defaults as a figment dict.
fn defaults() -> Dict {
    let mut d = Dict::new();
    for s in schema::all() {
        let v = match s.default {
            schema::Initial::None => continue,
            schema::Initial::Uint(v) => Value::from(v),
            schema::Initial::Float(v) => Value::from(v),
            schema::Initial::Bool(v) => Value::from(v),
            schema::Initial::Text(v) => Value::from(v),
        };
        d.insert(s.key.into(), v);
    }
    d
}

/// Layer defaults, file, environment and flags, then validate.
///
/// `flags` holds only the settings given on the command line (absent keys are unset).
pub fn load(flags: &Dict, sources: &Sources) -> Result<Settings, ConfigError> {
    let mut figment = Figment::from(Named::new("default", Serialized::defaults(defaults())));

    if let Some(path) = &sources.config_file {
        if !path.is_file() {
            return Err(ConfigError::new(format!(
                "--config {}: no such file",
                path.display()
            )));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let file = match ext.as_str() {
            "yaml" | "yml" => Figment::from(Named::new("file", Yaml::file_exact(path))),
            "toml" => Figment::from(Named::new("file", Toml::file_exact(path))),
            _ => {
                return Err(ConfigError::new(format!(
                    "--config {}: expected a .yaml, .yml or .toml file",
                    path.display()
                )))
            }
        };
        let mut dict: Dict = file.extract().map_err(|e| {
            // Only the first line of the parser's message: the others quote the source
            // line, which may be the API key.
            let first = e
                .to_string()
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            ConfigError::new(format!("{}: cannot be read: {first}", path.display()))
        })?;
        // `baseline:` / `candidate:` sections of a compare hold per-side settings:
        // `baseline: {model: m}` is `baseline_model: m`.
        for side in ["baseline", "candidate"] {
            if let Some(Value::Dict(_, section)) = dict.get(side).cloned() {
                dict.remove(side);
                for (k, v) in section {
                    dict.insert(format!("{side}_{k}"), v);
                }
            }
        }
        if let Some(unknown) = dict.keys().find(|k| schema::find(k).is_none()) {
            return Err(ConfigError::new(format!(
                "{}: unknown setting `{unknown}` (did you mean `{}`?)",
                path.display(),
                closest(unknown, schema::all().map(|s| s.key))
            )));
        }
        figment = figment.merge(Named {
            name: "file",
            source: Some(path.clone()),
            inner: Serialized::defaults(dict),
        });
    }

    // OPENAI_API_KEY is read only when TURNBENCH_API_KEY is unset.
    if sources.var("TURNBENCH_API_KEY").is_none() {
        if let Some(key) = sources.var("OPENAI_API_KEY") {
            let mut dict = Dict::new();
            dict.insert("api_key".into(), key.into());
            figment = figment.merge(Named::new("openai-env", Serialized::defaults(dict)));
        }
    }
    // Kubernetes names the pod's index in an Indexed Job; TURNBENCH_SHARD_INDEX wins.
    if let Some(index) = sources.var(JOB_COMPLETION_INDEX) {
        let mut dict = Dict::new();
        dict.insert("shard_index".into(), index.into());
        figment = figment.merge(Named::new("job-index", Serialized::defaults(dict)));
    }

    // The variables come from `Sources` rather than figment's `Env` provider, so that
    // tests can pass their own environment without touching the process'. They stay
    // strings: each setting's kind decides how it is read.
    let mut env = Dict::new();
    for s in schema::all() {
        if let Some(v) = sources.var(&s.env()) {
            env.insert(s.key.into(), v.into());
        }
    }
    figment = figment.merge(Named::new("env", Serialized::defaults(env)));
    figment = figment.merge(Named::new("flag", Serialized::defaults(flags.clone())));

    validate(&Layers {
        figment,
        sources,
        flags,
    })
}

/// Trimmed text of `key`, `None` when unset or blank.
fn trimmed(l: &Layers<'_>, key: &str) -> Result<Option<String>, ConfigError> {
    Ok(l.text(key)?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty()))
}

fn seconds_of(l: &Layers<'_>, key: &str, allow_zero: bool) -> Result<f64, ConfigError> {
    let v = l.float(key)?;
    let ok = v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v <= 86_400.0;
    if ok {
        Ok(v)
    } else if allow_zero {
        Err(l.bad(key, "a number of seconds from 0 to 86400"))
    } else {
        Err(l.bad(key, "a number of seconds above 0, at most 86400"))
    }
}

/// The target of the run, or of one side of a compare: that side's url, api_key,
/// model and ca_cert when set (`baseline_model`, ...), else the shared ones.
fn target_settings(l: &Layers<'_>, side: Option<&str>) -> Result<TargetSettings, ConfigError> {
    let key = |name: &str| -> String {
        match side {
            Some(side) if name == "url" || l.value(&format!("{side}_{name}")).is_some() => {
                format!("{side}_{name}")
            }
            _ => name.to_string(),
        }
    };
    let url_key = key("url");
    let url = match trimmed(l, &url_key)? {
        // `sim`: the built-in simulator, as when no URL is given.
        None => None,
        Some(u) if u == "sim" => None,
        Some(u) => {
            let expected = "an http(s) base URL such as https://host/v1";
            let parsed = reqwest::Url::parse(u.trim_end_matches('/'))
                .map_err(|_| l.bad(&url_key, expected))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(l.bad(&url_key, expected));
            }
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(ConfigError::new(format!(
                    "{}: credentials in the URL are not supported; use --api-key",
                    l.name(&url_key)
                )));
            }
            Some(parsed)
        }
    };

    // Keys pasted from files often end in a newline; the header cannot carry one.
    let key_key = key("api_key");
    let auth = match l.text(&key_key)?.map(|k| k.trim().to_string()) {
        Some(k) if !k.is_empty() => {
            let mut header = HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                ConfigError::new(format!(
                    "{}=\"***\": expected a key of printable characters, usable in an HTTP header",
                    l.name(&key_key)
                ))
            })?;
            header.set_sensitive(true);
            Some(Auth {
                key: Secret::new(k),
                header,
            })
        }
        _ => None,
    };

    let ca_key = key("ca_cert");
    let ca_certs = match trimmed(l, &ca_key)? {
        None => Vec::new(),
        Some(p) => {
            let pem = std::fs::read(&p)
                .map_err(|e| l.bad(&ca_key, &format!("a readable PEM file ({e})")))?;
            match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => certs,
                _ => return Err(l.bad(&ca_key, "a PEM file with at least one certificate")),
            }
        }
    };

    use crate::client::Api;
    let (api_key, history_key) = (key("api"), key("history"));
    let api = match trimmed(l, &api_key)?.as_deref() {
        None | Some("chat") => Api::Chat,
        Some("responses") => Api::Responses,
        Some(_) => return Err(l.bad(&api_key, "chat or responses")),
    };
    let history = match (api, trimmed(l, &history_key)?.as_deref()) {
        (Api::Chat, None) => None,
        (Api::Chat, Some(_)) => {
            return Err(ConfigError::new(format!(
                "{}={:?}: expected only with --api responses (chat completions always resend the history)",
                l.name(&history_key),
                l.shown(&history_key),
            )))
        }
        (Api::Responses, None | Some("server")) => Some(History::Server),
        (Api::Responses, Some("client")) => Some(History::Client),
        (Api::Responses, Some("conversation")) => Some(History::Conversation),
        (Api::Responses, Some(_)) => {
            return Err(l.bad(&history_key, "server, client or conversation"))
        }
    };
    let mcp_servers = match trimmed(l, "mcp_server")? {
        None => Vec::new(),
        Some(list) => {
            if api != Api::Responses {
                return Err(ConfigError::new(format!(
                    "{}={:?}: expected only with --api responses (MCP tools are the Responses API's)",
                    l.name("mcp_server"),
                    l.shown("mcp_server")
                )));
            }
            list.split(',')
                .map(|u| {
                    reqwest::Url::parse(u.trim())
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https"))
                        .ok_or_else(|| l.bad("mcp_server", "http(s) URLs, comma-separated"))
                })
                .collect::<Result<_, _>>()?
        }
    };
    Ok(TargetSettings {
        overhead_header: metrics::overhead_header(l)?,
        api,
        history,
        mcp_servers,
        url,
        auth,
        model: trimmed(l, &key("model"))?,
        ca_certs,
        insecure: l.bool("insecure")?,
        keep_alive: l.bool("keep_alive")?,
        include_usage: l.bool("include_usage")?,
        timeout: Duration::from_secs_f64(seconds_of(l, "timeout", false)?),
        connect_timeout: Duration::from_secs_f64(seconds_of(l, "connect_timeout", false)?),
        idle_timeout: Duration::from_secs_f64(seconds_of(l, "idle_timeout", false)?),
    })
}

/// `compare`'s sides and verdict, and `run --baseline`.
fn compare_settings(l: &Layers<'_>) -> Result<CompareSettings, ConfigError> {
    let order = match trimmed(l, "order")?.as_deref() {
        None | Some("alternate") => Order::Alternate,
        Some("sequential") => Order::Sequential,
        Some(_) => return Err(l.bad("order", "alternate or sequential")),
    };
    let optional_positive = |key: &str| -> Result<Option<f64>, ConfigError> {
        match l.float_opt(key)? {
            Some(v) if !(v.is_finite() && v >= 0.0) => Err(l.bad(key, "a number of at least 0")),
            v => Ok(v),
        }
    };
    let sides = if l.value("baseline_url").is_some() && l.value("candidate_url").is_some() {
        let side = |name: &str| -> Result<Side, ConfigError> {
            let label = trimmed(l, &format!("{name}_name"))?.unwrap_or_else(|| name.into());
            if label.chars().any(char::is_control) || label.len() > 64 {
                return Err(l.bad(&format!("{name}_name"), "up to 64 printable characters"));
            }
            Ok(Side {
                name: label,
                target: target_settings(l, Some(name))?,
            })
        };
        let sides = [side("baseline")?, side("candidate")?];
        if sides[0].name == sides[1].name {
            return Err(l.bad("candidate_name", "a name other than the baseline's"));
        }
        Some(sides)
    } else {
        None
    };
    let baseline_file = trimmed(l, "baseline")?.map(PathBuf::from);
    if let Some(f) = &baseline_file {
        if !f.is_file() {
            return Err(l.bad("baseline", "a results.json file of an earlier run"));
        }
    }
    Ok(CompareSettings {
        order,
        max_overhead_ms: optional_positive("max_overhead_ms")?,
        max_overhead_pct: optional_positive("max_overhead_pct")?,
        sides,
        baseline_file,
        max_regression_pct: optional_positive("max_regression_pct")?.unwrap_or(10.0),
    })
}

fn validate(l: &Layers<'_>) -> Result<Settings, ConfigError> {
    let count = |key: &str, max: u64| -> Result<usize, ConfigError> {
        match l.uint(key)? {
            Some(v) if (1..=max).contains(&v) => Ok(v as usize),
            _ => Err(l.bad(key, &format!("a whole number from 1 to {max}"))),
        }
    };
    let seconds = |key: &str, allow_zero: bool| -> Result<f64, ConfigError> {
        let v = l.float(key)?;
        let ok = v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v <= 86_400.0;
        if ok {
            Ok(v)
        } else if allow_zero {
            Err(l.bad(key, "a number of seconds from 0 to 86400"))
        } else {
            Err(l.bad(key, "a number of seconds above 0, at most 86400"))
        }
    };
    let positive = |key: &str| -> Result<f64, ConfigError> {
        let v = l.float(key)?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(l.bad(key, "a number above 0"))
        }
    };
    let text = |key: &str| -> Result<Option<String>, ConfigError> {
        Ok(l.text(key)?
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()))
    };

    let target = target_settings(l, None)?;

    let min_delay = seconds("min_delay", true)?;
    let max_delay = seconds("max_delay", true)?;
    if max_delay < min_delay {
        return Err(ConfigError::new(format!(
            "{}={:?}: expected a value at least {}={:?}",
            l.name("max_delay"),
            l.shown("max_delay"),
            l.name("min_delay"),
            l.shown("min_delay")
        )));
    }
    let warmup = match l.uint("warmup")? {
        Some(v) if v <= 100_000 => v as usize,
        _ => return Err(l.bad("warmup", "a whole number from 0 to 100000")),
    };

    let documents = match text("documents")?.as_deref() {
        None | Some("bundled") => DocumentSource::Bundled,
        Some(s) if s.starts_with("synthetic:") => {
            let size = parse_size(&s["synthetic:".len()..]).ok_or_else(|| {
                l.bad(
                    "documents",
                    "bundled, a directory, or synthetic:SIZE (e.g. synthetic:20k)",
                )
            })?;
            if !(16..=10_000_000).contains(&size) {
                return Err(l.bad("documents", "a synthetic size from 16 bytes to 10m"));
            }
            DocumentSource::Synthetic { bytes: size }
        }
        Some(dir) => {
            let path = PathBuf::from(dir);
            if !path.is_dir() {
                return Err(l.bad(
                    "documents",
                    "bundled, an existing directory, or synthetic:SIZE",
                ));
            }
            DocumentSource::Directory { path }
        }
    };

    let salt = match l.text("salt")? {
        None => SaltSetting::Random,
        Some(s) if s.trim().is_empty() => SaltSetting::Random,
        Some(s) if s.trim().eq_ignore_ascii_case("none") => SaltSetting::Off,
        Some(s) => {
            let s = s.trim().to_string();
            if s.len() > 128 || s.chars().any(char::is_control) {
                return Err(l.bad("salt", "up to 128 printable characters, or none"));
            }
            SaltSetting::Fixed(s)
        }
    };

    let shard_count = count("shard_count", 10_000)? as u32;
    let shard_index = match l.uint("shard_index")? {
        None => 0,
        Some(i) if i < shard_count as u64 => i as u32,
        Some(_) => {
            return Err(l.bad(
                "shard_index",
                &format!(
                    "a shard index from 0 to {} ({}={shard_count})",
                    shard_count - 1,
                    l.name("shard_count")
                ),
            ))
        }
    };

    let start_at = match text("start_at")? {
        None => None,
        Some(s) => {
            let ts: jiff::Timestamp = s
                .parse()
                .map_err(|_| l.bad("start_at", "an RFC 3339 time such as 2026-05-04T10:00:00Z"))?;
            let us = ts.as_microsecond();
            let since = Duration::from_micros(us.unsigned_abs());
            Some(if us >= 0 {
                SystemTime::UNIX_EPOCH + since
            } else {
                SystemTime::UNIX_EPOCH - since
            })
        }
    };

    let tools = match l.uint("tools")? {
        Some(n) if n as usize <= crate::workload::MAX_TOOLS => n as usize,
        _ => {
            return Err(l.bad(
                "tools",
                &format!("a whole number from 0 to {}", crate::workload::MAX_TOOLS),
            ))
        }
    };
    let (levels, arrival) = levels::validate(l)?;
    let mut workload = WorkloadSettings {
        tools,
        conversations: count("conversations", 10_000_000)?,
        turns: count("turns", 100_000)?,
        parallel: count("parallel", 100_000)?,
        max_tokens: count("max_tokens", 1_000_000)? as u32,
        min_delay,
        max_delay,
        warmup,
        seed: l.uint("seed")?,
        salt,
        documents,
        shard: Shard {
            index: shard_index,
            count: shard_count,
        },
        start_at,
        arrival,
    };
    // A user is one conversation with its own think time: users wins over both.
    if let Some([u]) = levels.users.as_ref().map(|u| u.levels.as_slice()) {
        workload.conversations = *u;
        workload.parallel = *u;
    }

    let max_error_rate = l.float("max_error_rate")?;
    if !(0.0..=1.0).contains(&max_error_rate) {
        return Err(l.bad("max_error_rate", "a fraction from 0 to 1 (0.05 is 5%)"));
    }
    let thresholds = Thresholds {
        ttft_p95_ms: positive("ttft_p95_threshold_ms")?,
        speedup: positive("speedup_threshold")?,
        max_error_rate,
    };

    let prefix = text("user_info_prefix")?.unwrap_or_default();
    let prefix_ok = prefix
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !prefix_ok {
        return Err(l.bad(
            "user_info_prefix",
            "letters, digits and underscores, not starting with a digit",
        ));
    }
    let output = OutputSettings {
        output_dir: text("output_dir")?.map(PathBuf::from),
        user_info_prefix: prefix,
        strict: l.bool("strict")?,
        grace_period: Duration::from_secs_f64(seconds("grace_period", true)?),
        print_results: l.bool("print_results")?,
    };

    Ok(Settings {
        metrics: metrics::validate(l)?,
        public: public_settings(l)?,
        compare: compare_settings(l)?,
        target,
        workload,
        thresholds,
        levels,
        output,
    })
}

/// Every setting by its key, typed by its kind; the key only as `api_key_set`.
fn public_settings(
    l: &Layers<'_>,
) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
    use serde_json::Value as J;
    let mut out = serde_json::Map::new();
    for s in SCHEMA {
        let v = match s.kind {
            Kind::Secret => {
                let set = l.text(s.key)?.is_some_and(|k| !k.trim().is_empty());
                out.insert(format!("{}_set", s.key), J::Bool(set));
                continue;
            }
            Kind::Text => l.text(s.key)?.map(J::String).unwrap_or(J::Null),
            Kind::Uint => l.uint(s.key)?.map(J::from).unwrap_or(J::Null),
            Kind::Float => l.float_opt(s.key)?.map(J::from).unwrap_or(J::Null),
            Kind::Bool { .. } => J::Bool(l.bool(s.key)?),
            Kind::List => J::from(l.list(s.key)?),
        };
        out.insert(s.key.into(), v);
    }
    Ok(out)
}

/// `20000`, `20k`, `1.5m`: bytes, with the decimal k and m of load tools.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1_000.0),
        'm' => (&s[..s.len() - 1], 1_000_000.0),
        _ => (s.as_str(), 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some((v * mult) as usize)
}

impl Settings {
    /// The base URL as shown in reports (no trailing slash).
    pub fn url_text(&self) -> Option<String> {
        self.target
            .url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Sources {
        Sources {
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            config_file: None,
        }
    }

    #[test]
    fn text_settings_from_the_environment_stay_as_written() {
        let s = load(
            &Dict::new(),
            &env(&[("TURNBENCH_MODEL", "1.10"), ("TURNBENCH_API_KEY", "007")]),
        )
        .unwrap();
        assert_eq!(s.target.model.as_deref(), Some("1.10"));
        assert_eq!(s.target.auth.as_ref().map(|a| a.key.expose()), Some("007"));
    }

    #[test]
    fn a_key_is_trimmed_and_one_unfit_for_a_header_is_refused_without_showing_it() {
        let s = load(&Dict::new(), &env(&[("TURNBENCH_API_KEY", "sk-abc\n")])).unwrap();
        assert_eq!(s.target.auth.unwrap().key.expose(), "sk-abc");
        let e = load(&Dict::new(), &env(&[("TURNBENCH_API_KEY", "sk-a\u{7}b")])).unwrap_err();
        assert!(
            e.0.contains("TURNBENCH_API_KEY") && !e.0.contains("sk-a"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_one_line_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "turns = 3\napi_key = sk-SECRET-abc\n").unwrap();
        let sources = Sources {
            env: vec![],
            config_file: Some(path),
        };
        let e = load(&Dict::new(), &sources).unwrap_err();
        assert!(!e.0.contains("sk-SECRET") && !e.0.contains('\n'), "{e}");
        assert!(e.0.contains("bad.toml"), "{e}");
    }

    #[test]
    fn the_job_completion_index_picks_the_shard_unless_the_setting_is_given() {
        let s = load(
            &Dict::new(),
            &env(&[
                ("JOB_COMPLETION_INDEX", "2"),
                ("TURNBENCH_SHARD_COUNT", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(s.workload.shard, Shard { index: 2, count: 3 });
        let s = load(
            &Dict::new(),
            &env(&[
                ("JOB_COMPLETION_INDEX", "2"),
                ("TURNBENCH_SHARD_INDEX", "1"),
                ("TURNBENCH_SHARD_COUNT", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(s.workload.shard.index, 1);
        let e = load(
            &Dict::new(),
            &env(&[
                ("JOB_COMPLETION_INDEX", "3"),
                ("TURNBENCH_SHARD_COUNT", "3"),
            ]),
        )
        .unwrap_err();
        assert!(e.0.starts_with("JOB_COMPLETION_INDEX=\"3\""), "{e}");
    }

    #[test]
    fn start_at_takes_rfc3339_with_any_offset() {
        let s = load(
            &Dict::new(),
            &env(&[("TURNBENCH_START_AT", "2026-05-04T12:00:00+02:00")]),
        )
        .unwrap();
        let at = crate::state::Wall::from(s.workload.start_at.unwrap());
        assert_eq!(at.rfc3339(), "2026-05-04T10:00:00Z");
        let e = load(&Dict::new(), &env(&[("TURNBENCH_START_AT", "soon")])).unwrap_err();
        assert!(
            e.0.contains("TURNBENCH_START_AT") && e.0.contains("RFC 3339"),
            "{e}"
        );
    }

    #[test]
    fn public_settings_name_every_setting_but_never_hold_the_key() {
        let s = load(&Dict::new(), &env(&[("TURNBENCH_API_KEY", "sk-hidden")])).unwrap();
        for setting in SCHEMA {
            if setting.kind == Kind::Secret {
                let set = setting.key == "api_key";
                assert_eq!(s.public[&format!("{}_set", setting.key)], set);
                assert!(!s.public.contains_key(setting.key));
            } else {
                assert!(s.public.contains_key(setting.key), "{}", setting.key);
            }
        }
        assert!(!serde_json::to_string(&s.public)
            .unwrap()
            .contains("sk-hidden"));
    }
}
