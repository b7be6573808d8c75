//! `AsyncResult`: the handle of a call that runs in the background.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use multiproc_process::{Error, Result};
use serde::de::DeserializeOwned;

use crate::group::{Decoded, Group, Piece};

/// How the pieces of a call make its result (see [`Group::assemble`]).
type Assemble<R> = fn(&[Option<Piece>], &mut [Option<Decoded>]) -> Result<R>;

fn single<R: DeserializeOwned>(pieces: &[Option<Piece>], _: &mut [Option<Decoded>]) -> Result<R> {
    match pieces.first() {
        Some(Some(Ok(reply))) => reply.decode(),
        Some(Some(Err(failure))) => Err(failure.to_error()),
        _ => Err(Error::Closed),
    }
}

fn concat<R: DeserializeOwned + 'static>(
    pieces: &[Option<Piece>],
    decoded: &mut [Option<Decoded>],
) -> Result<Vec<R>> {
    let mut parts: Vec<Vec<R>> = Vec::with_capacity(pieces.len());
    for (piece, decoded) in pieces.iter().zip(decoded) {
        match piece {
            // Decoded already by the handler that received it (the first
            // time the result is read).
            Some(Ok(reply)) => match decoded.take().and_then(|d| d.downcast::<Vec<R>>().ok()) {
                Some(part) => parts.push(*part),
                None => parts.push(reply.decode::<Vec<R>>()?),
            },
            Some(Err(failure)) => return Err(failure.to_error()),
            None => return Err(Error::Closed),
        }
    }
    if parts.len() == 1 {
        return Ok(parts.pop().unwrap_or_default());
    }
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for part in parts {
        out.extend(part);
    }
    Ok(out)
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async) or
/// [`Pool::map_async`](crate::Pool::map_async), to be waited for. Python:
/// `multiprocessing.pool.AsyncResult`.
pub struct AsyncResult<R> {
    group: Arc<Group>,
    assemble: Assemble<R>,
    /// Its waker's number in the call's group, once polled as a future.
    slot: Option<u64>,
    _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> AsyncResult<R> {
    pub(crate) fn single(group: Arc<Group>) -> AsyncResult<R> {
        AsyncResult {
            group,
            assemble: single::<R>,
            slot: None,
            _r: PhantomData,
        }
    }

    /// Waits for the result. Python: `get()`.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`], [`Error::TaskFailed`], [`Error::WorkerDied`],
    /// [`Error::Closed`]
    /// (the pool was terminated), [`Error::Decode`].
    pub fn get(&self) -> Result<R> {
        self.group.wait_all(None);
        self.group.assemble(self.assemble)
    }

    /// Waits at most `timeout`. Python: `get(timeout)`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`], and as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<R> {
        if !self.group.wait_all(multiproc_process::deadline(timeout)) {
            return Err(Error::Timeout);
        }
        self.group.assemble(self.assemble)
    }

    /// Waits until the result is ready (`None`: as long as it takes);
    /// whether it is. Python: `wait(timeout)`.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.group
            .wait_all(timeout.and_then(multiproc_process::deadline))
    }

    /// Whether the call has finished. Python: `ready()`.
    pub fn ready(&self) -> bool {
        self.group.ready()
    }

    /// Whether the call finished without error. Python: `successful()`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when it has not finished (Python's
    /// `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        if !self.ready() {
            return Err(Error::InvalidArgument("the result is not ready".into()));
        }
        Ok(self.group.all_ok())
    }

    pub(crate) fn on_done(
        &self,
        callback: impl FnOnce(R) + Send + 'static,
        error_callback: impl FnOnce(Error) + Send + 'static,
    ) where
        R: 'static,
    {
        let assemble = self.assemble;
        // Weak: the group holds this closure until it runs.
        let group = Arc::downgrade(&self.group);
        self.group.on_done(Box::new(move || {
            let result = match group.upgrade() {
                Some(group) => group.assemble(assemble),
                None => Err(Error::Closed),
            };
            match result {
                Ok(r) => callback(r),
                Err(e) => error_callback(e),
            }
        }));
    }
}

impl<R: DeserializeOwned + 'static> AsyncResult<Vec<R>> {
    pub(crate) fn concat(group: Arc<Group>) -> AsyncResult<Vec<R>> {
        AsyncResult {
            group,
            assemble: concat::<R>,
            slot: None,
            _r: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.group.ready())
            .finish()
    }
}

/// An `AsyncResult` is a future of async code too: `result.await` (or
/// `join_all` of many) gives what [`get`](AsyncResult::get) would, without
/// blocking a thread, under any runtime. Dropping it stops waiting; the
/// call goes on. Python (asyncio): `await asyncio.wrap_future(...)` of a
/// `concurrent.futures` future.
impl<R: DeserializeOwned> std::future::Future for AsyncResult<R> {
    type Output = Result<R>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<R>> {
        let this = &mut *self;
        if this.group.poll_done(&mut this.slot, cx.waker()) {
            std::task::Poll::Ready(this.group.assemble(this.assemble))
        } else {
            std::task::Poll::Pending
        }
    }
}

impl<R> Drop for AsyncResult<R> {
    fn drop(&mut self) {
        if let Some(id) = self.slot.take() {
            self.group.forget_waker(id);
        }
    }
}
