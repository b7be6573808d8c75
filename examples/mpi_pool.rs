//! The Pool on a cluster: the seed's Pool program, then the primes below
//! 3 million, with the ranks of an MPI job as the workers.
//!
//! ```text
//! cargo build --release --features mpi --example mpi_pool
//! mpirun -n 4 target/release/examples/mpi_pool
//! ```
//!
//! Every rank runs `main`; `mp::mpi::Pool::world()` returns the pool on
//! rank 0 and makes ranks 1 to 3 its workers. On several machines, copy the
//! same build to each (the ranks check that they run the same binary) and
//! name the machines in a host file, one line each with how many ranks it
//! takes:
//!
//! ```text
//! node1:4
//! node2:4
//! ```
//!
//! then `mpirun -f hosts -n 8 target/release/examples/mpi_pool` (MPICH;
//! Open MPI writes `node1 slots=4` and takes `--hostfile hosts`).
//!
//! Inside a rank, a task may use that node's cores: `count_primes` splits
//! its range over rayon's threads (a local `mp::Pool` works as well).

use multiproc as mp;
use rayon::prelude::*;

const LIMIT: u64 = 3_000_000;
const STEP: u64 = 50_000;

/// The seed's function, saying which host and process ran it.
fn square(n: i64) -> (i64, String) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    (n * n, format!("{} pid {}", host.trim(), std::process::id()))
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// The primes in `[from, from + STEP)`, counted on this node's cores.
fn count_primes(from: u64) -> u64 {
    (from..from + STEP)
        .into_par_iter()
        .filter(|&n| is_prime(n))
        .count() as u64
}

/// Written for a local pool; the MPI pool is one, so this runs on the
/// ranks unchanged.
fn primes_below(pool: &mp::Pool, limit: u64) -> mp::Result<u64> {
    let starts: Vec<u64> = (0..limit).step_by(STEP as usize).collect();
    Ok(pool.map(count_primes, starts)?.iter().sum())
}

fn main() -> mp::Result<()> {
    // Ranks 1.. serve in here, and exit when rank 0's pool is dropped.
    let pool = mp::mpi::Pool::world()?;
    println!(
        "MPI pool: {} ranks on {:?}, {} workers",
        pool.ranks(),
        pool.hosts(),
        pool.processes()
    );

    // The seed program.
    let mylist = vec![1, 2, 3, 4, 5];
    let result = pool.map(square, mylist)?;
    for (n, (_, by)) in result.iter().enumerate() {
        println!("Worker for {}: {by}", n + 1);
    }
    let squares: Vec<i64> = result.into_iter().map(|(s, _)| s).collect();
    println!("{squares:?}");

    // A CPU-bound map.
    let started = std::time::Instant::now();
    let total = primes_below(&pool, LIMIT)?;
    println!(
        "{total} primes below {LIMIT}, counted by {} ranks in {:.2?}",
        pool.processes(),
        started.elapsed()
    );
    assert_eq!(total, 216_816);
    Ok(())
}
