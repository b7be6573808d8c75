//! The resource tracker: named shared memory whose creator dies by a
//! signal is unlinked within 2 seconds, as CPython's resource tracker
//! unlinks a dead program's segments; one kept, or made again under the
//! same name by another process, is left alone; and when the whole program
//! is SIGKILLed, its fork server unlinks what its processes left.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use multiproc as mp;
use multiproc_testkit::{wait_until, within};

const LIMIT: Duration = Duration::from_secs(30);
/// How soon a dead creator's segments must be gone.
const PROMPTLY: Duration = Duration::from_secs(2);

fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{name}"))
}

fn unique(ctx: &mp::Context, what: &str) -> String {
    format!(
        "mp-track-{}-{}-{what}",
        std::process::id(),
        ctx.start_method()
    )
}

fn create_and_wait(name: String, keep: bool, ready: mp::Event) {
    let shm = mp::SharedMemory::create(Some(&name), 4096).unwrap();
    if keep {
        shm.keep();
    }
    ready.set();
    std::thread::sleep(Duration::from_secs(60));
}

fn attach_and_wait(name: String, track: bool, ready: mp::Event) {
    let shm = mp::SharedMemory::open(&name).unwrap();
    if track {
        shm.track();
    }
    ready.set();
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts `p`, waits until it says it is ready, then ends it by `signal`.
fn start_then_end(mut p: mp::Process, ready: &mp::Event, signal: &str) {
    p.start().unwrap();
    assert!(ready.wait_timeout(LIMIT), "the child did not get ready");
    match signal {
        "SIGKILL" => p.kill().unwrap(),
        _ => p.terminate().unwrap(),
    }
    p.join_timeout(LIMIT).unwrap();
}

fn a_creator_killed_by_a_signal_leaves_nothing(ctx: mp::Context) {
    within(LIMIT, move || {
        for signal in ["SIGKILL", "SIGTERM"] {
            let name = unique(&ctx, signal);
            let ready = mp::Event::new().unwrap();
            let p = ctx.process(create_and_wait, (name.clone(), false, ready.clone()));
            start_then_end(p, &ready, signal);
            assert!(
                wait_until(PROMPTLY, || !shm_path(&name).exists()),
                "{name} outlived its {signal}ed creator by 2 s"
            );
        }
    });
}

fn kept_or_replaced_memory_is_left_alone(ctx: mp::Context) {
    within(LIMIT, move || {
        // Kept by its creator.
        let kept = unique(&ctx, "kept");
        let ready = mp::Event::new().unwrap();
        let p = ctx.process(create_and_wait, (kept.clone(), true, ready.clone()));
        start_then_end(p, &ready, "SIGKILL");
        std::thread::sleep(Duration::from_millis(300));
        assert!(shm_path(&kept).exists(), "a kept segment was unlinked");
        mp::SharedMemory::open(&kept).unwrap().unlink().unwrap();

        // Unlinked by another process and made again under the same name:
        // the new one is not the dead creator's.
        let name = unique(&ctx, "again");
        let ready = mp::Event::new().unwrap();
        let mut p = ctx.process(create_and_wait, (name.clone(), false, ready.clone()));
        p.start().unwrap();
        assert!(ready.wait_timeout(LIMIT));
        mp::SharedMemory::open(&name).unwrap().unlink().unwrap();
        let again = mp::SharedMemory::create(Some(&name), 4096).unwrap();
        again.keep();
        let inode = std::fs::metadata(shm_path(&name)).unwrap().ino();
        p.kill().unwrap();
        p.join_timeout(LIMIT).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            std::fs::metadata(shm_path(&name)).map(|m| m.ino()).ok(),
            Some(inode),
            "the tracker unlinked a segment its dead creator never made"
        );
        again.unlink().unwrap();
    });
}

fn an_attacher_may_take_a_segment_on(ctx: mp::Context) {
    within(LIMIT, move || {
        for track in [false, true] {
            let name = unique(&ctx, if track { "tracked" } else { "attached" });
            let shm = mp::SharedMemory::create(Some(&name), 4096).unwrap();
            shm.keep();
            let ready = mp::Event::new().unwrap();
            let p = ctx.process(attach_and_wait, (name.clone(), track, ready.clone()));
            start_then_end(p, &ready, "SIGKILL");
            if track {
                assert!(
                    wait_until(PROMPTLY, || !shm_path(&name).exists()),
                    "a tracked attacher's segment outlived it by 2 s"
                );
            } else {
                std::thread::sleep(Duration::from_millis(300));
                assert!(
                    shm_path(&name).exists(),
                    "an attacher unlinked what it only opened"
                );
                shm.unlink().unwrap();
            }
        }
    });
}

/// Runs `mp_helper shm-hold METHOD NAME [child]` until it is ready, then
/// SIGKILLs the whole program.
fn kill_the_program(ctx: mp::Context, in_child: bool) {
    let name = unique(&ctx, if in_child { "program-child" } else { "program" });
    let mut helper = Command::new(env!("CARGO_BIN_EXE_mp_helper"))
        .args(["shm-hold", ctx.start_method().name(), &name])
        .args(in_child.then_some("child"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let line = within(LIMIT, move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    });
    assert_eq!(line.trim(), "ready");
    assert!(shm_path(&name).exists());
    helper.kill().unwrap();
    helper.wait().unwrap();
    assert!(
        wait_until(PROMPTLY, || !shm_path(&name).exists()),
        "{name} outlived its SIGKILLed program by 2 s"
    );
}

fn a_program_killed_whole_leaves_nothing(ctx: mp::Context) {
    kill_the_program(ctx, false);
    kill_the_program(ctx, true);
}

multiproc_testkit::each_start_method!(
    a_creator_killed_by_a_signal_leaves_nothing,
    kept_or_replaced_memory_is_left_alone,
    an_attacher_may_take_a_segment_on,
    a_program_killed_whole_leaves_nothing,
);
