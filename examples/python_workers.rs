//! Rust and Python programs sharing work through managers, both ways:
//!
//! 1. A Rust orchestrator: a Rust `Manager` served to Python programs
//!    (`serve_python_on`) publishes a jobs queue and a results queue as
//!    `get_jobs` and `get_results`; two stock Python workers
//!    (`examples/python/worker.py`, a `BaseManager` that registers those
//!    names) test numbers for primality.
//! 2. A Python orchestrator: a stock Python `BaseManager` server
//!    (`examples/python/orchestrator.py`) serves its queues; two Rust
//!    worker processes reach it with `mp::python::Manager` and square
//!    numbers.
//!
//! `cargo run --release --example python_workers` (needs `python3`; it
//! says so and skips without it).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc as mp;

const KEY: &str = "python workers key";
const WORKER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/worker.py");
const ORCHESTRATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/orchestrator.py");

fn python_found() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Rust worker of the Python orchestrator at `address`.
fn square_jobs(address: String) -> u64 {
    let run = || -> mp::Result<u64> {
        let m = mp::python::Manager::connect(&address.parse()?, KEY.as_bytes())?;
        let jobs = m.queue::<Option<i64>>("get_jobs")?;
        let results = m.queue::<i64>("get_results")?;
        let mut done = 0;
        while let Some(n) = jobs.get_timeout(Duration::from_secs(60))? {
            results.put(&(n * n))?;
            done += 1;
        }
        Ok(done)
    };
    run().expect("the Python orchestrator answers")
}

fn rust_orchestrator() -> mp::Result<()> {
    let m = mp::Manager::builder()
        .serve_python_on("127.0.0.1:0".parse()?, KEY.as_bytes())
        .start()?;
    let jobs = m.queue::<Option<u64>>()?;
    let results = m.queue::<(u64, bool)>()?;
    m.publish("get_jobs", &jobs)?;
    m.publish("get_results", &results)?;
    let address = m.python_address().expect("served").to_string();
    let numbers: Vec<u64> = (1_000_000..1_000_200).collect();
    for &n in &numbers {
        jobs.put(Some(n))?;
    }
    let mut workers = Vec::new();
    for _ in 0..2 {
        jobs.put(None)?;
        workers.push(
            Command::new("python3")
                .args([WORKER, &address, KEY])
                .spawn()?,
        );
    }
    let mut primes = Vec::new();
    for _ in &numbers {
        let (n, prime) = results.get_timeout(Duration::from_secs(60))?;
        if prime {
            primes.push(n);
        }
    }
    for mut w in workers {
        w.wait()?;
    }
    primes.sort_unstable();
    println!(
        "rust orchestrator: {} primes among {} numbers, from two Python workers: {:?} ...",
        primes.len(),
        numbers.len(),
        &primes[..3.min(primes.len())]
    );
    Ok(())
}

fn python_orchestrator() -> mp::Result<()> {
    let mut python = Command::new("python3")
        .args([ORCHESTRATOR, "100", KEY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(python.stdout.take().expect("piped"));
    let mut port = String::new();
    lines.read_line(&mut port)?;
    let address = format!("127.0.0.1:{}", port.trim());
    let mut workers: Vec<_> = (0..2)
        .map(|_| mp::Process::new(square_jobs, (address.clone(),)))
        .collect();
    for w in &mut workers {
        w.start()?;
    }
    let mut done = 0;
    for w in &mut workers {
        w.join_timeout(Duration::from_secs(60))?;
        done += w.take_result()?;
    }
    let mut summary = String::new();
    lines.read_line(&mut summary)?;
    // The workers are done with its queues: the orchestrator may go.
    drop(python.stdin.take());
    python.wait()?;
    println!("{} (two Rust workers took {done} jobs)", summary.trim());
    Ok(())
}

pub(crate) fn main() -> mp::Result<()> {
    if !python_found() {
        println!("python3 not found: skipping the Python workers");
        return Ok(());
    }
    rust_orchestrator()?;
    python_orchestrator()
}
