//! The start model from a user's side: whatever shape a program has, its
//! `main` runs once, its children run only their targets, and nothing of it
//! is left once it has exited. Each program here is a whole binary,
//! launched many times.
//!
//! There is no `test_setup!()` in this file: it checks that a test binary
//! needs none.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use multiproc as mp;
use multiproc_testkit::{processes_with_env, wait_until};

/// Every wait on a launched program is bounded by this.
const LIMIT: Duration = Duration::from_secs(20);
/// How many times each program is launched.
const LAUNCHES: usize = 50;
/// The exit code of a child that could not receive its launch.
const LAUNCH_FAILED: i32 = mp::LAUNCH_FAILED;

/// A file of its own for each test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "multiproc-start-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let _ = std::fs::remove_file(&path);
        Scratch(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `cmd` to its end, killing it after [`LIMIT`].
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not end within {LIMIT:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.wait_with_output().unwrap()
}

/// A value for `MP_LAUNCH_TAG`, the variable that marks every process of
/// one test's launches (they inherit it).
fn new_tag() -> String {
    format!("{}-{:?}", std::process::id(), Instant::now())
}

/// Asserts that, within 2 s, no process marked with `tag` is left.
fn assert_none_left(tag: &str) {
    assert!(
        wait_until(Duration::from_secs(2), || processes_with_env(
            "MP_LAUNCH_TAG",
            tag
        )
        .is_empty()),
        "processes left behind: {:?}",
        processes_with_env("MP_LAUNCH_TAG", tag)
    );
}

/// Launches `program` [`LAUNCHES`] times, alternating the two modes, with a
/// variable that marks every process of the run; checks that each launch
/// succeeded and that none of its processes is left 2 s after the last.
/// Returns the lines the launches wrote.
fn launch_many(program: &Path, modes: [&str; 2], file: &Scratch) -> Vec<String> {
    let tag = new_tag();
    for i in 0..LAUNCHES {
        let mut cmd = Command::new(program);
        cmd.args([modes[i % 2], file.path()])
            .env("MP_LAUNCH_TAG", &tag);
        let out = run(cmd);
        assert!(
            out.status.success(),
            "launch {i} ({}): {:?}; stderr: {}",
            modes[i % 2],
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_none_left(&tag);
    file.lines()
}

fn starting_with<'a>(lines: &'a [String], word: &str) -> Vec<&'a String> {
    lines
        .iter()
        .filter(|l| l.split(' ').next() == Some(word))
        .collect()
}

/// Launches `program` in its `init-only` and `start-one` modes, and checks
/// that its `main` ran once per launch and its child once per `start-one`,
/// each child's line ending with `child_says`.
fn main_runs_once_per_launch(name: &str, program: &str, child_says: &str) {
    let file = Scratch::new(name);
    let lines = launch_many(Path::new(program), ["init-only", "start-one"], &file);
    assert_eq!(starting_with(&lines, "main").len(), LAUNCHES, "{lines:#?}");
    let children = starting_with(&lines, "child");
    assert_eq!(children.len(), LAUNCHES / 2, "{lines:#?}");
    for c in children {
        assert!(c.ends_with(child_says), "{c}");
    }
}

#[test]
fn a_tokio_program_runs_main_once_per_launch() {
    // The child built a runtime of its own, and knows how it started.
    main_runs_once_per_launch("tokio", env!("CARGO_BIN_EXE_mp_tokio"), " forkserver 7");
}

#[test]
fn a_program_that_starts_threads_first_runs_main_once_per_launch() {
    // Forked from a fork server in which nothing of main ran: one thread,
    // not the program's four.
    main_runs_once_per_launch(
        "threads",
        env!("CARGO_BIN_EXE_mp_threads_first"),
        " forkserver 1",
    );
}

#[test]
fn nothing_is_left_when_a_program_is_killed() {
    use std::io::BufRead;
    let file = Scratch::new("killed");
    let tag = new_tag();
    for _ in 0..10 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mp_threads_first"))
            .args(["daemon-then-wait", file.path()])
            .env("MP_LAUNCH_TAG", &tag)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        multiproc_testkit::within(LIMIT, move || {
            std::io::BufReader::new(stdout)
                .read_line(&mut line)
                .unwrap();
            line
        });
        // The program, its fork server and its daemon child run now.
        assert!(processes_with_env("MP_LAUNCH_TAG", &tag).len() >= 3);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // The server sees its control socket close, the daemons their parent
    // go; no one is left.
    assert_none_left(&tag);
}

fn triple(n: u64) -> u64 {
    n * 3
}

/// Calls `init` inside a test, as a user might, and runs a process. When
/// run by the test below, it also counts its runs in a file.
#[test]
fn init_inside_a_test() {
    if let Ok(file) = std::env::var("MP_COUNT_FILE") {
        multiproc_tests::append_line(&file, &format!("main {}", std::process::id()));
    }
    mp::init();
    let mut p = mp::Process::new(triple, (14,));
    p.start().unwrap();
    p.join_timeout(LIMIT).unwrap();
    assert_eq!(p.take_result().unwrap(), 42);
}

#[test]
fn a_test_binary_that_calls_init_inside_a_test_runs_it_once_per_launch() {
    let file = Scratch::new("harness");
    let tag = new_tag();
    let me = std::env::current_exe().unwrap();
    for i in 0..LAUNCHES {
        let mut cmd = Command::new(&me);
        cmd.args(["init_inside_a_test", "--exact", "--test-threads=1"])
            .env("MP_COUNT_FILE", file.path())
            .env("MP_LAUNCH_TAG", &tag);
        let out = run(cmd);
        assert!(
            out.status.success(),
            "launch {i}: {:?}; stdout: {}; stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The harness ran exactly the one test, once.
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_none_left(&tag);
    assert_eq!(starting_with(&file.lines(), "main").len(), LAUNCHES);
}

fn helper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mp_helper"))
}

#[test]
fn a_spawned_child_whose_parent_died_before_its_launch_runs_nothing() {
    for _ in 0..5 {
        let file = Scratch::new("orphan");
        let mut cmd = helper();
        cmd.args(["orphan-launch", file.path()]);
        let out = run(cmd);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), format!("orphan exit {LAUNCH_FAILED}"));
        assert!(file.lines().is_empty(), "main ran: {:?}", file.lines());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("its parent is gone"), "{stderr}");
    }
}

#[test]
fn a_launch_variable_without_its_channel_runs_nothing() {
    for (var, value, why) in [
        ("MULTIPROC_SPAWN", "3:1", "not open"),
        ("MULTIPROC_FORKSERVER", "3:1", "not open"),
        ("MULTIPROC_SPAWN", "three", "malformed"),
    ] {
        let file = Scratch::new("no-channel");
        let mut cmd = helper();
        cmd.args(["count", file.path()]).env(var, value);
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(LAUNCH_FAILED),
            "{var}={value}: {stderr}"
        );
        assert!(file.lines().is_empty(), "main ran: {:?}", file.lines());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
    }
    // Descriptor 3 open but not a socket (the shell opens /dev/null there).
    let file = Scratch::new("not-a-socket");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec \"$0\" count \"$1\" 3</dev/null")
        .arg(env!("CARGO_BIN_EXE_mp_helper"))
        .arg(file.path())
        .env("MULTIPROC_SPAWN", "3:1");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(LAUNCH_FAILED), "{stderr}");
    assert!(stderr.contains("not a socket"), "{stderr}");
    assert!(file.lines().is_empty());
}

/// Runs `program ARGS` as `user` (by `setpriv`), with a launch variable and
/// a socket at descriptor 3 that holds `launch` (put there by `sh`).
fn run_as_with_launch(user: &str, program: &Path, args: &[&str], launch: &[u8]) -> Output {
    use std::io::Write;
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.write_all(launch).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={user}"),
        &format!("--regid={user}"),
        "--clear-groups",
        "sh",
        "-c",
        "exec \"$0\" \"$@\" 3<&0 </dev/null",
    ])
    .arg(program)
    .args(args)
    .env("MULTIPROC_SPAWN", format!("3:{}", std::process::id()));
    let mut child = cmd
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < LIMIT, "{program:?} did not end in time");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(ours);
    child.wait_with_output().unwrap()
}

/// Why the setuid test cannot run here, if it cannot.
fn setuid_unavailable(user: &str) -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root, so no setuid copy can be made".into());
    }
    let known = Command::new("id").arg("-u").arg(user).output();
    if known.is_ok_and(|o| o.status.success()) {
        return None;
    }
    match Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "useradd failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("useradd is not available: {e}")),
    }
}

#[test]
fn a_setuid_program_ignores_the_launch_variables() {
    const USER: &str = "multiproc-test";
    if let Some(why) = setuid_unavailable(USER) {
        println!("skipped: {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("multiproc-setuid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let set_mode = |path: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set_mode(&dir, 0o777);
    let plain = dir.join("plain");
    let setuid = dir.join("setuid");
    for copy in [&plain, &setuid] {
        std::fs::copy(env!("CARGO_BIN_EXE_mp_helper"), copy).unwrap();
    }
    set_mode(&plain, 0o755);
    set_mode(&setuid, 0o4755);
    let (control, attack) = (dir.join("control"), dir.join("attack"));
    // The attacker's launch: run `pwned` of this binary.
    let launch_for = |marker: &Path| -> Vec<u8> {
        let out = Command::new(&plain)
            .arg("craft-launch")
            .arg(marker)
            .output()
            .unwrap();
        let hex = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };

    // Control: the same invocation of an ordinary copy runs the chosen
    // function, and not main (so the attack below is a real one).
    let out = run_as_with_launch(
        USER,
        &plain,
        &["secure-probe", control.to_str().unwrap()],
        &launch_for(&control),
    );
    let lines = std::fs::read_to_string(&control).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines.starts_with("pwned "), "{lines}");
    assert!(!lines.contains("main"), "{lines}");

    // The setuid copy: the kernel marks it secure; it ignores the variable
    // and descriptor 3 and runs main as the program it is.
    let out = run_as_with_launch(
        USER,
        &setuid,
        &["secure-probe", attack.to_str().unwrap()],
        &launch_for(&attack),
    );
    let lines = std::fs::read_to_string(&attack).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    if lines.contains("euid=") && !lines.contains("euid=0") && !lines.contains("pwned") {
        println!("skipped: the setuid bit has no effect here (a nosuid mount?): {lines}");
        return;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !lines.contains("pwned"),
        "the caller chose what ran: {lines}"
    );
    let main: Vec<&str> = lines.lines().filter(|l| l.starts_with("main ")).collect();
    assert_eq!(main.len(), 1, "{lines}");
    assert!(
        main[0].ends_with(" euid=0") && !main[0].contains("uid=0 "),
        "{lines}"
    );
    // It still starts processes: the fork server, forked; spawn is refused.
    assert!(lines.contains("child forkserver"), "{lines}");
    assert!(
        stdout.contains("spawn: unsupported: the spawn start method is not available in a setuid"),
        "{stdout}"
    );
}
