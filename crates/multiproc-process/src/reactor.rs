//! Waiting for a descriptor from async code, in any runtime: one helper
//! thread per process (started on first use) waits in `epoll` on every
//! descriptor an async task awaits, and wakes the tasks whose descriptor
//! became readable or whose time ran out.
//!
//! A descriptor is registered once however many tasks wait for it (level
//! triggered; it leaves `epoll` when it fires, and comes back with the next
//! waiter), so 100,000 tasks waiting on one pidfd or one socket cost one
//! registration and a waker each. Deadlines sit in an ordered map, so the
//! thread's sleep is the nearest one. An eventfd interrupts that sleep when
//! a nearer deadline arrives.
//!
//! A process made by `fork` inherits the parent's reactor without its
//! thread; it notices (the pid differs) and starts its own, forgetting
//! the parent's state (its wakers belong to the parent's runtime).
//!
//! The reactor holds a duplicate of each descriptor it watches, so that it
//! never names a number its owner may have closed: it adds, and deletes,
//! its own copy.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, epoll, eventfd};

/// How long a wait the reactor cannot take pauses its thread instead.
const FALLBACK_PAUSE: Duration = Duration::from_millis(1);

/// The name of the helper thread (one per process).
pub const REACTOR_THREAD: &str = "multiproc-reactor";

/// A future that is ready when `fd` is readable (or at its end, or in
/// error: a read will not block), or when `timeout` passes. Its output
/// says which: `true` readable (or possibly so), `false` timed out.
///
/// Dropping it stops waiting and takes nothing from the descriptor. It
/// works under any executor (tokio, smol, `futures::executor`): one helper
/// thread per process, [`REACTOR_THREAD`], wakes every waiting task.
///
/// Python: `loop.add_reader(fd, callback)`.
pub fn readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> Readable<'_> {
    Readable {
        fd: Some(fd),
        deadline: timeout.and_then(crate::deadline),
        id: None,
    }
}

/// A future that is ready (with `false`) when `duration` has passed, on
/// the same reactor thread as [`readable`]: a timer for code that may run
/// under any executor. Python: `asyncio.sleep(delay)`.
pub fn sleep(duration: Duration) -> Readable<'static> {
    Readable {
        fd: None,
        // A sleep past the end of time is one of a very long time.
        deadline: Some(
            crate::deadline(duration)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30)),
        ),
        id: None,
    }
}

/// The future of [`readable`] and [`sleep`].
#[derive(Debug)]
#[must_use = "a future does nothing unless awaited"]
pub struct Readable<'a> {
    /// `None` for a [`sleep`].
    fd: Option<BorrowedFd<'a>>,
    deadline: Option<Instant>,
    /// Its registration, once polled.
    id: Option<(Arc<Reactor>, u64)>,
}

impl Future for Readable<'_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if self
            .id
            .as_ref()
            .is_some_and(|(r, _)| r.pid != std::process::id())
        {
            // Registered before a fork, with the parent's reactor, which
            // has no thread here: register again with this process's.
            if let Some(parent) = self.id.take() {
                std::mem::forget(parent);
            }
        }
        if let Some((reactor, id)) = &self.id {
            match reactor.poll_waiter(*id, cx.waker()) {
                Some(fired) => {
                    self.id = None;
                    return Poll::Ready(fired);
                }
                None => return Poll::Pending,
            }
        }
        if self.deadline.is_some_and(|d| d <= Instant::now()) {
            return Poll::Ready(self.fd.is_some_and(|fd| {
                crate::fdio::poll_readable(&[fd], Some(Duration::ZERO)).map_or(true, |r| r[0])
            }));
        }
        let registered = Reactor::current()
            .and_then(|r| Some((r.register(self.fd, self.deadline, cx.waker().clone())?, r)));
        match registered {
            Some((id, reactor)) => {
                self.id = Some((reactor, id));
                Poll::Pending
            }
            None => {
                // No reactor (no thread could start) or `epoll` refused the
                // descriptor (out of descriptors or watches): a short
                // blocking pause, then "maybe ready", so that the caller
                // looks again without spinning a core.
                std::thread::sleep(FALLBACK_PAUSE);
                Poll::Ready(true)
            }
        }
    }
}

impl Drop for Readable<'_> {
    fn drop(&mut self) {
        if let Some((reactor, id)) = self.id.take() {
            if reactor.pid == std::process::id() {
                reactor.forget(id);
            } else {
                // The parent's, in a forked copy: not ours to touch.
                std::mem::forget(reactor);
            }
        }
    }
}

/// One waiting task.
struct Waiter {
    /// `None` for a sleep.
    fd: Option<RawFd>,
    waker: Waker,
    deadline: Option<Instant>,
    /// Set by the thread: `Some(true)` readable, `Some(false)` timed out.
    fired: Option<bool>,
}

#[derive(Default)]
struct State {
    next: u64,
    waiters: HashMap<u64, Waiter>,
    /// Each descriptor in `epoll`, by the number its waiters know it by.
    by_fd: HashMap<RawFd, Watched>,
    deadlines: BTreeSet<(Instant, u64)>,
}

/// A descriptor in `epoll`: the reactor's own duplicate, and its waiters
/// (a set: a waiter that leaves is taken out in constant time, however
/// many wait).
struct Watched {
    copy: OwnedFd,
    ids: HashSet<u64>,
}

/// The process's reactor: its `epoll`, its state, its thread.
#[derive(Debug)]
pub(crate) struct Reactor {
    pid: u32,
    epoll: OwnedFd,
    /// Rung when a nearer deadline arrives.
    bell: OwnedFd,
    state: Mutex<State>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("waiters", &self.waiters.len())
            .finish_non_exhaustive()
    }
}

/// The reactor of this process, if started: an `Arc` turned into a
/// pointer that is never released. No lock guards it, because a child
/// forked while another thread held one would wait for it forever; a
/// forked child sees the parent's (its pid differs) and installs its own.
static CURRENT: AtomicPtr<Reactor> = AtomicPtr::new(std::ptr::null_mut());

/// The pid of the process whose thread is installing a reactor, or 0: a
/// spin lock that a forked copy (seeing its parent's pid) takes over.
static INSTALLING: AtomicU32 = AtomicU32::new(0);

/// The `epoll` data of the bell.
const BELL: u64 = u64::MAX;

/// [`INSTALLING`], held by this process's calling thread.
struct Installing;

impl Installing {
    fn take(pid: u32) -> Installing {
        loop {
            let holder = INSTALLING.load(Ordering::Acquire);
            // Free (0), or held by the parent of a forked copy: there is no
            // such thread here to let go of it.
            if holder != pid
                && INSTALLING
                    .compare_exchange(holder, pid, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Installing;
            }
            // Another thread of this process installs one: a few
            // microseconds, once per process.
            std::thread::yield_now();
        }
    }
}

impl Drop for Installing {
    fn drop(&mut self) {
        INSTALLING.store(0, Ordering::Release);
    }
}

impl Reactor {
    /// This process's reactor, if installed.
    #[allow(unsafe_code)]
    fn installed(pid: u32) -> Option<Arc<Reactor>> {
        let raw = CURRENT.load(Ordering::Acquire);
        // SAFETY: a pointer in CURRENT comes from `Arc::into_raw` below and
        // its count is never given back, so it points to a live `Reactor`
        // for the life of the process (and of any forked copy of it).
        let reactor = unsafe { raw.as_ref() }?;
        if reactor.pid != pid {
            return None;
        }
        // SAFETY: as above; the new `Arc` owns the count added here.
        unsafe {
            Arc::increment_strong_count(raw);
            Some(Arc::from_raw(raw))
        }
    }

    /// This process's reactor, started on first use.
    fn current() -> Option<Arc<Reactor>> {
        let pid = std::process::id();
        if let Some(r) = Reactor::installed(pid) {
            return Some(r);
        }
        let _installing = Installing::take(pid);
        if let Some(r) = Reactor::installed(pid) {
            return Some(r);
        }
        // What CURRENT holds now, if anything, is a forked copy's: its
        // thread is not here and its wakers are the parent's. It stays as
        // it is (its count was never to be given back; dropping its wakers
        // might run the parent's code here).
        let reactor = Arc::new(Reactor::new(pid).ok()?);
        let thread = reactor.clone();
        std::thread::Builder::new()
            .name(REACTOR_THREAD.into())
            .spawn(move || thread.run())
            .ok()?;
        CURRENT.store(Arc::into_raw(reactor.clone()).cast_mut(), Ordering::Release);
        Some(reactor)
    }

    fn new(pid: u32) -> std::io::Result<Reactor> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let bell = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &bell,
            epoll::EventData::new_u64(BELL),
            epoll::EventFlags::IN,
        )?;
        Ok(Reactor {
            pid,
            epoll,
            bell,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a waiter; `None` if `epoll` refuses the descriptor (then the
    /// caller treats it as ready and looks for itself).
    fn register(
        &self,
        fd: Option<BorrowedFd<'_>>,
        deadline: Option<Instant>,
        waker: Waker,
    ) -> Option<u64> {
        let raw = fd.map(|fd| fd.as_raw_fd());
        let mut s = self.lock();
        if let (Some(fd), Some(raw)) = (fd, raw)
            && let std::collections::hash_map::Entry::Vacant(slot) = s.by_fd.entry(raw)
        {
            let copy = fd.try_clone_to_owned().ok()?;
            epoll::add(
                &self.epoll,
                &copy,
                epoll::EventData::new_u64(raw as u64),
                epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
            )
            .ok()?;
            slot.insert(Watched {
                copy,
                ids: HashSet::new(),
            });
        }
        s.next += 1;
        let id = s.next;
        if let Some(w) = raw.and_then(|raw| s.by_fd.get_mut(&raw)) {
            w.ids.insert(id);
        }
        let nearest = s.deadlines.first().map(|(at, _)| *at);
        if let Some(at) = deadline {
            s.deadlines.insert((at, id));
        }
        s.waiters.insert(
            id,
            Waiter {
                fd: raw,
                waker,
                deadline,
                fired: None,
            },
        );
        drop(s);
        if deadline.is_some_and(|at| nearest.is_none_or(|n| at < n)) {
            // The thread may sleep past this deadline: wake it to look.
            let _ = rustix::io::write(&self.bell, &1u64.to_ne_bytes());
        }
        Some(id)
    }

    /// `Some(fired)` once the waiter fired (and is gone), else keeps
    /// `waker` to wake.
    fn poll_waiter(&self, id: u64, waker: &Waker) -> Option<bool> {
        let mut s = self.lock();
        let w = s.waiters.get_mut(&id)?;
        if let Some(fired) = w.fired {
            let gone = s.waiters.remove(&id);
            drop(s);
            // Its waker is dropped outside the lock: dropping a task's
            // last waker may drop the task, and with it other waiters.
            drop(gone);
            return Some(fired);
        }
        if !w.waker.will_wake(waker) {
            let old = std::mem::replace(&mut w.waker, waker.clone());
            drop(s);
            drop(old);
        }
        None
    }

    /// Removes a waiter that no longer waits.
    fn forget(&self, id: u64) {
        let mut s = self.lock();
        let Some(w) = s.waiters.remove(&id) else {
            return;
        };
        if let Some(at) = w.deadline {
            s.deadlines.remove(&(at, id));
        }
        if w.fired.is_none() {
            self.unlist(&mut s, w.fd, id);
        }
        drop(s);
        // As in `poll_waiter`: the waker goes outside the lock.
        drop(w);
    }

    /// Takes `id` off its descriptor's list, and the descriptor out of
    /// `epoll` when no one else waits for it.
    fn unlist(&self, s: &mut State, fd: Option<RawFd>, id: u64) {
        let Some(fd) = fd else { return };
        if let Some(w) = s.by_fd.get_mut(&fd) {
            w.ids.remove(&id);
            if w.ids.is_empty()
                && let Some(w) = s.by_fd.remove(&fd)
            {
                let _ = epoll::delete(&self.epoll, &w.copy);
            }
        }
    }

    /// The thread: sleeps in `epoll` until a descriptor is readable or the
    /// nearest deadline, and wakes whom it concerns.
    fn run(self: Arc<Reactor>) {
        let mut events = Vec::with_capacity(256);
        loop {
            let timeout = {
                let s = self.lock();
                s.deadlines.first().map(|(at, _)| {
                    let left = at.saturating_duration_since(Instant::now());
                    rustix::event::Timespec {
                        tv_sec: left.as_secs() as i64,
                        tv_nsec: i64::from(left.subsec_nanos()),
                    }
                })
            };
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                timeout.as_ref(),
            ) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
            let mut wake = Vec::new();
            {
                let mut s = self.lock();
                for event in &events {
                    let data = event.data.u64();
                    if data == BELL {
                        let mut buf = [0u8; 8];
                        let _ = rustix::io::read(&self.bell, &mut buf);
                        continue;
                    }
                    let fd = data as RawFd;
                    if let Some(watched) = s.by_fd.remove(&fd) {
                        let _ = epoll::delete(&self.epoll, &watched.copy);
                        for id in watched.ids {
                            if let Some(w) = s.waiters.get_mut(&id) {
                                w.fired = Some(true);
                                wake.push(w.waker.clone());
                                if let Some(at) = w.deadline {
                                    s.deadlines.remove(&(at, id));
                                }
                            }
                        }
                    }
                }
                let now = Instant::now();
                while let Some(&(at, id)) = s.deadlines.first() {
                    if at > now {
                        break;
                    }
                    s.deadlines.remove(&(at, id));
                    let Some(w) = s.waiters.get_mut(&id) else {
                        continue;
                    };
                    w.fired = Some(false);
                    wake.push(w.waker.clone());
                    let fd = w.fd;
                    self.unlist(&mut s, fd, id);
                }
            }
            for w in wake {
                w.wake();
            }
        }
    }
}
