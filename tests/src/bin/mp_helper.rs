//! A small program the integration tests run as a whole process, for the
//! behaviours that only a program's start and exit show.
//!
//! `mp_helper SCENARIO METHOD [ARG]`, METHOD a start method's name:
//! - `panic`: a child panics with "boom in child"; prints its exit code.
//! - `exit-joins FILE`: starts a child that sleeps 300 ms then writes FILE,
//!   and returns from `main` at once (the child must be joined at exit).
//! - `exit-terminates-daemon`: starts a daemon that sleeps for a minute,
//!   prints its pid, and returns from `main` (the daemon must end with us).
//! - `no-init`: starts a child without calling `init` first.
//! - `set-method`: sets the default start method twice, then forces it.
//! - `threaded-fork`: forks with a second thread running, refused then
//!   warned about.
//! - `shm-exit NAME keep|unlink`: creates named shared memory and exits,
//!   keeping it or not.
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

fn start_daemon(ctx: mp::Context) -> mp::Result<mp::Process> {
    let mut d = ctx.builder(sleep_long, ()).daemon(true).build();
    d.start()?;
    Ok(d)
}

fn set_method() -> mp::Result<()> {
    println!("default {}", mp::get_start_method());
    println!(
        "set spawn: {:?}",
        mp::set_start_method(mp::StartMethod::Spawn)
    );
    match mp::set_start_method(mp::StartMethod::Fork) {
        Err(e) => println!("set fork: {e}"),
        Ok(()) => println!("set fork: accepted twice"),
    }
    mp::set_start_method_force(mp::StartMethod::Fork);
    println!("forced: {}", mp::get_start_method());
    let mut p = mp::Process::new(sleep_ms, (0,));
    p.start()?;
    p.join_timeout(Duration::from_secs(20))?;
    println!("child ran: {:?} with {}", p.exitcode(), p.start_method());
    Ok(())
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn threaded_fork() -> mp::Result<()> {
    let _busy = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(60)));
    let fork = mp::get_context(mp::StartMethod::Fork);
    mp::set_threaded_fork(mp::ThreadedFork::Deny);
    match fork.process(sleep_ms, (0,)).start() {
        Err(e) => println!("deny: {e}"),
        Ok(()) => println!("deny: started"),
    }
    mp::set_threaded_fork(mp::ThreadedFork::Warn);
    for _ in 0..2 {
        let mut p = fork.process(sleep_ms, (0,));
        p.start()?;
        p.join_timeout(Duration::from_secs(20))?;
        println!("warn: {:?}", p.exitcode());
    }
    let mut p = mp::get_context(mp::StartMethod::ForkServer).process(sleep_ms, (0,));
    p.start()?;
    p.join_timeout(Duration::from_secs(20))?;
    println!("forkserver: {:?}", p.exitcode());
    Ok(())
}

fn main() -> mp::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "no-init") {
        // Deliberately before `init`.
        let method: mp::StartMethod = args[2].parse()?;
        let mut p = mp::get_context(method).process(sleep_ms, (0,));
        match p.start() {
            Ok(()) => {
                p.join_timeout(Duration::from_secs(20))?;
                println!("started, exitcode {:?}", p.exitcode());
            }
            Err(e) => println!("{e}"),
        }
        return Ok(());
    }
    mp::init();
    let method: mp::StartMethod = args
        .get(2)
        .map_or(Ok(mp::StartMethod::default()), |m| m.parse())?;
    let ctx = mp::get_context(method);
    match args.get(1).map(String::as_str) {
        Some("panic") => {
            let mut p = ctx.process(panicking, ());
            p.start()?;
            p.join_timeout(Duration::from_secs(20))?;
            println!("exitcode {:?}", p.exitcode());
        }
        Some("exit-joins") => {
            let mut p = ctx.process(sleep_then_write, (args[3].clone(),));
            p.start()?;
            println!("started {}", p.pid().unwrap_or(0));
        }
        Some("exit-terminates-daemon") => {
            let d = start_daemon(ctx)?;
            println!("{}", d.pid().unwrap_or(0));
            std::io::stdout().flush()?;
            std::mem::forget(d);
        }
        Some("set-method") => set_method()?,
        Some("shm-exit") => {
            let shm = mp::SharedMemory::create(Some(&args[3]), 4096)?;
            if args.get(4).is_some_and(|m| m == "keep") {
                shm.keep();
            }
        }
        Some("threaded-fork") => threaded_fork()?,
        Some("daemon-orphan") => {
            let from_thread = args.get(3).is_some_and(|a| a == "thread");
            let d = if from_thread {
                std::thread::spawn(move || start_daemon(ctx))
                    .join()
                    .map_err(|_| mp::Error::Unsupported("helper thread panicked"))??
            } else {
                start_daemon(ctx)?
            };
            println!("{}", d.pid().unwrap_or(0));
            std::io::stdout().flush()?;
            std::thread::sleep(Duration::from_secs(60));
        }
        Some("manager-orphan") => {
            let m = mp::Manager::builder().start_method(method).start()?;
            println!("{}", m.pid().unwrap_or(0));
            std::io::stdout().flush()?;
            std::thread::sleep(Duration::from_secs(60));
        }
        Some("manager-client") => {
            // Another program: connects to a served manager, takes numbers
            // from its "jobs" queue and puts their squares on "results".
            let address: mp::connection::Address = args[3].parse()?;
            let m = mp::Manager::connect(&address, args[4].as_bytes())?;
            let jobs: mp::QueueProxy<u64> = m.lookup("jobs")?;
            let results: mp::QueueProxy<u64> = m.lookup("results")?;
            while let Ok(n) = jobs.get_timeout(Duration::from_secs(2)) {
                if results.put(n * n).is_err() {
                    break;
                }
            }
            println!("done");
        }
        _ => {
            eprintln!("usage: mp_helper SCENARIO METHOD [ARG]");
            std::process::exit(2);
        }
    }
    Ok(())
}
