//! Start methods, and the program's default one.
//!
//! How each method starts a child is in the `start` module; this one names
//! them and keeps which one a process uses when it is not told.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a child process is started.
///
/// Python: the names given to `multiprocessing.set_start_method`. One
/// program runs unchanged under all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StartMethod {
    /// A single-threaded server forks each child on request. The server is
    /// the program's binary run again at the first start (or at
    /// [`init`](crate::init)), in which nothing of `main` ran, so its
    /// children hold none of the program's threads, memory or descriptors.
    /// Fast, and safe in a program that has threads. The default, as in
    /// CPython 3.14.
    #[default]
    ForkServer,
    /// Executes the program's binary again for each child, which receives
    /// its target and arguments before `main` would run. The slowest start
    /// and the cleanest child: nothing of the parent's memory. Not available
    /// in a setuid or setcap program.
    Spawn,
    /// `fork(2)`: the child runs straight from a copy of the parent's
    /// memory. The fastest start, but unsafe in a program that has other
    /// threads (they do not exist in the child, and a lock one of them held
    /// stays held there); see [`set_threaded_fork`](crate::set_threaded_fork).
    Fork,
}

impl StartMethod {
    /// Python's name of the method (`"forkserver"`, `"spawn"`, `"fork"`).
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::ForkServer => "forkserver",
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
        }
    }

    /// All methods available on this platform, the default first.
    ///
    /// Python: `multiprocessing.get_all_start_methods()`.
    pub fn all() -> &'static [StartMethod] {
        &[
            StartMethod::ForkServer,
            StartMethod::Spawn,
            StartMethod::Fork,
        ]
    }

    /// Whether the method needs [`init`](crate::init) to have run.
    pub(crate) fn needs_init(self) -> bool {
        !matches!(self, StartMethod::Fork)
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<StartMethod> {
        StartMethod::all()
            .iter()
            .copied()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown start method {s:?}")))
    }
}

/// The default start method: 0 not chosen yet (fork server), else the
/// method's index in `StartMethod::all()` plus one, with bit 7 set once it
/// is fixed (chosen explicitly or by a first start).
static DEFAULT: AtomicU8 = AtomicU8::new(0);
const FIXED: u8 = 0x80;

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
