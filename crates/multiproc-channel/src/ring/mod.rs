//! The ring: a byte ring in shared memory that carries whole messages
//! between any number of producer and consumer processes.
//!
//! Layout of the segment: a header (producer and consumer fields on
//! separate cache lines), then `capacity` bytes of data, a power of two.
//! Each side is one word (`state`): its position and its count of
//! messages, stored together, so that a process killed between any two of
//! its steps leaves the counts true.
//!
//! A message is one record (`record`), or, when larger than the ring, a
//! run of records (chunks) of at most half the ring each. Producers write
//! while holding the put lock, consumers read while holding the get lock:
//!
//! - A producer writes a record beyond the write position, then publishes
//!   it with one store of its side: the new position and, for the last (or
//!   only) record of a message, the count plus one. A producer killed
//!   before that store never published: no reader sees any of it, and the
//!   next producer (who takes the lock over) writes from the same place.
//! - A consumer copies a whole-message record out, then frees it with one
//!   store: the new read position and the count plus one. A consumer killed
//!   before that store leaves the message, whole, for the next one.
//! - A message larger than the ring streams through: a consumer frees each
//!   chunk as it takes it, so the producer can write the next. Its count
//!   moves with its last chunk, on both sides. If its producer dies (or
//!   gives up at its deadline), the chunks taken are dropped: nothing of it
//!   is ever delivered, and no count moved. If its consumer dies, the next
//!   consumer skips the rest (a tail whose start it never saw): such a
//!   message is lost with its consumer. A consumer whose deadline passes
//!   in the middle of one keeps what it has (and the get lock) for its
//!   process's next get, which goes on from there.
//! - Waiting for room or for a bounded queue's `maxsize` is done without
//!   the put lock, so a producer that waits never holds up one that
//!   would not (`try_put`); only a message larger than the ring keeps the
//!   lock while it waits for the consumer.
//!
//! Waiting is a spin, then a futex on `put_seq` (consumers: "something was
//! published") or `get_seq` (producers: "room was freed"); each side counts
//! its sleepers so the other wakes only when someone may sleep.
//!
//! # Safety
//!
//! The header is accessed only through atomics, valid as zero bytes (a new
//! segment). The data is copied without atomics, under this protocol: only
//! the put-lock holder writes, and only bytes in `[write, read + capacity)`;
//! consumers read only bytes in `[read, write)`. The release store of a
//! side's word orders the copies before the other side's acquire load, so
//! the regions never overlap in time.
#![allow(unsafe_code)]

mod record;
mod state;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use multiproc_process::{Error, Result};
use multiproc_shm::Segment;
use multiproc_sync::futex::{self, Spin};
use multiproc_sync::{AcquireError, Lock};
use serde::{Deserialize, Serialize};

use record::{CHUNK, HDR, Rec, WHOLE};
pub(crate) use state::MAX_CAPACITY;
use state::{SideWord, bytes_between, messages_between};

/// Where the data begins in the segment.
const DATA: usize = 256;

/// How long a waiter sleeps before it looks around (is the other side
/// still there?).
const SLICE: Duration = Duration::from_millis(20);

/// How long a non-waiting put or get waits for the lock that another
/// producer or consumer holds while it copies.
const TRY_LOCK: Duration = Duration::from_millis(10);

#[repr(C)]
struct Header {
    // Written by producers.
    put: SideWord,
    put_seq: AtomicU32,
    put_waiters: AtomicU32,
    msg_ids: AtomicU64,
    _p0: [u64; 5],
    // Written by consumers.
    get: SideWord,
    get_seq: AtomicU32,
    get_waiters: AtomicU32,
    _p1: [u64; 6],
    // Set once at creation, and the joinable queue's count.
    capacity: AtomicU64,
    maxsize: AtomicU64,
    unfinished: AtomicU64,
    join_seq: AtomicU32,
    join_waiters: AtomicU32,
    /// Set by a connection's reader while it sleeps in `poll` on its
    /// socket: a writer then rings it with a byte on the socket.
    doorbell: AtomicU32,
    /// Async waiters of either side (a queue's): while there are some,
    /// producers and consumers ring the bell.
    async_waiters: AtomicU32,
    /// A connection's async senders waiting for room: a reader that took
    /// a message then rings them on its socket.
    room_waiters: AtomicU32,
}

const _: () = assert!(size_of::<Header>() <= DATA);

/// An async sender counted as waiting for room in a ring, while it lives.
pub(crate) struct RoomWanted<'a>(&'a Ring);

impl Drop for RoomWanted<'_> {
    fn drop(&mut self) {
        self.0.header().room_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a put did not deliver.
#[derive(Debug)]
pub(crate) enum PutFail {
    /// At `maxsize`, or no room, and the caller would not wait.
    Full,
    /// The deadline passed.
    Timeout,
    /// The reader is gone (the caller's `gone` said so while waiting).
    Gone,
    /// The caller's `before` step failed.
    Io(std::io::Error),
}

/// Why a get returned no message.
#[derive(Debug)]
pub(crate) enum GetFail {
    /// Nothing arrived by the deadline (or at once, for a non-waiting get).
    Empty,
    /// A non-waiting get found another consumer holding the get lock.
    Busy,
    /// The ring's contents make no sense (only possible if something else
    /// wrote into the shared memory); the ring was resynchronized.
    Corrupt(String),
    /// The next message is longer than the caller's limit; its first
    /// record was consumed and nothing allocated.
    TooLarge(u64),
}

/// What a put needs besides the bytes.
pub(crate) struct PutOpts<'a> {
    /// A byte the reader gets back with the message.
    pub(crate) meta: u8,
    /// Whether to wait for room (or for `maxsize`).
    pub(crate) wait: bool,
    pub(crate) deadline: Option<Instant>,
    /// Asked while waiting for room: whether the reader is gone for good.
    pub(crate) gone: &'a dyn Fn() -> bool,
    /// Run with the put lock held, before anything is published: a
    /// connection sends the message's descriptors here, so descriptors and
    /// messages keep one order.
    pub(crate) before: &'a mut dyn FnMut() -> std::io::Result<()>,
    /// Run after each chunk of a message larger than the ring is
    /// published: a connection rings its reader's doorbell here, since a
    /// reader asleep until the whole message is in would never let the
    /// producer finish it.
    pub(crate) chunk_published: &'a dyn Fn(),
}

impl PutOpts<'_> {
    /// Options for a plain queue put.
    pub(crate) fn queue(
        wait: bool,
        deadline: Option<Instant>,
        f: impl FnOnce(&mut PutOpts<'_>) -> std::result::Result<(), PutFail>,
    ) -> std::result::Result<(), PutFail> {
        let mut nothing = || Ok(());
        let mut opts = PutOpts {
            meta: 0,
            wait,
            deadline,
            gone: &|| false,
            before: &mut nothing,
            chunk_published: &|| {},
        };
        f(&mut opts)
    }
}

/// A message larger than the ring, partly taken when its consumer's
/// deadline passed: kept, with the get lock, for this process's next get.
#[derive(Debug)]
struct Partial {
    /// The process that took it (a forked child's copy is not its own).
    pid: u32,
    msg: u64,
    bytes: Vec<u8>,
}

/// What the handles of one ring in one process share.
#[derive(Debug, Default)]
struct Local {
    spin: Spin,
    /// Where a partial message waits, with the get lock this process keeps
    /// for it.
    partial: parking_lot::Mutex<Option<Partial>>,
    /// Whether `partial` holds one: the getters' fast path reads only this.
    has_partial: std::sync::atomic::AtomicBool,
}

/// A message ring in shared memory, with its two locks.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Ring {
    seg: Segment,
    put_lock: Lock,
    get_lock: Lock,
    /// A queue's bell, for async waiters (a connection has its socket).
    bell: Option<multiproc_process::bell::Bell>,
    #[serde(skip)]
    local: std::sync::Arc<Local>,
}

/// The get lock, held for the length of one get (acquired or resumed), and
/// released when dropped unless kept for a partial message.
struct GetHeld<'a> {
    lock: &'a Lock,
    keep: bool,
}

impl Drop for GetHeld<'_> {
    fn drop(&mut self) {
        if !self.keep {
            // Held by this process since the get began (acquired, or kept
            // from the last get), so there is a lock to release.
            let _ = self.lock.release();
        }
    }
}

impl Ring {
    /// A ring of `capacity` bytes (rounded up to a power of two);
    /// `maxsize` messages at most (0: no limit).
    pub(crate) fn new(capacity: usize, maxsize: usize) -> Result<Ring> {
        let cap = (capacity as u64).max(4 * HDR).next_power_of_two();
        if capacity < 4 * HDR as usize || cap > MAX_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "a ring of {capacity} bytes: it must hold between {} bytes and {MAX_CAPACITY}",
                4 * HDR
            )));
        }
        let seg = Segment::new(DATA + cap as usize)?;
        let ring = Ring {
            seg,
            put_lock: Lock::without_bell()?,
            get_lock: Lock::without_bell()?,
            bell: None,
            local: Default::default(),
        };
        ring.header().capacity.store(cap, Ordering::SeqCst);
        ring.header()
            .maxsize
            .store(maxsize as u64, Ordering::SeqCst);
        Ok(ring)
    }

    /// The ring with a bell, for a queue's async waiters.
    pub(crate) fn with_bell(mut self) -> Result<Ring> {
        self.bell = Some(multiproc_process::bell::Bell::new()?);
        Ok(self)
    }

    /// Rings the bell if an async waiter waits.
    fn ring_bell(&self) {
        if let Some(bell) = &self.bell {
            bell.ring_if_awaited(&self.header().async_waiters);
        }
    }

    /// Waits, without a thread, until `ready()` may hold: the bell rang,
    /// or `slice` passed. The caller looks again either way. Only a
    /// queue's ring has a bell (a connection waits on its socket); one
    /// without returns at once. With `spin`, a short adaptive spin first.
    pub(crate) async fn wait_async(&self, ready: impl Fn() -> bool, slice: Duration, spin: bool) {
        let Some(bell) = &self.bell else {
            return;
        };
        // As the blocking wait: a short adaptive spin first (a reply is
        // often that close behind), which costs the executor's thread a
        // few microseconds and saves two thread hops.
        if spin && self.local.spin.spin(&ready) {
            return;
        }
        bell.wait(&self.header().async_waiters, ready, slice).await;
    }

    fn header(&self) -> &Header {
        // SAFETY: the segment is at least `DATA` bytes, page-aligned, starts
        // zeroed (a valid `Header` of atomics), and lives as long as `self`.
        unsafe { &*self.seg.as_ptr().cast::<Header>() }
    }

    fn cap(&self) -> u64 {
        self.header().capacity.load(Ordering::Relaxed)
    }

    /// The largest chunk of a message larger than the ring: half the ring,
    /// so that two chunks always fit and producer and consumer overlap.
    fn max_chunk(&self) -> u64 {
        (self.cap() / 2 - HDR).min(u64::from(u32::MAX))
    }

    /// Bytes published and not yet freed.
    fn used(&self) -> u64 {
        let h = self.header();
        let r = h.get.load(Ordering::Acquire).pos;
        bytes_between(r, h.put.load(Ordering::Acquire).pos)
    }

    /// Copies `bytes` into the ring at position `pos`, wrapping.
    ///
    /// # Safety
    ///
    /// The caller holds the put lock and `[pos, pos + len)` is free space.
    unsafe fn copy_in(&self, pos: u64, bytes: &[u8]) {
        let cap = self.cap();
        let at = (pos & (cap - 1)) as usize;
        let first = bytes.len().min(cap as usize - at);
        // SAFETY: both ranges are inside the data area; see the caller's
        // promise and the module's Safety section.
        unsafe {
            let base = self.seg.as_ptr().add(DATA);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(at), first);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), base, bytes.len() - first);
        }
    }

    /// Copies `out.len()` bytes out of the ring at position `pos`, wrapping.
    ///
    /// # Safety
    ///
    /// The caller holds the get lock and `[pos, pos + len)` is published.
    unsafe fn copy_out(&self, pos: u64, out: &mut [u8]) {
        // SAFETY: the caller's promise; `out` has room for its length.
        unsafe { self.copy_out_raw(pos, out.as_mut_ptr(), out.len()) }
    }

    /// Appends `len` bytes from the ring at position `pos` to `out`,
    /// wrapping, without zeroing them first.
    ///
    /// # Safety
    ///
    /// As for [`copy_out`](Self::copy_out).
    unsafe fn append_out(&self, pos: u64, len: usize, out: &mut Vec<u8>) {
        out.reserve(len);
        let old = out.len();
        // SAFETY: the ring side is the caller's promise. `out` has room for
        // `len` more bytes (reserved above), which the copy fills exactly,
        // so its first `old + len` bytes are initialized for `set_len`.
        unsafe {
            self.copy_out_raw(pos, out.as_mut_ptr().add(old), len);
            out.set_len(old + len);
        }
    }

    /// Copies `len` bytes out of the ring at position `pos` to `dst`,
    /// wrapping.
    ///
    /// # Safety
    ///
    /// As for [`copy_out`](Self::copy_out), and `dst` is valid for writes
    /// of `len` bytes outside the ring.
    unsafe fn copy_out_raw(&self, pos: u64, dst: *mut u8, len: usize) {
        let cap = self.cap();
        let at = (pos & (cap - 1)) as usize;
        let first = len.min(cap as usize - at);
        // SAFETY: the ring side as in `copy_in`; `dst` by the caller.
        unsafe {
            let base = self.seg.as_ptr().add(DATA);
            std::ptr::copy_nonoverlapping(base.add(at), dst, first);
            std::ptr::copy_nonoverlapping(base, dst.add(first), len - first);
        }
    }

    /// Sleeps on `seq` (announcing itself in `waiters`) until `ready`, or
    /// `deadline`. Returns whether `ready` held. With no deadline, returns
    /// `false` after a slice, so that the caller can look around.
    fn wait_for(
        &self,
        seq: &AtomicU32,
        waiters: &AtomicU32,
        deadline: Option<Instant>,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if self.local.spin.spin(&mut ready) {
            return true;
        }
        loop {
            let s = seq.load(Ordering::SeqCst);
            waiters.fetch_add(1, Ordering::SeqCst);
            if ready() {
                waiters.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            let Some(timeout) = futex::remaining(deadline, SLICE) else {
                waiters.fetch_sub(1, Ordering::SeqCst);
                return ready();
            };
            futex::wait(seq, s, Some(timeout));
            waiters.fetch_sub(1, Ordering::SeqCst);
            if ready() {
                return true;
            }
            if deadline.is_none() {
                return false;
            }
        }
    }

    /// Acquires `lock` until `deadline` (a passed one: only if it is free or
    /// its holder died). A holder that died left the sides consistent (see
    /// the module docs): carry on.
    fn acquire(lock: &Lock, deadline: Option<Instant>) -> bool {
        let r = match deadline {
            None => lock.acquire(),
            Some(d) => lock.acquire_deadline(d),
        };
        match r {
            Ok(g) | Err(AcquireError::OwnerDied(g)) => {
                std::mem::forget(g);
                true
            }
            Err(_) => false,
        }
    }

    /// Messages published and not yet taken: exact when nobody puts or
    /// gets; while they do, read from two words, it may count one too many
    /// (the producer's admission check errs that way, which is safe).
    /// Python: `Queue.qsize()`.
    pub(crate) fn len(&self) -> u64 {
        let h = self.header();
        let taken = h.get.load(Ordering::SeqCst);
        messages_between(taken, h.put.load(Ordering::SeqCst))
    }

    pub(crate) fn maxsize(&self) -> u64 {
        self.header().maxsize.load(Ordering::Relaxed)
    }

    /// Puts one message. With `wait == false`, fails at once when the ring
    /// is at its `maxsize` or has no room; otherwise waits until `deadline`.
    pub(crate) fn put(
        &self,
        bytes: &[u8],
        wait: bool,
        deadline: Option<Instant>,
    ) -> std::result::Result<(), PutFail> {
        PutOpts::queue(wait, deadline, |opts| self.put_with(bytes, opts))
    }

    /// Waits (without the put lock) until `ready`, for a put with `opts`:
    /// `Full` at once for a put that does not wait.
    fn wait_room(
        &self,
        opts: &PutOpts<'_>,
        ready: impl Fn() -> bool,
    ) -> std::result::Result<(), PutFail> {
        let h = self.header();
        while !ready() {
            if !opts.wait {
                return Err(PutFail::Full);
            }
            if self.wait_for(&h.get_seq, &h.get_waiters, opts.deadline, &ready) {
                break;
            }
            if opts.deadline.is_some() {
                return Err(PutFail::Timeout);
            }
            if (opts.gone)() {
                return Err(PutFail::Gone);
            }
        }
        Ok(())
    }

    /// Puts one message with `opts`.
    pub(crate) fn put_with(
        &self,
        bytes: &[u8],
        opts: &mut PutOpts<'_>,
    ) -> std::result::Result<(), PutFail> {
        let max = self.maxsize();
        let total = bytes.len() as u64;
        let whole = HDR + total <= self.cap();
        let cap = self.cap();
        let admitted = || max == 0 || self.len() < max;
        // A whole message waits for room for all of it; one larger than the
        // ring for its first chunk.
        let need = if whole {
            HDR + total
        } else {
            HDR + self.max_chunk()
        };
        let room = || cap - self.used() >= need;
        loop {
            let lock_deadline = if opts.wait {
                opts.deadline
            } else {
                Some(Instant::now() + TRY_LOCK)
            };
            if !Ring::acquire(&self.put_lock, lock_deadline) {
                return Err(if opts.wait {
                    PutFail::Timeout
                } else {
                    PutFail::Full
                });
            }
            if admitted() && room() {
                let done = self.put_locked(bytes, whole, opts);
                let _ = self.put_lock.release();
                return done;
            }
            // Full: wait without the lock, then try again.
            let _ = self.put_lock.release();
            self.wait_room(opts, || admitted() && room())?;
        }
    }

    /// The rest of a put, with the put lock held and room for a whole
    /// message (or the first chunk of a larger one).
    fn put_locked(
        &self,
        bytes: &[u8],
        whole: bool,
        opts: &mut PutOpts<'_>,
    ) -> std::result::Result<(), PutFail> {
        let h = self.header();
        (opts.before)().map_err(PutFail::Io)?;
        let msg = h.msg_ids.fetch_add(1, Ordering::Relaxed);
        let total = bytes.len() as u64;
        let meta = u32::from(opts.meta) << 8;
        if whole {
            let rec = Rec {
                kind: WHOLE | meta,
                len: total as u32,
                msg,
                total,
                offset: 0,
            };
            self.publish(rec, bytes, 1);
            return Ok(());
        }
        let mut offset = 0u64;
        let chunks = bytes.chunks(self.max_chunk() as usize);
        let last = chunks.len().saturating_sub(1);
        // Once its first chunk is in, a message cannot be taken back: a put
        // that would not wait waits for the rest all the same (as long as
        // the reader is there), rather than leave half a message.
        opts.wait = true;
        for (i, chunk) in chunks.enumerate() {
            let need = HDR + chunk.len() as u64;
            let cap = self.cap();
            // The lock is kept: the consumer frees the chunks before.
            self.wait_room(opts, || cap - self.used() >= need)?;
            let rec = Rec {
                kind: CHUNK | meta,
                len: chunk.len() as u32,
                msg,
                total,
                offset,
            };
            self.publish(rec, chunk, u64::from(i == last));
            offset += chunk.len() as u64;
            (opts.chunk_published)();
        }
        Ok(())
    }

    /// Writes a record and publishes it, with `messages` (1 for the last
    /// record of a message) added to the count in the same store.
    fn publish(&self, rec: Rec, data: &[u8], messages: u64) {
        let h = self.header();
        let w = h.put.load(Ordering::Relaxed);
        // SAFETY: we hold the put lock and the caller saw room for the
        // record (only the put-lock holder shrinks the room).
        unsafe {
            self.copy_in(w.pos, &rec.to_bytes());
            self.copy_in(w.pos.wrapping_add(HDR), data);
        }
        h.put.store(
            w.advanced(HDR + data.len() as u64, messages),
            Ordering::Release,
        );
        h.put_seq.fetch_add(1, Ordering::SeqCst);
        if h.put_waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&h.put_seq);
        }
        self.ring_bell();
    }

    /// Takes one message. With `wait == false`, fails at once when none is
    /// published; otherwise waits until `deadline`.
    pub(crate) fn get(
        &self,
        wait: bool,
        deadline: Option<Instant>,
    ) -> std::result::Result<Vec<u8>, GetFail> {
        self.get_with(wait, deadline, u64::MAX)
            .map(|(bytes, _)| bytes)
    }

    /// Takes one message and its `meta`, refusing one longer than `max`.
    pub(crate) fn get_with(
        &self,
        wait: bool,
        deadline: Option<Instant>,
        max: u64,
    ) -> std::result::Result<(Vec<u8>, u8), GetFail> {
        let mut out = Vec::new();
        let meta = self.get_into(wait, deadline, max, &mut out)?;
        Ok((out, meta))
    }

    /// Waits until the get lock is free (or `deadline`), for a consumer
    /// whose non-waiting get found it `Busy`.
    pub(crate) fn wait_get_lock(&self, deadline: Option<Instant>) {
        let until = Instant::now() + SLICE;
        let until = deadline.map_or(until, |d| d.min(until));
        if Ring::acquire(&self.get_lock, Some(until)) {
            let _ = self.get_lock.release();
        }
    }

    /// As [`get_with`](Self::get_with), the message replacing the contents
    /// of `out`, whose allocation is reused (no fresh pages for a reader
    /// that takes one large message after another).
    pub(crate) fn get_into(
        &self,
        wait: bool,
        deadline: Option<Instant>,
        max: u64,
        out: &mut Vec<u8>,
    ) -> std::result::Result<u8, GetFail> {
        out.clear();
        // The chunked message being put together in `out`: its number.
        let mut partial: Option<u64> = None;
        // Either the lock this process kept for a partial message (any of
        // its threads resumes it), or the lock, acquired in slices so that
        // a partial kept meanwhile by another thread is seen.
        loop {
            if self.local.has_partial.load(Ordering::Acquire)
                && let Some(p) = self.local.partial.lock().take()
            {
                self.local.has_partial.store(false, Ordering::Release);
                // A forked child's copy of its parent's partial message is
                // not its own: the parent holds the lock, not us.
                if p.pid == std::process::id() {
                    *out = p.bytes;
                    partial = Some(p.msg);
                    break;
                }
            }
            let now = Instant::now();
            let until = match (wait, deadline) {
                (false, _) => Some(now),
                (true, None) => Some(now + SLICE),
                (true, Some(d)) => Some(d.min(now + SLICE)),
            };
            if Ring::acquire(&self.get_lock, until) {
                break;
            }
            if !wait {
                return Err(GetFail::Busy);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(GetFail::Empty);
            }
        }
        // Held from here: released when this get ends, or kept.
        let mut held = GetHeld {
            lock: &self.get_lock,
            keep: false,
        };
        let result = self.take_locked(wait, deadline, max, out, &mut partial);
        if let (Err(GetFail::Empty), Some(msg)) = (&result, partial) {
            // Our deadline passed in the middle of a message larger than
            // the ring: keep it, and the lock, for the next get.
            *self.local.partial.lock() = Some(Partial {
                pid: std::process::id(),
                msg,
                bytes: std::mem::take(out),
            });
            self.local.has_partial.store(true, Ordering::Release);
            held.keep = true;
        }
        result
    }

    /// The rest of a get, with the get lock held; `partial` is the message
    /// larger than the ring being put together in `out`, if any (on
    /// `Empty`, the one to keep for later).
    fn take_locked(
        &self,
        wait: bool,
        deadline: Option<Instant>,
        max: u64,
        out: &mut Vec<u8>,
        partial: &mut Option<u64>,
    ) -> std::result::Result<u8, GetFail> {
        let h = self.header();
        loop {
            let r = h.get.load(Ordering::Relaxed);
            let published = || h.put.load(Ordering::Acquire).pos != r.pos;
            if !published() {
                if partial.is_some() {
                    // The rest of a message is coming, unless its producer
                    // is gone or gave up: then what came is dropped.
                    let abandoned = || {
                        (!self.put_lock.is_locked() || self.put_lock.holder_died()) && !published()
                    };
                    if !wait {
                        if abandoned() {
                            *partial = None;
                            out.clear();
                        }
                        return Err(GetFail::Empty);
                    }
                    // In slices, to look at the producer between them.
                    let slice = Instant::now() + SLICE;
                    let until = deadline.map_or(slice, |d| d.min(slice));
                    if self.wait_for(&h.put_seq, &h.put_waiters, Some(until), published) {
                        continue;
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        // Kept for the next get (see `get_into`).
                        return Err(GetFail::Empty);
                    }
                    if abandoned() {
                        *partial = None;
                        out.clear();
                    }
                    continue;
                }
                if !wait {
                    return Err(GetFail::Empty);
                }
                if !self.wait_for(&h.put_seq, &h.put_waiters, deadline, published) {
                    if deadline.is_some() {
                        return Err(GetFail::Empty);
                    }
                    continue;
                }
            }
            let w = h.put.load(Ordering::Acquire);
            let mut hb = [0u8; HDR as usize];
            // SAFETY: we hold the get lock and `[r, w)` is published; a
            // record header is published whole with its record.
            unsafe { self.copy_out(r.pos, &mut hb) };
            let rec = Rec::from_bytes(&hb);
            let (kind, meta) = (rec.kind & 0xff, (rec.kind >> 8) as u8);
            let size = HDR + u64::from(rec.len);
            if (kind != WHOLE && kind != CHUNK)
                || rec.kind >> 16 != 0
                || size > bytes_between(r.pos, w.pos)
                || rec.offset + u64::from(rec.len) > rec.total
            {
                // Only a stray write into shared memory gets here: skip all
                // that is published (counted as taken) and start afresh.
                h.get.store(w, Ordering::Release);
                self.freed();
                out.clear();
                *partial = None;
                return Err(GetFail::Corrupt(format!("bad record {rec:?} at {}", r.pos)));
            }
            let done = rec.offset + u64::from(rec.len) == rec.total;
            let ends_message = u64::from(kind == WHOLE || done);
            if rec.total > max && (kind == WHOLE || rec.offset == 0) {
                h.get
                    .store(r.advanced(size, ends_message), Ordering::Release);
                self.freed();
                return Err(GetFail::TooLarge(rec.total));
            }
            let take = match kind {
                WHOLE => {
                    out.clear();
                    true
                }
                _ if rec.offset == 0 => {
                    out.clear();
                    out.reserve(rec.total as usize);
                    *partial = Some(rec.msg);
                    true
                }
                // The next piece of the message being put together.
                _ => *partial == Some(rec.msg) && out.len() as u64 == rec.offset,
            };
            if take {
                // SAFETY: as above; the record is below `w`.
                unsafe {
                    self.append_out(r.pos.wrapping_add(HDR), rec.len as usize, out);
                }
            }
            // One store frees the record and, at a message's end, counts it.
            h.get
                .store(r.advanced(size, ends_message), Ordering::Release);
            self.freed();
            if kind == WHOLE {
                return Ok(meta);
            }
            if take && done {
                *partial = None;
                return Ok(meta);
            }
            // Otherwise the tail of a message whose start we never saw (its
            // consumer died) is skipped, or a chunk is in and more come.
        }
    }

    /// Whether a record is published and not yet taken.
    pub(crate) fn has_data(&self) -> bool {
        let h = self.header();
        h.put.load(Ordering::Acquire).pos != h.get.load(Ordering::Acquire).pos
    }

    /// Whether a connection's async sender waits for room (see
    /// [`RoomWanted`]). Called after a take freed room: the fence orders
    /// that against the sender's count, as the sender's fence orders its
    /// count against its next look at the room.
    pub(crate) fn room_awaited(&self) -> bool {
        fence(Ordering::SeqCst);
        self.header().room_waiters.load(Ordering::Relaxed) != 0
    }

    /// Counts an async sender waiting for room until dropped.
    pub(crate) fn want_room(&self) -> RoomWanted<'_> {
        self.header().room_waiters.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        RoomWanted(self)
    }

    /// The reader's "ring me on the socket" flag.
    pub(crate) fn doorbell(&self) -> &AtomicU32 {
        &self.header().doorbell
    }

    /// Tells producers that room was freed.
    fn freed(&self) {
        let h = self.header();
        h.get_seq.fetch_add(1, Ordering::SeqCst);
        if h.get_waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&h.get_seq);
        }
        self.ring_bell();
    }

    /// The joinable queue's count of unfinished messages.
    pub(crate) fn unfinished(&self) -> &AtomicU64 {
        &self.header().unfinished
    }

    /// Marks one message done; wakes `join`ers at zero. Returns `false` if
    /// none was unfinished.
    pub(crate) fn task_done(&self) -> bool {
        let h = self.header();
        let mut v = h.unfinished.load(Ordering::SeqCst);
        loop {
            if v == 0 {
                return false;
            }
            match h
                .unfinished
                .compare_exchange(v, v - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        if v == 1 {
            h.join_seq.fetch_add(1, Ordering::SeqCst);
            if h.join_waiters.load(Ordering::SeqCst) > 0 {
                futex::wake_all(&h.join_seq);
            }
        }
        true
    }

    /// Waits until no message is unfinished, or `deadline`.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> bool {
        let h = self.header();
        loop {
            let done = || h.unfinished.load(Ordering::SeqCst) == 0;
            if self.wait_for(&h.join_seq, &h.join_waiters, deadline, done) {
                return true;
            }
            if deadline.is_some() {
                return false;
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The last handle of this process: a partial message it keeps dies
        // with it, and the get lock it keeps for that message is released.
        if std::sync::Arc::strong_count(&self.local) == 1
            && let Some(p) = self.local.partial.lock().take()
            && p.pid == std::process::id()
        {
            let _ = self.get_lock.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scribbled_record_is_reported_and_the_ring_recovers() {
        let ring = Ring::new(4096, 0).unwrap();
        ring.put(b"first", true, None).unwrap();
        // SAFETY: single-threaded test; overwrite the record's kind with
        // nonsense, as a stray write into the shared memory would.
        unsafe { ring.seg.as_ptr().add(DATA).write(99) };
        assert!(matches!(ring.get(false, None), Err(GetFail::Corrupt(_))));
        assert_eq!(ring.len(), 0);
        ring.put(b"second", true, None).unwrap();
        assert_eq!(ring.get(false, None).unwrap(), b"second");
    }

    #[test]
    fn an_oversized_message_is_refused_before_allocation() {
        let ring = Ring::new(4096, 0).unwrap();
        ring.put(&[1; 100], true, None).unwrap();
        ring.put(&[2; 10], true, None).unwrap();
        assert!(matches!(
            ring.get_with(false, None, 50),
            Err(GetFail::TooLarge(100))
        ));
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.get_with(false, None, 50).unwrap(), (vec![2; 10], 0));
        assert!(matches!(ring.get(false, None), Err(GetFail::Empty)));
    }

    #[test]
    fn records_wrap_around_the_end_of_the_ring() {
        let ring = Ring::new(256, 0).unwrap();
        for i in 0..100u8 {
            let msg = vec![i; usize::from(i % 90) + 1];
            ring.put(&msg, false, None).unwrap();
            assert_eq!(ring.get(false, None).unwrap(), msg);
        }
        assert_eq!(ring.len(), 0);
    }

    #[test]
    fn sizes_round_up_to_a_power_of_two_within_bounds() {
        assert_eq!(Ring::new(1000, 0).unwrap().cap(), 1024);
        assert!(Ring::new(64, 0).is_err());
        assert!(Ring::new(MAX_CAPACITY as usize + 1, 0).is_err());
    }

    #[test]
    fn a_message_larger_than_the_ring_is_kept_across_a_deadline() {
        let ring = Ring::new(256, 0).unwrap();
        let big: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let producer = {
            let ring = ring.clone();
            let big = big.clone();
            std::thread::spawn(move || {
                // The first chunks, then a pause longer than the reader's
                // deadline, then the rest.
                ring.put(&big, true, None).unwrap();
            })
        };
        let mut got = None;
        for _ in 0..2000 {
            match ring.get(true, Some(Instant::now() + Duration::from_millis(1))) {
                Ok(bytes) => {
                    got = Some(bytes);
                    break;
                }
                Err(GetFail::Empty) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        producer.join().unwrap();
        assert_eq!(got.unwrap(), big);
        assert_eq!(ring.len(), 0);
        assert!(!ring.get_lock.is_locked());
    }
}
