//! results.json: the serialized form of a [`RunState`] (with the per-request rows when
//! they were kept), and the compressed block `--print-results` puts in a Job's log.
//! Both read back into the same typed value.

use std::io::{self, Read, Write};
use std::path::Path;

use serde::de::Error as _;
use serde::ser::{SerializeSeq, SerializeStruct, SerializeTuple};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hist::{base64_decode, base64_encode, Bounds};
use super::{RequestRecord, RunState};
use crate::client::ErrorKind;
use crate::workload::DocKind;

/// Version of results.json's layout; files of another version are not read.
pub const SCHEMA_VERSION: u32 = 2;

pub const RESULTS_BEGIN: &str = "# BEGIN TURNBENCH RESULTS";
pub const RESULTS_END: &str = "# END TURNBENCH RESULTS";

/// At most this many request rows travel in the compact block (a ConfigMap holds
/// 1 MiB); beyond it rows are sampled evenly and the block says so.
pub const COMPACT_MAX_ROWS: usize = 20_000;

/// Columns of requests.csv and of results.json's `requests.rows`, in order.
pub const REQUEST_COLUMNS: &[&str] = &[
    "conversation",
    "turn",
    "doc_kind",
    "start_ms",
    "connect_ms",
    "ttfb_ms",
    "first_event_ms",
    "ttft_ms",
    "ttfc_ms",
    "e2e_ms",
    "output_tokens",
    "tokens_approx",
    "prompt_tokens",
    "cached_tokens",
    "prompt_bytes",
    "streamed",
    "ok",
    "error_kind",
    "http_status",
    "error_message",
];

/// One request as requests.csv shows it. Times in ms at µs precision; `start_ms` from
/// the start of the measured phase, once the request's connection was ready.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub conversation: u32,
    pub turn: u32,
    pub doc_kind: DocKind,
    pub start_ms: f64,
    pub connect_ms: Option<f64>,
    pub ttfb_ms: Option<f64>,
    pub first_event_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub ttfc_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub output_tokens: Option<u64>,
    pub tokens_approx: bool,
    pub prompt_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub prompt_bytes: u64,
    pub streamed: bool,
    pub error_kind: Option<ErrorKind>,
    pub http_status: Option<u16>,
    pub error_message: Option<String>,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl From<&RequestRecord> for RequestRow {
    fn from(r: &RequestRecord) -> RequestRow {
        let m = &r.measured;
        RequestRow {
            conversation: r.conversation,
            turn: r.turn,
            doc_kind: r.doc_kind,
            start_ms: ms(r.start_us),
            connect_ms: m.connect_us.map(ms),
            ttfb_ms: m.ttfb_us.map(ms),
            first_event_ms: m.first_event_us.map(ms),
            ttft_ms: m.ttft_us.map(ms),
            ttfc_ms: m.ttfc_us.map(ms),
            e2e_ms: m.e2e_us.map(ms),
            output_tokens: m.output_tokens,
            tokens_approx: m.tokens_approx,
            prompt_tokens: m.prompt_tokens,
            cached_tokens: m.cached_tokens,
            prompt_bytes: r.prompt_bytes,
            streamed: m.streamed,
            error_kind: m.error.as_ref().map(|e| e.kind),
            http_status: m.error.as_ref().and_then(|e| e.status),
            error_message: m.error.as_ref().map(|e| e.message.clone()),
        }
    }
}

impl RequestRow {
    pub fn ok(&self) -> bool {
        self.error_kind.is_none()
    }
}

impl Serialize for RequestRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(REQUEST_COLUMNS.len())?;
        t.serialize_element(&self.conversation)?;
        t.serialize_element(&self.turn)?;
        t.serialize_element(&self.doc_kind)?;
        t.serialize_element(&self.start_ms)?;
        t.serialize_element(&self.connect_ms)?;
        t.serialize_element(&self.ttfb_ms)?;
        t.serialize_element(&self.first_event_ms)?;
        t.serialize_element(&self.ttft_ms)?;
        t.serialize_element(&self.ttfc_ms)?;
        t.serialize_element(&self.e2e_ms)?;
        t.serialize_element(&self.output_tokens)?;
        t.serialize_element(&self.tokens_approx)?;
        t.serialize_element(&self.prompt_tokens)?;
        t.serialize_element(&self.cached_tokens)?;
        t.serialize_element(&self.prompt_bytes)?;
        t.serialize_element(&self.streamed)?;
        t.serialize_element(&self.ok())?;
        t.serialize_element(&self.error_kind)?;
        t.serialize_element(&self.http_status)?;
        t.serialize_element(&self.error_message)?;
        t.end()
    }
}

impl RequestRow {
    fn from_values(v: &[Value]) -> Result<RequestRow, String> {
        if v.len() != REQUEST_COLUMNS.len() {
            return Err(format!(
                "a request row has {} columns, not {}",
                v.len(),
                REQUEST_COLUMNS.len()
            ));
        }
        fn get<T: serde::de::DeserializeOwned>(v: &Value, col: &str) -> Result<T, String> {
            T::deserialize(v).map_err(|e| format!("request column {col}: {e}"))
        }
        let c = REQUEST_COLUMNS;
        Ok(RequestRow {
            conversation: get(&v[0], c[0])?,
            turn: get(&v[1], c[1])?,
            doc_kind: get(&v[2], c[2])?,
            start_ms: get(&v[3], c[3])?,
            connect_ms: get(&v[4], c[4])?,
            ttfb_ms: get(&v[5], c[5])?,
            first_event_ms: get(&v[6], c[6])?,
            ttft_ms: get(&v[7], c[7])?,
            ttfc_ms: get(&v[8], c[8])?,
            e2e_ms: get(&v[9], c[9])?,
            output_tokens: get(&v[10], c[10])?,
            tokens_approx: get(&v[11], c[11])?,
            prompt_tokens: get(&v[12], c[12])?,
            cached_tokens: get(&v[13], c[13])?,
            prompt_bytes: get(&v[14], c[14])?,
            streamed: get(&v[15], c[15])?,
            error_kind: get(&v[17], c[17])?,
            http_status: get(&v[18], c[18])?,
            error_message: get(&v[19], c[19])?,
        })
    }
}

/// The per-request rows of a run; `sampled_from` when only a sample travelled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requests {
    pub rows: Vec<RequestRow>,
    pub sampled_from: Option<usize>,
}

impl Serialize for Requests {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Rows<'a>(&'a [RequestRow]);
        impl Serialize for Rows<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for r in self.0 {
                    seq.serialize_element(r)?;
                }
                seq.end()
            }
        }
        let n = 2 + usize::from(self.sampled_from.is_some());
        let mut st = s.serialize_struct("Requests", n)?;
        st.serialize_field("columns", REQUEST_COLUMNS)?;
        st.serialize_field("rows", &Rows(&self.rows))?;
        if let Some(n) = self.sampled_from {
            st.serialize_field("sampled_from", &n)?;
        }
        st.end()
    }
}

impl<'de> Deserialize<'de> for Requests {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            columns: Vec<String>,
            rows: Vec<Vec<Value>>,
            #[serde(default)]
            sampled_from: Option<usize>,
        }
        let raw = Raw::deserialize(d)?;
        if raw.columns != REQUEST_COLUMNS {
            return Err(D::Error::custom("the request rows have other columns"));
        }
        let rows = raw
            .rows
            .iter()
            .map(|r| RequestRow::from_values(r))
            .collect::<Result<_, _>>()
            .map_err(D::Error::custom)?;
        Ok(Requests {
            rows,
            sampled_from: raw.sampled_from,
        })
    }
}

/// A run as saved: its state, and the request rows when they were kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub run: RunState,
    pub requests: Option<Requests>,
}

/// Fields of results.json read back; the rest (stats, verdict, user_info) are
/// derived from `run` and recomputed, never trusted.
#[derive(Deserialize)]
struct File {
    run: RunState,
    #[serde(default)]
    requests: Option<Requests>,
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    histogram_bounds: Option<Bounds>,
}

impl Saved {
    /// Read results.json, or any text (a Job's log) holding a block written by
    /// [`write_block`]: the last block wins.
    pub fn parse(text: &str) -> Result<Saved, String> {
        let json = if text.trim_start().starts_with('{') {
            text.to_string()
        } else {
            block_json(text)?
        };
        let header: Header =
            serde_json::from_str(&json).map_err(|e| format!("not valid JSON: {e}"))?;
        match header.schema_version {
            Some(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(format!(
                    "results of schema version {v}; this turnbench reads version {SCHEMA_VERSION}"
                ))
            }
            None => return Err("not a turnbench results.json: no schema_version".into()),
        }
        if header.histogram_bounds != Some(Bounds::ours()) {
            return Err("the histograms have other bounds than this turnbench's".into());
        }
        let file: File = serde_json::from_str(&json)
            .map_err(|e| format!("not a turnbench results.json: {e}"))?;
        Ok(Saved {
            run: file.run,
            requests: file.requests,
        })
    }

    pub fn load(path: &Path) -> Result<Saved, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        Saved::parse(&text)
    }
}

/// The JSON of the last results block in `text`.
fn block_json(text: &str) -> Result<String, String> {
    let start = text
        .rfind(RESULTS_BEGIN)
        .ok_or("neither results.json nor a log with a TURNBENCH RESULTS block")?;
    let rest = &text[start + RESULTS_BEGIN.len()..];
    let end = rest
        .find(RESULTS_END)
        .ok_or("the TURNBENCH RESULTS block has no end marker")?;
    let b64: String = rest[..end].split_whitespace().collect();
    let gz = base64_decode(&b64).ok_or("the results block is not valid base64")?;
    let mut json = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut json)
        .map_err(|e| format!("the results block is not valid gzip: {e}"))?;
    Ok(json)
}

/// `results` (results.json's bytes), its rows cut to [`COMPACT_MAX_ROWS`], gzipped and
/// base64-encoded between markers: for logs that are the only thing left of a Job.
pub fn write_block(w: &mut dyn Write, results: &Value) -> io::Result<()> {
    let mut compact = results.clone();
    // `get_mut`, not indexing: indexing a null `requests` would turn it into an object.
    let rows = compact
        .get_mut("requests")
        .and_then(|r| r.get_mut("rows"))
        .and_then(Value::as_array_mut);
    if let Some(rows) = rows {
        if rows.len() > COMPACT_MAX_ROWS {
            // Exactly COMPACT_MAX_ROWS rows, spread evenly over the run.
            let total = rows.len();
            *rows = (0..COMPACT_MAX_ROWS)
                .map(|i| rows[i * total / COMPACT_MAX_ROWS].clone())
                .collect();
            compact["requests"]["sampled_from"] = total.into();
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    serde_json::to_writer(&mut gz, &compact).map_err(io::Error::other)?;
    let b64 = base64_encode(&gz.finish()?);
    writeln!(w, "{RESULTS_BEGIN}")?;
    for line in b64.as_bytes().chunks(120) {
        w.write_all(line)?;
        writeln!(w)?;
    }
    writeln!(w, "{RESULTS_END}")
}
