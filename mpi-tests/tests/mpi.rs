//! The MPI pool under `mpirun`, with 2 and 4 ranks: each test runs one
//! scenario of `mpi_scenarios` as a job and reads what rank 0 printed.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use multiproc_testkit::output_within;

/// How long a job may take before `timeout` stops `mpirun` (which then
/// stops its ranks).
const JOB_LIMIT: &str = "60";

fn scenarios() -> &'static str {
    env!("CARGO_BIN_EXE_mpi_scenarios")
}

/// `mpirun` with `args`, stopped after [`JOB_LIMIT`] seconds.
fn mpirun(args: &[&str]) -> Output {
    let child = Command::new("timeout")
        .args(["-k", "5", JOB_LIMIT, "mpirun"])
        .args(args)
        // What Open MPI needs to run as root with more ranks than cores
        // (MPICH ignores them).
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mpirun (install MPICH or Open MPI)");
    output_within(child, Duration::from_secs(90))
}

/// Runs `scenario` on `ranks` ranks and checks that rank 0 said it held.
fn job(ranks: usize, scenario: &str) -> String {
    let n = ranks.to_string();
    let out = mpirun(&["-n", &n, scenarios(), scenario]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains(&format!("ok {scenario}")),
        "{scenario} on {ranks} ranks: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn map_of_100_000_equals_the_serial_result_on_2_ranks() {
    job(2, "map");
}

#[test]
fn map_of_100_000_equals_the_serial_result_on_4_ranks() {
    job(4, "map");
}

#[test]
fn starmap_apply_and_the_async_calls_on_2_and_4_ranks() {
    job(2, "calls");
    job(4, "calls");
}

#[test]
fn imap_keeps_input_order_on_2_and_4_ranks() {
    job(2, "imap");
    job(4, "imap");
}

#[test]
fn imap_unordered_gives_every_result_once_on_2_and_4_ranks() {
    job(2, "unordered");
    job(4, "unordered");
}

#[test]
fn uneven_tasks_spread_over_every_worker() {
    let out = job(4, "uneven");
    assert!(out.contains("on 3 workers"), "{out}");
}

#[test]
fn a_panicking_task_fails_only_its_item() {
    job(2, "panic");
    job(4, "panic");
}

#[test]
fn a_task_may_use_a_local_pool_of_its_rank() {
    job(2, "local");
}

#[test]
fn close_lets_queued_work_finish_and_terminate_fails_it() {
    job(2, "close");
    job(4, "terminate");
}

#[test]
fn dropping_the_pool_with_work_queued_ends_the_job_promptly() {
    job(3, "drop");
}

#[test]
fn a_callback_may_wait_for_another_call_of_the_pool() {
    job(3, "callback");
}

#[test]
fn a_task_holding_a_descriptor_is_refused_and_the_pool_goes_on() {
    job(2, "descriptor");
}

#[test]
fn every_rank_names_its_host() {
    let out = job(4, "hosts");
    assert!(out.contains("4 names for 4 ranks"), "{out}");
}

#[test]
fn ranks_that_run_different_builds_are_refused() {
    let dir = std::env::temp_dir().join(format!("mp-mpi-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let other = dir.join("other_build");
    let mut bytes = std::fs::read(scenarios()).expect("read the program");
    // The same code with one more byte: another build, as far as its
    // digest can tell.
    bytes.push(0);
    std::fs::write(&other, bytes).expect("write the other build");
    let mut perms = std::fs::metadata(&other).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&other, perms).expect("chmod");
    let other = other.to_string_lossy().into_owned();
    let out = mpirun(&["-n", "2", scenarios(), "map", ":", "-n", "1", &other, "map"]);
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains("different builds") && stderr.contains("rank 2 on"),
        "a message that names the rank: {stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ok map"));
}

#[test]
fn a_program_run_without_mpirun_is_told_how() {
    let child = Command::new(scenarios())
        .arg("map")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the program alone");
    let out = output_within(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("mpirun -n N"), "{stderr}");
}

#[test]
fn a_rank_that_dies_in_a_task_ends_the_job_without_a_hang() {
    // (scenario, what the output names): an abort, reported by mpirun
    // (MPICH's words, then Open MPI's); `std::process::exit` in a task,
    // reported by the rank.
    for (scenario, reports) in [
        ("fatal", &["BAD TERMINATION", "exited on signal"][..]),
        ("exit", &["exited while running a task"][..]),
    ] {
        let out = mpirun(&["-n", "3", scenarios(), scenario]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{scenario}: {stderr}");
        // `timeout` exits 124 when it had to stop the job.
        assert_ne!(out.status.code(), Some(124), "{scenario} hung: {stderr}");
        assert!(!stdout.contains("went on"), "{scenario}: {stdout}");
        assert!(
            reports
                .iter()
                .any(|r| stdout.contains(r) || stderr.contains(r)),
            "{scenario}: {stdout}\n{stderr}"
        );
    }
}
