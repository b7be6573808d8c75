//! Test helpers for multiproc: run a blocking call under a deadline, look
//! at the process tree through `/proc`, and check that a test leaked no
//! descriptor, child process or shared-memory file.
//!
//! # Examples
//!
//! ```
//! use multiproc_testkit::{LeakCheck, within};
//! use std::time::Duration;
//!
//! let leaks = LeakCheck::new();
//! let sum = within(Duration::from_secs(5), || 2 + 2);
//! assert_eq!(sum, 4);
//! leaks.assert_clean();
//! ```
//!
//! # Platform support
//!
//! Linux (reads `/proc`).

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fs;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `f` on a helper thread and returns its value, or panics if it takes
/// longer than `limit`, so a hung call fails its test instead of hanging CI.
///
/// # Panics
///
/// If `f` panics, or does not return within `limit`.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("blocking call did not return within {limit:?}")
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => panic!("helper thread ended without a value"),
        },
    }
}

/// Waits for `child` to end and collects what it wrote on its piped stdout
/// and stderr (read while it runs, so a chatty child never blocks), all
/// within `limit`. Kills it, and panics with what it wrote on stderr, if it
/// does not end in time.
///
/// # Panics
///
/// If the child does not end within `limit`, or cannot be waited for.
pub fn output_within(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    fn drain(from: Option<impl std::io::Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
        let (tx, rx) = mpsc::channel();
        if let Some(mut from) = from {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = from.read_to_end(&mut bytes);
                let _ = tx.send(bytes);
            });
        } else {
            let _ = tx.send(Vec::new());
        }
        rx
    }
    let deadline = Instant::now() + limit;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // What the child's own children still hold open is cut off at the
    // deadline.
    let collect = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100)),
        )
        .unwrap_or_default()
    };
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    match status {
        Some(status) => std::process::Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "the child did not end within {limit:?}; its stderr: {}",
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Polls `cond` every millisecond until it holds or `limit` passes.
/// Returns whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The number of open descriptors of this process.
pub fn fd_count() -> usize {
    // The directory handle itself is one more entry while it is read.
    fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}

/// The child pids of process `pid` (all its threads' children), zombies
/// included.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(task.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The children of this process.
pub fn my_children() -> Vec<u32> {
    children_of(std::process::id())
}

/// The one-letter state of process `pid` (`R`, `S`, `Z`, ...), `None` if
/// there is no such process.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// Whether process `pid` exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    matches!(process_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The parent pid of process `pid`.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The live processes (zombies excluded) whose environment, as they were
/// started, holds `key=value`: how a test finds every process a program it
/// ran left behind, when it gave that program a variable of its own.
pub fn processes_with_env(key: &str, value: &str) -> Vec<u32> {
    let needle = format!("{key}={value}");
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|entry| entry == needle.as_bytes())
            })
        })
        .filter(|&pid| is_running(pid))
        .collect();
    out.sort_unstable();
    out
}

/// The names in `/dev/shm`.
pub fn shm_entries() -> BTreeSet<String> {
    fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What a test owned when it began: descriptors, children and `/dev/shm`
/// entries. [`assert_clean`](LeakCheck::assert_clean) checks it is all
/// back to that at the end.
#[derive(Debug)]
pub struct LeakCheck {
    fds: usize,
    children: Vec<u32>,
    shm: BTreeSet<String>,
}

impl LeakCheck {
    /// Records the current state.
    pub fn new() -> LeakCheck {
        LeakCheck {
            fds: fd_count(),
            children: my_children(),
            shm: shm_entries(),
        }
    }

    /// Asserts that, within two seconds, the process has no more open
    /// descriptors and no more children (zombies included) than it had at
    /// [`new`](LeakCheck::new), and that `/dev/shm` holds nothing new.
    ///
    /// # Panics
    ///
    /// When something leaked, naming what.
    pub fn assert_clean(&self) {
        let limit = Duration::from_secs(2);
        let ok = wait_until(limit, || {
            fd_count() <= self.fds && my_children().len() <= self.children.len()
        });
        if !ok {
            let fds: Vec<String> = fs::read_dir("/proc/self/fd")
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            let target = fs::read_link(e.path()).unwrap_or_default();
                            format!(
                                "{} -> {}",
                                e.file_name().to_string_lossy(),
                                target.display()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            panic!(
                "leak: {} fds (was {}), children {:?} (was {:?}); open fds: {fds:#?}",
                fd_count(),
                self.fds,
                my_children(),
                self.children
            );
        }
        let new_shm: Vec<String> = shm_entries().difference(&self.shm).cloned().collect();
        assert!(
            new_shm.is_empty(),
            "leak: new entries in /dev/shm: {new_shm:?}"
        );
    }
}

impl Default for LeakCheck {
    fn default() -> LeakCheck {
        LeakCheck::new()
    }
}

/// Runs each named test function under every start method, as
/// `fork::name`, `forkserver::name` and `spawn::name`. Each function takes
/// a `multiproc::Context`; the test file must depend on `multiproc`.
///
/// ```ignore
/// fn counts(ctx: multiproc::Context) { /* ... */ }
/// multiproc_testkit::each_start_method!(counts);
/// ```
#[macro_export]
macro_rules! each_start_method {
    ($($name:ident),* $(,)?) => {
        mod fork {
            $(#[test] fn $name() { super::$name(::multiproc::get_context(::multiproc::StartMethod::Fork)) })*
        }
        mod forkserver {
            $(#[test] fn $name() { super::$name(::multiproc::get_context(::multiproc::StartMethod::ForkServer)) })*
        }
        mod spawn {
            $(#[test] fn $name() { super::$name(::multiproc::get_context(::multiproc::StartMethod::Spawn)) })*
        }
    };
}

/// A CPython interpreter of this machine: `python3` as found on `PATH`,
/// or one that pyenv has, chosen by `PYENV_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    /// The `PYENV_VERSION` that selects it (`None`: the default `python3`).
    pub pyenv_version: Option<String>,
    /// Its version, as `sys.version_info` gives it: `"3.11.7"`.
    pub version: String,
}

impl Python {
    /// A `python3` command that runs this interpreter.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("python3");
        if let Some(v) = &self.pyenv_version {
            cmd.env("PYENV_VERSION", v);
        }
        cmd
    }
}

/// Every distinct CPython 3.x on this machine: the default `python3`, and
/// each 3.x version pyenv has. Empty when there is none, after a line on
/// stderr saying so, so that a test can skip and tell why.
pub fn cpythons() -> Vec<Python> {
    fn version_of(pyenv_version: Option<&str>) -> Option<String> {
        let mut cmd = std::process::Command::new("python3");
        if let Some(v) = pyenv_version {
            cmd.env("PYENV_VERSION", v);
        }
        let child = cmd
            .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let out = output_within(child, Duration::from_secs(30));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
    let mut found: Vec<Python> = Vec::new();
    let mut add = |pyenv_version: Option<String>| {
        if let Some(version) = version_of(pyenv_version.as_deref())
            && !found.iter().any(|p| p.version == version)
        {
            found.push(Python {
                pyenv_version,
                version,
            });
        }
    };
    add(None);
    let pyenv = std::process::Command::new("pyenv")
        .args(["versions", "--bare"])
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(out) = pyenv {
        for v in String::from_utf8_lossy(&out.stdout).lines() {
            let v = v.trim();
            if v.starts_with("3.") && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                add(Some(v.to_string()));
            }
        }
    }
    if found.is_empty() {
        eprintln!("no CPython found (neither python3 nor pyenv): skipping the CPython checks");
    }
    found
}
