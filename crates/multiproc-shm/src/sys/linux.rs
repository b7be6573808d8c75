//! Linux backend: memfd_create, shm_open, mmap.
//!
//! # Safety
//!
//! `map` and `unmap` wrap `mmap(2)` and `munmap(2)`; the mapping's owner
//! (`Segment`) unmaps exactly what it mapped, once.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{MemfdFlags, Mode};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

/// `memfd_create("multiproc", MFD_CLOEXEC)` grown to `len` bytes (zeroes).
pub(crate) fn memfd(len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("multiproc", MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    Ok(fd)
}

/// `shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600)` grown to `len` bytes.
pub(crate) fn shm_create(name: &str, len: usize) -> io::Result<OwnedFd> {
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    let fd = shm::open(name, flags, Mode::RUSR | Mode::WUSR)?;
    if let Err(e) = rustix::fs::ftruncate(&fd, len as u64) {
        let _ = shm::unlink(name);
        return Err(e.into());
    }
    Ok(fd)
}

/// `shm_open(name, O_RDWR)`.
pub(crate) fn shm_open(name: &str) -> io::Result<OwnedFd> {
    Ok(shm::open(name, shm::OFlags::RDWR, Mode::empty())?)
}

/// `shm_unlink(name)`.
pub(crate) fn shm_unlink(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}

/// The size of the file behind `fd`.
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let st = rustix::fs::fstat(fd)?;
    usize::try_from(st.st_size).map_err(|_| io::Error::other("negative file size"))
}

/// Maps the first `len` bytes of `fd`, shared and read-write.
pub(crate) fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh mapping chosen by the kernel (null hint) overlaps no
    // existing Rust object; the caller owns it until `unmap`.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            fd,
            0,
        )?
    };
    NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
}

/// Unmaps a mapping made by [`map`].
///
/// # Safety
///
/// `ptr` and `len` must be those of a mapping made by [`map`] and not yet
/// unmapped, and no reference into it may be used afterwards.
pub(crate) unsafe fn unmap(ptr: NonNull<u8>, len: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let _ = rustix::mm::munmap(ptr.as_ptr().cast(), len);
    }
}
