//! The open loop's share of a run's state: conversations started and ended per second
//! (so the number active at any time follows, and merges exactly across shards), and
//! how fast first turns were answered against how fast conversations arrived.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{RequestRecord, RunState, Wall};
use crate::config::Arrival;

/// Conversations that started and ended in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub started: u64,
    pub ended: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenLoop {
    pub rate_per_s: f64,
    pub duration_s: f64,
    /// Conversations the whole plan brings, every shard's (the same in each shard).
    pub planned: u64,
    /// By Unix second: a conversation starts with its first request and ends with the
    /// end of its last turn.
    pub seconds: BTreeMap<i64, Flow>,
    /// Successful first turns, and when the last of them ended.
    pub first_turns_ok: u64,
    pub last_first_turn_end: Option<Wall>,
}

/// What a report shows of the open loop.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenLoopStats {
    pub rate_per_s: f64,
    pub duration_s: f64,
    pub planned: u64,
    /// Arrivals of the plan ÷ the arrival window.
    pub offered_per_s: f64,
    pub started: u64,
    pub ended: u64,
    /// Successful first turns ÷ the time from the start to the end of the last of them:
    /// about the offered rate when the server keeps up, lower when arrivals queue.
    pub achieved_per_s: Option<f64>,
    pub first_turns_ok: u64,
    /// Conversations active during each second, from the start of the measured phase.
    pub active: Vec<(f64, u64)>,
    pub peak_active: u64,
}

impl OpenLoop {
    pub fn new(a: Arrival, planned: usize) -> OpenLoop {
        OpenLoop {
            rate_per_s: a.rate_per_s,
            duration_s: a.duration_s,
            planned: planned as u64,
            ..OpenLoop::default()
        }
    }

    /// Fold one request in; `turns` is the number of turns per conversation.
    pub fn add(&mut self, r: &RequestRecord, started_at: Option<Wall>, turns: u32) {
        let Some(origin) = started_at else { return };
        let start = origin.plus_us(r.start_us);
        // A failed request has no end of its own: it ended, as far as we know, at start.
        let end = start.plus_us(r.measured.e2e_us.unwrap_or(0));
        let second = |w: Wall| w.0.div_euclid(1_000_000);
        if r.turn == 1 {
            self.seconds.entry(second(start)).or_default().started += 1;
            if r.ok() {
                self.first_turns_ok += 1;
                self.last_first_turn_end = self.last_first_turn_end.max(Some(end));
            }
        }
        if r.turn == turns {
            self.seconds.entry(second(end)).or_default().ended += 1;
        }
    }

    pub fn merge(&mut self, o: &OpenLoop) {
        for (k, f) in &o.seconds {
            let mine = self.seconds.entry(*k).or_default();
            mine.started += f.started;
            mine.ended += f.ended;
        }
        self.first_turns_ok += o.first_turns_ok;
        self.last_first_turn_end = self.last_first_turn_end.max(o.last_first_turn_end);
    }

    /// Whether `o` is a shard of the same open loop.
    pub fn same_plan(&self, o: &OpenLoop) -> bool {
        (self.rate_per_s, self.duration_s, self.planned) == (o.rate_per_s, o.duration_s, o.planned)
    }
}

impl RunState {
    /// The open loop's figures; `None` for a closed loop.
    pub fn open_loop_stats(&self) -> Option<OpenLoopStats> {
        let o = self.open_loop.as_ref()?;
        let origin = self.started_at.map(|w| w.0.div_euclid(1_000_000));
        let mut active = Vec::new();
        let mut now = 0u64;
        let mut peak = 0;
        if let (Some(first), Some(last)) = (origin, o.seconds.keys().next_back()) {
            let mut ended_before = 0u64;
            for sec in first..=*last {
                let f = o.seconds.get(&sec).copied().unwrap_or_default();
                now = now + f.started - ended_before.min(now + f.started);
                ended_before = f.ended;
                peak = peak.max(now);
                active.push(((sec - first) as f64, now));
            }
        }
        let span_s = match (self.started_at, o.last_first_turn_end) {
            (Some(a), Some(b)) if b.0 > a.0 => Some((b.0 - a.0) as f64 / 1e6),
            _ => None,
        };
        let total = |f: fn(&Flow) -> u64| o.seconds.values().map(f).sum::<u64>();
        Some(OpenLoopStats {
            rate_per_s: o.rate_per_s,
            duration_s: o.duration_s,
            planned: o.planned,
            offered_per_s: o.planned as f64 / o.duration_s,
            started: total(|f| f.started),
            ended: total(|f| f.ended),
            achieved_per_s: span_s.map(|s| o.first_turns_ok as f64 / s),
            first_turns_ok: o.first_turns_ok,
            active,
            peak_active: peak,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Measured;
    use crate::state::RunMeta;

    fn req(conv: u32, turn: u32, start_ms: u64, e2e_ms: u64) -> RequestRecord {
        RequestRecord {
            conversation: conv,
            turn,
            start_us: start_ms * 1000,
            measured: Measured {
                ttft_us: Some(1000),
                e2e_us: Some(e2e_ms * 1000),
                streamed: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn state() -> RunState {
        let mut s = RunState::new(RunMeta::for_tests());
        s.meta.workload.turns = 2;
        s.started_at = Some(Wall(1_700_000_000_000_000));
        s.open_loop = Some(OpenLoop::new(
            Arrival {
                rate_per_s: 1.0,
                duration_s: 3.0,
            },
            3,
        ));
        s
    }

    #[test]
    fn active_conversations_count_from_first_request_to_last_turn_and_merge_exactly() {
        let records = [
            req(0, 1, 100, 200),
            req(0, 2, 600, 300), // conversation 0: seconds 0..0
            req(1, 1, 1_500, 100),
            req(1, 2, 2_200, 1_000), // conversation 1: seconds 1..3
            req(2, 1, 2_900, 200),
        ]; // conversation 2 never ends
        let mut whole = state();
        let mut shards = [state(), state()];
        for r in &records {
            whole.add(&mut r.clone());
            shards[(r.conversation % 2) as usize].add(&mut r.clone());
        }
        let s = whole.open_loop_stats().unwrap();
        assert_eq!(
            s.active,
            vec![(0.0, 1), (1.0, 1), (2.0, 2), (3.0, 2)],
            "{s:?}"
        );
        assert_eq!((s.started, s.ended, s.peak_active), (3, 2, 2));
        assert_eq!(s.offered_per_s, 1.0);
        // Three first turns answered by 3.1 s.
        assert!((s.achieved_per_s.unwrap() - 3.0 / 3.1).abs() < 1e-9);
        let [mut a, b] = shards;
        a.merge(&b);
        assert_eq!(a.open_loop, whole.open_loop);
    }
}
