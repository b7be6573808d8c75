//! [`wait`]: wait until one of several connections, queues, processes or
//! descriptors is ready.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use multiproc_process::{Process, Result, fdio};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connection::Connection;
use crate::queue::Queue;

/// Something [`wait`] can wait for: connections, socket connections,
/// queues, processes, and any descriptor (`BorrowedFd`, `OwnedFd`: ready
/// when readable, as CPython's `wait` takes any object with a `fileno()`).
///
/// A type of your own that holds a descriptor implements it in two lines:
///
/// ```
/// use std::os::fd::{AsFd, OwnedFd};
/// use multiproc as mp;
///
/// struct Doorbell(OwnedFd);
///
/// impl mp::Waitable for Doorbell {
///     fn is_ready(&self) -> bool {
///         self.0.as_fd().is_ready()
///     }
///     fn wait_fd(&self) -> Option<mp::WaitFd<'_>> {
///         Some(mp::WaitFd::Borrowed(self.0.as_fd()))
///     }
/// }
///
/// # fn main() -> mp::Result<()> {
/// use std::io::Write;
/// let (reader, mut writer) = std::io::pipe()?;
/// let bell = Doorbell(reader.into());
/// assert!(mp::wait(&[&bell], Some(std::time::Duration::ZERO))?.is_empty());
/// writer.write_all(b"!")?;
/// assert_eq!(mp::wait(&[&bell], None)?, vec![0]);
/// # Ok(())
/// # }
/// ```
pub trait Waitable {
    /// Whether it is ready now: a connection has a message (or its other
    /// end is gone), a queue has a message, a process has ended, a
    /// descriptor is readable.
    fn is_ready(&self) -> bool;

    /// A descriptor that polls readable when it may have become ready, if
    /// it has one. Without one, `wait` looks again every millisecond.
    fn wait_fd(&self) -> Option<WaitFd<'_>>;

    /// Called with `true` before `wait` sleeps, `false` after: for an
    /// object whose writers signal its descriptor only when asked to (the
    /// default does nothing).
    fn arm(&self, _on: bool) {}
}

/// A descriptor for [`wait`] to poll, borrowed from the object or shared
/// with it.
#[derive(Debug)]
pub enum WaitFd<'a> {
    /// Borrowed from the object.
    Borrowed(std::os::fd::BorrowedFd<'a>),
    /// Shared with the object.
    Shared(Arc<OwnedFd>),
}

impl Waitable for Connection {
    fn is_ready(&self) -> bool {
        self.ready_now()
    }

    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        Connection::wait_fd(self).map(WaitFd::Shared)
    }

    fn arm(&self, on: bool) {
        Connection::arm(self, on);
    }
}

impl<T: Serialize + DeserializeOwned> Waitable for Queue<T> {
    fn is_ready(&self) -> bool {
        !self.empty()
    }

    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        None
    }
}

/// Ready when readable (or at its end, or in error: a read will not block).
impl Waitable for BorrowedFd<'_> {
    fn is_ready(&self) -> bool {
        fdio::poll_readable(&[*self], Some(Duration::ZERO)).map_or(true, |r| r[0])
    }

    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        Some(WaitFd::Borrowed(*self))
    }
}

/// As for [`BorrowedFd`].
impl Waitable for OwnedFd {
    fn is_ready(&self) -> bool {
        self.as_fd().is_ready()
    }

    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        Some(WaitFd::Borrowed(self.as_fd()))
    }
}

impl<R> Waitable for Process<R> {
    fn is_ready(&self) -> bool {
        self.pid().is_some() && !self.is_alive()
    }

    fn wait_fd(&self) -> Option<WaitFd<'_>> {
        self.sentinel().map(WaitFd::Borrowed)
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: as long as it takes); returns the indexes of the ready ones,
/// empty on timeout.
///
/// Python: `multiprocessing.connection.wait(object_list, timeout)`.
///
/// # Errors
///
/// [`multiproc_process::Error::Io`] if polling fails.
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.and_then(multiproc_process::deadline);
    let ready = || -> Vec<usize> {
        (0..objects.len())
            .filter(|&i| objects[i].is_ready())
            .collect()
    };
    loop {
        let now = ready();
        if !now.is_empty() {
            return Ok(now);
        }
        for o in objects {
            o.arm(true);
        }
        let now = ready();
        if !now.is_empty() {
            for o in objects {
                o.arm(false);
            }
            return Ok(now);
        }
        let fds: Vec<WaitFd<'_>> = objects.iter().filter_map(|o| o.wait_fd()).collect();
        let all_have_fds = fds.len() == objects.len();
        let slice = if all_have_fds {
            Duration::from_millis(50)
        } else {
            Duration::from_millis(1)
        };
        let Some(sleep) = multiproc_sync::futex::remaining(deadline, slice) else {
            for o in objects {
                o.arm(false);
            }
            return Ok(ready());
        };
        let borrowed: Vec<_> = fds
            .iter()
            .map(|f| match f {
                WaitFd::Borrowed(b) => *b,
                WaitFd::Shared(o) => o.as_fd(),
            })
            .collect();
        if borrowed.is_empty() {
            std::thread::sleep(sleep);
        } else {
            fdio::poll_readable(&borrowed, Some(sleep))?;
        }
        for o in objects {
            o.arm(false);
        }
    }
}
