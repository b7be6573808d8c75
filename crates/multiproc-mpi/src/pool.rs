//! [`Pool`]: MPI's start, the build check, and the roles of the ranks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mpi::Threading;
use mpi::environment::Universe;
use mpi::topology::Communicator;
use multiproc_process::{Error, Result};

use crate::build_check::Ranks;
use crate::dispatch::dispatch;
use crate::wire::stop_workers;
use crate::worker::serve;

/// A process pool whose workers are the ranks of an MPI job. Python
/// (mpi4py): `mpi4py.futures.MPICommExecutor`.
///
/// Run the program with `mpirun -n N program args`: every rank runs
/// `main`, and [`Pool::world`] returns the pool on rank 0, while on ranks
/// 1 to N-1 it serves as a worker and exits the process when rank 0's
/// pool is closed or dropped (code before the call runs on every rank).
///
/// The pool is a [`multiproc::Pool`](multiproc_pool::Pool) (it
/// dereferences to one), so every call (`map`, `map_chunked`, `imap`,
/// `imap_unordered`, `starmap`, `apply`, `apply_async`, `map_async`, their
/// callbacks and timeouts) is the same code, with the same types, and a
/// function written for `&mp::Pool` takes `&pool`. Tasks are the same
/// serde payloads; a worker takes the next chunk when it finishes one, so
/// uneven tasks balance.
///
/// What differs from a local pool:
/// - a task or result that holds a descriptor (a `RawArray`, a `Segment`,
///   a proxy) fails with [`Error::Encode`]: it cannot cross to another host;
/// - [`terminate`](multiproc_pool::Pool::terminate) (and dropping the
///   pool) fails queued work at once, but MPI cannot stop one rank: it
///   returns when the tasks the ranks are running end;
/// - a rank that dies (killed, aborted, or `std::process::exit` in a task)
///   ends the whole job: `mpirun` kills every rank and reports which one
///   failed, as MPI does by default. A task that panics fails only its
///   item, as locally.
///
/// ```no_run
/// use multiproc as mp;
///
/// fn square(n: u64) -> u64 {
///     n * n
/// }
///
/// fn main() -> mp::Result<()> {
///     let pool = mp::mpi::Pool::world()?; // ranks 1.. serve here
///     assert_eq!(pool.map(square, 1..=5)?, vec![1, 4, 9, 16, 25]);
///     Ok(())
/// }
/// ```
pub struct Pool {
    /// Dropped first: it ends the dispatcher (which stops the workers).
    pool: multiproc_pool::Pool,
    hosts: Vec<String>,
    /// Dropped last: `MPI_Finalize`, on the thread that drops the pool
    /// (MPI asks for the one that initialized it: rank 0's `main`, as a
    /// rule).
    _universe: Universe,
}

impl Pool {
    /// Starts MPI, checks that every rank runs the same build, and returns
    /// the pool on rank 0 with ranks 1 to N-1 as its workers. On those
    /// ranks it does not return: it runs their tasks, then exits the
    /// process (normally, so `at_exit` hooks run) when rank 0's pool ends.
    ///
    /// # Errors
    ///
    /// [`Error::Mpi`], on rank 0, when the job has one rank (not run by
    /// `mpirun -n N`, N ≥ 2) or the ranks run different builds (the
    /// workers then exit with code 1 without returning); on every rank
    /// when MPI cannot start here: it was initialized already in this
    /// process, or the library lacks `MPI_THREAD_SERIALIZED`.
    pub fn world() -> Result<Pool> {
        let Some((universe, threading)) = mpi::initialize_with_threading(Threading::Serialized)
        else {
            return Err(Error::Mpi(
                "MPI was initialized already in this process: there is one MPI pool per program"
                    .into(),
            ));
        };
        if threading < Threading::Serialized {
            return Err(Error::Mpi(format!(
                "this MPI library gives only {threading:?} threading; the pool needs Serialized"
            )));
        }
        let world = universe.world();
        let rank = world.rank();
        let size = world.size();
        let ranks = Ranks::exchange(&world);
        let checked = ranks.same_build();
        if rank != 0 {
            let code = match checked {
                Ok(()) => {
                    serve(universe);
                    0
                }
                Err(_) => {
                    // Rank 0 says why.
                    drop(universe);
                    1
                }
            };
            std::process::exit(code);
        }
        checked?;
        if size < 2 {
            return Err(Error::Mpi(
                "an MPI pool needs at least 2 ranks, rank 0 to submit and the others to work: \
                 run the program with `mpirun -n N program`, N ≥ 2"
                    .into(),
            ));
        }
        let ended = Arc::new(AtomicBool::new(false));
        let end = ended.clone();
        let pool = multiproc_pool::Pool::remote(
            size as usize - 1,
            move |jobs| {
                std::thread::Builder::new()
                    .name("mpi-dispatch".into())
                    .spawn(move || dispatch(jobs, ended))
                    .map_err(Error::from)
            },
            move || end.store(true, Ordering::Release),
        );
        let pool = match pool {
            Ok(pool) => pool,
            Err(e) => {
                // No dispatcher: the workers are told to stop from here,
                // so that the job ends.
                stop_workers(&world);
                return Err(e);
            }
        };
        drop(world);
        Ok(Pool {
            pool,
            hosts: ranks.hosts,
            _universe: universe,
        })
    }

    /// The number of ranks, rank 0 included (`mpirun -n N`'s N). Python
    /// (mpi4py): `MPI.COMM_WORLD.Get_size()`.
    pub fn ranks(&self) -> usize {
        self.hosts.len()
    }

    /// Each rank's host (`MPI_Get_processor_name`), by rank. Python
    /// (mpi4py): `MPI.Get_processor_name()` on each rank.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }
}

impl std::ops::Deref for Pool {
    type Target = multiproc_pool::Pool;

    fn deref(&self) -> &multiproc_pool::Pool {
        &self.pool
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mpi::Pool")
            .field("ranks", &self.ranks())
            .field("hosts", &self.hosts)
            .finish()
    }
}
