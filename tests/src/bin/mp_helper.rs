//! A small program the integration tests run as a whole process, for the
//! behaviours that only a program's start and exit show.
//!
//! `mp_helper SCENARIO METHOD [ARG]`, METHOD a start method's name:
//! - `panic`: a child panics with "boom in child"; prints its exit code.
//! - `fail`: a child's target returns an error; prints its exit code.
//! - `exit-joins FILE`: starts a child that sleeps 300 ms then writes FILE,
//!   and returns from `main` at once (the child must be joined at exit).
//! - `exit-terminates-daemon`: starts a daemon that sleeps for a minute,
//!   prints its pid, and returns from `main` (the daemon must end with us).
//! - `no-init`: starts a child without calling `init` at all.
//! - `set-method`: sets the default start method twice, then forces it.
//! - `threaded-fork`: forks with a second thread running, refused then
//!   warned about.
//! - `shm-exit NAME keep|unlink`: creates named shared memory and exits,
//!   keeping it or not.
//! - `daemon-orphan FROM_THREAD`: starts a daemon (from a helper thread
//!   that then exits when FROM_THREAD is `thread`), prints its pid and
//!   sleeps until killed.
//! - `count FILE`: appends `main <pid>` to FILE, first thing in `main`.
//! - `launch-then-die FILE`: starts `mp_helper count FILE` as if it were a
//!   spawned child (the launch variable, a socket at descriptor 3), prints
//!   its pid, and SIGKILLs itself before sending a launch.
//! - `orphan-launch FILE`: runs `launch-then-die FILE` as a subreaper, so
//!   that it can reap the orphan, and prints `orphan exit CODE` or
//!   `orphan signal N`.
//! - `craft-launch FILE`: prints, in hex, the launch message that makes a
//!   spawned child of this binary run `pwned(FILE)`.
//! - `secure-probe FILE [EUID]`: (with EUID, as root, first makes EUID its
//!   effective user id only) appends `main uid=R euid=E` to FILE, runs one
//!   process with the default start method (it appends `child METHOD`),
//!   then tries spawn and prints `spawn: OUTCOME`.
//! - `ids`: prints `uid=R euid=E`.
//! - `exit-order METHOD FILE`: registers five exit hooks of several priorities,
//!   each appending its name to FILE, and returns from `main`.
//! - `server-emfile METHOD`: starts its fork server with hardly a descriptor to
//!   spare, then starts a process, and prints the error it gets as
//!   `errno N: MESSAGE`.

use std::io::Write;
use std::time::Duration;

use multiproc as mp;

fn panicking() {
    panic!("boom in child");
}

fn failing() -> mp::Result<u64> {
    Err(mp::Error::NotFound("no such thing".into()))
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

/// What an attacker would like a privileged copy of this program to run.
fn pwned(file: String) {
    multiproc_tests::append_line(
        &file,
        &format!(
            "pwned {} euid={}",
            std::process::id(),
            rustix::process::geteuid().as_raw()
        ),
    );
}

fn child_reports_method(file: String) {
    multiproc_tests::append_line(&file, &format!("child {}", mp::get_start_method()));
}

/// Starts `mp_helper count FILE` with a launch variable and a socket at
/// descriptor 3 (placed there by `sh`), then dies before sending anything.
fn launch_then_die(file: &str) -> std::io::Result<()> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let me = std::env::current_exe()?;
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" count \"$1\" 3<&0 </dev/null")
        .arg(me)
        .arg(file)
        .env("MULTIPROC_SPAWN", format!("3:{}", std::process::id()))
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            theirs,
        )))
        .spawn()?;
    println!("{}", child.id());
    std::io::stdout().flush()?;
    // Our end is still open here: it closes only with our death.
    let _keep = ours;
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL)?;
    Ok(())
}

/// Runs `launch-then-die` and reaps the orphan it leaves.
fn orphan_launch(file: &str) -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    let mut dier = std::process::Command::new(std::env::current_exe()?)
        .args(["launch-then-die", file])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut out = String::new();
    if let Some(mut stdout) = dier.stdout.take() {
        std::io::Read::read_to_string(&mut stdout, &mut out)?;
    }
    dier.wait()?;
    let pid: i32 = out
        .trim()
        .parse()
        .map_err(|_| std::io::Error::other(format!("no pid in {out:?}")))?;
    let pid = rustix::process::Pid::from_raw(pid).ok_or_else(|| std::io::Error::other("pid 0"))?;
    match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())? {
        Some((_, status)) => match (status.exit_status(), status.terminating_signal()) {
            (Some(code), _) => println!("orphan exit {code}"),
            (_, Some(signal)) => println!("orphan signal {signal}"),
            _ => println!("orphan unknown"),
        },
        None => println!("orphan unknown"),
    }
    Ok(())
}

fn secure_probe(file: &str, euid: Option<&String>) -> mp::Result<()> {
    if let Some(euid) = euid {
        let euid: u32 = euid
            .parse()
            .map_err(|_| mp::Error::InvalidArgument(format!("euid {euid:?}")))?;
        // This program has one thread, so the thread's ids are its ids.
        rustix::thread::set_thread_res_uid(None, rustix::process::Uid::from_raw(euid), None)
            .map_err(std::io::Error::from)?;
    }
    multiproc_tests::append_line(
        file,
        &format!(
            "main uid={} euid={}",
            rustix::process::getuid().as_raw(),
            rustix::process::geteuid().as_raw()
        ),
    );
    let mut p = mp::Process::new(child_reports_method, (file.to_owned(),));
    p.start()?;
    p.join_timeout(Duration::from_secs(20))?;
    let mut s = mp::get_context(mp::StartMethod::Spawn).process(sleep_ms, (0,));
    match s.start() {
        Ok(()) => {
            s.join_timeout(Duration::from_secs(20))?;
            println!("spawn: started, exitcode {:?}", s.exitcode());
        }
        Err(e) => println!("spawn: {e}"),
    }
    Ok(())
}

/// Where the exit hooks of `exit-order` write.
static HOOK_FILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn hook_line(name: &str) {
    if let Some(file) = HOOK_FILE.get() {
        multiproc_tests::append_line(file, name);
    }
}

fn exit_order(file: &str) {
    let _ = HOOK_FILE.set(file.to_owned());
    mp::at_exit(|| hook_line("first"));
    mp::at_exit(|| hook_line("second"));
    mp::at_exit_with_priority(|| hook_line("urgent"), 10);
    mp::at_exit(|| hook_line("third"));
    mp::at_exit_with_priority(|| hook_line("last"), -1);
}

/// The fork server, left with no descriptor to spare, cannot open a pidfd
/// for the child it forks: its error must arrive with its errno, once.
fn server_emfile() -> mp::Result<()> {
    use rustix::process::{Resource, Rlimit, prlimit};
    mp::init();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let server = loop {
        let found = multiproc_testkit::my_children().into_iter().find(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|e| e.starts_with(b"MULTIPROC_FORKSERVER="))
            })
        });
        match found {
            Some(pid) => break pid,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            None => return Err(mp::Error::NotFound("the fork server".into())),
        }
    };
    // The server holds descriptors 0 to 4 (4: its tracker's listener), and
    // will receive the child's channel at 5: a limit of 6 leaves no room
    // for the pidfd.
    let pid = rustix::process::Pid::from_raw(server as i32)
        .ok_or_else(|| mp::Error::InvalidArgument("pid 0".into()))?;
    let now = rustix::process::getrlimit(Resource::Nofile);
    prlimit(
        Some(pid),
        Resource::Nofile,
        Rlimit {
            current: Some(6),
            maximum: now.maximum,
        },
    )
    .map_err(std::io::Error::from)?;
    let mut p = mp::Process::new(sleep_ms, (0,));
    match p.start() {
        Ok(()) => {
            p.join_timeout(Duration::from_secs(20))?;
            println!("started");
        }
        Err(mp::Error::Io(e)) => println!("errno {:?}: {}", e.raw_os_error(), mp::Error::Io(e)),
        Err(e) => println!("other: {e}"),
    }
    Ok(())
}

fn create_shm_and_wait(name: String, ready: mp::Event) {
    let shm = mp::SharedMemory::create(Some(&name), 4096).expect("create");
    ready.set();
    std::thread::sleep(Duration::from_secs(60));
    drop(shm);
}

fn main() -> mp::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("count") => {
            multiproc_tests::append_line(&args[2], &format!("main {}", std::process::id()));
            return Ok(());
        }
        Some("launch-then-die") => return Ok(launch_then_die(&args[2])?),
        Some("orphan-launch") => return Ok(orphan_launch(&args[2])?),
        Some("craft-launch") => {
            let bytes = multiproc_process::launch_message(pwned, (args[2].clone(),))?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            println!("{hex}");
            return Ok(());
        }
        Some("secure-probe") => return secure_probe(&args[2], args.get(3)),
        Some("ids") => {
            println!(
                "uid={} euid={}",
                rustix::process::getuid().as_raw(),
                rustix::process::geteuid().as_raw()
            );
            return Ok(());
        }
        _ => {}
    }
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
        Some("exit-order") => exit_order(&args[3]),
        Some("server-emfile") => server_emfile()?,
        Some("fail") => {
            let mut p = ctx.process(failing, ());
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
        Some("shm-hold") => {
            // Creates named shared memory (here, or in a daemon child),
            // says so, and waits to be killed.
            let name = args[3].clone();
            let (mut _child, mut _shm) = (None, None);
            if args.get(4).is_some_and(|a| a == "child") {
                let ready = mp::Event::new()?;
                let mut d = ctx
                    .builder(create_shm_and_wait, (name, ready.clone()))
                    .daemon(true)
                    .build();
                d.start()?;
                if !ready.wait_timeout(Duration::from_secs(20)) {
                    return Err(mp::Error::Timeout);
                }
                _child = Some(d);
            } else {
                _shm = Some(mp::SharedMemory::create(Some(&name), 4096)?);
            }
            println!("ready");
            std::io::stdout().flush()?;
            std::thread::sleep(Duration::from_secs(60));
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
