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

/// A flag shared between processes: `set` wakes every waiter.
///
/// Python: `multiprocessing.Event`. A waiter spins briefly before it
/// sleeps, so between two running processes a set is seen in well under a
/// microsecond.
#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    shared: Shared<EventState>,
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
            spin: Arc::default(),
        })
    }

    fn word(&self) -> &EventWord {
        &self.shared.state().event
    }

    /// Sets the flag and wakes every waiter. Python: `Event.set()`.
    pub fn set(&self) {
        self.word().set();
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
