//! Project automation for multiproc, in plain Rust.
//!
//! - `cargo xtask test-all`: formatting, clippy, docs, the test suite,
//!   doctests, every example under a timeout, and the tidy checks; prints a
//!   summary and fails if any step failed. The MPI pool, its tests and its
//!   example are built and run when MPI is installed, and said to be
//!   skipped when not.
//! - `cargo xtask bench`: the criterion benchmarks beside CPython's figures
//!   for the same work, written as ratios into `docs/benchmarks.md`.
//! - `cargo xtask tidy`: the tidy checks alone.
//! - `cargo xtask loom`: the loom models of the sync crate's state machines
//!   and of the ring's side words.

mod bench;
mod mpi;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    let ok = match args.first().map(String::as_str) {
        Some("test-all") => test_all(&root),
        Some("bench") => bench::run(&root, &args[1..]),
        Some("tidy") => report(&[step("tidy", || tidy::check(&root))]),
        Some("loom") => report(&[step("loom", || loom(&root))]),
        _ => {
            eprintln!("usage: cargo xtask test-all | bench [--quick] | tidy | loom");
            return ExitCode::from(2);
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn project_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or(manifest.clone(), Path::to_path_buf)
}

/// The outcome of one step of a run.
struct Step {
    name: String,
    ok: bool,
    took: Duration,
    detail: String,
}

fn step(name: &str, f: impl FnOnce() -> Result<(), String>) -> Step {
    eprintln!("\n==> {name}");
    let start = Instant::now();
    let result = f();
    let took = start.elapsed();
    let (ok, detail) = match result {
        Ok(()) => (true, String::new()),
        Err(e) => (false, e),
    };
    eprintln!(
        "<== {name}: {} in {:.1}s",
        if ok { "ok" } else { "FAILED" },
        took.as_secs_f64()
    );
    Step {
        name: name.to_owned(),
        ok,
        took,
        detail,
    }
}

/// Prints the summary table; returns whether every step passed.
fn report(steps: &[Step]) -> bool {
    eprintln!("\nsummary");
    for s in steps {
        let mark = if s.ok { "ok    " } else { "FAILED" };
        eprintln!(
            "  {mark} {:<12} {:>7.1}s  {}",
            s.name,
            s.took.as_secs_f64(),
            s.detail
        );
    }
    let failed = steps.iter().filter(|s| !s.ok).count();
    println!("test-all: {} passed, {failed} failed", steps.len() - failed);
    failed == 0
}

/// Runs `cargo ARGS` in the project root, with extra environment `env`.
fn cargo(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

fn has_nextest(root: &Path) -> bool {
    Command::new("cargo")
        .current_dir(root)
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn test_all(root: &Path) -> bool {
    let mpi = mpi::available();
    mpi::announce(mpi);
    let workspace = mpi::workspace_args(mpi);
    let with_workspace = |head: &[&'static str], tail: &[&'static str]| {
        let mut args: Vec<&str> = head.to_vec();
        args.extend(&workspace);
        args.extend(tail);
        args
    };
    let mut steps = vec![
        step("fmt", || {
            cargo(root, &["fmt", "--all", "--", "--check"], &[])
        }),
        step("clippy", || {
            cargo(
                root,
                &with_workspace(&["clippy"], &["--all-targets", "--", "-D", "warnings"]),
                &[],
            )
        }),
        step("doc", || {
            cargo(
                root,
                &with_workspace(&["doc"], &["--no-deps", "--document-private-items"]),
                &[("RUSTDOCFLAGS", "-D warnings")],
            )
        }),
    ];
    steps.push(step("tests", || {
        if has_nextest(root) {
            cargo(
                root,
                &with_workspace(&["nextest", "run"], &["--profile", "ci"]),
                mpi::MPIRUN_ENV,
            )
        } else {
            eprintln!("cargo-nextest not found: running cargo test, one test at a time");
            cargo(
                root,
                &with_workspace(
                    &["test"],
                    &["--lib", "--bins", "--tests", "--", "--test-threads=1"],
                ),
                mpi::MPIRUN_ENV,
            )
        }
    }));
    steps.push(step("doctests", || {
        cargo(root, &with_workspace(&["test"], &["--doc"]), &[])
    }));
    steps.push(step("examples", || run_examples(root, mpi)));
    steps.push(step("loom", || loom(root)));
    steps.push(step("tidy", || tidy::check(root)));
    if !mpi {
        eprintln!(
            "note: the MPI pool was not built or tested (no MPI here; `{}`)",
            mpi::INSTALL
        );
    }
    report(&steps)
}

/// The loom models, in their own target directory (they need their own
/// `--cfg`), with a bounded number of preemptions.
fn loom(root: &Path) -> Result<(), String> {
    let dir = target_dir(root).join("loom");
    let dir = dir.to_string_lossy();
    for package in ["multiproc-sync", "multiproc-channel"] {
        cargo(
            root,
            &[
                "test",
                "--release",
                "--package",
                package,
                "--test",
                "loom",
                "--target-dir",
                &dir,
            ],
            &[
                ("RUSTFLAGS", "--cfg multiproc_loom"),
                ("LOOM_MAX_PREEMPTIONS", "3"),
            ],
        )?;
    }
    Ok(())
}

/// The `[[example]]` names of the examples package, each with whether it
/// needs the MPI feature (its `required-features`).
fn example_names(root: &Path) -> Result<Vec<(String, bool)>, String> {
    let manifest = std::fs::read_to_string(root.join("examples/Cargo.toml"))
        .map_err(|e| format!("examples/Cargo.toml: {e}"))?;
    let mut names: Vec<(String, bool)> = Vec::new();
    let mut in_example = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_example = line == "[[example]]";
        } else if in_example && let Some(v) = line.strip_prefix("name") {
            names.push((
                v.trim_start_matches([' ', '='])
                    .trim_matches('"')
                    .to_owned(),
                false,
            ));
        } else if in_example
            && line.starts_with("required-features")
            && line.contains("\"mpi\"")
            && let Some(last) = names.last_mut()
        {
            last.1 = true;
        }
    }
    Ok(names)
}

/// Builds every example and runs each under a timeout, checking its exit
/// status; the MPI one runs as a job of 4 ranks when MPI is here.
fn run_examples(root: &Path, mpi: bool) -> Result<(), String> {
    const LIMIT: Duration = Duration::from_secs(180);
    let mut build = vec!["build", "--package", "multiproc-examples", "--examples"];
    if mpi {
        build.extend(["--features", "mpi"]);
    }
    cargo(root, &build, &[])?;
    let dir = target_dir(root).join("debug/examples");
    let mut failures = Vec::new();
    for (name, needs_mpi) in example_names(root)? {
        if needs_mpi && !mpi {
            eprintln!(
                "--- example {name}: SKIPPED, it needs MPI ({})",
                mpi::INSTALL
            );
            continue;
        }
        eprintln!("--- example {name}");
        let start = Instant::now();
        let mut cmd = if needs_mpi {
            mpi::mpirun(root, 4, &dir.join(&name))
        } else {
            let mut cmd = Command::new(dir.join(&name));
            cmd.current_dir(root).stdin(Stdio::null());
            cmd
        };
        // Its own process group, so that a timeout stops every process of
        // it (the ranks of an MPI job too).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run example {name}: {e}"))?;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if start.elapsed() > LIMIT => {
                    let _ = Command::new("kill")
                        .args(["-KILL", &format!("-{}", child.id())])
                        .status();
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("waiting for example {name}: {e}")),
            }
        };
        match status {
            Some(s) if s.success() => {
                eprintln!(
                    "--- example {name}: ok in {:.1}s",
                    start.elapsed().as_secs_f64()
                );
            }
            Some(s) => failures.push(format!("{name} ({s})")),
            None => failures.push(format!("{name} (timed out after {LIMIT:?})")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("examples failed: {}", failures.join(", ")))
    }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}
