//! `cargo xtask bench`: criterion benchmarks beside CPython's figures for
//! the same work, measured in the same run, written to `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a criterion measurement (nanoseconds per iteration) becomes the
/// figure compared with Python's.
#[derive(Clone, Copy)]
enum Metric {
    /// Microseconds per iteration; lower is better.
    Micros,
}

/// One line of the comparison.
struct Case {
    /// `group/function` as criterion names it.
    criterion: &'static str,
    /// The case of `python_baseline.py`, if CPython has one.
    python: Option<&'static str>,
    metric: Metric,
    what: &'static str,
    goal: &'static str,
}

const CASES: &[Case] = &[
    Case {
        criterion: "process_start_join/fork",
        python: Some("spawn_fork_us"),
        metric: Metric::Micros,
        what: "start + join of a process doing nothing, fork",
        goal: "at least 6x faster than CPython",
    },
    Case {
        criterion: "process_start_join/forkserver",
        python: Some("spawn_forkserver_us"),
        metric: Metric::Micros,
        what: "start + join, forkserver",
        goal: "at most 500 us",
    },
    Case {
        criterion: "process_start_join/spawn",
        python: Some("spawn_spawn_us"),
        metric: Metric::Micros,
        what: "start + join, spawn",
        goal: "at most 2000 us",
    },
];

pub(crate) fn run(root: &Path, extra: &[String]) -> bool {
    let mut args = vec!["bench", "--package", "multiproc-benches", "--"];
    args.extend(extra.iter().map(String::as_str));
    if let Err(e) = crate::cargo(root, &args, &[]) {
        eprintln!("bench: {e}");
        return false;
    }
    let python = python_figures(root);
    let mut rows = String::new();
    for case in CASES {
        let ours = criterion_mean_ns(root, case.criterion).map(|ns| convert(case.metric, ns));
        let theirs = case
            .python
            .and_then(|p| python.iter().find(|(n, _)| n == p).map(|(_, v)| *v));
        let fmt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2}"));
        let ratio = match (ours, theirs, case.metric) {
            (Some(o), Some(t), Metric::Micros) if o > 0.0 => format!("{:.1}x faster", t / o),
            _ => "n/a".to_owned(),
        };
        let unit = match case.metric {
            Metric::Micros => "us",
        };
        let _ = writeln!(
            rows,
            "| {} | {} {unit} | {} {unit} | {ratio} | {} |",
            case.what,
            fmt(ours),
            fmt(theirs),
            case.goal
        );
    }
    let doc = render(&rows, &machine());
    let path = root.join("docs/benchmarks.md");
    if let Err(e) = fs::write(&path, doc) {
        eprintln!("bench: writing {}: {e}", path.display());
        return false;
    }
    println!("{rows}");
    eprintln!("bench: wrote {}", path.display());
    true
}

fn convert(metric: Metric, ns: f64) -> f64 {
    match metric {
        Metric::Micros => ns / 1e3,
    }
}

fn baseline_script(root: &Path) -> PathBuf {
    root.join("../shared/bench/python_baseline.py")
}

/// Runs the Python baseline for every case that has one.
fn python_figures(root: &Path) -> Vec<(String, f64)> {
    let script = baseline_script(root);
    let cases: Vec<&str> = CASES.iter().filter_map(|c| c.python).collect();
    if !script.exists() || cases.is_empty() {
        eprintln!("bench: {} not found; no CPython figures", script.display());
        return Vec::new();
    }
    eprintln!("bench: running CPython baseline: {}", cases.join(" "));
    let out = match Command::new("python3").arg(&script).args(&cases).output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "bench: python baseline failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return Vec::new();
        }
        Err(e) => {
            eprintln!("bench: cannot run python3: {e}");
            return Vec::new();
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// The mean of a criterion benchmark, in nanoseconds per iteration.
fn criterion_mean_ns(root: &Path, id: &str) -> Option<f64> {
    let path = crate::target_dir(root)
        .join("criterion")
        .join(id)
        .join("new/estimates.json");
    let json = fs::read_to_string(path).ok()?;
    let mean = &json[json.find("\"mean\"")?..];
    let v = &mean[mean.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = v.find([',', '}'])?;
    v[..end].trim().parse().ok()
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!(
        "{} CPUs, kernel {}, {}, {}",
        cpus,
        command_line("uname", &["-r"]),
        command_line("rustc", &["--version"]),
        command_line("python3", &["--version"]),
    )
}

fn render(rows: &str, machine: &str) -> String {
    format!(
        "# Benchmarks\n\
         \n\
         Figures from `cargo xtask bench`, which runs the criterion benchmarks of\n\
         `benches/` and, in the same run, CPython's `multiprocessing` doing the same\n\
         work (`../shared/bench/python_baseline.py`). This file is written by that\n\
         command; the machine is shared and noisy, so compare ratios, not single\n\
         figures, and rerun before drawing conclusions.\n\
         \n\
         Machine: {machine}.\n\
         \n\
         | work | multiproc | CPython | ratio | goal |\n\
         |---|---|---|---|---|\n\
         {rows}\n\
         ## Reproduce\n\
         \n\
         ```sh\n\
         cargo xtask bench            # everything, then rewrite this file\n\
         python3 ../shared/bench/python_baseline.py spawn_fork_us   # one CPython figure\n\
         ```\n"
    )
}
