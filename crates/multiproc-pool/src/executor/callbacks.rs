//! What waits for a future's end: its done callbacks, and the watchers of
//! `as_completed` and `wait`, which take theirs back when they return.

/// A callback run once, when a task is done.
pub(crate) type Callback = Box<dyn FnOnce() + Send>;

/// The callbacks of one future, each under a number so that it can be
/// taken back.
#[derive(Default)]
pub(crate) struct Callbacks {
    next: u64,
    list: Vec<(u64, Callback)>,
}

impl Callbacks {
    /// Adds `f`; its number.
    pub(crate) fn add(&mut self, f: Callback) -> u64 {
        self.next += 1;
        self.list.push((self.next, f));
        self.next
    }

    /// Takes back callback `id`, if it has not run.
    pub(crate) fn remove(&mut self, id: u64) {
        self.list.retain(|(i, _)| *i != id);
    }

    /// All of them, to run.
    pub(crate) fn take(&mut self) -> Vec<Callback> {
        std::mem::take(&mut self.list)
            .into_iter()
            .map(|(_, f)| f)
            .collect()
    }
}

/// Runs a callback; a panic in it is reported and goes no further.
pub(crate) fn call(f: Callback) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        eprintln!("multiproc: a task future's done callback panicked");
    }
}
