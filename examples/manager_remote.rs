//! A distributed work queue, as in Python's documentation of managers: a
//! server program serves a "jobs" queue and a "results" queue on a TCP
//! address; worker programs, started separately, connect with the shared
//! key, take jobs and put results.
//!
//! Run as it is, this program plays the server and starts two workers as
//! separate programs (itself, with `worker ADDRESS`). Run the parts by hand
//! on two terminals (or machines) with:
//!
//! ```text
//! cargo run --example manager_remote -- serve 127.0.0.1:50000
//! cargo run --example manager_remote -- worker 127.0.0.1:50000
//! ```
//!
//! Python:
//! ```python
//! class QueueManager(BaseManager): pass
//! QueueManager.register('get_queue', callable=lambda: queue)
//! m = QueueManager(address=('', 50000), authkey=b'abracadabra')
//! ```

use std::process::{Child, Command};
use std::time::Duration;

use mp::connection::Address;
use multiproc as mp;

const AUTHKEY: &[u8] = b"abracadabra";
const JOBS: u64 = 40;

/// A job: is `n` prime? (something for the worker to compute)
fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// A worker program: takes numbers until the queue stays empty for a
/// second, puts `(number, prime?, worker pid)` for each.
pub(crate) fn worker(address: &str) -> mp::Result<()> {
    let address: Address = address.parse()?;
    let manager = mp::Manager::connect(&address, AUTHKEY)?;
    let jobs: mp::QueueProxy<u64> = manager.lookup("jobs")?;
    let results: mp::QueueProxy<(u64, bool, u32)> = manager.lookup("results")?;
    let mut done = 0;
    while let Ok(n) = jobs.get_timeout(Duration::from_secs(1)) {
        results
            .put((n, is_prime(n), std::process::id()))
            .map_err(|e| mp::Error::InvalidArgument(format!("{e:?}")))?;
        done += 1;
    }
    println!("worker {} did {done} jobs", std::process::id());
    Ok(())
}

fn start_worker(address: &Address) -> mp::Result<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .arg("worker")
        .arg(address.to_string())
        .spawn()?)
}

/// The server: serves the queues, fills "jobs", collects "results".
pub(crate) fn serve(address: Address, spawn_workers: bool) -> mp::Result<()> {
    let manager = mp::Manager::builder().serve_on(address, AUTHKEY).start()?;
    let address = manager
        .address()
        .cloned()
        .expect("a served manager has an address");
    println!("serving on {address}");
    let jobs = manager.queue::<u64>()?;
    let results = manager.queue::<(u64, bool, u32)>()?;
    manager.publish("jobs", &jobs)?;
    manager.publish("results", &results)?;
    for n in 1_000_000..1_000_000 + JOBS {
        jobs.put(n)
            .map_err(|e| mp::Error::InvalidArgument(format!("{e:?}")))?;
    }
    let mut workers = Vec::new();
    if spawn_workers {
        for _ in 0..2 {
            workers.push(start_worker(&address)?);
        }
    }
    let mut primes = Vec::new();
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..JOBS {
        let (n, prime, pid) = results.get_timeout(Duration::from_secs(60))?;
        pids.insert(pid);
        if prime {
            primes.push(n);
        }
    }
    for mut w in workers {
        w.wait()?;
    }
    primes.sort_unstable();
    println!(
        "{} workers answered {JOBS} jobs; primes: {primes:?}",
        pids.len()
    );
    Ok(())
}

pub(crate) fn main() -> mp::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("worker") => worker(&args[2]),
        Some("serve") => serve(args[2].parse()?, false),
        _ => serve("127.0.0.1:0".parse()?, true),
    }
}
