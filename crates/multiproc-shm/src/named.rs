//! [`SharedMemory`]: named shared memory, for programs that find each other
//! by name (Python's `multiprocessing.shared_memory`).
//!
//! The memory lives in `/dev/shm` under its name, mode 0600, until it is
//! unlinked. The process that created it unlinks it when it exits normally,
//! unless told to keep it; other processes only open and close it, unless
//! they take it on ([`SharedMemory::track`]). A creator that dies by a
//! signal cannot unlink anything: the program's resource tracker (its fork
//! server) does it for it, within moments, and at the latest when the
//! program ends.
//!
//! # Safety
//!
//! The byte-slice views are `unsafe fn`s (another process may write the
//! memory at any time); the copying accessors use byte-wise atomics.
#![allow(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use multiproc_process::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::segment::Segment;
use crate::sys;

/// Names this process created and must unlink at exit: (creator pid, name).
static CREATED: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

fn created() -> std::sync::MutexGuard<'static, Vec<(u32, String)>> {
    CREATED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Unlinks, at exit, what this process created and did not keep.
fn unlink_created() {
    let me = std::process::id();
    let mut list = created();
    list.retain(|(pid, name)| {
        if *pid == me {
            let _ = sys::shm_unlink(&posix_name(name));
            false
        } else {
            true
        }
    });
}

/// Registers [`unlink_created`] to run at exit, once.
fn unlink_at_exit() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| multiproc_process::at_exit(unlink_created));
}

fn posix_name(name: &str) -> String {
    format!("/{name}")
}

/// A block of named shared memory.
///
/// Python: `multiprocessing.shared_memory.SharedMemory`. Create it with a
/// name (or a generated one, `psm_...` as in Python) and a size; open it by
/// name in another program; unlink it when no new process needs to open it.
///
/// # Examples
///
/// ```
/// use multiproc as mp;
///
/// # fn main() -> mp::Result<()> {
/// let shm = mp::SharedMemory::create(None, 16)?;
/// shm.write_at(0, b"hello")?;
/// let other = mp::SharedMemory::open(shm.name())?;
/// let mut buf = [0u8; 5];
/// other.read_at(0, &mut buf)?;
/// assert_eq!(&buf, b"hello");
/// shm.unlink()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedMemory {
    name: String,
    seg: Segment,
}

impl SharedMemory {
    /// Creates named shared memory of `size` zero bytes. With `name: None`
    /// a unique name is made up. This process unlinks it when it exits
    /// normally, unless [`keep`](SharedMemory::keep) is called.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a size of zero or an invalid name,
    /// [`Error::AlreadyExists`] if the name is taken, [`Error::Io`] otherwise.
    pub fn create(name: Option<&str>, size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::InvalidArgument(
                "'size' must be a positive number different from zero".into(),
            ));
        }
        unlink_at_exit();
        let (name, fd) = match name {
            Some(n) => {
                check_name(n)?;
                let fd = sys::shm_create(&posix_name(n), size).map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => Error::AlreadyExists(n.to_owned()),
                    _ => Error::Io(e),
                })?;
                (n.to_owned(), fd)
            }
            None => loop {
                let n = random_name();
                match sys::shm_create(&posix_name(&n), size) {
                    Ok(fd) => break (n, fd),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(Error::Io(e)),
                }
            },
        };
        created().push((std::process::id(), name.clone()));
        match Segment::map(fd, size) {
            Ok(seg) => {
                multiproc_process::track_shm(&name, seg.fd());
                Ok(SharedMemory { name, seg })
            }
            Err(e) => {
                let _ = sys::shm_unlink(&posix_name(&name));
                created().retain(|(_, n)| *n != name);
                Err(e)
            }
        }
    }

    /// Opens existing named shared memory.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none by that name,
    /// [`Error::InvalidArgument`] for an invalid name, [`Error::Io`] otherwise.
    pub fn open(name: &str) -> Result<SharedMemory> {
        check_name(name)?;
        let fd = sys::shm_open(&posix_name(name)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(name.to_owned()),
            _ => Error::Io(e),
        })?;
        let size = sys::file_size(std::os::fd::AsFd::as_fd(&fd))?;
        let seg = Segment::map(fd, size)?;
        Ok(SharedMemory {
            name: name.to_owned(),
            seg,
        })
    }

    /// The name, without the leading slash (as Python gives it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The size in bytes.
    pub fn size(&self) -> usize {
        self.seg.len()
    }

    /// Removes the name, so no process can open it any more; the memory
    /// lives on until every process has closed it. Python:
    /// `SharedMemory.unlink()`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if the name was already unlinked.
    pub fn unlink(&self) -> Result<()> {
        sys::shm_unlink(&posix_name(&self.name)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(self.name.clone()),
            _ => Error::Io(e),
        })?;
        self.keep();
        Ok(())
    }

    /// Keeps the name after this process ends, however it ends (it is
    /// unlinked then otherwise, if this process created it or took it on).
    /// Python 3.13: `track=False`.
    pub fn keep(&self) {
        created().retain(|(_, n)| *n != self.name);
        multiproc_process::untrack_shm(&self.name);
    }

    /// Takes on the name, as its creator has it: this process unlinks it
    /// when it exits normally, and the resource tracker when it dies by a
    /// signal, unless [`keep`](Self::keep) is called. For a handle from
    /// [`open`](Self::open). Python 3.13: `SharedMemory(name, track=True)`.
    pub fn track(&self) {
        unlink_at_exit();
        let me = std::process::id();
        let mut list = created();
        if !list.iter().any(|(pid, n)| *pid == me && *n == self.name) {
            list.push((me, self.name.clone()));
        }
        drop(list);
        multiproc_process::track_shm(&self.name, self.seg.fd());
    }

    /// Unmaps this handle's view. Python: `SharedMemory.close()`; dropping
    /// the handle does the same.
    pub fn close(self) {}

    /// Copies `buf.len()` bytes at `offset` into `buf`, byte by byte
    /// atomically.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is out of bounds.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let base = self.range(offset, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: in bounds (checked); a byte is always aligned.
            *b = unsafe { AtomicU8::from_ptr(base.add(i)) }.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// Copies `data` to `offset`, byte by byte atomically.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is out of bounds.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        let base = self.range(offset, data.len())?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as in `read_at`.
            unsafe { AtomicU8::from_ptr(base.add(i)) }.store(*b, Ordering::Relaxed);
        }
        Ok(())
    }

    fn range(&self, offset: usize, len: usize) -> Result<*mut u8> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => {
                // SAFETY: `offset <= size`, inside the mapping.
                Ok(unsafe { self.seg.as_ptr().add(offset) })
            }
            _ => Err(Error::InvalidArgument(format!(
                "bytes {offset}..{} out of range for {} bytes",
                offset.saturating_add(len),
                self.size()
            ))),
        }
    }

    /// The memory as bytes. Python: `SharedMemory.buf`.
    ///
    /// # Safety
    ///
    /// No process may write the memory while the slice is used.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `size` bytes; the caller excludes writers.
        unsafe { std::slice::from_raw_parts(self.seg.as_ptr(), self.size()) }
    }

    /// The memory as mutable bytes.
    ///
    /// # Safety
    ///
    /// No process (nor another slice of this process) may access the memory
    /// while the slice is used.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, with every other access excluded.
        unsafe { std::slice::from_raw_parts_mut(self.seg.as_ptr(), self.size()) }
    }

    /// A pointer to the first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.seg.as_ptr()
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name)
            .field("size", &self.size())
            .finish()
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 250 || name.contains('/') || name.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{name:?} is not a valid shared memory name (1-250 characters, no '/')"
        )));
    }
    Ok(())
}

/// `psm_` and 16 hex digits, as Python's names.
fn random_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("psm_{:016x}", h.finish())
}
