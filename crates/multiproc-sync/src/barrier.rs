//! [`Barrier`]: processes wait until all parties have arrived.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use multiproc_process::{Error, RemoteFn, Result};
use serde::{Deserialize, Serialize};

use crate::layout::BarrierState;
use crate::lock::lock_word;
use crate::shared::Shared;
use crate::shim::{Deadline, Ordering, SpinBudget, futex_wait, futex_wake, remaining};
use multiproc_process::bell::{ASYNC_SLICE, Bell, next_slice};

const BROKEN: u32 = 1;

/// Where an arrival stands.
enum Arrived {
    /// The last of its round: the round is over.
    Last(u32),
    /// It waits for the phase to move on from `phase`.
    Wait { index: u32, phase: u32 },
}

/// A meeting point for a fixed number of processes.
///
/// Python: `multiprocessing.Barrier(parties, action, timeout)`. Each
/// [`wait`](Barrier::wait) returns the arrival index, 0 for the first to
/// arrive, up to `parties - 1`; the last to arrive runs the action, once per
/// round, before the others are released. A timeout, an [`abort`], or a
/// [`reset`] while processes wait breaks the barrier: waits fail with
/// [`Error::BrokenBarrier`] until it is reset.
///
/// [`abort`]: Barrier::abort
/// [`reset`]: Barrier::reset
#[derive(Clone, Serialize, Deserialize)]
pub struct Barrier {
    shared: Shared<BarrierState>,
    /// Rung with every change of the phase while an async waiter waits.
    bell: Bell,
    action: Option<RemoteFn>,
    timeout: Option<Duration>,
    #[serde(skip)]
    spin: Arc<SpinBudget>,
}

impl Barrier {
    /// A barrier for `parties` processes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero parties, [`Error::Io`] if the
    /// system refuses the shared memory.
    pub fn new(parties: u32) -> Result<Barrier> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".into(),
            ));
        }
        let shared: Shared<BarrierState> = Shared::new(0)?;
        shared.state().parties.store(parties, Ordering::SeqCst);
        Ok(Barrier {
            shared,
            bell: Bell::new()?,
            action: None,
            timeout: None,
            spin: Arc::default(),
        })
    }

    /// Sets the function the last arrival runs once per round, before the
    /// others are released (a plain `fn`, so any process can run it).
    #[must_use]
    pub fn with_action(mut self, action: fn()) -> Barrier {
        self.action = Some(RemoteFn::new(action));
        self
    }

    /// Sets the timeout of [`wait`](Barrier::wait).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Barrier {
        self.timeout = Some(timeout);
        self
    }

    fn state(&self) -> &BarrierState {
        self.shared.state()
    }

    /// Waits until all parties have arrived (at most the barrier's timeout,
    /// if it has one); returns this arrival's index. Python: `Barrier.wait()`.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken, or the
    /// timeout passes (which breaks it for everyone).
    pub fn wait(&self) -> Result<u32> {
        self.wait_until(self.timeout.and_then(multiproc_process::deadline))
    }

    /// As [`wait`](Barrier::wait), with this timeout.
    ///
    /// # Errors
    ///
    /// As [`wait`](Barrier::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_until(multiproc_process::deadline(timeout))
    }

    /// Arrives: the last arrival ends the round (running the action) and
    /// gets its index; the others get what to wait for.
    fn arrive(&self) -> Result<Arrived> {
        let st = self.state();
        lock_word(&st.word, None, &self.spin);
        let phase = st.phase.load(Ordering::SeqCst);
        if phase & BROKEN != 0 {
            st.word.unlock();
            return Err(Error::BrokenBarrier);
        }
        let index = st.count.fetch_add(1, Ordering::SeqCst);
        if index + 1 >= st.parties.load(Ordering::SeqCst) {
            if let Some(action) = self.action
                && std::panic::catch_unwind(|| action.call()).is_err()
            {
                self.break_locked();
                st.word.unlock();
                return Err(Error::BrokenBarrier);
            }
            st.count.store(0, Ordering::SeqCst);
            st.phase
                .store((phase & !BROKEN).wrapping_add(2), Ordering::SeqCst);
            st.word.unlock();
            self.wake_all();
            return Ok(Arrived::Last(index));
        }
        st.word.unlock();
        Ok(Arrived::Wait { index, phase })
    }

    /// How a wait of arrival `index` in the round of `phase` ends, once the
    /// phase is `now` (`None`: not yet).
    fn outcome(&self, index: u32, phase: u32, now: u32) -> Option<Result<u32>> {
        if now == phase {
            return None;
        }
        let generation = phase >> 1;
        if now & BROKEN != 0 && now >> 1 == generation {
            return Some(Err(Error::BrokenBarrier));
        }
        if self.state().reset_from.load(Ordering::SeqCst) == generation.wrapping_add(1) {
            return Some(Err(Error::BrokenBarrier));
        }
        Some(Ok(index))
    }

    /// A wait whose time ran out: breaks the round for everyone, as
    /// Python does, unless it ended meanwhile.
    fn time_out(&self, index: u32, phase: u32) -> Result<u32> {
        let st = self.state();
        lock_word(&st.word, None, &self.spin);
        if st.phase.load(Ordering::SeqCst) == phase {
            self.break_locked();
            st.word.unlock();
            return Err(Error::BrokenBarrier);
        }
        st.word.unlock();
        self.outcome(index, phase, st.phase.load(Ordering::SeqCst))
            .unwrap_or(Err(Error::BrokenBarrier))
    }

    fn wait_until(&self, deadline: Deadline) -> Result<u32> {
        let (index, phase) = match self.arrive()? {
            Arrived::Last(index) => return Ok(index),
            Arrived::Wait { index, phase } => (index, phase),
        };
        let st = self.state();
        let passed = self.spin.spin(|| st.phase.load(Ordering::SeqCst) != phase);
        loop {
            if let Some(done) = self.outcome(index, phase, st.phase.load(Ordering::SeqCst)) {
                return done;
            }
            if passed {
                continue;
            }
            match remaining(deadline, Duration::from_secs(3600)) {
                Some(t) => {
                    futex_wait(&st.phase, phase, Some(t));
                }
                None => return self.time_out(index, phase),
            }
        }
    }

    /// As [`wait`](Barrier::wait), without blocking a thread while the
    /// others come, under any async runtime (the barrier's timeout holds
    /// as for `wait`). Arriving takes the barrier's lock for a moment, and
    /// the last arrival runs the action there. Dropping the future after
    /// it arrived leaves the arrival counted, as a process that stops
    /// waiting would. Python (asyncio):
    /// `await loop.run_in_executor(None, barrier.wait)`.
    ///
    /// # Errors
    ///
    /// As [`wait`](Barrier::wait).
    pub async fn wait_async(&self) -> Result<u32> {
        let deadline = self.timeout.and_then(multiproc_process::deadline);
        let (index, phase) = match self.arrive()? {
            Arrived::Last(index) => return Ok(index),
            Arrived::Wait { index, phase } => (index, phase),
        };
        let st = self.state();
        let moved = || st.phase.load(Ordering::SeqCst) != phase;
        let _ = self.spin.spin(moved);
        let mut slice = ASYNC_SLICE;
        loop {
            if let Some(done) = self.outcome(index, phase, st.phase.load(Ordering::SeqCst)) {
                return done;
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
                    Some(left) if !left.is_zero() => slice.min(left),
                    _ => return self.time_out(index, phase),
                },
                None => slice,
            };
            self.bell.wait(&st.async_waiters, moved, wait).await;
            slice = next_slice(slice);
        }
    }

    /// Wakes every waiter of the phase: the threads on its futex, and the
    /// async ones through the bell.
    fn wake_all(&self) {
        let st = self.state();
        futex_wake(&st.phase, i32::MAX as u32);
        self.bell.ring_if_awaited(&st.async_waiters);
    }

    /// Marks the current round broken and wakes its waiters; lock held.
    fn break_locked(&self) {
        let st = self.state();
        st.phase.fetch_or(BROKEN, Ordering::SeqCst);
        st.count.store(0, Ordering::SeqCst);
        self.wake_all();
    }

    /// Breaks the barrier: current and future waits fail until
    /// [`reset`](Barrier::reset). Python: `Barrier.abort()`.
    pub fn abort(&self) {
        let st = self.state();
        lock_word(&st.word, None, &self.spin);
        self.break_locked();
        st.word.unlock();
    }

    /// Returns the barrier to its empty, unbroken state; processes waiting
    /// on it get [`Error::BrokenBarrier`]. Python: `Barrier.reset()`.
    pub fn reset(&self) {
        let st = self.state();
        lock_word(&st.word, None, &self.spin);
        let phase = st.phase.load(Ordering::SeqCst);
        st.reset_from
            .store((phase >> 1).wrapping_add(1), Ordering::SeqCst);
        st.count.store(0, Ordering::SeqCst);
        st.phase
            .store((phase & !BROKEN).wrapping_add(2), Ordering::SeqCst);
        st.word.unlock();
        self.wake_all();
    }

    /// Whether the barrier is broken. Python: `Barrier.broken`.
    pub fn is_broken(&self) -> bool {
        self.state().phase.load(Ordering::SeqCst) & BROKEN != 0
    }

    /// The number of parties. Python: `Barrier.parties`.
    pub fn parties(&self) -> u32 {
        self.state().parties.load(Ordering::SeqCst)
    }

    /// How many processes wait in the current round.
    /// Python: `Barrier.n_waiting`.
    pub fn n_waiting(&self) -> u32 {
        self.state().count.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}
