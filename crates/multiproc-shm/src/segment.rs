//! [`Segment`]: a block of memory shared between processes.
//!
//! A segment is a memfd mapped `MAP_SHARED`. It has no name, so nothing
//! appears in `/dev/shm`, and the kernel frees it when the last process
//! holding its descriptor or a mapping lets go. A `Segment` is a cheap
//! `Clone` handle; passed to a child (as an argument, or later in a message)
//! its descriptor travels through the handoff, and the child maps it anew.
//!
//! # Safety
//!
//! A segment hands out a raw pointer to its memory; it keeps the mapping
//! alive for as long as any clone of the handle exists, and unmaps it once.
//! It never creates references into the memory itself.
#![allow(unsafe_code)]

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use multiproc_process::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys;

/// Memory shared between processes: a memfd mapped shared and read-write.
///
/// It is zero-filled when created, page-aligned, and freed by the kernel
/// when the last process drops it. Cloning the handle shares the mapping;
/// passing it to another process maps the same memory there.
///
/// Python: the memory behind `multiprocessing.heap`.
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

struct Inner {
    fd: OwnedFd,
    ptr: NonNull<u8>,
    /// Bytes usable by the caller.
    len: usize,
    /// Bytes mapped (at least one, so a zero-length segment still maps).
    mapped: usize,
}

// SAFETY: `Inner` owns a descriptor and a shared mapping; the pointer is
// only handed out raw, and every access through it is atomic or in an
// `unsafe` API whose caller takes on the synchronization.
unsafe impl Send for Inner {}
// SAFETY: as for `Send`; `&Inner` gives no unsynchronized access.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `mapped` are the mapping made in `Segment::map`,
        // unmapped only here, when the last handle is gone.
        unsafe { sys::unmap(self.ptr, self.mapped) };
    }
}

impl Segment {
    /// A new zero-filled segment of `len` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the memory.
    pub fn new(len: usize) -> Result<Segment> {
        let fd = sys::memfd(len.max(1))?;
        Segment::map(fd, len)
    }

    /// Maps `len` bytes of an existing memory file.
    pub(crate) fn map(fd: OwnedFd, len: usize) -> Result<Segment> {
        let mapped = len.max(1);
        let size = sys::file_size(fd.as_fd())?;
        if size < mapped {
            return Err(Error::InvalidArgument(format!(
                "shared memory of {size} bytes is smaller than the {mapped} expected"
            )));
        }
        let ptr = sys::map(fd.as_fd(), mapped)?;
        Ok(Segment {
            inner: Arc::new(Inner {
                fd,
                ptr,
                len,
                mapped,
            }),
        })
    }

    /// The segment's length in bytes.
    pub fn len(&self) -> usize {
        self.inner.len
    }

    /// Whether the segment has no bytes.
    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// The start of the memory (page-aligned). Valid for as long as this
    /// handle or a clone of it lives; every access must be synchronized
    /// with the other processes that map it.
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.ptr.as_ptr()
    }

    /// The memory file's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }

    /// Whether two handles share the same mapping.
    pub fn ptr_eq(&self, other: &Segment) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("len", &self.inner.len)
            .field("ptr", &self.inner.ptr)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(with = "multiproc_process::handoff::fd")]
    fd: OwnedFd,
    len: u64,
}

/// A borrowed form of [`Wire`] for encoding without duplicating by hand.
#[derive(Serialize)]
struct WireRef<'a> {
    #[serde(with = "multiproc_process::handoff::fd")]
    fd: BorrowedFd<'a>,
    len: u64,
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        WireRef {
            fd: self.inner.fd.as_fd(),
            len: self.inner.len as u64,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Segment, D::Error> {
        let w = Wire::deserialize(d)?;
        let len = usize::try_from(w.len).map_err(serde::de::Error::custom)?;
        Segment::map(w.fd, len).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_filled_shared_between_handles_and_round_trips() {
        let seg = Segment::new(10_000).unwrap();
        assert_eq!(seg.len(), 10_000);
        assert_eq!(seg.as_ptr() as usize % 4096, 0);
        let other = seg.clone();
        assert!(seg.ptr_eq(&other));
        let (bytes, fds) = multiproc_process::handoff::encode_with_fds(&seg).unwrap();
        let again: Segment = multiproc_process::handoff::decode_with_fds(&bytes, fds).unwrap();
        assert!(!again.ptr_eq(&seg));
        // SAFETY: single-threaded test; three mappings of one memfd.
        unsafe {
            assert_eq!(*seg.as_ptr().add(9_999), 0);
            *seg.as_ptr().add(42) = 7;
            assert_eq!(*again.as_ptr().add(42), 7);
        }
        let empty = Segment::new(0).unwrap();
        assert!(empty.is_empty());
    }
}
