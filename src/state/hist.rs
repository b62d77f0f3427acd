//! Histograms with the one bounds setting used everywhere, serialized as HdrHistogram
//! V2 + deflate in base64, so that runs and pods merge exactly.

use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Lowest and highest trackable values (µs) and significant digits of every histogram.
/// The top covers twice the longest allowed timeout (24 h), so no latency is clamped.
pub const LOW_US: u64 = 1;
pub const HIGH_US: u64 = 2 * 86_400 * 1_000_000;
pub const SIGFIG: u8 = 3;

/// The bounds as results.json records them; files with other bounds do not merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    pub unit: String,
    pub low: u64,
    pub high: u64,
    pub significant_digits: u8,
    pub encoding: String,
}

impl Bounds {
    pub fn ours() -> Bounds {
        Bounds {
            unit: "microseconds".into(),
            low: LOW_US,
            high: HIGH_US,
            significant_digits: SIGFIG,
            encoding: "HdrHistogram V2 deflate, base64".into(),
        }
    }
}

/// A latency histogram in µs.
#[derive(Debug, Clone, PartialEq)]
pub struct Hist(pub Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Hist(Histogram::new_with_bounds(LOW_US, HIGH_US, SIGFIG).expect("valid bounds"))
    }
}

impl Hist {
    /// Record `us`; returns false when it lay above the top and was clamped.
    pub fn record(&mut self, us: u64) -> bool {
        let clamped = us > HIGH_US;
        self.0.saturating_record(us.clamp(LOW_US, HIGH_US));
        !clamped
    }

    pub fn add(&mut self, other: &Hist) {
        // Same bounds everywhere (deserialization checks them), so this cannot fail
        // but for counts past u64, which saturate.
        let _ = self.0.add(&other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> u64 {
        self.0.len()
    }
    /// The value at quantile `q`, in µs (`None` when empty).
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(q))
    }

    pub fn to_base64(&self) -> String {
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut buf)
            .expect("serialize to memory");
        base64_encode(&buf)
    }

    pub fn from_base64(s: &str) -> Result<Hist, String> {
        let bytes = base64_decode(s).ok_or("a histogram is not valid base64")?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("a histogram cannot be read: {e:?}"))?;
        if h.low() != LOW_US || h.high() != HIGH_US || h.sigfig() != SIGFIG {
            return Err(format!(
                "a histogram has bounds {}..{} µs at {} digits, not {LOW_US}..{HIGH_US} at {SIGFIG}",
                h.low(),
                h.high(),
                h.sigfig()
            ));
        }
        let mut ours = Hist::default();
        ours.0.add(&h).map_err(|e| format!("{e:?}"))?;
        Ok(ours)
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hist::from_base64(&s).map_err(serde::de::Error::custom)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..10u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
    }

    #[test]
    fn a_histogram_round_trips_exactly_and_other_bounds_are_refused() {
        let mut h = Hist::default();
        for v in [1, 17, 250_000, 86_400_000_000] {
            assert!(h.record(v));
        }
        assert!(
            !h.record(HIGH_US + 1),
            "above the top is reported as clamped"
        );
        let back = Hist::from_base64(&h.to_base64()).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.to_base64(), h.to_base64());
        let other = Histogram::<u64>::new_with_bounds(1, 1_000_000, 2).unwrap();
        let mut buf = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&other, &mut buf)
            .unwrap();
        assert!(Hist::from_base64(&base64_encode(&buf))
            .unwrap_err()
            .contains("bounds"));
    }
}
