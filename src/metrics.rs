//! Per-request records and the statistics computed from them.
//!
//! Workers produce plain [`RequestRecord`]s; [`Aggregator`] folds them into HDR
//! histograms (microseconds, one bounds setting everywhere so histograms of several
//! runs or pods merge exactly) and [`Stats`] is what reports print.

use std::collections::BTreeMap;

use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::DocKind;

/// Lowest and highest trackable values (µs) and significant digits of every histogram.
pub const HIST_LOW_US: u64 = 1;
pub const HIST_HIGH_US: u64 = 3_600_000_000;
pub const HIST_SIGFIG: u8 = 3;

/// A histogram with the one bounds setting used everywhere.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG).expect("valid bounds")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
    pub ttfb_us: Option<u64>,
    pub first_event_us: Option<u64>,
    pub ttft_us: Option<u64>,
    pub ttfc_us: Option<u64>,
    pub e2e_us: Option<u64>,
    pub output_tokens: Option<u64>,
    pub tokens_approx: bool,
    pub prompt_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    /// Gaps between token-bearing events.
    pub itl_us: Vec<u32>,
    pub error: Option<RequestError>,
    /// The generated text (content only), appended to the conversation's history.
    pub reply: String,
}

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
    pub measured: Measured,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.measured.error.is_none()
    }
    /// TPOT = (E2E − TTFT) / (output tokens − 1), when defined.
    pub fn tpot_us(&self) -> Option<u64> {
        let (e2e, ttft, n) = (
            self.measured.e2e_us?,
            self.measured.ttft_us?,
            self.measured.output_tokens?,
        );
        (n > 1).then(|| e2e.saturating_sub(ttft) / (n - 1))
    }
}

/// Summary of one distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Option<Summary> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Summary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            min_ms: ms(h.min()),
            max_ms: ms(h.max()),
        })
    }
}

/// Running totals, cheap enough to update on every record (progress reads them).
#[derive(Debug)]
pub struct Aggregator {
    pub ttft: Histogram<u64>,
    pub ttft_first: Histogram<u64>,
    pub ttft_later: Histogram<u64>,
    pub ttfc: Histogram<u64>,
    pub ttfb: Histogram<u64>,
    pub connect: Histogram<u64>,
    pub e2e: Histogram<u64>,
    pub itl: Histogram<u64>,
    pub tpot: Histogram<u64>,
    pub by_turn: BTreeMap<u32, Histogram<u64>>,
    pub by_kind: BTreeMap<DocKind, Histogram<u64>>,
    /// Exact sums for the headline means (histogram means are bucketed).
    first_sum_us: u128,
    later_sum_us: u128,
    /// Per conversation: (first-turn TTFT, sum and count of later-turn TTFTs).
    per_conv: BTreeMap<u32, (Option<u64>, u64, u64)>,
    pub total: u64,
    pub failed: u64,
    /// Failures that say the endpoint cannot be used at all ([`RequestError::is_fatal`]).
    pub fatal_failed: u64,
    pub errors: BTreeMap<ErrorKind, ErrorCount>,
    pub output_tokens: u64,
    pub output_tokens_approx: bool,
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub usage_reported: u64,
    /// Requests whose usage carried `cached_tokens` (vLLM sends it only when asked to).
    pub cached_reported: u64,
    /// Per conversation: (successful turns, any failure).
    pub conversation_turns: BTreeMap<u32, (u32, bool)>,
    /// Turns per conversation planned; a conversation is complete when all succeeded
    /// (0: unknown, every recorded turn counts).
    pub turns: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub count: u64,
    pub first_message: String,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator {
            ttft: new_histogram(),
            ttft_first: new_histogram(),
            ttft_later: new_histogram(),
            ttfc: new_histogram(),
            ttfb: new_histogram(),
            connect: new_histogram(),
            e2e: new_histogram(),
            itl: new_histogram(),
            tpot: new_histogram(),
            by_turn: BTreeMap::new(),
            by_kind: BTreeMap::new(),
            first_sum_us: 0,
            later_sum_us: 0,
            per_conv: BTreeMap::new(),
            total: 0,
            failed: 0,
            fatal_failed: 0,
            errors: BTreeMap::new(),
            output_tokens: 0,
            output_tokens_approx: false,
            prompt_tokens: 0,
            cached_tokens: 0,
            usage_reported: 0,
            cached_reported: 0,
            conversation_turns: BTreeMap::new(),
            turns: 0,
        }
    }
}

fn rec(h: &mut Histogram<u64>, us: u64) {
    // Values outside the bounds are clamped rather than lost.
    h.saturating_record(us.max(HIST_LOW_US));
}

impl Aggregator {
    /// Fold one record in. Its ITL gaps are moved out (they can be many).
    pub fn add(&mut self, r: &mut RequestRecord) {
        self.total += 1;
        let conv = self
            .conversation_turns
            .entry(r.conversation)
            .or_insert((0, false));
        if r.measured.error.is_none() {
            conv.0 += 1;
        }
        if let Some(err) = &r.measured.error {
            conv.1 = true;
            self.failed += 1;
            self.fatal_failed += u64::from(err.is_fatal());
            self.errors
                .entry(err.kind)
                .and_modify(|c| c.count += 1)
                .or_insert_with(|| ErrorCount {
                    count: 1,
                    first_message: err.message.clone(),
                });
            r.measured.itl_us = Vec::new();
            return;
        }
        if let Some(t) = r.measured.ttft_us {
            rec(&mut self.ttft, t);
            rec(self.by_turn.entry(r.turn).or_insert_with(new_histogram), t);
            rec(
                self.by_kind.entry(r.doc_kind).or_insert_with(new_histogram),
                t,
            );
            let conv = self.per_conv.entry(r.conversation).or_insert((None, 0, 0));
            if r.turn == 1 {
                rec(&mut self.ttft_first, t);
                self.first_sum_us += t as u128;
                conv.0 = Some(t);
            } else {
                rec(&mut self.ttft_later, t);
                self.later_sum_us += t as u128;
                conv.1 += t;
                conv.2 += 1;
            }
        }
        if let Some(t) = r.measured.ttfc_us {
            rec(&mut self.ttfc, t);
        }
        if let Some(t) = r.measured.ttfb_us {
            rec(&mut self.ttfb, t);
        }
        if let Some(t) = r.measured.connect_us {
            rec(&mut self.connect, t);
        }
        if let Some(t) = r.measured.e2e_us {
            rec(&mut self.e2e, t);
        }
        if let Some(t) = r.tpot_us() {
            rec(&mut self.tpot, t);
        }
        for gap in std::mem::take(&mut r.measured.itl_us) {
            rec(&mut self.itl, u64::from(gap));
        }
        if let Some(n) = r.measured.output_tokens {
            // Saturating: the counts come from the server.
            self.output_tokens = self.output_tokens.saturating_add(n);
            self.output_tokens_approx |= r.measured.tokens_approx;
        }
        if r.measured.prompt_tokens.is_some() || r.measured.cached_tokens.is_some() {
            self.usage_reported += 1;
            self.prompt_tokens = self
                .prompt_tokens
                .saturating_add(r.measured.prompt_tokens.unwrap_or(0));
            self.cached_tokens = self
                .cached_tokens
                .saturating_add(r.measured.cached_tokens.unwrap_or(0));
            self.cached_reported += u64::from(r.measured.cached_tokens.is_some());
        }
    }

    pub fn succeeded(&self) -> u64 {
        self.total - self.failed
    }

    /// Compute the statistics of a phase that lasted `wall_s` seconds.
    pub fn stats(&self, wall_s: f64) -> Stats {
        let mean = |sum: u128, n: u64| (n > 0).then(|| sum as f64 / n as f64 / 1000.0);
        let first_mean_ms = mean(self.first_sum_us, self.ttft_first.len());
        let later_mean_ms = mean(self.later_sum_us, self.ttft_later.len());
        let speedup = match (first_mean_ms, later_mean_ms) {
            (Some(f), Some(l)) if l > 0.0 => Some(f / l),
            _ => None,
        };
        let median = |h: &Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(0.5) as f64);
        let speedup_of_medians = match (median(&self.ttft_first), median(&self.ttft_later)) {
            (Some(f), Some(l)) if l > 0.0 => Some(f / l),
            _ => None,
        };
        let mut per_conv: Vec<f64> = self
            .per_conv
            .values()
            .filter_map(|&(first, sum, n)| {
                let first = first? as f64;
                (n > 0 && sum > 0).then(|| first / (sum as f64 / n as f64))
            })
            .collect();
        per_conv.sort_by(f64::total_cmp);
        let per_conversation_speedup = (!per_conv.is_empty()).then(|| {
            let q = |p: f64| per_conv[((per_conv.len() - 1) as f64 * p).round() as usize];
            Spread {
                count: per_conv.len(),
                min: per_conv[0],
                p50: q(0.5),
                max: per_conv[per_conv.len() - 1],
            }
        });
        let ttft_by_turn = self
            .by_turn
            .iter()
            .filter_map(|(t, h)| Some((*t, Summary::of(h)?)))
            .collect();
        let ttft_by_doc_kind = self
            .by_kind
            .iter()
            .filter_map(|(k, h)| Some((k.label().to_string(), Summary::of(h)?)))
            .collect();
        Stats {
            total_time_s: wall_s,
            total_requests: self.total,
            succeeded_requests: self.succeeded(),
            failed_requests: self.failed,
            error_rate: if self.total > 0 {
                self.failed as f64 / self.total as f64
            } else {
                0.0
            },
            requests_per_second: if wall_s > 0.0 {
                self.total as f64 / wall_s
            } else {
                0.0
            },
            conversations_completed: self
                .conversation_turns
                .values()
                .filter(|(ok, failed)| !failed && (self.turns == 0 || *ok >= self.turns))
                .count() as u64,
            ttft: Summary::of(&self.ttft),
            ttft_first_turn: Summary::of(&self.ttft_first),
            ttft_later_turns: Summary::of(&self.ttft_later),
            first_turn_mean_ms: first_mean_ms,
            later_turns_mean_ms: later_mean_ms,
            speedup_ratio: speedup,
            speedup_ratio_of_medians: speedup_of_medians,
            per_conversation_speedup,
            ttfc: Summary::of(&self.ttfc),
            ttfb: Summary::of(&self.ttfb),
            connect: Summary::of(&self.connect),
            e2e: Summary::of(&self.e2e),
            itl: Summary::of(&self.itl),
            tpot: Summary::of(&self.tpot),
            ttft_by_turn,
            ttft_by_doc_kind,
            output_tokens: self.output_tokens,
            output_tokens_approx: self.output_tokens_approx,
            output_tokens_per_second: if wall_s > 0.0 {
                self.output_tokens as f64 / wall_s
            } else {
                0.0
            },
            prompt_tokens: (self.usage_reported > 0).then_some(self.prompt_tokens),
            cached_tokens: (self.cached_reported > 0).then_some(self.cached_tokens),
            errors: self
                .errors
                .iter()
                .map(|(k, v)| (k.label().to_string(), v.clone()))
                .collect(),
        }
    }

    /// The histograms, serialized (V2 + deflate, base64) so runs and pods can be merged.
    pub fn histograms_serialized(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut put = |name: &str, h: &Histogram<u64>| {
            let mut buf = Vec::new();
            V2DeflateSerializer::new()
                .serialize(h, &mut buf)
                .expect("serialize to memory");
            out.insert(name.to_string(), base64_encode(&buf));
        };
        put("ttft_us", &self.ttft);
        put("ttft_first_turn_us", &self.ttft_first);
        put("ttft_later_turns_us", &self.ttft_later);
        put("ttfc_us", &self.ttfc);
        put("ttfb_us", &self.ttfb);
        put("connect_us", &self.connect);
        put("e2e_us", &self.e2e);
        put("itl_us", &self.itl);
        put("tpot_us", &self.tpot);
        out
    }
}

/// Min, median and max of a small set of ratios.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub min: f64,
    pub p50: f64,
    pub max: f64,
}

/// Every statistic of a run, as printed and saved.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub total_time_s: f64,
    pub total_requests: u64,
    pub succeeded_requests: u64,
    pub failed_requests: u64,
    pub error_rate: f64,
    pub requests_per_second: f64,
    pub conversations_completed: u64,
    pub ttft: Option<Summary>,
    pub ttft_first_turn: Option<Summary>,
    pub ttft_later_turns: Option<Summary>,
    pub first_turn_mean_ms: Option<f64>,
    pub later_turns_mean_ms: Option<f64>,
    pub speedup_ratio: Option<f64>,
    pub speedup_ratio_of_medians: Option<f64>,
    pub per_conversation_speedup: Option<Spread>,
    pub ttfc: Option<Summary>,
    pub ttfb: Option<Summary>,
    pub connect: Option<Summary>,
    pub e2e: Option<Summary>,
    pub itl: Option<Summary>,
    pub tpot: Option<Summary>,
    pub ttft_by_turn: BTreeMap<u32, Summary>,
    pub ttft_by_doc_kind: BTreeMap<String, Summary>,
    pub output_tokens: u64,
    pub output_tokens_approx: bool,
    pub output_tokens_per_second: f64,
    pub prompt_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub errors: BTreeMap<String, ErrorCount>,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (small enough not to warrant a crate).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Inverse of [`base64_encode`]; `None` on malformed input.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Read back a histogram from [`Aggregator::histograms_serialized`].
pub fn deserialize_histogram(b64: &str) -> Option<Histogram<u64>> {
    let bytes = base64_decode(b64)?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(conv: u32, turn: u32, ttft_ms: u64) -> RequestRecord {
        RequestRecord {
            conversation: conv,
            turn,
            measured: Measured {
                ttft_us: Some(ttft_ms * 1000),
                e2e_us: Some(ttft_ms * 1000 + 10_000),
                output_tokens: Some(11),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn speedup_is_the_ratio_of_pooled_means_and_failures_stay_out_of_latencies() {
        let mut a = Aggregator::default();
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
        let s = a.stats(2.0);
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
        let mut a = Aggregator::default();
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
        assert_eq!((a.failed, a.fatal_failed), (3, 2));
    }

    #[test]
    fn no_later_turns_means_no_speedup() {
        let mut a = Aggregator::default();
        a.add(&mut ok(0, 1, 100));
        assert_eq!(a.stats(1.0).speedup_ratio, None);
    }

    #[test]
    fn serialized_histograms_round_trip_and_merge() {
        let mut a = Aggregator::default();
        let mut b = Aggregator::default();
        a.add(&mut ok(0, 1, 100));
        b.add(&mut ok(1, 1, 300));
        let ha = deserialize_histogram(&a.histograms_serialized()["ttft_us"]).unwrap();
        let hb = deserialize_histogram(&b.histograms_serialized()["ttft_us"]).unwrap();
        let mut merged = ha.clone();
        merged.add(&hb).unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged.max(), hb.max());
        assert_eq!(ha.high(), HIST_HIGH_US.max(ha.high()));
    }

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..10u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }
}
