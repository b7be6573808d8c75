//! [`init`], and contexts: a start method to make processes with.

use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::method::{StartMethod, get_start_method};
use crate::process::{Process, ProcessBuilder};
use crate::target::{Args, Target};

/// Starts the fork server now, instead of at the first start; nothing else
/// needs it.
///
/// multiproc prepares itself before `main` runs: a function in the
/// binary's `.init_array` finds out whether this process is the program or
/// one of its children (a spawned child, a fork server), and a child never
/// returns into `main`. So `#[tokio::main]`, a `main` that starts threads
/// first and `cargo test` all work without this call, and no code of
/// `main` runs again in a child.
///
/// What `init` still does: when the default start method is
/// [`StartMethod::ForkServer`], it starts the server (by executing the
/// binary, which returns at once), so that the first process the program
/// starts does not wait for it. In a setuid or setcap program, where the
/// server must be forked while the program has one thread, call it before
/// starting any thread. Calling it again does nothing. Where the hook could
/// not run (a link that dropped it: a start then fails with
/// [`Error::NotInitialized`](crate::Error::NotInitialized)), `init` first in
/// `main` does the hook's work.
///
/// Python: what the `if __name__ == "__main__":` guard does for spawn, and
/// `multiprocessing.forkserver.ensure_running()`.
pub fn init() {
    // Not a `Once`: a server forked (in a setuid program) while one ran
    // would hand its children a `Once` that never completes.
    static STARTED: AtomicBool = AtomicBool::new(false);
    crate::boot::boot();
    if get_start_method() == StartMethod::ForkServer && !STARTED.swap(true, Ordering::SeqCst) {
        // Failing now is not fatal: the first start retries, and reports.
        let _ = crate::start::forkserver::ensure_started();
    }
}

/// A start method, to make processes (and, in the crates above, the shared
/// objects they use) with it.
///
/// Python: the context objects of `multiprocessing.get_context(method)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// A context for `method`.
///
/// Python: `multiprocessing.get_context(method)`.
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

impl Default for Context {
    /// The context of the default start method.
    fn default() -> Context {
        get_context(get_start_method())
    }
}

impl Context {
    /// The context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that runs `target(args...)` with this context's start
    /// method. Python: `ctx.Process(target=f, args=...)`.
    pub fn process<F, A, R, K>(&self, target: F, args: A) -> Process<R>
    where
        F: Target<A, K, Output = R>,
        A: Args,
        R: Serialize + DeserializeOwned,
    {
        self.builder(target, args).build()
    }

    /// A builder for a process with this context's start method.
    pub fn builder<F, A, R, K>(&self, target: F, args: A) -> ProcessBuilder<R>
    where
        F: Target<A, K, Output = R>,
        A: Args,
        R: Serialize + DeserializeOwned,
    {
        Process::builder(target, args).start_method(self.method)
    }
}
