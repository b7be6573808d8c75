//! Process control with real processes, after `_TestProcess` and
//! `_TestSubclassingProcess` of CPython's `_test_multiprocessing.py`.

//!
//! Every test runs under each start method: `fork::name`,
//! `forkserver::name`, `spawn::name`.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multiproc as mp;
use multiproc_testkit::{LeakCheck, fd_count, is_running, output_within, wait_until};

/// Every wait on a child in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);

fn join<R>(p: &mp::Process<R>) {
    p.join_timeout(LIMIT).expect("child did not end in time");
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A child that sleeps for a minute unless killed: a daemon, so that a
/// failing test's exit ends it instead of waiting for it.
fn sleeper(ctx: mp::Context) -> mp::Process {
    ctx.builder(sleep_ms, (60_000,)).daemon(true).build()
}

fn my_pid() -> u32 {
    std::process::id()
}

fn panics(message: String) {
    panic!("{message}");
}

fn exits(code: i32) {
    std::process::exit(code);
}

fn two_sleeps_run_in_parallel(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let t = Duration::from_millis(500);
    let start = Instant::now();
    let mut a = ctx.process(sleep_ms, (500,));
    let mut b = ctx.process(sleep_ms, (500,));
    a.start().unwrap();
    b.start().unwrap();
    join(&a);
    join(&b);
    let took = start.elapsed();
    assert!(took >= t, "took {took:?}, less than one sleep");
    assert!(took < t.mul_f64(1.6), "took {took:?}: not in parallel");
    assert_eq!((a.exitcode(), b.exitcode()), (Some(0), Some(0)));
    drop((a, b));
    leaks.assert_clean();
}

fn pids_differ_and_match_what_children_report(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let mut a = ctx.process(my_pid, ());
    let mut b = ctx.process(my_pid, ());
    assert_eq!(a.pid(), None);
    a.start().unwrap();
    b.start().unwrap();
    join(&a);
    join(&b);
    let (pa, pb) = (a.pid().unwrap(), b.pid().unwrap());
    assert_ne!(pa, std::process::id());
    assert_ne!(pb, std::process::id());
    assert_ne!(pa, pb);
    assert_eq!(a.take_result().unwrap(), pa);
    assert_eq!(b.take_result().unwrap(), pb);
    drop((a, b));
    leaks.assert_clean();
}

fn is_alive_while_running_and_not_after_join(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let mut p = ctx.process(sleep_ms, (300,));
    assert!(!p.is_alive(), "alive before start");
    assert_eq!(p.exitcode(), None);
    p.start().unwrap();
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    join(&p);
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), Some(0));
    // Reaped: no zombie is left behind.
    let pid = p.pid().unwrap();
    assert!(wait_until(LIMIT, || multiproc_testkit::process_state(pid).is_none()));
    drop(p);
    leaks.assert_clean();
}

fn terminate_gives_minus_sigterm_and_kill_minus_sigkill(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let mut t = sleeper(ctx);
    let mut k = sleeper(ctx);
    t.start().unwrap();
    k.start().unwrap();
    t.terminate().unwrap();
    k.kill().unwrap();
    join(&t);
    join(&k);
    assert_eq!(t.exitcode(), Some(-15));
    assert_eq!(k.exitcode(), Some(-9));
    let err = k.take_result().unwrap_err();
    assert!(
        matches!(err, mp::Error::ChildKilled { signal: 9, .. }),
        "{err}"
    );
    assert!(err.to_string().ends_with("was killed by SIGKILL"), "{err}");
    // Signalling a process that ended is not an error.
    t.terminate().unwrap();
    drop((t, k));
    leaks.assert_clean();
}

fn join_timeout_returns_while_the_child_runs(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let mut p = sleeper(ctx);
    p.start().unwrap();
    let start = Instant::now();
    let r = p.join_timeout(Duration::from_millis(200));
    let took = start.elapsed();
    assert!(matches!(r, Err(mp::Error::Timeout)), "{r:?}");
    assert!(
        took >= Duration::from_millis(200),
        "gave up early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "gave up late: {took:?}");
    assert!(p.is_alive());
    p.kill().unwrap();
    join(&p);
    drop(p);
    leaks.assert_clean();
}

fn exit_codes_follow_python(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let mut ok = ctx.process(sleep_ms, (0,));
    let mut bad = ctx.process(panics, ("boom".to_string(),));
    let mut seven = ctx.process(exits, (7,));
    for p in [&mut ok, &mut bad] {
        p.start().unwrap();
    }
    seven.start().unwrap();
    join(&ok);
    join(&bad);
    join(&seven);
    assert_eq!(ok.exitcode(), Some(0));
    assert_eq!(bad.exitcode(), Some(1));
    assert_eq!(seven.exitcode(), Some(7));
    ok.take_result().unwrap();
    assert!(matches!(
        seven.take_result(),
        Err(mp::Error::ChildExited { code: 7, .. })
    ));
    drop((ok, bad, seven));
    leaks.assert_clean();
}

fn a_panic_reaches_the_parent_with_its_message(ctx: mp::Context) {
    let mut p = ctx
        .builder(panics, ("the answer is not 41".to_string(),))
        .name("worker")
        .build();
    p.start().unwrap();
    join(&p);
    match p.take_result() {
        Err(mp::Error::ChildPanicked { name, message }) => {
            assert_eq!(name, "worker");
            assert_eq!(message, "the answer is not 41");
        }
        other => panic!("expected ChildPanicked, got {other:?}"),
    }
}

fn a_panicking_child_prints_its_name_on_stderr(ctx: mp::Context) {
    let out = output_within(helper(ctx, "panic", &[]), LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "helper failed: {stderr}");
    assert!(stdout.contains("exitcode Some(1)"), "{stdout}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("Process-1 (pid "))
        .unwrap_or_else(|| panic!("no line prefixed with the process name in {stderr:?}"));
    assert!(line.contains("panicked at"), "{line}");
    assert!(stderr.contains("boom in child"), "{stderr}");
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct Record {
    name: String,
    score: u32,
    tags: Vec<String>,
}

fn combine(a: i64, b: String, c: Vec<u8>, d: Option<f64>, e: Record, f: (bool, char)) -> String {
    format!(
        "{a}|{b}|{c:?}|{d:?}|{}:{}:{:?}|{f:?}",
        e.name, e.score, e.tags
    )
}

fn big(n: usize) -> Vec<u64> {
    (0..n as u64).collect()
}

fn arguments_and_results_round_trip(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let rec = Record {
        name: "Sam".into(),
        score: 10,
        tags: vec!["a".into(), "b".into()],
    };
    let mut p = ctx.process(
        combine,
        (
            -5,
            "x y".to_string(),
            vec![1, 2],
            Some(2.5),
            rec,
            (true, 'é'),
        ),
    );
    p.start().unwrap();
    join(&p);
    assert_eq!(
        p.take_result().unwrap(),
        r#"-5|x y|[1, 2]|Some(2.5)|Sam:10:["a", "b"]|(true, 'é')"#
    );
    // A result far larger than a pipe buffer does not block the child.
    let mut q = ctx.process(big, (1 << 18,));
    q.start().unwrap();
    join(&q);
    let v = q.take_result().unwrap();
    assert_eq!(v.len(), 1 << 18);
    assert_eq!(v[12345], 12345);
    drop((p, q));
    leaks.assert_clean();
}

fn misuse_is_an_error_not_a_panic(ctx: mp::Context) {
    let mut p = ctx.process(sleep_ms, (300,));
    assert!(matches!(p.join(), Err(mp::Error::NotStarted)));
    assert!(matches!(p.terminate(), Err(mp::Error::NotStarted)));
    assert!(matches!(p.take_result(), Err(mp::Error::NotStarted)));
    p.start().unwrap();
    assert!(matches!(p.start(), Err(mp::Error::AlreadyStarted)));
    assert!(matches!(p.set_daemon(true), Err(mp::Error::AlreadyStarted)));
    assert!(matches!(p.close(), Err(mp::Error::StillRunning { .. })));
    assert!(matches!(
        p.take_result(),
        Err(mp::Error::StillRunning { .. })
    ));
    join(&p);
    p.take_result().unwrap();
    assert!(matches!(
        p.take_result(),
        Err(mp::Error::ResultTaken { .. })
    ));
    p.close().unwrap();
    assert!(matches!(p.join(), Err(mp::Error::ProcessClosed)));
    assert!(matches!(p.start(), Err(mp::Error::ProcessClosed)));
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), None);
}

fn identity() -> (String, u32, Option<(String, u32)>, bool) {
    let me = mp::current_process();
    let parent = mp::parent_process().map(|p| {
        assert!(p.is_alive());
        (p.name().to_string(), p.pid())
    });
    (me.name().to_string(), me.pid(), parent, me.is_daemon())
}

fn child_names(method: String) -> (String, String) {
    let ctx = mp::get_context(method.parse().expect("a start method"));
    let mut p = ctx.process(identity, ());
    p.start().expect("start grandchild");
    p.join_timeout(LIMIT).expect("join grandchild");
    let (name, ..) = p.take_result().expect("grandchild result");
    (mp::current_process().name().to_string(), name)
}

fn current_and_parent_process(ctx: mp::Context) {
    let me = mp::current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), std::process::id());
    assert!(mp::parent_process().is_none());

    let mut p = ctx.process(identity, ());
    let default_name = p.name().to_string();
    assert!(default_name.starts_with("Process-"), "{default_name}");
    p.start().unwrap();
    join(&p);
    let (name, pid, parent, daemon) = p.take_result().unwrap();
    assert_eq!(name, default_name);
    assert_eq!(Some(pid), p.pid());
    assert_eq!(
        parent,
        Some(("MainProcess".to_string(), std::process::id()))
    );
    assert!(!daemon);

    let mut named = ctx
        .builder(identity, ())
        .name("fetcher")
        .daemon(true)
        .build();
    named.start().unwrap();
    join(&named);
    let (name, _, _, daemon) = named.take_result().unwrap();
    assert_eq!(name, "fetcher");
    assert!(daemon);

    // A grandchild is named after its parent, as in Python: Process-N:1.
    let mut c = ctx.process(child_names, (ctx.start_method().to_string(),));
    c.start().unwrap();
    join(&c);
    let (child, grandchild) = c.take_result().unwrap();
    assert_eq!(grandchild, format!("{child}:1"));
}

fn start_from_daemon(method: String) -> String {
    let ctx = mp::get_context(method.parse().expect("a start method"));
    let mut p = ctx.process(sleep_ms, (0,));
    match p.start() {
        Ok(()) => "started".to_string(),
        Err(e) => e.to_string(),
    }
}

fn a_daemon_cannot_have_children(ctx: mp::Context) {
    let mut d = ctx
        .builder(start_from_daemon, (ctx.start_method().to_string(),))
        .daemon(true)
        .build();
    d.start().unwrap();
    join(&d);
    assert_eq!(
        d.take_result().unwrap(),
        "daemonic processes are not allowed to have children"
    );
}

fn active_children_lists_running_ones_and_reaps_the_rest(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let mut quick = ctx.process(sleep_ms, (0,));
    let mut slow = sleeper(ctx);
    quick.start().unwrap();
    slow.start().unwrap();
    let quick_pid = quick.pid().unwrap();
    // Dropped without join: the child is still reaped, never a zombie.
    drop(quick);
    assert!(wait_until(LIMIT, || {
        let live = mp::active_children();
        live.len() == 1 && live[0].pid() == slow.pid().unwrap()
    }));
    assert!(wait_until(LIMIT, || multiproc_testkit::process_state(
        quick_pid
    )
    .is_none()));
    slow.kill().unwrap();
    join(&slow);
    assert!(mp::active_children().is_empty());
    drop(slow);
    leaks.assert_clean();
}

fn open_fds() -> usize {
    fd_count()
}

fn a_child_does_not_inherit_its_siblings_descriptors(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let mut alone = ctx.process(open_fds, ());
    alone.start().unwrap();
    join(&alone);
    let baseline = alone.take_result().unwrap();
    let siblings: Vec<mp::Process> = (0..8)
        .map(|_| {
            let mut p = sleeper(ctx);
            p.start().unwrap();
            p
        })
        .collect();
    let mut last = ctx.process(open_fds, ());
    last.start().unwrap();
    join(&last);
    assert_eq!(last.take_result().unwrap(), baseline);
    for p in &siblings {
        p.kill().unwrap();
        join(p);
    }
    drop((alone, last, siblings));
    leaks.assert_clean();
}

/// Runs `mp_helper SCENARIO METHOD ARGS...`.
fn helper(ctx: mp::Context, scenario: &str, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_mp_helper"))
        .arg(scenario)
        .arg(ctx.start_method().name())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn read_pid(child: &mut std::process::Child) -> u32 {
    use std::io::BufRead;
    let mut line = String::new();
    let out = child.stdout.as_mut().unwrap();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    line.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a pid: {line:?}"))
}

fn wait_helper(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "helper did not exit in time");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn non_daemon_children_are_joined_at_exit(ctx: mp::Context) {
    let dir = std::env::temp_dir().join(format!("mp-exit-joins-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let mut h = helper(ctx, "exit-joins", &[dir.to_str().unwrap()]);
    let st = wait_helper(&mut h);
    assert!(st.success());
    // The parent waited for its child, which wrote the file 300 ms in.
    assert_eq!(std::fs::read_to_string(&dir).unwrap(), "done");
    std::fs::remove_file(&dir).unwrap();
}

fn daemon_children_are_terminated_at_exit(ctx: mp::Context) {
    let mut h = helper(ctx, "exit-terminates-daemon", &[]);
    let daemon = read_pid(&mut h);
    let st = wait_helper(&mut h);
    assert!(st.success());
    assert!(!is_running(daemon), "daemon {daemon} outlived its parent");
}

fn daemon_dies_with_killed_parent(ctx: mp::Context, from: &str) {
    let mut h = helper(ctx, "daemon-orphan", &[from]);
    let daemon = read_pid(&mut h);
    assert!(is_running(daemon));
    // Still there after the starting thread (if any) has ended.
    std::thread::sleep(Duration::from_millis(300));
    assert!(is_running(daemon), "daemon died before its parent");
    h.kill().unwrap();
    wait_helper(&mut h);
    assert!(
        wait_until(Duration::from_secs(5), || !is_running(daemon)),
        "daemon {daemon} outlived its SIGKILLed parent"
    );
}

fn a_daemon_dies_when_its_parent_is_killed(ctx: mp::Context) {
    daemon_dies_with_killed_parent(ctx, "main");
}

fn a_daemon_started_from_a_thread_outlives_the_thread_not_the_parent(ctx: mp::Context) {
    daemon_dies_with_killed_parent(ctx, "thread");
}

fn checksum(n: u64) -> u64 {
    (0..n).fold(0u64, |a, i| a.wrapping_mul(31).wrapping_add(i))
}

fn a_child_starts_while_a_background_thread_runs(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                v.push(vec![0u8; 64]);
                if v.len() > 1000 {
                    v.clear();
                }
            }
        })
    };
    for _ in 0..5 {
        let mut p = ctx.process(checksum, (10_000,));
        p.start().unwrap();
        join(&p);
        assert_eq!(p.take_result().unwrap(), checksum(10_000));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    busy.join().unwrap();
    leaks.assert_clean();
}

fn write_through(out: mp::handoff::HandoffFd, text: String) -> usize {
    use std::io::Write;
    let mut f = std::fs::File::from(std::os::fd::OwnedFd::from(out));
    f.write_all(text.as_bytes())
        .expect("write through the handed-off fd");
    text.len()
}

fn write_each(outs: Vec<mp::handoff::HandoffFd>) -> usize {
    let n = outs.len();
    for (i, out) in outs.into_iter().enumerate() {
        write_through(out, format!("pipe {i}"));
    }
    n
}

fn a_handle_hands_its_descriptor_to_the_child(ctx: mp::Context) {
    use std::io::{Read, Seek};
    use std::os::fd::OwnedFd;
    let leaks = LeakCheck::new();
    // One end of a pipe: the child writes, the parent reads to end of file,
    // which comes only once every copy of the write end is closed.
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut p = ctx.process(
        write_through,
        (
            mp::handoff::HandoffFd::from(OwnedFd::from(writer)),
            "through a pipe".to_string(),
        ),
    );
    p.start().unwrap();
    join(&p);
    assert_eq!(p.take_result().unwrap(), 14);
    let text = multiproc_testkit::within(LIMIT, move || {
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        text
    });
    assert_eq!(text, "through a pipe");

    // A file, written at the shared offset.
    let path = std::env::temp_dir().join(format!(
        "mp-handoff-{}-{}",
        std::process::id(),
        ctx.start_method()
    ));
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut q = ctx.process(
        write_through,
        (
            mp::handoff::HandoffFd::from(OwnedFd::from(file.try_clone().unwrap())),
            "into a file".to_string(),
        ),
    );
    q.start().unwrap();
    join(&q);
    q.take_result().unwrap();
    let mut file = file;
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text, "into a file");

    // Many descriptors in one value.
    let pipes: Vec<_> = (0..20).map(|_| std::io::pipe().unwrap()).collect();
    let (readers, writers): (Vec<_>, Vec<_>) = pipes.into_iter().unzip();
    let outs = writers
        .into_iter()
        .map(|w| mp::handoff::HandoffFd::from(OwnedFd::from(w)))
        .collect();
    let mut r = ctx.process(write_each, (outs,));
    r.start().unwrap();
    join(&r);
    assert_eq!(r.take_result().unwrap(), 20);
    for (i, mut reader) in readers.into_iter().enumerate() {
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, format!("pipe {i}"));
    }
    drop((p, q, r, file));
    leaks.assert_clean();
}

fn a_program_without_init_starts_processes(ctx: mp::Context) {
    let out = output_within(helper(ctx, "no-init", &[]), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "started, exitcode Some(0)");
}

#[test]
fn the_start_method_is_set_once_unless_forced() {
    let out = output_within(
        helper(mp::get_context(mp::StartMethod::Fork), "set-method", &[]),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "default forkserver",
            "set spawn: Ok(())",
            "set fork: the start method has already been set",
            "forced: fork",
            "child ran: Some(0) with fork",
        ]
    );
}

#[test]
fn fork_in_a_threaded_process_warns_or_is_refused() {
    let out = output_within(
        helper(mp::get_context(mp::StartMethod::Fork), "threaded-fork", &[]),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("deny: refusing to fork a process with"),
        "{stdout}"
    );
    assert!(stdout.contains("warn: Some(0)"), "{stdout}");
    assert!(stdout.contains("forkserver: Some(0)"), "{stdout}");
    assert_eq!(
        stderr.matches("may deadlock the child").count(),
        1,
        "{stderr}"
    );
}

fn my_parent() -> u32 {
    std::os::unix::process::parent_id()
}

#[test]
fn a_dead_fork_server_is_replaced() {
    let ctx = mp::get_context(mp::StartMethod::ForkServer);
    let mut first = ctx.process(my_parent, ());
    first.start().unwrap();
    join(&first);
    let server = first.take_result().unwrap();
    assert_ne!(
        server,
        std::process::id(),
        "a fork-server child is the server's"
    );
    let status = Command::new("kill")
        .arg("-9")
        .arg(server.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(wait_until(LIMIT, || !is_running(server)));
    let mut second = ctx.process(my_parent, ());
    second.start().unwrap();
    join(&second);
    assert_eq!(second.exitcode(), Some(0));
    let new_server = second.take_result().unwrap();
    assert_ne!(new_server, server);
}

#[test]
fn cpu_count_is_positive() {
    assert!(mp::cpu_count() >= 1);
}

fn own_method() -> String {
    mp::get_start_method().to_string()
}

/// This process's start method, and the one its own child (started with
/// the default) reports.
fn own_and_childs_method() -> (String, String) {
    let mut p = mp::Process::new(own_method, ());
    p.start().unwrap();
    join(&p);
    (own_method(), p.take_result().unwrap())
}

fn a_child_reports_the_method_that_started_it(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    let mut p = ctx.process(own_and_childs_method, ());
    p.start().unwrap();
    join(&p);
    let name = ctx.start_method().name().to_owned();
    // As CPython: the child's default is the method that started it, and
    // its own children use it too.
    assert_eq!(p.take_result().unwrap(), (name.clone(), name));
    drop(p);
    leaks.assert_clean();
}

/// Calls `init` in the child, as library code might, then starts a child
/// of its own.
fn init_then_start() -> u64 {
    mp::init();
    let mut p = mp::Process::new(square_of, (9,));
    p.start().unwrap();
    join(&p);
    p.take_result().unwrap()
}

fn square_of(n: u64) -> u64 {
    n * n
}

fn a_child_may_call_init(ctx: mp::Context) {
    let mut p = ctx.process(init_then_start, ());
    p.start().unwrap();
    join(&p);
    assert_eq!(p.take_result().unwrap(), 81);
}

fn program_arguments() -> Vec<String> {
    std::env::args().collect()
}

/// A child runs before `main` would (spawn, fork server), yet sees the
/// program's arguments as `main` does.
fn a_child_sees_the_program_arguments(ctx: mp::Context) {
    let mut p = ctx.process(program_arguments, ());
    p.start().unwrap();
    join(&p);
    assert_eq!(p.take_result().unwrap(), program_arguments());
}

fn parse_number(text: String) -> mp::Result<u64> {
    text.trim()
        .parse()
        .map_err(|e| mp::Error::InvalidArgument(format!("{text:?} is not a number: {e}")))
}

fn file_length(path: String) -> std::io::Result<usize> {
    Ok(std::fs::read(path)?.len())
}

fn boxed(fail: bool) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    if fail {
        return Err("boxed and sent".into());
    }
    Ok(1)
}

fn boxed_local(fail: bool) -> Result<u8, Box<dyn std::error::Error>> {
    if fail {
        return Err("boxed here".into());
    }
    Ok(2)
}

fn with_context(path: String) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    Ok(bytes.len())
}

fn string_error(fail: bool) -> Result<u8, String> {
    if fail { Err("just data".into()) } else { Ok(3) }
}

/// Runs `p` to its end; returns its exit code and what it gave back.
fn outcome<R: serde::de::DeserializeOwned>(mut p: mp::Process<R>) -> (Option<i32>, mp::Result<R>) {
    p.start().unwrap();
    join(&p);
    (p.exitcode(), p.take_result())
}

fn failed_message(result: mp::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(mp::Error::ChildFailed { message, .. }) => message,
        other => panic!("expected ChildFailed, got {other:?}"),
    }
}

fn a_target_may_return_a_result(ctx: mp::Context) {
    let leaks = LeakCheck::new();
    assert!(matches!(
        outcome(ctx.process(parse_number, (" 42 ".to_string(),))),
        (Some(0), Ok(42))
    ));
    let (code, result) = outcome(ctx.process(parse_number, ("forty".to_string(),)));
    assert_eq!(
        code,
        Some(1),
        "an error ends the child as an exception does"
    );
    let message = failed_message(result);
    assert!(
        message.starts_with("invalid argument: \"forty\" is not a number"),
        "{message}"
    );
    // std::io's error, through `?`.
    let (code, result) = outcome(ctx.process(file_length, ("/no/such/file".to_string(),)));
    assert_eq!(code, Some(1));
    assert!(failed_message(result).contains("No such file"));
    assert_eq!(
        outcome(ctx.process(file_length, ("/proc/self/stat".to_string(),))).0,
        Some(0)
    );
    // Boxed errors, with and without Send + Sync.
    assert!(matches!(
        outcome(ctx.process(boxed, (false,))),
        (Some(0), Ok(1))
    ));
    assert_eq!(
        failed_message(outcome(ctx.process(boxed, (true,))).1),
        "boxed and sent"
    );
    assert!(matches!(
        outcome(ctx.process(boxed_local, (false,))),
        (Some(0), Ok(2))
    ));
    assert_eq!(
        failed_message(outcome(ctx.process(boxed_local, (true,))).1),
        "boxed here"
    );
    // anyhow's error, with its chain of causes.
    let message = failed_message(outcome(ctx.process(with_context, ("/no/such".to_string(),))).1);
    assert!(
        message.starts_with("reading /no/such: No such file"),
        "{message}"
    );
    // A Result whose error is plain data (not an Error) is a value.
    assert!(matches!(
        outcome(ctx.process(string_error, (false,))),
        (Some(0), Ok(Ok(3)))
    ));
    match outcome(ctx.process(string_error, (true,))) {
        (Some(0), Ok(Err(e))) => assert_eq!(e, "just data"),
        other => panic!("{other:?}"),
    }
    leaks.assert_clean();
}

fn a_failed_child_says_why_on_stderr(ctx: mp::Context) {
    let out = output_within(helper(ctx, "fail", &[]), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.trim(), "exitcode Some(1)", "{stderr}");
    assert!(
        stderr.contains("Process-1 (pid ")
            && stderr.contains(") failed: \"no such thing\" does not exist"),
        "{stderr}"
    );
}

multiproc_testkit::each_start_method!(
    two_sleeps_run_in_parallel,
    pids_differ_and_match_what_children_report,
    is_alive_while_running_and_not_after_join,
    terminate_gives_minus_sigterm_and_kill_minus_sigkill,
    join_timeout_returns_while_the_child_runs,
    exit_codes_follow_python,
    a_panic_reaches_the_parent_with_its_message,
    a_panicking_child_prints_its_name_on_stderr,
    arguments_and_results_round_trip,
    misuse_is_an_error_not_a_panic,
    current_and_parent_process,
    a_daemon_cannot_have_children,
    active_children_lists_running_ones_and_reaps_the_rest,
    a_child_does_not_inherit_its_siblings_descriptors,
    non_daemon_children_are_joined_at_exit,
    daemon_children_are_terminated_at_exit,
    a_daemon_dies_when_its_parent_is_killed,
    a_daemon_started_from_a_thread_outlives_the_thread_not_the_parent,
    a_child_starts_while_a_background_thread_runs,
    a_handle_hands_its_descriptor_to_the_child,
    a_program_without_init_starts_processes,
    a_child_reports_the_method_that_started_it,
    a_child_may_call_init,
    a_child_sees_the_program_arguments,
    a_target_may_return_a_result,
    a_failed_child_says_why_on_stderr,
);

#[test]
fn the_fork_server_relays_a_system_error_with_its_errno() {
    let out = output_within(
        helper(
            mp::get_context(mp::StartMethod::ForkServer),
            "server-emfile",
            &[],
        ),
        LIMIT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // EMFILE, its kind and number kept, its prefix printed once.
    assert_eq!(
        stdout.trim(),
        "errno Some(24): i/o error: Too many open files (os error 24)"
    );
}

#[test]
fn exit_hooks_run_last_registered_first_by_priority() {
    let file = std::env::temp_dir().join(format!("multiproc-exit-order-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let out = output_within(
        helper(
            mp::get_context(mp::StartMethod::Fork),
            "exit-order",
            &[file.to_str().unwrap()],
        ),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let order = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    // As CPython's Finalize: higher priority first, then last registered
    // first (atexit's order).
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["urgent", "third", "second", "first", "last"]
    );
}
