//! [`Event`]: a flag processes can wait for.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_process::Result;
use serde::{Deserialize, Serialize};

use crate::core::event::EventWord;
use crate::layout::EventState;
use crate::shared::Shared;
use crate::shim::SpinBudget;
use multiproc_process::bell::{ASYNC_SLICE, Bell, next_slice};

/// A flag shared between processes: `set` wakes every waiter.
///
/// Python: `multiprocessing.Event`. A waiter spins briefly before it
/// sleeps, so between two running processes a set is seen in well under a
/// microsecond.
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    shared: Shared<EventState>,
    /// Rung by `set` while an async waiter waits.
    bell: Bell,
    #[serde(skip)]
    spin: Arc<SpinBudget>,
}

impl Event {
    /// A new, clear event.
    ///
    /// # Errors
    ///
    /// [`multiproc_process::Error::Io`] if the system refuses the shared memory.
    pub fn new() -> Result<Event> {
        Ok(Event {
            shared: Shared::new(0)?,
            bell: Bell::new()?,
            spin: Arc::default(),
        })
    }

    fn word(&self) -> &EventWord {
        &self.shared.state().event
    }

    /// Sets the flag and wakes every waiter. Python: `Event.set()`.
    pub fn set(&self) {
        self.word().set();
        self.bell
            .ring_if_awaited(&self.shared.state().async_waiters);
    }

    /// Clears the flag. Python: `Event.clear()`.
    pub fn clear(&self) {
        self.word().clear();
    }

    /// Whether the flag is set. Python: `Event.is_set()`.
    pub fn is_set(&self) -> bool {
        self.word().is_set()
    }

    /// Waits until the flag is set. Python: `Event.wait()`.
    pub fn wait(&self) {
        while !self.word().wait(None, &self.spin) {}
    }

    /// Waits at most `timeout` for the flag; returns whether it is set.
    /// Python: `Event.wait(timeout)`.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.word()
            .wait(multiproc_process::deadline(timeout), &self.spin)
    }

    /// Waits until the flag is set without blocking a thread, under any
    /// async runtime: woken by the event's bell, which `set` rings while
    /// an async waiter waits. Dropping the future stops waiting. Python
    /// (asyncio): `await loop.run_in_executor(None, event.wait)`.
    pub async fn wait_async(&self) {
        if self.spin.spin(|| self.is_set()) {
            return;
        }
        let mut slice = ASYNC_SLICE;
        while !self.is_set() {
            self.bell
                .wait(&self.shared.state().async_waiters, || self.is_set(), slice)
                .await;
            slice = next_slice(slice);
        }
    }

    /// Waits until `deadline` at most; returns whether the flag is set.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.word().wait(Some(deadline), &self.spin)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}
