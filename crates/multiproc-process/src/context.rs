//! Program-wide settings: [`init`], the default start method, and contexts.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::process::{Process, ProcessBuilder};
use crate::start_method::StartMethod;
use crate::target::Target;

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// The default start method: 0 not chosen yet (fork server), else the
/// method's index in `StartMethod::all()` plus one, with bit 7 set once it
/// is fixed (chosen explicitly or by a first start).
static DEFAULT: AtomicU8 = AtomicU8::new(0);
const FIXED: u8 = 0x80;

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
/// or spawn fails with [`Error::NotInitialized`]. In a test file, where
/// `main` belongs to the test harness, write [`test_setup!()`](crate::test_setup)
/// once instead.
///
/// Python: what the `if __name__ == "__main__":` guard does for spawn.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        crate::spawn::run_if_spawned();
        crate::forkserver::serve_if_server();
        mark_initialized();
        if get_start_method() == StartMethod::ForkServer {
            // Failing now is not fatal: the first start retries, and reports.
            let _ = crate::forkserver::ensure_started();
        }
    });
}

pub(crate) fn mark_initialized() {
    INITIALIZED.store(true, Ordering::SeqCst);
}

pub(crate) fn initialized() -> bool {
    INITIALIZED.load(Ordering::SeqCst)
}

fn encode(method: StartMethod) -> u8 {
    let index = StartMethod::all()
        .iter()
        .position(|m| *m == method)
        .unwrap_or(0);
    u8::try_from(index).unwrap_or(0) + 1
}

fn decode(v: u8) -> StartMethod {
    match v & !FIXED {
        0 => StartMethod::default(),
        n => StartMethod::all()
            .get(usize::from(n - 1))
            .copied()
            .unwrap_or_default(),
    }
}

/// Sets the default start method, once.
///
/// Python: `multiprocessing.set_start_method(method)`.
///
/// # Errors
///
/// [`Error::ContextAlreadySet`] if a default was set before, or fixed by a
/// process started with it; use [`set_start_method_force`] to change it
/// anyway.
pub fn set_start_method(method: StartMethod) -> Result<()> {
    let new = encode(method) | FIXED;
    DEFAULT
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
            (v & FIXED == 0).then_some(new)
        })
        .map(|_| ())
        .map_err(|_| Error::ContextAlreadySet)
}

/// Sets the default start method, even if one was set before.
///
/// Python: `multiprocessing.set_start_method(method, force=True)`.
pub fn set_start_method_force(method: StartMethod) {
    DEFAULT.store(encode(method) | FIXED, Ordering::SeqCst);
}

/// The default start method.
///
/// Python: `multiprocessing.get_start_method()`.
pub fn get_start_method() -> StartMethod {
    decode(DEFAULT.load(Ordering::SeqCst))
}

/// The default start method, fixed from now on (a first start fixes it, as
/// in Python).
pub(crate) fn fix_start_method() -> StartMethod {
    let v = DEFAULT.fetch_or(FIXED, Ordering::SeqCst);
    decode(v)
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
