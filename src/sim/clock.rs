//! A precise timer for the simulator's TTFT and token intervals.
//!
//! tokio's timer wheel ticks in whole milliseconds and rounds deadlines up, so a
//! simulator built on it answers up to a millisecond late: an error the client would
//! be blamed for. One thread keeps the deadlines in a heap and sleeps with the OS's
//! sub-millisecond precision until the earliest, then wakes its tasks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

struct Entry {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Shared {
    heap: Mutex<(BinaryHeap<Reverse<Entry>>, u64)>,
    thread: OnceLock<Thread>,
}

/// Deadlines closer than this are not worth a trip through the timer thread.
const SPIN_FREE: Duration = Duration::from_micros(20);

#[derive(Clone)]
pub struct PreciseTimer {
    shared: Arc<Shared>,
}

impl PreciseTimer {
    pub fn new() -> PreciseTimer {
        let shared = Arc::new(Shared {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            thread: OnceLock::new(),
        });
        let weak = Arc::downgrade(&shared);
        let handle = std::thread::Builder::new()
            .name("sim-timer".into())
            .spawn(move || loop {
                let Some(shared) = weak.upgrade() else { return };
                let next = {
                    let mut guard = shared.heap.lock().expect("timer lock");
                    let now = Instant::now();
                    while guard.0.peek().is_some_and(|Reverse(e)| e.at <= now) {
                        let Reverse(e) = guard.0.pop().expect("peeked");
                        let _ = e.wake.send(());
                    }
                    guard.0.peek().map(|Reverse(e)| e.at)
                };
                drop(shared);
                match next {
                    Some(at) => {
                        std::thread::park_timeout(at.saturating_duration_since(Instant::now()))
                    }
                    // Parked until a deadline arrives; wakes at least once a second to
                    // notice that the simulator is gone.
                    None => std::thread::park_timeout(Duration::from_secs(1)),
                }
            })
            .expect("spawn the timer thread");
        let _ = shared.thread.set(handle.thread().clone());
        PreciseTimer { shared }
    }

    /// Resolve at `at`, within the OS's timer slack (tens of microseconds).
    pub async fn sleep_until(&self, at: Instant) {
        if at.saturating_duration_since(Instant::now()) <= SPIN_FREE {
            return;
        }
        let (tx, rx) = oneshot::channel();
        let earliest = {
            let mut guard = self.shared.heap.lock().expect("timer lock");
            guard.1 += 1;
            let seq = guard.1;
            let earliest = guard.0.peek().is_none_or(|Reverse(e)| at < e.at);
            guard.0.push(Reverse(Entry { at, seq, wake: tx }));
            earliest
        };
        if earliest {
            if let Some(t) = self.shared.thread.get() {
                t.unpark();
            }
        }
        let _ = rx.await;
    }
}

impl Default for PreciseTimer {
    fn default() -> Self {
        PreciseTimer::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deadlines_fire_in_order_and_never_early() {
        let timer = PreciseTimer::new();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for ms in [30u64, 10, 20] {
            let t = timer.clone();
            tasks.push(tokio::spawn(async move {
                let at = start + Duration::from_millis(ms);
                t.sleep_until(at).await;
                assert!(Instant::now() >= at, "woke before its deadline");
                ms
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
}
