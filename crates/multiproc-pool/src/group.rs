//! Where a call's results gather: one slot per piece (a task, or a chunk of
//! a map), filled by the pool's handler threads, waited on by the caller.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use multiproc_process::Error;

use crate::message::Message;
use parking_lot::{Condvar, Mutex};

/// Why a piece failed; kept so that every `get` can report it.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    Panicked(String),
    /// The task's function returned an error; its message.
    Raised(String),
    WorkerDied {
        pid: u32,
        signal: Option<i32>,
        exitcode: Option<i32>,
    },
    Closed,
    /// Something did not decode; why.
    Failed(String),
    /// Something did not encode; why.
    Encode(String),
    /// The task ran past its time limit; its worker was killed.
    TimedOut(std::time::Duration),
    /// The task was cancelled (a running one by killing its worker).
    Cancelled,
    /// Strict mode lost a worker: why.
    Broken(String),
    /// The worker died before it took the task, which can go to another.
    NeverTaken {
        pid: u32,
        signal: Option<i32>,
        exitcode: Option<i32>,
    },
}

impl Failure {
    /// The failure of an encoding or decoding error (the kinds the pool's
    /// own steps give), keeping its kind and its reason.
    pub(crate) fn of(e: &Error) -> Failure {
        match e {
            Error::Encode(why) => Failure::Encode(why.clone()),
            Error::Decode(why) => Failure::Failed(why.clone()),
            other => Failure::Failed(other.to_string()),
        }
    }

    pub(crate) fn to_error(&self) -> Error {
        match self {
            Failure::Panicked(message) => Error::TaskPanicked {
                message: message.clone(),
            },
            Failure::WorkerDied {
                pid,
                signal,
                exitcode,
            }
            | Failure::NeverTaken {
                pid,
                signal,
                exitcode,
            } => Error::WorkerDied {
                pid: *pid,
                signal: *signal,
                exitcode: *exitcode,
            },
            Failure::Raised(message) => Error::TaskFailed {
                message: message.clone(),
            },
            Failure::Closed => Error::Closed,
            Failure::TimedOut(after) => Error::TaskTimedOut { after: *after },
            Failure::Cancelled => Error::Cancelled,
            Failure::Broken(why) => Error::BrokenPool { why: why.clone() },
            Failure::Failed(why) => Error::Decode(why.clone()),
            Failure::Encode(why) => Error::Encode(why.clone()),
        }
    }
}

/// A piece: a worker's whole reply (its tag byte, then the result's
/// bytes, and its descriptors), or why there is none.
pub(crate) type Piece = Result<Message, Failure>;

type OnDone = Box<dyn FnOnce() + Send>;

/// A piece already decoded by a handler thread (a `Vec<R>`), so that the
/// caller does not decode every chunk alone at the end.
pub(crate) type Decoded = Box<dyn Any + Send>;

#[derive(Default)]
struct State {
    pieces: Vec<Option<Piece>>,
    decoded: Vec<Option<Decoded>>,
    /// The number of pieces, once all are submitted.
    total: Option<usize>,
    arrived: usize,
    /// Indexes in the order they arrived, not yet taken by `take_any`.
    order: VecDeque<usize>,
    /// Every piece is in and the call's callback has run: the result is
    /// ready (a callback runs before `get` returns, as in CPython).
    done: bool,
    /// Async tasks waiting for `done`, by the number their future holds.
    wakers: std::collections::HashMap<u64, std::task::Waker>,
    next_waker: u64,
}

impl State {
    fn complete(&self) -> bool {
        self.total == Some(self.arrived)
    }
}

/// The results of one call.
#[derive(Default)]
pub(crate) struct Group {
    state: Mutex<State>,
    cv: Condvar,
    on_done: Mutex<Option<OnDone>>,
}

impl Group {
    pub(crate) fn new(total: Option<usize>) -> Arc<Group> {
        let g = Group::default();
        g.state.lock().total = total;
        if let Some(n) = total {
            g.state.lock().pieces.resize_with(n, || None);
        }
        Arc::new(g)
    }

    /// Makes room for piece `index` (a lazily fed call).
    pub(crate) fn expect(&self, index: usize) {
        let mut s = self.state.lock();
        if s.pieces.len() <= index {
            s.pieces.resize_with(index + 1, || None);
        }
    }

    /// No more pieces will be submitted than those expected so far.
    pub(crate) fn seal(&self) {
        let complete = {
            let mut s = self.state.lock();
            s.total = Some(s.pieces.len());
            s.complete()
        };
        if complete {
            self.finish();
        }
        self.notify();
    }

    pub(crate) fn deliver(&self, index: usize, piece: Piece, decoded: Option<Decoded>) {
        let complete = self.store(index, piece, decoded);
        if complete {
            self.finish();
        }
        self.notify();
    }

    /// Puts a piece in its place; whether it was the last.
    fn store(&self, index: usize, piece: Piece, decoded: Option<Decoded>) -> bool {
        let mut s = self.state.lock();
        if s.pieces.len() <= index {
            s.pieces.resize_with(index + 1, || None);
        }
        if s.decoded.len() <= index {
            s.decoded.resize_with(index + 1, || None);
        }
        s.pieces[index] = Some(piece);
        s.decoded[index] = decoded;
        s.arrived += 1;
        s.order.push_back(index);
        s.complete()
    }

    /// As [`deliver`](Self::deliver), for a thread that must not run user
    /// callbacks (a remote pool's dispatcher): when this piece completes
    /// the call and a callback waits, the call is returned unfinished, for
    /// [`finish`](Self::finish) on another thread. Without a callback the
    /// result is ready at once (a callback registered later runs on the
    /// thread that registers it, as for a call already done).
    pub(crate) fn deliver_deferred(
        self: &Arc<Self>,
        index: usize,
        piece: Piece,
        decoded: Option<Decoded>,
    ) -> Option<Arc<Group>> {
        let complete = self.store(index, piece, decoded);
        let deferred = if !complete {
            None
        } else if self.on_done.lock().is_some() {
            Some(self.clone())
        } else {
            self.state.lock().done = true;
            None
        };
        self.notify();
        deferred
    }

    /// Finishes a call [`deliver_deferred`](Self::deliver_deferred) left
    /// unfinished: its callback, then its result ready.
    pub(crate) fn finish_deferred(&self) {
        self.finish();
        self.notify();
    }

    /// With every piece in: runs the callback, then marks the result ready.
    fn finish(&self) {
        self.run_callback();
        self.state.lock().done = true;
    }

    fn run_callback(&self) {
        let Some(on_done) = self.on_done.lock().take() else {
            return;
        };
        // A panicking callback must not take the handler thread with it:
        // that slot's worker would get no more work.
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(on_done)) {
            eprintln!(
                "a pool callback panicked: {}",
                multiproc_process::panic_message(&*panic)
            );
        }
    }

    /// Runs `f` once all pieces are in (now, if they are), before the
    /// result is ready.
    pub(crate) fn on_done(&self, f: OnDone) {
        *self.on_done.lock() = Some(f);
        if self.state.lock().complete() {
            self.run_callback();
        }
    }

    /// Wakes the threads and the async tasks waiting on this call (a
    /// task waits for the whole call, or for its next piece).
    fn notify(&self) {
        self.cv.notify_all();
        let wakers: Vec<std::task::Waker> = {
            let mut s = self.state.lock();
            if s.wakers.is_empty() {
                return;
            }
            s.wakers.drain().map(|(_, w)| w).collect()
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Whether the result is ready; if not, `waker` is kept (under the
    /// number in `slot`, which is given one) to be woken when it is.
    pub(crate) fn poll_done(&self, slot: &mut Option<u64>, waker: &std::task::Waker) -> bool {
        let mut s = self.state.lock();
        if s.done {
            if let Some(id) = slot.take() {
                s.wakers.remove(&id);
            }
            return true;
        }
        Group::keep_waker(&mut s, slot, waker);
        false
    }

    /// Keeps `waker` to be woken at the next piece (or the end), under
    /// the number in `slot`.
    pub(crate) fn register_waker(&self, slot: &mut Option<u64>, waker: &std::task::Waker) {
        Group::keep_waker(&mut self.state.lock(), slot, waker);
    }

    fn keep_waker(s: &mut State, slot: &mut Option<u64>, waker: &std::task::Waker) {
        let id = *slot.get_or_insert_with(|| {
            s.next_waker += 1;
            s.next_waker
        });
        match s.wakers.get_mut(&id) {
            Some(w) if w.will_wake(waker) => {}
            Some(w) => w.clone_from(waker),
            None => {
                s.wakers.insert(id, waker.clone());
            }
        }
    }

    /// Takes back the waker of a future that no longer waits.
    pub(crate) fn forget_waker(&self, id: u64) {
        self.state.lock().wakers.remove(&id);
    }

    /// Whether every piece is in (and the callback, if any, has run).
    pub(crate) fn ready(&self) -> bool {
        self.state.lock().done
    }

    /// Waits until the result is ready, or `deadline`; whether it is.
    pub(crate) fn wait_all(&self, deadline: Option<Instant>) -> bool {
        let mut s = self.state.lock();
        while !s.done {
            match deadline {
                Some(d) => {
                    if self.cv.wait_until(&mut s, d).timed_out() && !s.done {
                        return false;
                    }
                }
                None => self.cv.wait(&mut s),
            }
        }
        true
    }

    /// Calls `f` with the pieces, in order (`None`: never delivered), and
    /// their decoded forms, which `f` may take: no piece is copied.
    pub(crate) fn assemble<T>(
        &self,
        f: impl FnOnce(&[Option<Piece>], &mut [Option<Decoded>]) -> T,
    ) -> T {
        let mut s = self.state.lock();
        let State {
            pieces, decoded, ..
        } = &mut *s;
        if decoded.len() < pieces.len() {
            decoded.resize_with(pieces.len(), || None);
        }
        f(pieces, decoded)
    }

    /// Whether every piece that arrived is a success.
    pub(crate) fn all_ok(&self) -> bool {
        self.state
            .lock()
            .pieces
            .iter()
            .all(|p| matches!(p, Some(Ok(_))))
    }

    /// Waits for piece `index` (until `deadline`) and takes it.
    pub(crate) fn take(&self, index: usize, deadline: Option<Instant>) -> Take {
        let mut s = self.state.lock();
        loop {
            if let Some(piece) = s.pieces.get_mut(index).and_then(Option::take) {
                return Take::Piece(piece);
            }
            if !self.wait(&mut s, deadline) {
                return Take::TimedOut;
            }
        }
    }

    /// Waits for any piece not taken yet (until `deadline`) and takes it,
    /// in the order they arrived; [`Take::End`] once all were taken.
    pub(crate) fn take_any(&self, taken: usize, deadline: Option<Instant>) -> Take {
        let mut s = self.state.lock();
        loop {
            if let Some(i) = s.order.pop_front() {
                if let Some(piece) = s.pieces.get_mut(i).and_then(Option::take) {
                    return Take::Piece(piece);
                }
                continue;
            }
            if s.total == Some(taken) {
                return Take::End;
            }
            if !self.wait(&mut s, deadline) {
                return Take::TimedOut;
            }
        }
    }

    /// Waits for the next change, or `deadline`; false if it passed.
    fn wait(&self, s: &mut parking_lot::MutexGuard<'_, State>, deadline: Option<Instant>) -> bool {
        match deadline {
            Some(d) => !self.cv.wait_until(s, d).timed_out(),
            None => {
                self.cv.wait(s);
                true
            }
        }
    }
}

/// What a wait for a piece gives.
pub(crate) enum Take {
    Piece(Piece),
    /// Every piece was taken.
    End,
    /// The deadline passed first.
    TimedOut,
}
