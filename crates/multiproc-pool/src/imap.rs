//! Lazy maps: `imap` (results in order) and `imap_unordered` (in the order
//! they finish). Input is pulled only as results are taken, a few chunks per
//! worker ahead, so an endless or huge input never fills memory.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_process::{Result, TaskFn, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::group::{Group, Piece, payload};
use crate::pool::{Input, Job, Pool, task_message};

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
            _r: PhantomData,
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
            self.pool.submit(Job {
                input: Input::Bytes(task_message(self.func, &chunk)?),
                decode: None,
                group: self.group.clone(),
                index: self.sent,
            })?;
            self.sent += 1;
        }
        Ok(())
    }

    fn unpack(&mut self, piece: Piece) {
        match piece {
            Ok(bytes) => match codec::bulk::decode::<Vec<R>>(payload(&bytes)) {
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
    fn next(&mut self, take: impl Fn(&Group, usize) -> Option<Piece>) -> Option<Result<R>> {
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
            let piece = take(&self.group, self.taken)?;
            self.taken += 1;
            self.unpack(piece);
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
}

impl<I, R> Iterator for IMap<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.feed.next(|group, taken| Some(group.take(taken)))
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
}

impl<I, R> Iterator for IMapUnordered<'_, I, R>
where
    I: Iterator,
    I::Item: Serialize,
    R: DeserializeOwned,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.feed
            .next(|group, taken| group.take_any(taken).map(|(_, piece)| piece))
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
