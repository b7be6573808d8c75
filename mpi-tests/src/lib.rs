//! Programs that run under `mpirun` for the MPI pool's tests and
//! benchmarks: `src/bin/mpi_scenarios.rs` (one scenario per run, chosen by
//! its first argument) and `benches/mpi.rs`.
