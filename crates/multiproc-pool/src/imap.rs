//! Lazy maps: `imap` (results in order) and `imap_unordered` (in the order
//! they finish). Input is pulled only as results are taken, a few chunks per
//! worker ahead, so an endless or huge input never fills memory.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_process::{Error, Result, Target, TaskFn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::group::{Failure, Group, Piece, Take};
use crate::job::{Input, Job};
use crate::message::task_message;
use crate::pool::Pool;

/// Chunks in flight per worker.
const AHEAD_PER_WORKER: usize = 4;

/// What both lazy maps share: the input, the chunks sent, the results
/// decoded and not yet yielded.
struct Feed<'p, I: Iterator, R> {
    pool: &'p Pool,
    func: TaskFn,
    input: I,
    chunksize: usize,
    group: Arc<Group>,
    sent: usize,
    taken: usize,
    done: bool,
    ready: VecDeque<Result<R>>,
    /// Items not yet yielded whose chunk was sent.
    pending_items: usize,
    /// The number of its waker in the group, when polled as a stream.
    slot: Option<u64>,
    _r: PhantomData<fn() -> R>,
}

impl<'p, I, R> Feed<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    fn new(pool: &'p Pool, func: TaskFn, input: I, chunksize: usize) -> Feed<'p, I, R> {
        Feed {
            pool,
            func,
            input,
            chunksize,
            group: Group::new(None),
            sent: 0,
            taken: 0,
            done: false,
            ready: VecDeque::new(),
            pending_items: 0,
            slot: None,
            _r: PhantomData,
        }
    }

    /// The next result for a stream: ready now, or the task's waker is
    /// kept to be woken at the next piece.
    fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
        take: impl Fn(&Group, usize, Option<Instant>) -> Take,
    ) -> std::task::Poll<Option<Result<R>>> {
        match self.next(Some(Instant::now()), &take) {
            Some(Err(Error::Timeout)) => {}
            ready => return std::task::Poll::Ready(ready),
        }
        // Kept before the second look: a piece that lands in between
        // wakes it.
        self.group.register_waker(&mut self.slot, cx.waker());
        match self.next(Some(Instant::now()), &take) {
            Some(Err(Error::Timeout)) => std::task::Poll::Pending,
            ready => std::task::Poll::Ready(ready),
        }
    }

    /// Sends chunks until the window is full or the input ends.
    fn fill(&mut self) -> Result<()> {
        let window = AHEAD_PER_WORKER * self.pool.processes();
        while !self.done && self.sent - self.taken < window {
            let chunk: Vec<I::Item> = self.input.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                self.done = true;
                self.group.seal();
                break;
            }
            self.pending_items += chunk.len();
            self.group.expect(self.sent);
            match task_message(self.func, &chunk) {
                Ok(message) => self.pool.submit(Job {
                    input: Input::Bytes(message),
                    decode: None,
                    group: self.group.clone(),
                    index: self.sent,
                })?,
                // A chunk that does not encode fails in its place; the
                // others go on.
                Err(e) => self.group.deliver(self.sent, Err(Failure::of(&e)), None),
            }
            self.sent += 1;
        }
        Ok(())
    }

    fn unpack(&mut self, piece: Piece) {
        match piece {
            Ok(reply) => match reply.decode::<Vec<R>>() {
                Ok(items) => {
                    self.pending_items -= items.len().min(self.pending_items);
                    self.ready.extend(items.into_iter().map(Ok));
                }
                Err(e) => self.ready.push_back(Err(e)),
            },
            Err(failure) => {
                // The whole chunk failed: one error stands for its items.
                self.pending_items -= self.chunksize.min(self.pending_items);
                self.ready.push_back(Err(failure.to_error()));
            }
        }
    }

    /// The next result: one decoded already, or the next piece `take`
    /// gives (in order, or as they finish), feeding input as it goes.
    /// [`Error::Timeout`] if `deadline` passes first; the result is still
    /// to come.
    fn next(
        &mut self,
        deadline: Option<Instant>,
        take: impl Fn(&Group, usize, Option<Instant>) -> Take,
    ) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Some(r);
            }
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
            if self.taken == self.sent {
                return None;
            }
            match take(&self.group, self.taken, deadline) {
                Take::Piece(piece) => {
                    self.taken += 1;
                    self.unpack(piece);
                }
                Take::End => return None,
                Take::TimedOut => return Some(Err(Error::Timeout)),
            }
        }
    }

    fn remaining(&self) -> (usize, Option<usize>)
    where
        I: Iterator,
    {
        let (lo, hi) = self.input.size_hint();
        let known = self.ready.len() + self.pending_items;
        (
            known.saturating_add(lo),
            hi.and_then(|h| h.checked_add(known)),
        )
    }
}

/// The iterator of [`Pool::imap`]: results in input order. A failed
/// chunk yields one `Err` in place of its results.
pub struct IMap<'p, I: Iterator, R> {
    feed: Feed<'p, I, R>,
}

impl<'p, I, R> IMap<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    pub(crate) fn new(pool: &'p Pool, func: TaskFn, input: I, chunksize: usize) -> Self {
        IMap {
            feed: Feed::new(pool, func, input, chunksize),
        }
    }

    /// As [`next`](Iterator::next), waiting at most `timeout`: then
    /// `Some(Err(Error::Timeout))`, and the result is still to come from a
    /// later call. Python: `it.next(timeout)`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.feed
            .next(multiproc_process::deadline(timeout), Group::take)
    }
}

impl<I, R> Iterator for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.feed.next(None, Group::take)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feed.remaining()
    }
}

impl<I, R> ExactSizeIterator for IMap<'_, I, R>
where
    I: ExactSizeIterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
}

/// The iterator of [`Pool::imap_unordered`]: results as they finish.
pub struct IMapUnordered<'p, I: Iterator, R> {
    feed: Feed<'p, I, R>,
}

impl<'p, I, R> IMapUnordered<'p, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    pub(crate) fn new(pool: &'p Pool, func: TaskFn, input: I, chunksize: usize) -> Self {
        IMapUnordered {
            feed: Feed::new(pool, func, input, chunksize),
        }
    }

    /// As [`next`](Iterator::next), waiting at most `timeout` (as
    /// [`IMap::next_timeout`]). Python: `it.next(timeout)`.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.feed
            .next(multiproc_process::deadline(timeout), Group::take_any)
    }
}

impl<I, R> Iterator for IMapUnordered<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.feed.next(None, Group::take_any)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.feed.remaining()
    }
}

impl<I, R> ExactSizeIterator for IMapUnordered<'_, I, R>
where
    I: ExactSizeIterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
}

impl<I: Iterator, R> Drop for Feed<'_, I, R> {
    fn drop(&mut self) {
        if let Some(id) = self.slot.take() {
            self.group.forget_waker(id);
        }
    }
}

/// An `imap` as a stream of async code: `while let Some(r) =
/// it.next().await` (with `futures::StreamExt` or `tokio_stream`), under any
/// runtime. Python (asyncio): an async iterator over the results.
impl<I, R> futures_core::Stream for IMap<'_, I, R>
where
    I: Iterator + Unpin,
    I::Item: Serialize,
    R: DeserializeOwned + Unpin,
{
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<R>>> {
        self.get_mut().feed.poll_next(cx, Group::take)
    }
}

/// As for [`IMap`], results as they finish.
impl<I, R> futures_core::Stream for IMapUnordered<'_, I, R>
where
    I: Iterator + Unpin,
    I::Item: Serialize,
    R: DeserializeOwned + Unpin,
{
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<R>>> {
        self.get_mut().feed.poll_next(cx, Group::take_any)
    }
}

impl<I: Iterator, R> std::fmt::Debug for IMap<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMap")
            .field("sent", &self.feed.sent)
            .finish()
    }
}

impl<I: Iterator, R> std::fmt::Debug for IMapUnordered<'_, I, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IMapUnordered")
            .field("sent", &self.feed.sent)
            .finish()
    }
}

/// The lazy maps of a [`Pool`].
impl Pool {
    /// Calls `f` on each item lazily, yielding results in order as they
    /// come; at most a few chunks per worker are in flight, so an endless
    /// input works. Python: `pool.imap(f, items)` (chunk size 1).
    pub fn imap<F, I, R, K>(&self, f: F, items: I) -> IMap<'_, I::IntoIter, R>
    where
        F: Target<(I::Item,), K, Output = R>,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_chunked(f, items, 1)
    }

    /// As [`imap`](Self::imap), `chunksize` items per task.
    pub fn imap_chunked<F, I, R, K>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMap<'_, I::IntoIter, R>
    where
        F: Target<(I::Item,), K, Output = R>,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        IMap::new(self, TaskFn::chunk(f), items.into_iter(), chunksize.max(1))
    }

    /// As [`imap`](Self::imap), yielding results in the order they finish.
    /// Python: `pool.imap_unordered(f, items)`.
    pub fn imap_unordered<F, I, R, K>(&self, f: F, items: I) -> IMapUnordered<'_, I::IntoIter, R>
    where
        F: Target<(I::Item,), K, Output = R>,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        self.imap_unordered_chunked(f, items, 1)
    }

    /// As [`imap_unordered`](Self::imap_unordered), `chunksize` items per
    /// task (a chunk's results come together, in its order). Python:
    /// `pool.imap_unordered(f, items, chunksize)`.
    pub fn imap_unordered_chunked<F, I, R, K>(
        &self,
        f: F,
        items: I,
        chunksize: usize,
    ) -> IMapUnordered<'_, I::IntoIter, R>
    where
        F: Target<(I::Item,), K, Output = R>,
        I: IntoIterator,
        I::Item: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        IMapUnordered::new(self, TaskFn::chunk(f), items.into_iter(), chunksize.max(1))
    }
}
