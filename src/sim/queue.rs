//! The simulator's finite capacity, as vLLM's scheduler bounds it: at most
//! `max_num_seqs` requests are served at once, the others wait in arrival order, and
//! that wait is part of their time to first token. Optionally, prefills share one
//! budget of prompt tokens per second. Without either knob nothing waits: the
//! simulator behaves exactly as it did before these existed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ConfigError;

/// Capacity knobs of the simulator; the default is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Capacity {
    /// Requests served at once (vLLM's `--max-num-seqs`); `None`: no limit.
    pub max_num_seqs: Option<u32>,
    /// Prompt tokens per second that all prefills share; `None`: each prefill costs
    /// `prefill_us_per_token` on its own, whatever else runs.
    pub prefill_tokens_per_s: Option<f64>,
}

/// The flags of `turnbench sim` that set [`Capacity`].
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CapacityArgs {
    /// Requests served at once, as vLLM's --max-num-seqs; the others wait in a FIFO
    /// queue and the wait is part of their TTFT [default: no limit]
    #[arg(long, value_name = "N", help_heading = "Capacity")]
    pub max_num_seqs: Option<u32>,
    /// Prompt tokens per second shared by all prefills, served in arrival order
    /// (replaces --prefill-us-per-token) [default: each prefill on its own]
    #[arg(long, value_name = "TOKENS", help_heading = "Capacity")]
    pub prefill_tokens_per_s: Option<f64>,
}

impl CapacityArgs {
    pub fn to_capacity(&self) -> Result<Capacity, ConfigError> {
        if let Some(n) = self.max_num_seqs {
            if !(1..=1_000_000).contains(&n) {
                return Err(ConfigError::new(format!(
                    "--max-num-seqs=\"{n}\": expected a whole number from 1 to 1000000"
                )));
            }
        }
        if let Some(t) = self.prefill_tokens_per_s {
            if !(t.is_finite() && t > 0.0) {
                return Err(ConfigError::new(format!(
                    "--prefill-tokens-per-s=\"{t}\": expected a number of tokens per second above 0"
                )));
            }
        }
        Ok(Capacity {
            max_num_seqs: self.max_num_seqs,
            prefill_tokens_per_s: self.prefill_tokens_per_s,
        })
    }
}

/// The scheduler's state: the slots, the shared prefill budget, and what waited.
pub struct Scheduler {
    cap: Capacity,
    /// tokio's semaphore hands permits out in the order they were asked for: FIFO.
    slots: Option<Arc<Semaphore>>,
    /// When the shared prefill budget is next free.
    prefill_free_at: Mutex<Instant>,
    waiting: AtomicU64,
    running: AtomicU64,
    /// Time spent waiting for a slot, µs, of every admitted request.
    queue_time: Mutex<hdrhistogram::Histogram<u64>>,
}

/// A request's place among the running ones; dropping it frees the slot.
pub struct Admitted<'a> {
    /// When the request was admitted: its arrival when it did not wait.
    pub at: Instant,
    _permit: Option<OwnedSemaphorePermit>,
    scheduler: &'a Scheduler,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.scheduler.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What `/sim/stats` shows of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SchedulerStats {
    pub max_num_seqs: Option<u32>,
    pub running: u64,
    pub waiting: u64,
    pub admitted: u64,
    pub queue_time_us_p50: u64,
    pub queue_time_us_p99: u64,
    pub queue_time_us_max: u64,
}

impl Scheduler {
    pub fn new(cap: Capacity) -> Scheduler {
        Scheduler {
            cap,
            slots: cap
                .max_num_seqs
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            prefill_free_at: Mutex::new(Instant::now()),
            waiting: AtomicU64::new(0),
            running: AtomicU64::new(0),
            queue_time: Mutex::new(crate::state::Hist::default().0),
        }
    }

    /// Wait for a slot, in arrival order. `None` when `gone` resolves first (the client
    /// left while queued: it must not take a slot).
    pub async fn admit(
        &self,
        arrived: Instant,
        gone: impl std::future::Future<Output = ()>,
    ) -> Option<Admitted<'_>> {
        let (permit, waited) = match &self.slots {
            None => (None, false),
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(p) => (Some(p), false),
                Err(_) => {
                    self.waiting.fetch_add(1, Ordering::Relaxed);
                    let got = tokio::select! {
                        p = slots.clone().acquire_owned() => p.ok(),
                        _ = gone => None,
                    };
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                    (Some(got?), true)
                }
            },
        };
        // A request that found a free slot did not wait at all: keep its arrival, so
        // that without contention timings are exactly those of an unlimited server.
        let at = if waited { Instant::now() } else { arrived };
        if self.slots.is_some() {
            let us = crate::client::micros(at.saturating_duration_since(arrived));
            self.queue_time
                .lock()
                .expect("queue time lock")
                .saturating_record(us);
        }
        self.running.fetch_add(1, Ordering::Relaxed);
        Some(Admitted {
            at,
            _permit: permit,
            scheduler: self,
        })
    }

    /// When the first token of a request admitted at `admitted` is due: `base` plus
    /// its prefill, on its own (`own_prefill`) or in the shared budget.
    pub fn first_token_at(
        &self,
        admitted: Instant,
        base: Duration,
        own_prefill: Duration,
        uncached_tokens: u64,
    ) -> Instant {
        match self.cap.prefill_tokens_per_s {
            None => admitted + base + own_prefill,
            // A fully cached prompt has nothing to prefill, so it waits for no one.
            Some(_) if uncached_tokens == 0 => admitted + base,
            Some(rate) => {
                let work = Duration::from_secs_f64(uncached_tokens as f64 / rate);
                let mut free = self.prefill_free_at.lock().expect("prefill lock");
                let done = (*free).max(admitted) + work;
                *free = done;
                done + base
            }
        }
    }

    pub fn stats(&self) -> SchedulerStats {
        let h = self.queue_time.lock().expect("queue time lock").clone();
        let q = |p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        SchedulerStats {
            max_num_seqs: self.cap.max_num_seqs,
            running: self.running.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            admitted: h.len(),
            queue_time_us_p50: q(0.5),
            queue_time_us_p99: q(0.99),
            queue_time_us_max: h.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_max_num_seqs_requests_wait_in_arrival_order() {
        let s = Arc::new(Scheduler::new(Capacity {
            max_num_seqs: Some(2),
            prefill_tokens_per_s: None,
        }));
        let arrived = Instant::now();
        let a = s.admit(arrived, std::future::pending()).await.unwrap();
        let b = s.admit(arrived, std::future::pending()).await.unwrap();
        assert_eq!((a.at, b.at), (arrived, arrived), "free slots: no wait");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..3 {
            let (s, order) = (s.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let t = s
                    .admit(Instant::now(), std::future::pending())
                    .await
                    .unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(t);
            }));
            // Let each waiter queue before the next arrives.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(s.stats().waiting, 3);
        assert_eq!(s.stats().running, 2);
        drop(a);
        drop(b);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2], "FIFO");
        let st = s.stats();
        assert_eq!((st.running, st.waiting, st.admitted), (0, 0, 5));
        assert!(st.queue_time_us_max >= 1_000, "{st:?}");
    }

    #[tokio::test]
    async fn a_client_that_leaves_while_queued_takes_no_slot() {
        let s = Scheduler::new(Capacity {
            max_num_seqs: Some(1),
            prefill_tokens_per_s: None,
        });
        let _held = s
            .admit(Instant::now(), std::future::pending())
            .await
            .unwrap();
        assert!(s.admit(Instant::now(), async {}).await.is_none());
        assert_eq!(s.stats().waiting, 0);
    }

    #[test]
    fn shared_prefill_serves_prompts_in_turn_and_skips_cached_ones() {
        let s = Scheduler::new(Capacity {
            max_num_seqs: None,
            prefill_tokens_per_s: Some(1000.0),
        });
        let now = Instant::now() + Duration::from_secs(1);
        let base = Duration::from_millis(5);
        let own = Duration::from_millis(999);
        // 100 tokens at 1000/s: 100 ms each, one after the other.
        assert_eq!(
            s.first_token_at(now, base, own, 100),
            now + Duration::from_millis(105)
        );
        assert_eq!(
            s.first_token_at(now, base, own, 100),
            now + Duration::from_millis(205)
        );
        assert_eq!(s.first_token_at(now, base, own, 0), now + base);
        let unlimited = Scheduler::new(Capacity::default());
        assert_eq!(
            unlimited.first_token_at(now, base, own, 100),
            now + base + own
        );
    }
}
