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
use multiproc_testkit::{output_within, processes_with_env, wait_until};

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
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    output_within(child, LIMIT)
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
        let running = processes_with_env("MP_LAUNCH_TAG", &tag).len();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(running >= 3, "{running} processes");
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

/// Runs `mp_helper count FILE` with `var=value`, through `sh` so that its
/// descriptor 3 is what `fd3` says (`3<&-` closes it).
fn count_with(var: &str, value: &str, fd3: &str, file: &Scratch) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec \"$0\" count \"$1\" {fd3}"))
        .arg(env!("CARGO_BIN_EXE_mp_helper"))
        .arg(file.path())
        .env(var, value);
    run(cmd)
}

#[test]
fn a_launch_variable_without_its_channel_runs_nothing() {
    // The variable names this process, the helper's parent: a child.
    let me = format!("3:{}", std::process::id());
    for (var, value, fd3, why) in [
        ("MULTIPROC_SPAWN", me.as_str(), "3<&-", "not open"),
        ("MULTIPROC_FORKSERVER", me.as_str(), "3<&-", "not open"),
        (
            "MULTIPROC_SPAWN",
            me.as_str(),
            "3</dev/null",
            "not a socket",
        ),
        ("MULTIPROC_SPAWN", "three", "3<&-", "malformed"),
    ] {
        let file = Scratch::new("no-channel");
        let out = count_with(var, value, fd3, &file);
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
}

#[test]
fn a_process_that_inherited_a_launch_variable_runs_as_the_program() {
    // A variable naming another process (pid 1) and no channel of it: what
    // a grandchild started with `Command` would hold had its parent not
    // removed the variable. It is not a child, and runs `main`.
    for fd3 in ["3<&-", "3</dev/null"] {
        let file = Scratch::new("inherited");
        let out = count_with("MULTIPROC_SPAWN", "3:1", fd3, &file);
        assert!(
            out.status.success(),
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(starting_with(&file.lines(), "main").len(), 1);
    }
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
    let child = cmd
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = output_within(child, LIMIT);
    drop(ours);
    out
}

/// A second user for the tests of privileged programs: a system account
/// without home or login shell, created if it does not exist and kept for
/// later runs (two tests may create it at once, so none removes it).
struct SecondUser {
    name: &'static str,
    uid: u32,
    gid: u32,
}

impl SecondUser {
    const NAME: &'static str = "multiproc-test";

    fn get() -> Result<SecondUser, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not running as root, so no setuid copy can be made".into());
        }
        if !Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Err("setpriv (util-linux) is not available".into());
        }
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, Self::NAME]).output().ok()?;
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        if id("-u").is_none() {
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(Self::NAME)
                .output()
                .map_err(|e| format!("useradd is not available: {e}"))?;
            // 9: made meanwhile by the other test.
            if !out.status.success() && out.status.code() != Some(9) {
                return Err(format!(
                    "useradd failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        match (id("-u"), id("-g")) {
            (Some(uid), Some(gid)) => Ok(SecondUser {
                name: Self::NAME,
                uid,
                gid,
            }),
            _ => Err(format!("no ids for {}", Self::NAME)),
        }
    }
}

/// A directory of root's that only root may write to, with copies of the
/// helper program: `plain`, and `setuid` (setuid root, and runnable by the
/// second user's group alone). Removed when dropped.
struct Copies {
    dir: PathBuf,
}

impl Copies {
    fn new(user: &SecondUser) -> Copies {
        use std::os::unix::fs::{PermissionsExt, chown};
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("multiproc-setuid-{}-{nanos}", std::process::id()));
        // `create_dir`, not `create_dir_all`: a directory someone else made
        // first is refused.
        std::fs::create_dir(&dir).unwrap();
        let copies = Copies { dir };
        let mode = |path: &Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        mode(&copies.dir, 0o755);
        std::fs::copy(env!("CARGO_BIN_EXE_mp_helper"), copies.plain()).unwrap();
        mode(&copies.plain(), 0o755);
        std::fs::copy(env!("CARGO_BIN_EXE_mp_helper"), copies.setuid()).unwrap();
        chown(copies.setuid(), Some(0), Some(user.gid)).unwrap();
        mode(&copies.setuid(), 0o4750);
        copies
    }

    fn plain(&self) -> PathBuf {
        self.dir.join("plain")
    }

    fn setuid(&self) -> PathBuf {
        self.dir.join("setuid")
    }

    /// An empty file the second user may write.
    fn marker(&self, name: &str, user: &SecondUser) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, "").unwrap();
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
        path
    }

    /// The launch message that makes a spawned child of the helper run
    /// `pwned(marker)`, as an attacker would craft it.
    fn launch_for(&self, marker: &Path) -> Vec<u8> {
        let mut cmd = Command::new(self.plain());
        cmd.arg("craft-launch").arg(marker);
        let hex = String::from_utf8_lossy(&run(cmd).stdout).trim().to_owned();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }
}

impl Drop for Copies {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn a_setuid_program_ignores_the_launch_variables() {
    let user = match SecondUser::get() {
        Ok(user) => user,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let copies = Copies::new(&user);
    // Where the setuid bit has no effect (a nosuid mount), there is nothing
    // to test.
    let ids = run_as_with_launch(user.name, &copies.setuid(), &["ids"], &[]);
    let ids = String::from_utf8_lossy(&ids.stdout).trim().to_owned();
    if ids != format!("uid={} euid=0", user.uid) {
        println!("skipped: the setuid copy runs as {ids:?} here (a nosuid mount?)");
        return;
    }

    // Control: the same invocation of an ordinary copy runs the chosen
    // function, and not main (so the attack below is a real one).
    let control = copies.marker("control", &user);
    let out = run_as_with_launch(
        user.name,
        &copies.plain(),
        &["secure-probe", control.to_str().unwrap()],
        &copies.launch_for(&control),
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
    let attack = copies.marker("attack", &user);
    let out = run_as_with_launch(
        user.name,
        &copies.setuid(),
        &["secure-probe", attack.to_str().unwrap()],
        &copies.launch_for(&attack),
    );
    let lines = std::fs::read_to_string(&attack).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout);
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
    assert_eq!(main, [format!("main uid={} euid=0", user.uid)], "{lines}");
    // It still starts processes: the fork server, forked; spawn is refused.
    assert!(lines.contains("child forkserver"), "{lines}");
    assert!(
        stdout.contains("spawn: unsupported: the spawn start method is not available in a setuid"),
        "{stdout}"
    );
}

#[test]
fn a_program_whose_ids_differ_does_not_run_itself_again() {
    let user = match SecondUser::get() {
        Ok(user) => user,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let copies = Copies::new(&user);
    // Root, with the second user as its effective id only (as a daemon
    // after `seteuid`): a program it executes would start secure, ignore
    // its launch and run main, so it must not execute itself.
    let file = copies.marker("ids-differ", &user);
    let mut cmd = Command::new(copies.plain());
    cmd.args([
        "secure-probe",
        file.to_str().unwrap(),
        &user.uid.to_string(),
    ]);
    let out = run(cmd);
    let lines = std::fs::read_to_string(&file).unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines.lines().filter(|l| l.starts_with("main ")).count(),
        1,
        "{lines}"
    );
    assert!(lines.contains("child forkserver"), "{lines}");
    assert!(stdout.contains("spawn: unsupported"), "{stdout}");
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn executed_children_do_not_hold_the_programs_descriptors() {
    for method in [mp::StartMethod::ForkServer, mp::StartMethod::Spawn] {
        // A pipe whose write end a child could inherit: not close-on-exec.
        let (mut reader, writer) = std::io::pipe().unwrap();
        rustix::io::fcntl_setfd(&writer, rustix::io::FdFlags::empty()).unwrap();
        // The first start of this program's fork server, or a spawn: each
        // executes the binary while the write end is open.
        let mut p = mp::get_context(method).process(sleep_ms, (2000,));
        p.start().unwrap();
        drop(writer);
        // The reader sees the end at once, not when the child (or the fork
        // server, which lives as long as the program) exits.
        let started = Instant::now();
        let bytes = multiproc_testkit::within(LIMIT, move || {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
            out
        });
        assert!(bytes.is_empty());
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{method}: end of file after {:?}",
            started.elapsed()
        );
        p.kill().unwrap();
        p.join_timeout(LIMIT).unwrap();
    }
}
