//! Python's `multiprocessing`, done the Rust way.
//!
//! Run functions in child processes, share memory between them, and
//! coordinate them, with the vocabulary of Python's module and Rust's types.
//! Write `use multiproc as mp;` where Python writes
//! `import multiprocessing as mp`.
//!
//! | Python | Rust |
//! |---|---|
//! | `mp.Process(target=f, args=(5,))` | [`Process::new(f, (5,))`](Process::new) |
//! | `p.start()`, `p.join()`, `p.join(1.0)` | [`start`](Process::start), [`join`](Process::join), [`join_timeout`](Process::join_timeout) |
//! | `p.is_alive()`, `p.pid`, `p.exitcode` | [`is_alive`](Process::is_alive), [`pid`](Process::pid), [`exitcode`](Process::exitcode) |
//! | `mp.current_process()`, `mp.cpu_count()` | [`current_process`], [`cpu_count`] |
//! | `mp.set_start_method("spawn")` | [`set_start_method(StartMethod::Spawn)`](set_start_method) |
//! | `if __name__ == "__main__":` | nothing: a child never runs `main` |
//!
//! The full table is `docs/python-to-rust.md` in the repository.
//!
//! # Examples
//!
//! ```
//! use multiproc as mp;
//!
//! fn greet(name: String) -> String {
//!     format!("hello {name} from {}", mp::current_process().name())
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let mut p = mp::Process::new(greet, ("bob".to_string(),));
//! p.start()?;
//! p.join()?;
//! assert_eq!(p.take_result()?, "hello bob from Process-1");
//! # Ok(())
//! # }
//! ```
//!
//! # Platform support
//!
//! Linux 5.4 or later.

#![forbid(unsafe_code)]

#[doc(inline)]
pub use multiproc_process::{
    Args, Context, Error, LAUNCH_FAILED, ParentProcess, Process, ProcessBuilder, ProcessInfo,
    RemoteFn, Result, SignalName, StartMethod, Target, TaskFn, ThreadedFork, active_children,
    at_exit, at_exit_with_priority, cpu_count, current_process, get_context, get_start_method,
    init, panic_message, parent_process, set_start_method, set_start_method_force,
    set_threaded_fork, test_setup,
};

#[doc(inline)]
pub use multiproc_process::kind;

#[doc(inline)]
pub use multiproc_process::reactor::{REACTOR_THREAD, Readable, readable, sleep};

#[doc(inline)]
pub use multiproc_shm::{
    RawArray, RawValue, Segment, ShareableItem, ShareableList, SharedMemory, SharedMemoryManager,
};

#[doc(inline)]
pub use multiproc_sync::{
    AcquireError, AcquireResult, Array, ArrayGuard, Barrier, BoundedSemaphore,
    BoundedSemaphoreGuard, Condition, ConditionGuard, Event, Lock, LockGuard, RLock, RLockGuard,
    Semaphore, SemaphoreGuard, Value, ValueGuard,
};

#[doc(inline)]
pub use multiproc_channel::{
    CLOSE_SEEN, Connection, DEFAULT_MAX_MESSAGE, DEFAULT_RING_BYTES, JoinableQueue,
    PIPE_RING_BYTES, Pipe, PutError, Queue, QueueIter, QueueTryIter, SimpleQueue, WaitFd, Waitable,
    wait,
};

#[doc(inline)]
pub use multiproc_manager::{
    ArrayProxy, BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy,
    JoinableQueueProxy, Kind, ListProxy, LockProxy, Managed, ManagedConditionGuard, ManagedGuard,
    Manager, ManagerBuilder, Namespace, Proxy, QueueProxy, RLockProxy, SemaphoreProxy, Served,
    ValueProxy,
};

#[doc(inline)]
pub use multiproc_pool::{
    AsyncResult, Executor, ExecutorBuilder, ExecutorMap, IMap, IMapUnordered, Pool, PoolBuilder,
    TaskFuture, ThreadExecutor, ThreadFuture, ThreadIMap, ThreadPool, ThreadResult,
};

/// Waiting for many [`TaskFuture`]s at once. Python: `concurrent.futures`'s
/// `as_completed` and `wait`.
pub mod futures {
    #[doc(inline)]
    pub use multiproc_pool::futures::{
        AsCompleted, Completes, ReturnWhen, Waited, as_completed, wait,
    };
}

/// Clients of CPython's managers: a Rust program using the objects a
/// Python `BaseManager` or `SyncManager` serves (its queues, dicts,
/// lists, values, namespaces, and any registered type through
/// [`python::Proxy::call`]). Python: `multiprocessing.managers`, client side.
pub mod python {
    #[doc(inline)]
    pub use multiproc_manager::python::{
        DictProxy, ListProxy, Manager, NamespaceProxy, Proxy, QueueProxy, ValueProxy,
    };
}

/// The pool on a cluster: [`mpi::Pool`] runs a [`Pool`]'s tasks on the
/// ranks of an MPI job (`mpirun -n N`). With the `mpi` feature. Python:
/// `mpi4py.futures`.
#[cfg(feature = "mpi")]
pub mod mpi {
    #[doc(inline)]
    pub use multiproc_mpi::Pool;
}

/// Connections between programs over TCP or a Unix socket, authenticated
/// with a shared key, on CPython's wire: either end may be a Python
/// program. Python: `multiprocessing.connection`.
pub mod connection {
    #[doc(inline)]
    pub use multiproc_manager::{
        Address, Client, ClientOptions, DEFAULT_MAX_SOCKET_MESSAGE, Listener, ListenerOptions,
        SocketConnection,
    };
}

/// Handing file descriptors to another process along with a value.
pub mod handoff {
    #[doc(inline)]
    pub use multiproc_process::handoff::{
        HandoffFd, MAX_FDS, collect_fds, decode_with_fds, encode_with_fds, fd, provide_fds,
    };
}

/// How values are encoded to cross a process boundary (serde + postcard;
/// `bulk`: fixed width, for a pool's large payloads).
pub mod codec {
    #[doc(inline)]
    pub use multiproc_process::codec::{bulk, decode, encode};
}

/// The README's code sample, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
