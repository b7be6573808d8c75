//! [`init`], and contexts: a start method to make processes with.

use std::sync::Once;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::method::{StartMethod, get_start_method};
use crate::process::{Process, ProcessBuilder};
use crate::target::Target;

/// Prepares multiproc; call it first in `main`.
///
/// - In a child started with [`StartMethod::Spawn`] (which runs the
///   program's binary again), it runs the child's target and exits, so that
///   nothing after it runs in the child.
/// - In the program itself, it starts the fork server while the program is
///   still single-threaded, when the default start method is
///   [`StartMethod::ForkServer`].
///
/// Calling it again does nothing. Code before it in `main` runs again in
/// every spawned child. Without it, starting a process with the fork server
/// or spawn fails with [`Error::NotInitialized`](crate::Error::NotInitialized). In a test file, where
/// `main` belongs to the test harness, write [`test_setup!()`](crate::test_setup)
/// once instead.
///
/// Python: what the `if __name__ == "__main__":` guard does for spawn.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        crate::boot::run_if_spawned();
        crate::boot::serve_if_server();
        crate::boot::mark_initialized();
        if get_start_method() == StartMethod::ForkServer {
            // Failing now is not fatal: the first start retries, and reports.
            let _ = crate::start::forkserver::ensure_started();
        }
    });
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
    pub fn process<F, A, R>(&self, target: F, args: A) -> Process<R>
    where
        F: Target<A, Output = R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned,
    {
        self.builder(target, args).build()
    }

    /// A builder for a process with this context's start method.
    pub fn builder<F, A, R>(&self, target: F, args: A) -> ProcessBuilder<R>
    where
        F: Target<A, Output = R>,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned,
    {
        Process::builder(target, args).start_method(self.method)
    }
}
