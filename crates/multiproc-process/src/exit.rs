//! A process's normal exit, as Python's: terminate daemonic children, join
//! the others, run the [`at_exit`] hooks.

use std::panic;
use std::sync::Once;
use std::time::Duration;

use crate::fds::lock;
use crate::state::GLOBAL;
use crate::sys::{self, SignalKind};

/// Hooks registered with [`at_exit`].
static HOOKS: std::sync::Mutex<Vec<fn()>> = std::sync::Mutex::new(Vec::new());

/// Registers `hook` to run when this process ends normally: when `main`
/// returns or `std::process::exit` is called, and when the target of a
/// child process returns or panics. Each hook runs once per process, after
/// the process's children were joined; hooks registered in a parent run in
/// its forked children too, so a hook that cleans up should check which
/// process owns what it cleans.
///
/// Python: `multiprocessing.util.Finalize` with `exitpriority`, and
/// `atexit.register`.
pub fn at_exit(hook: fn()) {
    install_hook();
    let mut hooks = lock(&HOOKS);
    if !hooks.iter().any(|h| std::ptr::fn_addr_eq(*h, hook)) {
        hooks.push(hook);
    }
}

fn run_exit_hooks() {
    let hooks = std::mem::take(&mut *lock(&HOOKS));
    for hook in hooks {
        let _ = panic::catch_unwind(hook);
    }
}

/// Python's exit function: terminate daemonic children, join all, then run
/// the [`at_exit`] hooks. Runs when a child's target ends, and at normal
/// exit of any process.
pub(crate) fn join_children_at_exit() {
    let children = std::mem::take(&mut lock(&GLOBAL).children);
    for c in children.iter().filter(|c| c.daemon) {
        let _ = c.signal(SignalKind::Term);
    }
    for c in &children {
        if c.daemon {
            // A daemon that ignores SIGTERM must not keep us from exiting.
            if let Ok(None) = c.wait_timeout(Some(Duration::from_secs(1))) {
                let _ = c.signal(SignalKind::Kill);
            }
        }
        let _ = c.wait_timeout(None);
    }
    run_exit_hooks();
}

extern "C" fn at_exit_hook() {
    let _ = panic::catch_unwind(join_children_at_exit);
}

/// Registers, once per program, the `atexit(3)` hook that joins children
/// at normal exit.
pub(crate) fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = sys::register_at_exit(at_exit_hook);
    });
}
