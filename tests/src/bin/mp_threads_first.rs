//! A program whose `main` starts three threads before anything else, for
//! the start-model tests: `mp_threads_first MODE FILE`.
//!
//! It appends `main <pid>` to FILE first thing in `main`, starts three
//! threads that sleep, then:
//! - `init-only`: calls `mp::init()` and returns at once;
//! - `start-one`: runs one process (no `init`) that appends
//!   `child <pid> <start method> <threads>` to FILE, joins it, and returns;
//! - `daemon-then-wait`: starts a daemon process that sleeps for a minute,
//!   prints `ready`, and sleeps until killed.

use std::io::Write;
use std::time::Duration;

use multiproc as mp;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

fn child(file: String) {
    let line = format!(
        "child {} {} {}",
        std::process::id(),
        mp::get_start_method(),
        threads()
    );
    multiproc_tests::append_line(&file, &line);
}

fn nap(seconds: u64) {
    std::thread::sleep(Duration::from_secs(seconds));
}

fn main() -> mp::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (mode, file) = (args[1].as_str(), args[2].clone());
    multiproc_tests::append_line(&file, &format!("main {}", std::process::id()));
    for _ in 0..3 {
        std::thread::spawn(|| std::thread::sleep(Duration::from_secs(30)));
    }
    match mode {
        "init-only" => mp::init(),
        "start-one" => {
            let mut p = mp::Process::new(child, (file,));
            p.start()?;
            p.join_timeout(Duration::from_secs(20))?;
        }
        "daemon-then-wait" => {
            let d = mp::Process::builder(nap, (60,)).daemon(true).start()?;
            println!("ready {}", d.pid().unwrap_or(0));
            std::io::stdout().flush()?;
            std::thread::sleep(Duration::from_secs(60));
        }
        _ => std::process::exit(2),
    }
    Ok(())
}
