//! A tour of multiproc: the seed tutorial's programs, one after another,
//! each printing what the Python original prints.
//!
//! `cargo run --release --example tour`

use multiproc as mp;

#[path = "async_pipeline.rs"]
mod async_pipeline;
#[path = "executor.rs"]
mod executor;
#[path = "manager_remote.rs"]
mod manager_remote;
#[path = "pool_progress.rs"]
mod pool_progress;
#[path = "python_workers.rs"]
mod python_workers;
#[path = "seed_lock.rs"]
mod seed_lock;
#[path = "seed_manager.rs"]
mod seed_manager;
#[path = "seed_pids.rs"]
mod seed_pids;
#[path = "seed_pipe.rs"]
mod seed_pipe;
#[path = "seed_pool.rs"]
mod seed_pool;
#[path = "seed_queue.rs"]
mod seed_queue;
#[path = "seed_shared_memory.rs"]
mod seed_shared_memory;
#[path = "seed_sleep.rs"]
mod seed_sleep;
#[path = "tokio_processes.rs"]
mod tokio_processes;

fn section(title: &str) {
    println!("\n=== {title} ===");
}

fn main() -> mp::Result<()> {
    // The remote-manager section starts this program again as its workers.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "worker") {
        return manager_remote::worker(&args[2]);
    }
    println!(
        "multiproc tour: running in {} (pid {}), {} CPUs",
        mp::current_process().name(),
        std::process::id(),
        mp::cpu_count()
    );

    section("1. Process, start, join: two sleeps at once");
    seed_sleep::main()?;

    section("2. pid and is_alive");
    seed_pids::main()?;

    section("3. Array and Value in shared memory");
    seed_shared_memory::main()?;

    section("4. a list held by a Manager, shared by two processes");
    seed_manager::main()?;

    section("5. a Queue between two processes");
    seed_queue::main()?;

    section("6. a Pipe between a sender and a receiver");
    seed_pipe::main()?;

    section("7. a race on a shared balance, then a Lock");
    seed_lock::main()?;

    section("8. a Pool maps square over a list");
    seed_pool::main()?;

    section("a Manager serving queues on TCP to two worker programs");
    manager_remote::main()?;

    section("counting primes on a Pool, with a progress bar over imap");
    pool_progress::main()?;

    section("an executor: jobs with a time limit, hung ones killed");
    executor::main()?;

    section("processes and a Pool from async code (tokio)");
    tokio_processes::main()?;

    section("an async pipeline: a Queue and a Pool awaited on tokio");
    async_pipeline::main()?;

    section("Python and Rust programs sharing work through managers, both ways");
    python_workers::main()?;

    println!(
        "\ntour finished: the {} seed programs, a distributed queue, a pool with progress, \
         an executor with time limits, processes from async code, an async pipeline, \
         Python workers and a Python orchestrator",
        8
    );
    Ok(())
}
