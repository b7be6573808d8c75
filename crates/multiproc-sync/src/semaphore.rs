//! [`Semaphore`] and [`BoundedSemaphore`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_process::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::core::semaphore::SemWord;
use crate::layout::SemState;
use crate::shared::Shared;
use crate::shim::{Deadline, SpinBudget};
use multiproc_process::bell::{ASYNC_SLICE, Bell, next_slice};

#[derive(Clone, Serialize, Deserialize)]
struct Sem {
    shared: Shared<SemState>,
    /// Rung by `release` while an async waiter waits.
    bell: Bell,
    #[serde(skip)]
    spin: Arc<SpinBudget>,
}

impl Sem {
    fn new(value: u32, max: u32) -> Result<Sem> {
        let shared: Shared<SemState> = Shared::new(0)?;
        shared.state().sem.init(value, max);
        Ok(Sem {
            shared,
            bell: Bell::new()?,
            spin: Arc::default(),
        })
    }

    fn word(&self) -> &SemWord {
        &self.shared.state().sem
    }

    fn acquire(&self, deadline: Deadline) -> bool {
        self.word().acquire(deadline, &self.spin)
    }

    fn release(&self) -> Result<()> {
        self.word()
            .release()
            .map_err(|_| Error::NotHeld("semaphore or lock released too many times"))?;
        self.bell
            .ring_if_awaited(&self.shared.state().async_waiters);
        Ok(())
    }

    /// Decrements the count, waiting without a thread while it is zero.
    async fn acquire_async(&self) {
        let mut slice = ASYNC_SLICE;
        loop {
            if self.word().try_acquire() {
                return;
            }
            let positive = || self.word().value() > 0;
            if self.spin.spin(positive) {
                continue;
            }
            self.bell
                .wait(&self.shared.state().async_waiters, positive, slice)
                .await;
            slice = next_slice(slice);
        }
    }
}

macro_rules! semaphore {
    ($(#[$doc:meta])* $name:ident, $guard:ident) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        pub struct $name {
            sem: Sem,
        }

        impl $name {
            /// Decrements the count, waiting while it is zero; the guard
            /// increments it again when dropped. Python: `acquire()`.
            pub fn acquire(&self) -> $guard<'_> {
                while !self.sem.acquire(None) {}
                $guard { sem: self, armed: true }
            }

            /// Decrements the count without blocking a thread, under any
            /// async runtime: woken by the semaphore's bell, which
            /// `release` rings while an async waiter waits. Dropping the
            /// future stops waiting and takes nothing. Python (asyncio):
            /// `await loop.run_in_executor(None, sem.acquire)`.
            pub async fn acquire_async(&self) -> $guard<'_> {
                self.sem.acquire_async().await;
                $guard { sem: self, armed: true }
            }

            /// Decrements the count if it is positive.
            ///
            /// # Errors
            ///
            /// [`Error::WouldBlock`] if it is zero.
            #[doc(alias = "acquire_nowait")]
            pub fn try_acquire(&self) -> Result<$guard<'_>> {
                if self.sem.word().try_acquire() {
                    Ok($guard { sem: self, armed: true })
                } else {
                    Err(Error::WouldBlock)
                }
            }

            /// Decrements the count, waiting at most `timeout` for it to be
            /// positive. Python: `acquire(timeout=t)`.
            ///
            /// # Errors
            ///
            /// [`Error::Timeout`].
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<$guard<'_>> {
                match multiproc_process::deadline(timeout) {
                    Some(deadline) => self.acquire_deadline(deadline),
                    None => Ok(self.acquire()),
                }
            }

            /// Decrements the count, waiting until `deadline` at most.
            ///
            /// # Errors
            ///
            /// [`Error::Timeout`].
            pub fn acquire_deadline(&self, deadline: Instant) -> Result<$guard<'_>> {
                if self.sem.acquire(Some(deadline)) {
                    Ok($guard { sem: self, armed: true })
                } else {
                    Err(Error::Timeout)
                }
            }

            /// The count. Python: `get_value()`.
            #[doc(alias = "get_value")]
            pub fn value(&self) -> u32 {
                self.sem.word().value()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("value", &self.value()).finish()
            }
        }

        /// Holds one unit of a semaphore; gives it back when dropped.
        #[must_use = "the unit is given back as soon as the guard is dropped"]
        pub struct $guard<'a> {
            sem: &'a $name,
            armed: bool,
        }

        impl $guard<'_> {
            /// Keeps the unit: the count stays decremented, for another
            /// process (or `release`) to give back.
            pub fn forget(mut self) {
                self.armed = false;
            }
        }

        impl Drop for $guard<'_> {
            fn drop(&mut self) {
                if self.armed {
                    let _ = self.sem.sem.release();
                }
            }
        }

        impl fmt::Debug for $guard<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($guard))
            }
        }
    };
}

semaphore!(
    /// A counter shared between processes: `acquire` waits while it is zero
    /// and decrements it, `release` increments it.
    ///
    /// Python: `multiprocessing.Semaphore(value)`.
    Semaphore,
    SemaphoreGuard
);

semaphore!(
    /// A [`Semaphore`] that refuses to be released above its initial value.
    ///
    /// Python: `multiprocessing.BoundedSemaphore(value)`.
    BoundedSemaphore,
    BoundedSemaphoreGuard
);

impl Semaphore {
    /// A semaphore with count `value`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the system refuses the shared memory.
    pub fn new(value: u32) -> Result<Semaphore> {
        Ok(Semaphore {
            sem: Sem::new(value, 0)?,
        })
    }

    /// Increments the count, waking a waiter. Python: `release()`.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] if the count would overflow.
    pub fn release(&self) -> Result<()> {
        self.sem.release()
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore with count and bound `value`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a bound of zero, [`Error::Io`] if the
    /// system refuses the shared memory.
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        if value == 0 {
            return Err(Error::InvalidArgument(
                "a bounded semaphore needs a bound above zero".into(),
            ));
        }
        Ok(BoundedSemaphore {
            sem: Sem::new(value, value)?,
        })
    }

    /// Increments the count, waking a waiter. Python: `release()`.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] if the count is at its bound (Python's
    /// `ValueError: semaphore or lock released too many times`).
    pub fn release(&self) -> Result<()> {
        self.sem.release()
    }
}
