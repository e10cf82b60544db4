//! Keeps the audit within its CPU budget: the share of one core it may use,
//! measured on the auditing thread's own CPU clock. [`Pace::tick`] is called
//! between small units of work and sleeps whenever the thread has used more
//! than its share since the pass began; it also says when to stop (the
//! agent shutting down).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::time::{clock_gettime, ClockId};

/// Ticks between looks at the clocks.
const CHECK_EVERY: u32 = 256;
/// The longest single sleep, so a stop is seen promptly.
const MAX_NAP: Duration = Duration::from_millis(100);

/// The audit's CPU budget for one pass, and its stop switch.
#[derive(Debug)]
pub struct Pace {
    /// The share of one core, in (0, 1]; `None`: as fast as it goes.
    share: Option<f64>,
    stop: Option<Arc<AtomicBool>>,
    wall: Instant,
    cpu: Duration,
    ticks: u32,
}

impl Pace {
    /// No budget and no stop: the command-line audit.
    pub fn unlimited() -> Pace {
        Pace {
            share: None,
            stop: None,
            wall: Instant::now(),
            cpu: thread_cpu(),
            ticks: 0,
        }
    }

    /// At most `share` of one core (clamped to (0, 1]), stopping once `stop` turns true.
    pub fn share(share: f64, stop: Arc<AtomicBool>) -> Pace {
        Pace {
            share: Some(share.clamp(0.01, 1.0)),
            stop: Some(stop),
            ..Pace::unlimited()
        }
    }

    /// Whether to go on; sleeps first when the budget is spent.
    pub fn tick(&mut self) -> bool {
        self.ticks = self.ticks.wrapping_add(1);
        if self.ticks % CHECK_EVERY != 0 {
            return !self.stopped();
        }
        let Some(share) = self.share else {
            return true;
        };
        loop {
            if self.stopped() {
                return false;
            }
            let used = thread_cpu().saturating_sub(self.cpu);
            // The wall time in which `used` would be `share` of it.
            let due = used.div_f64(share);
            let Some(ahead) = due.checked_sub(self.wall.elapsed()) else {
                return true;
            };
            std::thread::sleep(ahead.min(MAX_NAP));
        }
    }

    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_holds_the_thread_near_it_and_a_stop_ends_it() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut pace = Pace::share(0.25, Arc::clone(&stop));
        let started = Instant::now();
        let cpu = thread_cpu();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(400) {
            x = x.wrapping_mul(31).wrapping_add(7);
            assert!(pace.tick());
        }
        std::hint::black_box(x);
        let used = thread_cpu() - cpu;
        let share = used.as_secs_f64() / started.elapsed().as_secs_f64();
        assert!(
            share < 0.4,
            "used {share:.2} of a core against a share of 0.25"
        );
        stop.store(true, Ordering::Relaxed);
        assert!(!pace.tick());
        assert!(Pace::unlimited().tick());
    }
}
