//! [`Process`] and the functions that describe the process tree:
//! [`current_process`], [`parent_process`], [`active_children`], [`cpu_count`].

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::address::EntryFn;
use crate::child::ChildShared;
use crate::error::{Error, Result};
use crate::fds::lock;
use crate::identity::Identity;
use crate::method::StartMethod;
use crate::outcome::Outcome;
use crate::start::{self, Launch};
use crate::state::GLOBAL;
use crate::sys::{self, ExitStatus, SignalKind};
use crate::target::{self, Args, Target};

/// How long `join_async` waits for the pidfd before it looks again.
const JOIN_SLICE: Duration = Duration::from_secs(1);

type Encoder = Box<dyn Fn() -> Result<(Vec<u8>, Vec<OwnedFd>)> + Send>;

/// A function run in a child process.
///
/// Python: `multiprocessing.Process`. Create it with [`Process::new`] (or
/// [`Process::builder`] for a name, the daemon flag or a start method),
/// [`start`](Process::start) it, [`join`](Process::join) it. `R` is what the
/// target returns; after `join`, [`take_result`](Process::take_result) gives
/// it back, which Python cannot do.
///
/// # Examples
///
/// ```
/// use multiproc as mp;
///
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// # fn main() -> mp::Result<()> {
/// let mut p = mp::Process::new(square, (12,));
/// p.start()?;
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// assert_eq!(p.take_result()?, 144);
/// # Ok(())
/// # }
/// ```
pub struct Process<R = ()> {
    name: String,
    daemon: bool,
    ident: Vec<u32>,
    /// `None`: the default start method at the time of `start`.
    method: Option<StartMethod>,
    entry: EntryFn,
    /// Encodes the arguments; dropped once the child started, as Python
    /// drops `_args`.
    args: Mutex<Option<Encoder>>,
    child: Option<Arc<ChildShared>>,
    closed: bool,
    taken: bool,
    _result: PhantomData<fn() -> R>,
}

/// Settings of a [`Process`] before it is created.
///
/// Python: the `name` and `daemon` keyword arguments of `Process`.
#[must_use = "a builder does nothing until `build` or `start` is called"]
pub struct ProcessBuilder<R> {
    process: Process<R>,
}

impl<R> ProcessBuilder<R> {
    /// Sets the process name (default `Process-N`, `N` counting the
    /// processes this process created, as in Python).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.process.name = name.into();
        self
    }

    /// Marks the process as a daemon: it is terminated when its parent
    /// exits, and killed by the kernel if the parent dies abruptly. A daemon
    /// cannot start children of its own.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.process.daemon = daemon;
        self
    }

    /// Chooses how the process is started (default: the program's default,
    /// see [`set_start_method`](crate::set_start_method)).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.process.method = Some(method);
        self
    }

    /// The process, not yet started.
    pub fn build(self) -> Process<R> {
        self.process
    }

    /// Builds and starts the process.
    ///
    /// # Errors
    ///
    /// As [`Process::start`].
    pub fn start(self) -> Result<Process<R>> {
        let mut p = self.process;
        p.start()?;
        Ok(p)
    }
}

impl<R> Process<R> {
    /// A process that will run `target(args...)`.
    ///
    /// `target` is a `fn` item or a closure that captures nothing, of 0 to 6
    /// arguments; `args` is the tuple of them, as Python's
    /// `Process(target=f, args=(5,))`. Arguments and the result cross the
    /// process boundary with serde, so one program runs unchanged under
    /// every start method; arguments are owned values (`String`, not
    /// `&str`). A capturing closure is refused at compile time.
    ///
    /// The target may return a `Result<R, E>` and use `?` (see [`Target`]
    /// for the errors it may return): an `Err` ends the child with exit
    /// code 1 and reaches [`take_result`](Process::take_result) as
    /// [`Error::ChildFailed`] with the error's message.
    ///
    /// ```
    /// use multiproc as mp;
    ///
    /// fn line_count(path: String) -> std::io::Result<usize> {
    ///     Ok(std::fs::read_to_string(path)?.lines().count())
    /// }
    ///
    /// # fn main() -> mp::Result<()> {
    /// let mut p = mp::Process::new(line_count, ("/no/such/file".to_string(),));
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(1));
    /// let err = p.take_result().unwrap_err();
    /// assert!(matches!(err, mp::Error::ChildFailed { .. }), "{err}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new<F, A, K>(target: F, args: A) -> Process<R>
    where
        F: Target<A, K, Output = R>,
        A: Args,
        R: Serialize + DeserializeOwned,
    {
        const { target::assert_zero_sized::<F>() };
        // Only its type is kept: a zero-sized target has nothing else.
        let _: F = target;
        let ident = {
            let mut g = lock(&GLOBAL);
            g.identity.counter += 1;
            let mut ident = g.identity.ident.clone();
            ident.push(g.identity.counter);
            ident
        };
        let name = format!(
            "Process-{}",
            ident
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(":")
        );
        Process {
            name,
            daemon: false,
            ident,
            method: None,
            entry: target::entry::<F, A, K>,
            args: Mutex::new(Some(Box::new(move || {
                crate::handoff::encode_with_fds(&args)
            }))),
            child: None,
            closed: false,
            taken: false,
            _result: PhantomData,
        }
    }

    /// A builder for a process that will run `target(args...)`, to set its
    /// name, daemon flag or start method.
    pub fn builder<F, A, K>(target: F, args: A) -> ProcessBuilder<R>
    where
        F: Target<A, K, Output = R>,
        A: Args,
        R: Serialize + DeserializeOwned,
    {
        ProcessBuilder {
            process: Process::new(target, args),
        }
    }

    /// The process name. Python: `Process.name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the process (before or after start; a started child keeps
    /// the name it started with, as in Python).
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Whether the process is a daemon. Python: `Process.daemon`.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Sets the daemon flag.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`] once the process has started.
    pub fn set_daemon(&mut self, daemon: bool) -> Result<()> {
        if self.child.is_some() || self.closed {
            return Err(Error::AlreadyStarted);
        }
        self.daemon = daemon;
        Ok(())
    }

    /// The start method this process uses (or will use, if it is not
    /// started yet and was not given one).
    pub fn start_method(&self) -> StartMethod {
        self.method.unwrap_or_else(crate::method::get_start_method)
    }

    /// Starts the child process. Python: `Process.start`.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyStarted`] the second time, [`Error::ProcessClosed`]
    /// after [`close`](Process::close), [`Error::DaemonChildren`] in a daemon
    /// process, [`Error::NotInitialized`] for the fork server or spawn in a
    /// program whose start hook did not run (see [`init`](crate::init)),
    /// [`Error::Unsupported`] for spawn in a setuid program,
    /// [`Error::ThreadedFork`] for fork in a
    /// threaded process when so configured, [`Error::Encode`] if an argument
    /// cannot be encoded, [`Error::Io`] if the system refuses a new process.
    pub fn start(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::ProcessClosed);
        }
        if self.child.is_some() {
            return Err(Error::AlreadyStarted);
        }
        let me = lock(&GLOBAL).identity.clone();
        if me.daemon {
            return Err(Error::DaemonChildren);
        }
        reap_finished();
        let mut slot = lock(&self.args);
        let (args, fds) = match slot.as_ref() {
            Some(encode) => encode()?,
            None => return Err(Error::AlreadyStarted),
        };
        let method = self.method.unwrap_or_else(crate::method::fix_start_method);
        let identity = Identity {
            name: Some(self.name.clone()),
            ident: self.ident.clone(),
            daemon: self.daemon,
            parent: Some((sys::getpid(), me.name().to_owned())),
            counter: 0,
            tracker: me.tracker,
        };
        let launch = Launch {
            entry: self.entry,
            args,
            fds,
            identity,
            method,
        };
        let child = start::start(method, launch)?;
        self.method = Some(method);
        *slot = None;
        drop(slot);
        self.child = Some(child);
        Ok(())
    }

    fn started(&self) -> Result<&Arc<ChildShared>> {
        if self.closed {
            return Err(Error::ProcessClosed);
        }
        self.child.as_ref().ok_or(Error::NotStarted)
    }

    /// Waits for the process to end. Python: `Process.join()`.
    ///
    /// Like Python's, `join` succeeds whatever the child's fate; see
    /// [`exitcode`](Process::exitcode) and
    /// [`take_result`](Process::take_result) for it.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::ProcessClosed`], or [`Error::Io`].
    pub fn join(&self) -> Result<()> {
        let child = self.started()?;
        child.wait_timeout(None)?;
        forget_child(child);
        Ok(())
    }

    /// Waits at most `timeout` for the process to end.
    /// Python: `Process.join(timeout)`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the process still runs after `timeout`, and the
    /// errors of [`join`](Process::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        let child = self.started()?;
        match child.wait_timeout(Some(timeout))? {
            Some(_) => {
                forget_child(child);
                Ok(())
            }
            None => Err(Error::Timeout),
        }
    }

    /// Waits for the process to end without blocking a thread: the future
    /// is ready when the child's pidfd is, under any async runtime (see
    /// [`reactor`](crate::reactor)). Dropping it stops waiting and changes
    /// nothing. Python (asyncio): `await loop.run_in_executor(None, p.join)`.
    ///
    /// # Errors
    ///
    /// As [`join`](Process::join).
    pub async fn join_async(&self) -> Result<()> {
        use std::os::fd::AsFd;
        let child = self.started()?;
        // As the blocking wait: the pidfd and the outcome channel (read as
        // it comes, so that a large result never holds up the child's
        // exit). Sliced, though each wake-up says when to look.
        while child.poll()?.is_none() {
            let (pidfd, chan) = child.wait_fds();
            let mut ended =
                pidfd.then(|| crate::reactor::readable(child.pidfd(), Some(JOIN_SLICE)));
            let mut wrote = chan
                .as_ref()
                .map(|c| crate::reactor::readable(c.as_fd(), Some(JOIN_SLICE)));
            std::future::poll_fn(|cx| {
                let mut ready = |f: &mut Option<crate::reactor::Readable<'_>>| {
                    f.as_mut()
                        .is_some_and(|f| std::pin::Pin::new(f).poll(cx).is_ready())
                };
                if ready(&mut ended) || ready(&mut wrote) || (ended.is_none() && wrote.is_none()) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await;
        }
        self.join()
    }

    /// Whether the process has started and not yet ended.
    /// Python: `Process.is_alive()`.
    pub fn is_alive(&self) -> bool {
        match self.started() {
            Ok(child) => matches!(child.poll(), Ok(None)),
            Err(_) => false,
        }
    }

    /// A descriptor that polls readable once the process has ended (a
    /// pidfd), for `poll`, `epoll` or the channel crate's `wait`.
    /// Python: `Process.sentinel`.
    pub fn sentinel(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.child.as_ref().map(|c| c.pidfd())
    }

    /// The process id, once started. Python: `Process.pid`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// How the process ended: `None` while it runs (or before it started),
    /// 0 when the target returned, 1 when it panicked, `n` when it called
    /// `std::process::exit(n)`, minus the signal number when a signal killed
    /// it. Python: `Process.exitcode`.
    pub fn exitcode(&self) -> Option<i32> {
        let child = self.started().ok()?;
        child.poll().ok().flatten().map(ExitStatus::exitcode)
    }

    /// Sends `SIGTERM`. Python: `Process.terminate()`. Doing so to a process
    /// that already ended does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::ProcessClosed`], or [`Error::Io`].
    pub fn terminate(&self) -> Result<()> {
        self.started()?.signal(SignalKind::Term)
    }

    /// Sends `SIGKILL`. Python: `Process.kill()`.
    ///
    /// # Errors
    ///
    /// As [`terminate`](Process::terminate).
    pub fn kill(&self) -> Result<()> {
        self.started()?.signal(SignalKind::Kill)
    }

    /// Releases the resources of a finished process; most methods fail with
    /// [`Error::ProcessClosed`] afterwards. Python: `Process.close()`.
    ///
    /// # Errors
    ///
    /// [`Error::StillRunning`] if the process has not ended.
    pub fn close(&mut self) -> Result<()> {
        if let Some(child) = &self.child {
            if child.poll()?.is_none() {
                return Err(Error::StillRunning {
                    name: self.name.clone(),
                });
            }
            forget_child(child);
        }
        self.child = None;
        self.closed = true;
        *lock(&self.args) = None;
        Ok(())
    }
}

impl<R: DeserializeOwned> Process<R> {
    /// The value the target returned, once the process has ended. It can be
    /// taken once.
    ///
    /// # Errors
    ///
    /// [`Error::ChildPanicked`] with the panic message,
    /// [`Error::ChildExited`] or [`Error::ChildKilled`] if the target did not
    /// return, [`Error::StillRunning`] before the end, [`Error::ResultTaken`]
    /// the second time, [`Error::Decode`] if the child could not decode its
    /// arguments.
    pub fn take_result(&mut self) -> Result<R> {
        let name = self.name.clone();
        let child = self.started()?;
        let Some(status) = child.poll()? else {
            return Err(Error::StillRunning { name });
        };
        if self.taken {
            return Err(Error::ResultTaken { name });
        }
        let value = match child.outcome() {
            Some(Outcome::Returned(bytes)) => crate::codec::decode(&bytes)?,
            Some(Outcome::Panicked(message)) => {
                return Err(Error::ChildPanicked { name, message });
            }
            Some(Outcome::Errored(message)) => return Err(Error::ChildFailed { name, message }),
            Some(Outcome::Failed(message)) => return Err(Error::Decode(message)),
            None => {
                return Err(match status {
                    ExitStatus::Code(code) => Error::ChildExited { name, code },
                    ExitStatus::Signal(signal) => Error::ChildKilled { name, signal },
                });
            }
        };
        self.taken = true;
        Ok(value)
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        // The child goes on (Python's semantics); the registry reaps it.
        // Nobody will read its result, so let it exit without blocking.
        if let Some(child) = &self.child {
            child.discard_outcome();
        }
    }
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.closed {
            "closed".to_owned()
        } else {
            match (&self.child, self.exitcode()) {
                (None, _) => "initial".to_owned(),
                (Some(_), None) => "started".to_owned(),
                (Some(_), Some(code)) => format!("stopped exitcode={code}"),
            }
        };
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("daemon", &self.daemon)
            .field("start_method", &self.start_method())
            .field("state", &state)
            .finish()
    }
}

/// Removes a child known to have ended from the registry.
fn forget_child(child: &Arc<ChildShared>) {
    lock(&GLOBAL).children.retain(|c| !Arc::ptr_eq(c, child));
}

/// Reaps children that ended, so none stays a zombie. Python's
/// `multiprocessing.process._cleanup`.
fn reap_finished() {
    crate::start::forkserver::reap_if_dead();
    let mut g = lock(&GLOBAL);
    g.children.retain(|c| matches!(c.poll(), Ok(None)));
}

/// A snapshot of what a process is: its name, pid and daemon flag.
///
/// Returned by [`current_process`] and [`active_children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    name: String,
    pid: u32,
    daemon: bool,
}

impl ProcessInfo {
    /// The process name (`"MainProcess"` for the main process).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }
}

/// The process that started the current one.
///
/// Python: the object `multiprocessing.parent_process()` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentProcess {
    name: String,
    pid: u32,
}

impl ParentProcess {
    /// The parent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parent's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the parent still runs.
    pub fn is_alive(&self) -> bool {
        // Our real parent (fork, spawn) is alive while the kernel names it;
        // a fork-server child's parent is checked through a pidfd.
        sys::getppid() == self.pid || sys::pid_alive(self.pid)
    }
}

/// The current process: `"MainProcess"` in the program's first process,
/// `"Process-N"` (or the name it was given) in a child.
///
/// Python: `multiprocessing.current_process()`.
pub fn current_process() -> ProcessInfo {
    let g = lock(&GLOBAL);
    ProcessInfo {
        name: g.identity.name().to_owned(),
        pid: sys::getpid(),
        daemon: g.identity.daemon,
    }
}

/// The process that started this one, `None` in the main process.
///
/// Python: `multiprocessing.parent_process()`.
pub fn parent_process() -> Option<ParentProcess> {
    let g = lock(&GLOBAL);
    g.identity.parent.as_ref().map(|(pid, name)| ParentProcess {
        name: name.clone(),
        pid: *pid,
    })
}

/// The children of this process that are still running. Reaps the ones that
/// ended, as Python's does.
///
/// Python: `multiprocessing.active_children()`.
pub fn active_children() -> Vec<ProcessInfo> {
    reap_finished();
    lock(&GLOBAL)
        .children
        .iter()
        .map(|c| ProcessInfo {
            name: c.name.clone(),
            pid: c.pid,
            daemon: c.daemon,
        })
        .collect()
}

/// The number of CPUs this process may use (its affinity mask and cgroup
/// quota included), at least 1.
///
/// Python: `multiprocessing.cpu_count()` (which counts every CPU of the
/// machine; this is Python 3.13's `os.process_cpu_count()`, the better
/// default for sizing a pool).
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}
