//! Faults the simulator can inject, for testing how a client copes.

/// Each `*_rate` is the share of requests (0 to 1) that get that fault. Requests are
/// picked evenly by arrival number rather than at random, so `N` requests at rate `r`
/// get exactly ⌊N·r⌋ faults and tests can assert exact counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Answer with `error_status` and an OpenAI-style error body.
    pub error_rate: f64,
    pub error_status: u16,
    /// `Retry-After` seconds sent with a 429.
    pub retry_after_s: u32,
    /// Reset the connection after `cut_after_events` events of the stream.
    pub cut_rate: f64,
    pub cut_after_events: u32,
    /// Send a malformed JSON event after the first token.
    pub malformed_rate: f64,
    /// Send an error event after the first token, then end the stream.
    pub error_event_rate: f64,
    /// End the stream without `[DONE]` and without any `finish_reason`.
    pub no_end_rate: f64,
    /// Stall: `stall_before_headers_ms` before answering, `stall_between_events_ms` after
    /// the first token.
    pub stall_rate: f64,
    pub stall_before_headers_ms: f64,
    pub stall_between_events_ms: f64,
    /// Send a `{"content": null}` chunk before every token.
    pub null_content: bool,
    /// Make the first token a line of this many bytes (0: off).
    pub long_line_bytes: usize,
    /// Responses API: treat this share of `previous_response_id`s as unknown.
    pub unknown_response_rate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            error_status: 500,
            retry_after_s: 1,
            cut_rate: 0.0,
            cut_after_events: 3,
            malformed_rate: 0.0,
            error_event_rate: 0.0,
            no_end_rate: 0.0,
            stall_rate: 0.0,
            stall_before_headers_ms: 0.0,
            stall_between_events_ms: 0.0,
            null_content: false,
            long_line_bytes: 0,
            unknown_response_rate: 0.0,
        }
    }
}

/// Whether request number `n` (1-based) is one of the ⌊n·rate⌋ picked so far.
pub fn picked(rate: f64, n: u64) -> bool {
    if rate <= 0.0 || n == 0 {
        return false;
    }
    let r = rate.min(1.0);
    ((n as f64) * r).floor() > (((n - 1) as f64) * r).floor()
}

/// The faults of one request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Draw {
    pub error: bool,
    pub cut: bool,
    pub malformed: bool,
    pub error_event: bool,
    pub no_end: bool,
    pub stall: bool,
}

impl Faults {
    pub fn draw(&self, n: u64) -> Draw {
        Draw {
            error: picked(self.error_rate, n),
            cut: picked(self.cut_rate, n),
            malformed: picked(self.malformed_rate, n),
            error_event: picked(self.error_event_rate, n),
            no_end: picked(self.no_end_rate, n),
            stall: picked(self.stall_rate, n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_pick_exactly_the_floor_of_n_times_rate() {
        for rate in [0.0, 0.1, 0.25, 0.5, 1.0] {
            for n in [1u64, 7, 40, 100] {
                let count = (1..=n).filter(|&k| picked(rate, k)).count() as u64;
                assert_eq!(
                    count,
                    ((n as f64) * rate).floor() as u64,
                    "rate {rate} n {n}"
                );
            }
        }
    }
}
