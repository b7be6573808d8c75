//! A small program the integration tests run as a whole process, for the
//! behaviours that only a program's start and exit show.
//!
//! `mp_helper SCENARIO [ARG]`:
//! - `panic`: a child panics with "boom in child"; prints its exit code.
//! - `exit-joins FILE`: starts a child that sleeps 300 ms then writes FILE,
//!   and returns from `main` at once (the child must be joined at exit).
//! - `exit-terminates-daemon`: starts a daemon that sleeps for a minute,
//!   prints its pid, and returns from `main` (the daemon must end with us).
//! - `daemon-orphan FROM_THREAD`: starts a daemon (from a helper thread
//!   that then exits when FROM_THREAD is `thread`), prints its pid and
//!   sleeps until killed.

use std::io::Write;
use std::time::Duration;

use multiproc as mp;

fn panicking() {
    panic!("boom in child");
}

fn sleep_then_write(path: String) {
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(path, "done").expect("write marker file");
}

fn sleep_long() {
    std::thread::sleep(Duration::from_secs(60));
}

fn start_daemon() -> mp::Result<mp::Process> {
    let mut d = mp::Process::builder(sleep_long, ()).daemon(true).build();
    d.start()?;
    Ok(d)
}

fn main() -> mp::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("panic") => {
            let mut p = mp::Process::new(panicking, ());
            p.start()?;
            p.join_timeout(Duration::from_secs(20))?;
            println!("exitcode {:?}", p.exitcode());
        }
        Some("exit-joins") => {
            let mut p = mp::Process::new(sleep_then_write, (args[2].clone(),));
            p.start()?;
            println!("started {}", p.pid().unwrap_or(0));
        }
        Some("exit-terminates-daemon") => {
            let d = start_daemon()?;
            println!("{}", d.pid().unwrap_or(0));
            std::io::stdout().flush()?;
            std::mem::forget(d);
        }
        Some("daemon-orphan") => {
            let from_thread = args.get(2).is_some_and(|a| a == "thread");
            let d = if from_thread {
                std::thread::spawn(start_daemon)
                    .join()
                    .map_err(|_| mp::Error::Unsupported("helper thread panicked"))??
            } else {
                start_daemon()?
            };
            println!("{}", d.pid().unwrap_or(0));
            std::io::stdout().flush()?;
            std::thread::sleep(Duration::from_secs(60));
        }
        _ => {
            eprintln!("usage: mp_helper SCENARIO [ARG]");
            std::process::exit(2);
        }
    }
    Ok(())
}
