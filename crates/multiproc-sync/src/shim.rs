//! What the state machines in `core/` stand on: atomics, futex wait and
//! wake, spinning and deadlines. The loom tests give `core/` another shim
//! with the same names, where a futex wait is a yield that may wake
//! spuriously.

use std::sync::atomic::AtomicU32 as StdAtomicU32;
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) use crate::sys::{futex_wait, futex_wake};

/// A point in time to give up at; `None` waits forever.
pub(crate) type Deadline = Option<Instant>;

/// The time left until `deadline`, capped at `slice`; `None` once it has
/// passed.
pub(crate) fn remaining(deadline: Deadline, slice: Duration) -> Option<Duration> {
    match deadline {
        None => Some(slice),
        Some(d) => {
            let now = Instant::now();
            (now < d).then(|| (d - now).min(slice))
        }
    }
}

/// Whether `deadline` has passed.
pub(crate) fn expired(deadline: Deadline) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// How long a waiter spins before it sleeps, adapted to what spinning
/// achieved: doubled (up to [`SpinBudget::MAX_NS`]) when the condition came
/// true while spinning, halved (down to [`SpinBudget::MIN_NS`]) when it did
/// not. Kept per handle, in this process.
#[derive(Debug)]
pub(crate) struct SpinBudget(StdAtomicU32);

impl Default for SpinBudget {
    fn default() -> SpinBudget {
        SpinBudget::new()
    }
}

impl SpinBudget {
    const MIN_NS: u32 = 500;
    const MAX_NS: u32 = 50_000;
    const START_NS: u32 = 10_000;

    pub(crate) const fn new() -> SpinBudget {
        SpinBudget(StdAtomicU32::new(Self::START_NS))
    }

    /// Spins until `ready` holds or the budget is spent; returns `ready`'s
    /// last answer. Does not spin on a single CPU, where the other side
    /// cannot run meanwhile.
    pub(crate) fn spin(&self, mut ready: impl FnMut() -> bool) -> bool {
        if ready() {
            return true;
        }
        if single_cpu() {
            return false;
        }
        let budget = self.0.load(Ordering::Relaxed);
        let start = Instant::now();
        let limit = Duration::from_nanos(u64::from(budget));
        let mut spins = 0u32;
        loop {
            for _ in 0..16 {
                std::hint::spin_loop();
            }
            spins += 1;
            if ready() {
                let grown = budget.saturating_mul(2).min(Self::MAX_NS);
                self.0.store(grown, Ordering::Relaxed);
                return true;
            }
            if spins.is_multiple_of(4) && start.elapsed() >= limit {
                self.0
                    .store((budget / 2).max(Self::MIN_NS), Ordering::Relaxed);
                return false;
            }
        }
    }
}

impl SpinBudget {
    /// Tells the budget that a wait which spinning did not cover ended
    /// after `waited` (spin and sleep together). A wait of up to a few
    /// kernel wake-ups raises the budget to twice its length (at most the
    /// maximum): the other side is active. Without this, two sides that
    /// both fell asleep would each see the other's wake-up latency as a
    /// long wait, and both stay asleep, a wake-up per message.
    pub(crate) fn slept(&self, waited: Duration) {
        let ns = u32::try_from(waited.as_nanos()).unwrap_or(u32::MAX);
        if ns < 4 * Self::MAX_NS {
            let budget = ns.saturating_mul(2).clamp(Self::MIN_NS, Self::MAX_NS);
            self.0.fetch_max(budget, Ordering::Relaxed);
        }
    }
}

fn single_cpu() -> bool {
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
        <= 1
}

/// How a futex wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, or the word no longer held the expected value, or a signal.
    Woken,
    /// The timeout passed.
    TimedOut,
}
