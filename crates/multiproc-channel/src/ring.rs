//! The ring: a byte ring in shared memory that carries whole messages
//! between any number of producer and consumer processes.
//!
//! Layout of the segment: a header of positions and counters (producer and
//! consumer fields on separate cache lines), then `capacity` bytes of data.
//! Positions only grow; a position's byte is at `pos % capacity`.
//!
//! A message is one record, or, when larger than half the ring, a run of
//! records (chunks). A record is a 32-byte header `[kind: u32][len: u32]
//! [msg: u64][total: u64][offset: u64]` and `len` bytes; the kind's second
//! byte carries a message's `meta` (a connection's descriptor count). Producers write
//! while holding the put lock, consumers read while holding the get lock:
//!
//! - A producer writes a record beyond `write_pos`, then publishes it by
//!   storing the new `write_pos` (release). A producer killed half-way never
//!   published: no reader sees half a record, and the next producer (who
//!   takes the lock over) writes from `write_pos` again.
//! - A consumer reads records below `write_pos` and frees them by storing
//!   `read_pos`. A consumer killed before that leaves the message for the
//!   next one.
//! - A chunked message whose producer died, or gave up at its timeout, is
//!   incomplete: its chunks are skipped, found out by a new message id, or
//!   by the put lock being free or held by a dead process while the rest is
//!   awaited. The whole message is lost then, never a part of it delivered.
//!
//! Waiting is a spin, then a futex on `put_seq` (consumers: "something was
//! published") or `get_seq` (producers: "room was freed"); each side counts
//! its sleepers so the other wakes only when someone may sleep.
//!
//! # Safety
//!
//! The header is accessed only through atomics, valid as zero bytes (a new
//! segment). The data is copied without atomics, under this protocol: only
//! the put-lock holder writes, and only bytes in `[write_pos, read_pos +
//! capacity)`; consumers read only bytes in `[read_pos, write_pos)`. The
//! release store of `write_pos` (and of `read_pos`) orders the copies before
//! the other side's acquire load, so the regions never overlap in time.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc_process::{Error, Result};
use multiproc_shm::Segment;
use multiproc_sync::futex::{self, Spin};
use multiproc_sync::{AcquireError, Lock, LockGuard};
use serde::{Deserialize, Serialize};

/// Where the data begins in the segment.
const DATA: usize = 256;
/// Bytes of a record header.
const HDR: u64 = 32;

const WHOLE: u32 = 1;
const CHUNK: u32 = 2;

/// How long a consumer waits for a chunk before it asks whether the
/// producer is still there.
const SLICE: Duration = Duration::from_millis(20);

#[repr(C)]
struct Header {
    // Written by producers.
    write_pos: AtomicU64,
    put_seq: AtomicU32,
    put_waiters: AtomicU32,
    published: AtomicU64,
    msg_ids: AtomicU64,
    _p0: [u64; 4],
    // Written by consumers.
    read_pos: AtomicU64,
    get_seq: AtomicU32,
    get_waiters: AtomicU32,
    consumed: AtomicU64,
    _p1: [u64; 5],
    // Set once at creation, and the joinable queue's count.
    capacity: AtomicU64,
    maxsize: AtomicU64,
    unfinished: AtomicU64,
    join_seq: AtomicU32,
    join_waiters: AtomicU32,
    /// Set by a connection's reader while it sleeps in `poll` on its
    /// socket: a writer then rings it with a byte on the socket.
    doorbell: AtomicU32,
}

const _: () = assert!(size_of::<Header>() <= DATA);

/// A record header.
#[derive(Debug, Clone, Copy)]
struct Rec {
    kind: u32,
    len: u32,
    msg: u64,
    total: u64,
    offset: u64,
}

impl Rec {
    fn to_bytes(self) -> [u8; HDR as usize] {
        let mut b = [0u8; HDR as usize];
        b[0..4].copy_from_slice(&self.kind.to_le_bytes());
        b[4..8].copy_from_slice(&self.len.to_le_bytes());
        b[8..16].copy_from_slice(&self.msg.to_le_bytes());
        b[16..24].copy_from_slice(&self.total.to_le_bytes());
        b[24..32].copy_from_slice(&self.offset.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8; HDR as usize]) -> Rec {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        Rec {
            kind: u32_at(0),
            len: u32_at(4),
            msg: u64_at(8),
            total: u64_at(16),
            offset: u64_at(24),
        }
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
    /// Run after each chunk of a message longer than a record is
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

/// A message ring in shared memory, with its two locks.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Ring {
    seg: Segment,
    put_lock: Lock,
    get_lock: Lock,
    #[serde(skip)]
    spin: std::sync::Arc<Spin>,
}

impl Ring {
    /// A ring of `capacity` bytes; `maxsize` messages at most (0: no limit).
    pub(crate) fn new(capacity: usize, maxsize: usize) -> Result<Ring> {
        if capacity < 4 * HDR as usize {
            return Err(Error::InvalidArgument(format!(
                "a ring of {capacity} bytes is too small"
            )));
        }
        let seg = Segment::new(DATA + capacity)?;
        let ring = Ring {
            seg,
            put_lock: Lock::new()?,
            get_lock: Lock::new()?,
            spin: Default::default(),
        };
        ring.header()
            .capacity
            .store(capacity as u64, Ordering::SeqCst);
        ring.header()
            .maxsize
            .store(maxsize as u64, Ordering::SeqCst);
        Ok(ring)
    }

    fn header(&self) -> &Header {
        // SAFETY: the segment is at least `DATA` bytes, page-aligned, starts
        // zeroed (a valid `Header` of atomics), and lives as long as `self`.
        unsafe { &*self.seg.as_ptr().cast::<Header>() }
    }

    fn cap(&self) -> u64 {
        self.header().capacity.load(Ordering::Relaxed)
    }

    /// The largest record payload: half the ring, so that two records
    /// always fit and producer and consumer can overlap.
    fn max_chunk(&self) -> u64 {
        (self.cap() / 2 - HDR).min(u64::from(u32::MAX))
    }

    /// Copies `bytes` into the ring at position `pos`, wrapping.
    ///
    /// # Safety
    ///
    /// The caller holds the put lock and `[pos, pos + len)` is free space.
    unsafe fn copy_in(&self, pos: u64, bytes: &[u8]) {
        let cap = self.cap();
        let at = (pos % cap) as usize;
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
        let at = (pos % cap) as usize;
        let first = len.min(cap as usize - at);
        // SAFETY: the ring side as in `copy_in`; `dst` by the caller.
        unsafe {
            let base = self.seg.as_ptr().add(DATA);
            std::ptr::copy_nonoverlapping(base.add(at), dst, first);
            std::ptr::copy_nonoverlapping(base, dst.add(first), len - first);
        }
    }

    /// Sleeps on `seq` (announcing itself in `waiters`) until `ready`, or
    /// `deadline`. Returns whether `ready` held.
    fn wait_for(
        &self,
        seq: &AtomicU32,
        waiters: &AtomicU32,
        deadline: Option<Instant>,
        slice: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> bool {
        if self.spin.spin(&mut ready) {
            return true;
        }
        loop {
            let s = seq.load(Ordering::SeqCst);
            waiters.fetch_add(1, Ordering::SeqCst);
            if ready() {
                waiters.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            let Some(timeout) = futex::remaining(deadline, slice) else {
                waiters.fetch_sub(1, Ordering::SeqCst);
                return ready();
            };
            futex::wait(seq, s, Some(timeout));
            waiters.fetch_sub(1, Ordering::SeqCst);
            if ready() {
                return true;
            }
            if deadline.is_none() {
                return false; // a slice passed: let the caller look around
            }
        }
    }

    fn lock<'a>(lock: &'a Lock, deadline: Option<Instant>) -> Option<LockGuard<'a>> {
        let r = match deadline {
            None => lock.acquire(),
            Some(d) => lock.acquire_deadline(d),
        };
        match r {
            Ok(g) => Some(g),
            // A producer or consumer died holding it: the positions are
            // still consistent (see the module docs), carry on.
            Err(AcquireError::OwnerDied(g)) => Some(g),
            Err(_) => None,
        }
    }

    /// Messages published and not yet taken (approximate while others
    /// work). Python: `Queue.qsize()`.
    pub(crate) fn len(&self) -> u64 {
        let h = self.header();
        h.published
            .load(Ordering::SeqCst)
            .saturating_sub(h.consumed.load(Ordering::SeqCst))
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

    /// Puts one message with `opts`.
    pub(crate) fn put_with(
        &self,
        bytes: &[u8],
        opts: &mut PutOpts<'_>,
    ) -> std::result::Result<(), PutFail> {
        let h = self.header();
        let (wait, deadline) = (opts.wait, opts.deadline);
        let _held = Ring::lock(&self.put_lock, deadline).ok_or(PutFail::Timeout)?;
        let max = self.maxsize();
        if max > 0 && self.len() >= max {
            if !wait {
                return Err(PutFail::Full);
            }
            loop {
                if self.wait_for(&h.get_seq, &h.get_waiters, deadline, SLICE, || {
                    self.len() < max
                }) {
                    break;
                }
                if deadline.is_some() {
                    return Err(PutFail::Timeout);
                }
                if (opts.gone)() {
                    return Err(PutFail::Gone);
                }
            }
        }
        (opts.before)().map_err(PutFail::Io)?;
        let msg = h.msg_ids.fetch_add(1, Ordering::Relaxed);
        let total = bytes.len() as u64;
        let max_chunk = self.max_chunk();
        let meta = u32::from(opts.meta) << 8;
        if total <= max_chunk {
            let rec = Rec {
                kind: WHOLE | meta,
                len: total as u32,
                msg,
                total,
                offset: 0,
            };
            self.write_record(rec, bytes, opts)?;
        } else {
            let mut offset = 0u64;
            for chunk in bytes.chunks(max_chunk as usize) {
                let rec = Rec {
                    kind: CHUNK | meta,
                    len: chunk.len() as u32,
                    msg,
                    total,
                    offset,
                };
                self.write_record(rec, chunk, opts)?;
                offset += chunk.len() as u64;
                (opts.chunk_published)();
            }
        }
        h.published.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn write_record(
        &self,
        rec: Rec,
        data: &[u8],
        opts: &PutOpts<'_>,
    ) -> std::result::Result<(), PutFail> {
        let (wait, deadline) = (opts.wait, opts.deadline);
        let h = self.header();
        let need = HDR + data.len() as u64;
        let cap = self.cap();
        let w = h.write_pos.load(Ordering::Relaxed);
        let room = || cap - (w - h.read_pos.load(Ordering::Acquire)) >= need;
        if !room() {
            if !wait {
                return Err(PutFail::Full);
            }
            loop {
                if self.wait_for(&h.get_seq, &h.get_waiters, deadline, SLICE, room) {
                    break;
                }
                if deadline.is_some() {
                    return Err(PutFail::Timeout);
                }
                if (opts.gone)() {
                    return Err(PutFail::Gone);
                }
            }
        }
        // SAFETY: we hold the put lock and `need` bytes from `w` are free.
        unsafe {
            self.copy_in(w, &rec.to_bytes());
            self.copy_in(w + HDR, data);
        }
        h.write_pos.store(w + need, Ordering::Release);
        h.put_seq.fetch_add(1, Ordering::SeqCst);
        if h.put_waiters.load(Ordering::SeqCst) > 0 {
            futex::wake_all(&h.put_seq);
        }
        Ok(())
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
        let h = self.header();
        let Some(_held) = Ring::lock(
            &self.get_lock,
            if wait { deadline } else { Some(Instant::now()) },
        ) else {
            return Err(GetFail::Empty);
        };
        // The chunked message being put together in `out`: its number.
        let mut partial: Option<u64> = None;
        loop {
            let r = h.read_pos.load(Ordering::Relaxed);
            let published = || h.write_pos.load(Ordering::Acquire) > r;
            if !published() {
                if partial.is_some() {
                    // The rest of a message is coming: wait for it past our
                    // deadline, unless its producer is gone or gave up.
                    if !self.wait_for(&h.put_seq, &h.put_waiters, None, SLICE, published)
                        && (!self.put_lock.is_locked() || self.put_lock.holder_died())
                        && !published()
                    {
                        partial = None;
                        out.clear();
                    }
                    continue;
                }
                if !wait {
                    return Err(GetFail::Empty);
                }
                if !self.wait_for(&h.put_seq, &h.put_waiters, deadline, SLICE, published) {
                    if deadline.is_some() {
                        return Err(GetFail::Empty);
                    }
                    continue;
                }
            }
            let w = h.write_pos.load(Ordering::Acquire);
            let mut hb = [0u8; HDR as usize];
            // SAFETY: we hold the get lock and `[r, w)` is published; a
            // record header is published whole with its record.
            unsafe { self.copy_out(r, &mut hb) };
            let rec = Rec::from_bytes(&hb);
            let (kind, meta) = (rec.kind & 0xff, (rec.kind >> 8) as u8);
            let end = r + HDR + u64::from(rec.len);
            if (kind != WHOLE && kind != CHUNK)
                || rec.kind >> 16 != 0
                || end > w
                || rec.offset + u64::from(rec.len) > rec.total
            {
                // Only a stray write into shared memory gets here: skip all
                // that is published and start afresh.
                h.read_pos.store(w, Ordering::Release);
                self.freed();
                out.clear();
                return Err(GetFail::Corrupt(format!("bad record {rec:?} at {r}")));
            }
            if rec.total > max && (kind == WHOLE || rec.offset == 0) {
                h.read_pos.store(end, Ordering::Release);
                self.freed();
                if kind == WHOLE {
                    h.consumed.fetch_add(1, Ordering::SeqCst);
                }
                return Err(GetFail::TooLarge(rec.total));
            }
            let done = rec.offset + u64::from(rec.len) == rec.total;
            let take = match kind {
                WHOLE => {
                    out.clear();
                    true
                }
                _ if rec.offset == 0 => {
                    out.clear();
                    out.reserve(rec.total as usize);
                    partial = Some(rec.msg);
                    true
                }
                // The next piece of the message being put together.
                _ => partial == Some(rec.msg) && out.len() as u64 == rec.offset,
            };
            if take {
                // SAFETY: as above; `[r + HDR, end)` is below `w`.
                unsafe { self.append_out(r + HDR, rec.len as usize, out) };
            }
            h.read_pos.store(end, Ordering::Release);
            self.freed();
            if kind == WHOLE {
                h.consumed.fetch_add(1, Ordering::SeqCst);
                return Ok(meta);
            }
            if !take {
                // The tail of a message whose start we never saw (its
                // consumer died): skip it, and count it gone once whole.
                if done {
                    h.consumed.fetch_add(1, Ordering::SeqCst);
                }
                continue;
            }
            if done && partial.take().is_some() {
                h.consumed.fetch_add(1, Ordering::SeqCst);
                return Ok(meta);
            }
        }
    }

    /// Whether a record is published and not yet taken.
    pub(crate) fn has_data(&self) -> bool {
        let h = self.header();
        h.write_pos.load(Ordering::Acquire) > h.read_pos.load(Ordering::Acquire)
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
            if self.wait_for(
                &h.join_seq,
                &h.join_waiters,
                deadline,
                Duration::from_secs(3600),
                done,
            ) {
                return true;
            }
            if deadline.is_some() {
                return false;
            }
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
}
