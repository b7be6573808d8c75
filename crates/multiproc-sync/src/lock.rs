//! [`Lock`], its guard, and [`AcquireError`], the error of every acquire.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use multiproc_process::bell::{ASYNC_SLICE, Bell};
use multiproc_process::reactor::{readable, sleep};
use multiproc_process::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::core::lock::{Acquired, LockWord};
use crate::layout::LockState;
use crate::owner;
use crate::shared::Shared;
use crate::shim::{Deadline, Ordering, SpinBudget};

/// Why an acquire did not simply succeed.
///
/// Like std's `PoisonError<Guard>`, [`OwnerDied`](AcquireError::OwnerDied)
/// hands the guard over: the lock is yours, and the data it protects may be
/// half-updated by the process that died. `?` turns it into
/// [`Error::OwnerDied`] (dropping the guard, which releases the lock).
pub enum AcquireError<G> {
    /// `try_acquire` found the lock held.
    WouldBlock,
    /// The timeout passed first.
    Timeout,
    /// The previous owner died holding the lock; it is now yours.
    OwnerDied(G),
}

/// The result of an acquire.
pub type AcquireResult<G> = std::result::Result<G, AcquireError<G>>;

impl<G> AcquireError<G> {
    /// The guard, when the lock was taken over from a dead owner.
    pub fn into_guard(self) -> Option<G> {
        match self {
            AcquireError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// Whether the previous owner died holding the lock.
    pub fn owner_died(&self) -> bool {
        matches!(self, AcquireError::OwnerDied(_))
    }
}

impl<G> fmt::Debug for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcquireError::WouldBlock => "WouldBlock",
            AcquireError::Timeout => "Timeout",
            AcquireError::OwnerDied(_) => "OwnerDied(..)",
        })
    }
}

impl<G> fmt::Display for AcquireError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(
            &Error::from(match self {
                AcquireError::WouldBlock => AcquireError::<()>::WouldBlock,
                AcquireError::Timeout => AcquireError::Timeout,
                AcquireError::OwnerDied(_) => AcquireError::OwnerDied(()),
            }),
            f,
        )
    }
}

impl<G> std::error::Error for AcquireError<G> {}

impl<G> From<AcquireError<G>> for Error {
    fn from(e: AcquireError<G>) -> Error {
        match e {
            AcquireError::WouldBlock => Error::WouldBlock,
            AcquireError::Timeout => Error::Timeout,
            AcquireError::OwnerDied(_) => Error::OwnerDied,
        }
    }
}

/// Maps how a non-blocking acquire ended to the public result.
pub(crate) fn try_result<G>(a: Option<Acquired>, guard: impl FnOnce() -> G) -> AcquireResult<G> {
    match a {
        Some(a) => acquire_result(a, guard),
        None => Err(AcquireError::WouldBlock),
    }
}

/// Maps how a lock word's acquire ended to the public result.
pub(crate) fn acquire_result<G>(a: Acquired, guard: impl FnOnce() -> G) -> AcquireResult<G> {
    match a {
        Acquired::Yes => Ok(guard()),
        Acquired::OwnerDied => Err(AcquireError::OwnerDied(guard())),
        Acquired::TimedOut => Err(AcquireError::Timeout),
    }
}

/// Acquires `word` for this process, until `deadline`.
pub(crate) fn lock_word(word: &LockWord, deadline: Deadline, spin: &SpinBudget) -> Acquired {
    word.lock(
        owner::token(),
        deadline,
        spin,
        owner::owner_dead_recently_checked,
    )
}

/// The longest an async acquirer sleeps before it looks again: for a
/// ring that another process's acquirer drained first, a holder that died,
/// or a lock without a bell.
const ASYNC_LOCK_SLICE_MAX: Duration = Duration::from_millis(100);

/// Acquires `word` for this process without blocking a thread: it counts
/// itself in `waiters`, flags the word, and waits for `bell` (rung by the
/// unlock, see [`unlock_word`]) or a slice, on the process's reactor. With
/// no bell, it looks again every slice. A dead holder is taken over at
/// the end of a slice. Dropping the future stops waiting, holding nothing.
pub(crate) async fn lock_word_async(
    word: &LockWord,
    bell: Option<&Bell>,
    waiters: &AtomicU32,
    spin: &SpinBudget,
) -> Acquired {
    let me = owner::token();
    if word.try_lock(me) || spin.spin(|| word.owner() == 0 && word.try_lock(me)) {
        return Acquired::Yes;
    }
    // Counted before the word is flagged: see `core::lock`.
    waiters.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted(waiters);
    let mut slice = ASYNC_SLICE;
    loop {
        // Rings so far go first; one after this stays for the wait.
        if let Some(bell) = bell {
            bell.drain();
        }
        if let Some(got) = word.try_lock_or_flag(me, owner::owner_dead_recently_checked) {
            return got;
        }
        match bell {
            Some(bell) => readable(bell.fd(), Some(slice)).await,
            None => sleep(slice).await,
        };
        slice = (slice * 2).min(ASYNC_LOCK_SLICE_MAX);
    }
}

/// Counts an async waiter while it waits, however its future ends.
pub(crate) struct Counted<'a>(pub(crate) &'a AtomicU32);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Unlocks `word`, ringing `bell` when the word was flagged and an async
/// acquirer is counted in `waiters`. Returns whether it was held.
pub(crate) fn unlock_word(word: &LockWord, bell: Option<&Bell>, waiters: &AtomicU32) -> bool {
    match word.unlock_flagged() {
        None => false,
        Some(flagged) => {
            // The swap acquired the flag's write, and so the count made
            // before it (see `core::lock`).
            if flagged
                && let Some(bell) = bell
                && waiters.load(Ordering::Relaxed) > 0
            {
                bell.ring();
            }
            true
        }
    }
}

/// Acquires `word` for this process if it is free or its owner died.
pub(crate) fn try_lock_word(word: &LockWord) -> Option<Acquired> {
    word.try_lock_or_take_over(owner::token(), owner::owner_dead_recently_checked)
}

/// A lock shared between processes.
///
/// Python: `multiprocessing.Lock`. Acquiring it returns a guard that
/// releases it when dropped (Python's `with lock:`). Not reentrant: a
/// second acquire by the holder waits (see [`RLock`](crate::RLock)).
///
/// A process that dies holding the lock does not wedge the others: the next
/// acquirer takes it over within 100 ms of the death and learns so through
/// [`AcquireError::OwnerDied`], with the guard;
/// [`try_acquire`](Lock::try_acquire) takes it over at once (within a few milliseconds of
/// having found the holder alive). What the lock protected may be
/// half-updated. CPython deadlocks here.
///
/// In async code, [`acquire_async`](Lock::acquire_async) waits without a
/// thread, woken by the lock's bell (an eventfd that goes with the lock to
/// every process), which an unlock rings while an async acquirer waits.
///
/// # Examples
///
/// ```
/// use multiproc as mp;
///
/// fn add(total: mp::Value<i64>, lock: mp::Lock) {
///     for _ in 0..1000 {
///         let _g = lock.acquire().expect("no holder dies here");
///         total.set(total.get() + 1); // two locked steps, made one by `lock`
///     }
/// }
///
/// # fn main() -> mp::Result<()> {
/// let (total, lock) = (mp::Value::new(0i64)?, mp::Lock::new()?);
/// let mut ps: Vec<_> = (0..2).map(|_| mp::Process::new(add, (total.clone(), lock.clone()))).collect();
/// for p in &mut ps { p.start()?; }
/// for p in &mut ps { p.join()?; assert_eq!(p.exitcode(), Some(0)); }
/// assert_eq!(total.get(), 2000);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Lock {
    shared: Shared<LockState>,
    /// Rung by an unlock while an async acquirer waits; `None` for a lock
    /// made [`without_bell`](Lock::without_bell).
    bell: Option<Bell>,
    #[serde(skip)]
    spin: Arc<SpinBudget>,
}

impl Lock {
    /// A new, unlocked lock.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the shared memory or the bell's
    /// descriptor.
    pub fn new() -> Result<Lock> {
        let mut lock = Lock::from_shared(Shared::new(0)?);
        lock.bell = Some(Bell::new()?);
        Ok(lock)
    }

    /// A new, unlocked lock without a bell: one descriptor fewer, for a
    /// lock that blocking code uses. Its
    /// [`acquire_async`](Lock::acquire_async) is not woken by the unlock:
    /// it looks again every 10 to 100 ms. (The lock of a
    /// [`Value`](crate::Value) or an [`Array`](crate::Array) is one.)
    /// Python has no twin.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the shared memory.
    pub fn without_bell() -> Result<Lock> {
        Ok(Lock::from_shared(Shared::new(0)?))
    }

    pub(crate) fn from_shared(shared: Shared<LockState>) -> Lock {
        Lock {
            shared,
            bell: None,
            spin: Arc::default(),
        }
    }

    pub(crate) fn shared(&self) -> &Shared<LockState> {
        &self.shared
    }

    fn word(&self) -> &LockWord {
        &self.shared.state().word
    }

    fn acquire_until(&self, deadline: Deadline) -> AcquireResult<LockGuard<'_>> {
        acquire_result(lock_word(self.word(), deadline, &self.spin), || {
            self.guard()
        })
    }

    /// The guard of a lock just acquired by this thread.
    fn guard(&self) -> LockGuard<'_> {
        let st = self.shared.state();
        st.thread.store(owner::thread_id(), Ordering::Relaxed);
        // A new hold: a flag a dead holder left set names an older one.
        // Only the holder writes the count, so no read-modify-write is
        // needed (it would cost the uncontended path several nanoseconds).
        let hold = st.hold.load(Ordering::Relaxed);
        st.hold.store(hold.wrapping_add(1), Ordering::Relaxed);
        LockGuard { lock: self }
    }

    /// Unlocks, after forgetting the holder.
    fn unlock(&self) -> bool {
        let st = self.shared.state();
        st.thread.store(0, Ordering::Relaxed);
        unlock_word(&st.word, self.bell.as_ref(), &st.async_waiters)
    }

    /// Whether the calling thread holds the lock (acquired it, in this
    /// process, and has not released it).
    pub(crate) fn held_by_this_thread(&self) -> bool {
        self.word().owner() == owner::token()
            && self.shared.state().thread.load(Ordering::Relaxed) == owner::thread_id()
    }

    /// Which hold of the lock this is (meaningful to its holder).
    pub(crate) fn hold(&self) -> u64 {
        self.shared.state().hold.load(Ordering::Relaxed)
    }

    /// The flag a guard of the data after this lock's state sets while it
    /// lends the data (see [`LockState::lent`](crate::layout::LockState)).
    pub(crate) fn lent(&self) -> &AtomicU64 {
        &self.shared.state().lent
    }

    /// Acquires the lock, waiting as long as it takes.
    /// Python: `Lock.acquire()`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::OwnerDied`] (with the guard) if the previous owner
    /// died holding it.
    pub fn acquire(&self) -> AcquireResult<LockGuard<'_>> {
        self.acquire_until(None)
    }

    /// Acquires the lock without blocking a thread, under any async runtime
    /// (tokio, smol, ...): woken by the lock's bell when it is freed. A
    /// holder that dies is taken over within about 100 ms, as
    /// [`acquire`](Lock::acquire) does. Dropping the future stops waiting
    /// and holds nothing. Python (asyncio):
    /// `await loop.run_in_executor(None, lock.acquire)`.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Lock::acquire).
    pub async fn acquire_async(&self) -> AcquireResult<LockGuard<'_>> {
        let st = self.shared.state();
        let got =
            lock_word_async(&st.word, self.bell.as_ref(), &st.async_waiters, &self.spin).await;
        acquire_result(got, || self.guard())
    }

    /// Acquires the lock if it is free, or if its holder died (then with
    /// [`AcquireError::OwnerDied`]). Python: `Lock.acquire(False)`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::WouldBlock`] if a live process holds it,
    /// [`AcquireError::OwnerDied`] (with the guard) if its holder died.
    #[doc(alias = "acquire_nowait")]
    pub fn try_acquire(&self) -> AcquireResult<LockGuard<'_>> {
        try_result(try_lock_word(self.word()), || self.guard())
    }

    /// Acquires the lock, waiting at most `timeout`.
    /// Python: `Lock.acquire(timeout=t)`.
    ///
    /// # Errors
    ///
    /// [`AcquireError::Timeout`], or [`AcquireError::OwnerDied`].
    pub fn acquire_timeout(&self, timeout: Duration) -> AcquireResult<LockGuard<'_>> {
        self.acquire_until(multiproc_process::deadline(timeout))
    }

    /// Acquires the lock, waiting until `deadline` at most.
    ///
    /// # Errors
    ///
    /// As [`acquire_timeout`](Lock::acquire_timeout).
    pub fn acquire_deadline(&self, deadline: Instant) -> AcquireResult<LockGuard<'_>> {
        self.acquire_until(Some(deadline))
    }

    /// Releases the lock, whoever acquired it (Python allows this too); for
    /// a lock acquired with its guard forgotten (`std::mem::forget`).
    /// Python: `Lock.release()`.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] if the lock is not held.
    pub fn release(&self) -> Result<()> {
        if self.word().owner() == 0 || !self.unlock() {
            return Err(Error::NotHeld("release unlocked lock"));
        }
        Ok(())
    }

    /// Whether some process holds the lock now.
    pub fn is_locked(&self) -> bool {
        self.word().owner() != 0
    }

    /// Whether the lock is held by a process that has ended (it will be
    /// taken over by the next acquirer). Reads `/proc`: not for hot paths.
    pub fn holder_died(&self) -> bool {
        match self.word().owner() {
            0 => false,
            owner => crate::owner::owner_dead(owner),
        }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .finish()
    }
}

/// Holds a [`Lock`]; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl LockGuard<'_> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &Lock {
        self.lock
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}
