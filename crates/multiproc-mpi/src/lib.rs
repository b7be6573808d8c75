//! multiproc's [`Pool`] on a cluster, through MPI (rsmpi): the program runs
//! under `mpirun -n N`, rank 0 holds the pool, ranks 1 to N-1 run its
//! tasks. MPI starts the processes, places them on hosts and moves the
//! bytes; this crate only hands out the pool's chunks, one per idle
//! worker, and brings back the results.
//!
//! Re-exported by `multiproc` as `mp::mpi` with its `mpi` feature. Building
//! it needs an MPI library (MPICH or Open MPI, with `mpicc`) and libclang.

#![forbid(unsafe_code)]

mod build_check;
mod dispatch;
mod pool;
mod wire;
mod worker;

pub use pool::Pool;
