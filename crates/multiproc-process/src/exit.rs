//! A process's normal exit, as Python's: terminate daemonic children, join
//! the others, run the [`at_exit`] hooks.

use std::panic;
use std::sync::Once;
use std::time::Duration;

use crate::fds::lock;
use crate::state::GLOBAL;
use crate::sys::{self, SignalKind};

/// Hooks registered with [`at_exit`] and [`at_exit_with_priority`], with
/// their priorities, in the order they were registered.
static HOOKS: std::sync::Mutex<Vec<Hook>> = std::sync::Mutex::new(Vec::new());

/// An exit hook and its priority.
type Hook = (i32, fn());

/// Registers `hook` to run when this process ends normally: when `main`
/// returns or `std::process::exit` is called, and when the target of a
/// child process returns or panics. Hooks run after the process's children
/// were joined, the last registered first (as Python's `atexit`). Each runs
/// once per process: registering it again does nothing. Hooks registered
/// in a parent run in its forked children too, so a hook that cleans up
/// should check which process owns what it cleans.
///
/// Python: `atexit.register(hook)`, and `multiprocessing.util.Finalize`
/// with `exitpriority=0`.
pub fn at_exit(hook: fn()) {
    at_exit_with_priority(hook, 0);
}

/// As [`at_exit`], with a priority: hooks of a higher priority run first,
/// and hooks of the same priority the last registered first.
///
/// Python: `multiprocessing.util.Finalize(None, hook, exitpriority=p)`.
pub fn at_exit_with_priority(hook: fn(), priority: i32) {
    install_hook();
    let mut hooks = lock(&HOOKS);
    if !hooks.iter().any(|(_, h)| std::ptr::fn_addr_eq(*h, hook)) {
        hooks.push((priority, hook));
    }
}

fn run_exit_hooks() {
    let mut hooks = std::mem::take(&mut *lock(&HOOKS));
    // Last registered first, then (a stable sort) by priority.
    hooks.reverse();
    hooks.sort_by_key(|(priority, _)| std::cmp::Reverse(*priority));
    for (_, hook) in hooks {
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
