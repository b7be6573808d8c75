//! Operating-system code of the shared-memory crate.
//!
//! A backend provides `memfd` (an anonymous, sized, close-on-exec memory
//! file), `shm_create`/`shm_open`/`shm_unlink` (named POSIX shared memory),
//! `file_size`, and `map`/`unmap` of a whole file, shared and read-write.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
