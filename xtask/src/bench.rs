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
    /// Milliseconds per iteration; lower is better.
    Millis,
    /// Milliseconds per iteration beyond those of the run named `base`;
    /// lower is better.
    MillisOver { base: &'static str },
    /// Microseconds per iteration; lower is better.
    Micros,
    /// Nanoseconds per iteration; lower is better.
    Nanos,
    /// Microseconds for each of `per_iter` pieces of an iteration; lower
    /// is better.
    MicrosEach { per_iter: f64 },
    /// Operations per second, `per_iter` of them in an iteration; higher
    /// is better.
    PerSecond { per_iter: f64 },
    /// Gigabytes per second, `bytes` of them in an iteration; higher is
    /// better.
    GBps { bytes: f64 },
    /// How many times faster than the serial run named `serial` (its
    /// median over this one's); higher is better.
    Speedup { serial: &'static str },
}

impl Metric {
    fn unit(self) -> &'static str {
        match self {
            Metric::Millis | Metric::MillisOver { .. } => "ms",
            Metric::Micros | Metric::MicrosEach { .. } => "us",
            Metric::Nanos => "ns",
            Metric::PerSecond { .. } => "ops/s",
            Metric::GBps { .. } => "GB/s",
            Metric::Speedup { .. } => "x",
        }
    }

    /// From criterion's nanoseconds per iteration.
    fn convert(self, ns: f64) -> f64 {
        match self {
            Metric::Millis | Metric::MillisOver { .. } => ns / 1e6,
            Metric::Micros => ns / 1e3,
            Metric::MicrosEach { per_iter } => ns / 1e3 / per_iter,
            Metric::Nanos => ns,
            Metric::PerSecond { per_iter } => per_iter / (ns / 1e9),
            Metric::GBps { bytes } => bytes / ns,
            // Made from two medians by `value`; one alone means nothing.
            Metric::Speedup { .. } => f64::NAN,
        }
    }

    /// How many times better ours is than theirs.
    fn ratio(self, ours: f64, theirs: f64) -> f64 {
        match self {
            Metric::Millis
            | Metric::MillisOver { .. }
            | Metric::Micros
            | Metric::MicrosEach { .. }
            | Metric::Nanos => theirs / ours,
            Metric::PerSecond { .. } | Metric::GBps { .. } | Metric::Speedup { .. } => {
                ours / theirs
            }
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Metric::PerSecond { .. } if v >= 1e6 => format!("{:.2} M", v / 1e6),
            Metric::PerSecond { .. } if v >= 1e3 => format!("{:.1} k", v / 1e3),
            _ => format!("{v:.2}"),
        }
    }
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
    /// The same work through another Rust crate, as criterion names it.
    rival: Option<(&'static str, &'static str)>,
}

const CASES: &[Case] = &[
    Case {
        criterion: "process_start_join/fork",
        python: Some("spawn_fork_us"),
        metric: Metric::Micros,
        what: "start + join of a process doing nothing, fork",
        goal: "at least 6x faster than CPython",
        rival: None,
    },
    Case {
        criterion: "process_start_join/forkserver",
        python: Some("spawn_forkserver_us"),
        metric: Metric::Micros,
        what: "start + join, forkserver",
        goal: "at most 500 us",
        rival: None,
    },
    Case {
        criterion: "process_start_join/spawn",
        python: Some("spawn_spawn_us"),
        metric: Metric::Micros,
        what: "start + join, spawn",
        goal: "at most 2000 us",
        rival: None,
    },
    Case {
        criterion: "lock_uncontended_acquire_release",
        python: Some("lock_uncontended_ns"),
        metric: Metric::Nanos,
        what: "Lock acquire + release, uncontended",
        goal: "at most 10 ns",
        rival: None,
    },
    Case {
        criterion: "lock/contended_two_processes",
        python: Some("lock_contended_ops_per_s"),
        metric: Metric::PerSecond {
            per_iter: 1_000_000.0,
        },
        what: "two processes incrementing under one Lock (process start included)",
        goal: "at least 7 M ops/s",
        rival: None,
    },
    Case {
        criterion: "event_ping_pong_round_trip",
        python: None,
        metric: Metric::Micros,
        what: "Event ping-pong between two processes, round trip",
        goal: "under 5 us (a kernel wake-up is 30-45 us)",
        rival: None,
    },
    Case {
        criterion: "shared_array/write_256MiB",
        python: Some("shared_array_write_GBps"),
        metric: Metric::GBps {
            bytes: (256u64 << 20) as f64,
        },
        what: "writing a 256 MiB shared array",
        goal: "at least 12 GB/s",
        rival: None,
    },
    Case {
        criterion: "queue/one_to_one",
        python: Some("queue_small_msgs_per_s"),
        metric: Metric::PerSecond {
            per_iter: 200_000.0,
        },
        what: "Queue, small messages, one producer to one consumer (process start included)",
        goal: "at least 5 M msgs/s",
        rival: None,
    },
    Case {
        criterion: "pipe_round_trip",
        python: Some("pipe_rtt_us"),
        metric: Metric::Micros,
        what: "Pipe round trip, small message",
        goal: "at most 5 us",
        rival: Some(("ipc-channel", "ipc_channel_round_trip")),
    },
    Case {
        criterion: "pipe_bandwidth/64KiB",
        python: Some("pipe_bw_64k_GBps"),
        metric: Metric::GBps { bytes: 65536.0 },
        what: "Pipe bandwidth, 64 KiB messages",
        goal: "(none set)",
        rival: Some(("ipc-channel", "ipc_channel_bandwidth/64KiB")),
    },
    Case {
        criterion: "pipe_bandwidth/1MiB",
        python: Some("pipe_bw_1m_GBps"),
        metric: Metric::GBps { bytes: 1_048_576.0 },
        what: "Pipe bandwidth, 1 MiB messages",
        goal: "at least 3 GB/s",
        rival: Some(("ipc-channel", "ipc_channel_bandwidth/1MiB")),
    },
    Case {
        criterion: "queue/two_to_two",
        python: None,
        metric: Metric::PerSecond {
            per_iter: 200_000.0,
        },
        what: "Queue, small messages, two producers to two consumers",
        goal: "(no CPython case)",
        rival: None,
    },
    Case {
        criterion: "pool/map_tiny_1e6",
        python: Some("pool_map_tiny_items_per_s"),
        metric: Metric::PerSecond {
            per_iter: 1_000_000.0,
        },
        what: "Pool.map of 1,000,000 tiny items (square), one worker per CPU",
        goal: "at least 50 M items/s",
        rival: Some(("rayon", "pool/map_tiny_1e6_rayon")),
    },
    Case {
        criterion: "pool_cpu/pool",
        python: Some("pool_cpu_speedup_x"),
        metric: Metric::Speedup {
            serial: "pool_cpu/serial",
        },
        what: "CPU-bound speedup, 16 tasks of about CPython's length (36 ms) on one worker per CPU, over serial",
        goal: "at least 1.95x on 2 CPUs",
        rival: Some(("rayon", "pool_cpu/rayon")),
    },
    Case {
        criterion: "pool_apply_async_round_trip",
        python: Some("pool_apply_async_rtt_us"),
        metric: Metric::Micros,
        what: "Pool.apply_async(...).get() round trip",
        goal: "(CPython about 34 us in a quiet run)",
        rival: Some(("rayon, threads", "thread_pool_apply_async_round_trip")),
    },
    Case {
        criterion: "pool_1GiB/raw_array_handle",
        python: Some("pool_apply_1GiB_bytes_ms"),
        metric: Metric::Millis,
        what: "Pool.apply of a task summing 1 GiB handed over as a RawArray (CPython: 1 GiB of bytes, a task that only takes its length)",
        goal: "(see the next row)",
        rival: Some(("the same as Vec<u8> bytes", "pool_1GiB/vec_bytes")),
    },
    Case {
        criterion: "pool_1GiB/raw_array_handle",
        python: None,
        metric: Metric::MillisOver {
            base: "pool_1GiB/sum_in_place",
        },
        what: "the same, beyond the sum itself in this process",
        goal: "under 1 ms",
        rival: None,
    },
    Case {
        criterion: "manager/dict_set_from_child",
        python: Some("manager_dict_set_ops_per_s"),
        metric: Metric::PerSecond { per_iter: 20_000.0 },
        what: "Manager dict set from a child (process start included)",
        goal: "at least 200 k ops/s",
        rival: None,
    },
    Case {
        criterion: "manager/dict_set_from_child_over_tcp",
        python: None,
        metric: Metric::PerSecond { per_iter: 20_000.0 },
        what: "the same, the child connecting over TCP with the key handshake",
        goal: "(no CPython case; CPython's manager always uses a socket)",
        rival: None,
    },
    Case {
        criterion: "python_managers/python_client_dict_set_rust_manager",
        python: Some("py_client_dict_set_cpython_manager_ops_per_s"),
        metric: Metric::PerSecond { per_iter: 1.0 },
        what: "a Python client's dict set on a Rust manager served to Python (CPython: on a SyncManager)",
        goal: "at least 3x CPython's ops/s",
        rival: None,
    },
    Case {
        criterion: "python_managers/rust_client_queue_call_cpython_manager",
        python: Some("py_client_queue_call_cpython_manager_us"),
        metric: Metric::Micros,
        what: "a Rust client's queue call (qsize) on a CPython BaseManager (CPython: a Python client)",
        goal: "under 30 us per call",
        rival: None,
    },
    Case {
        criterion: "executor/submit_result_rtt",
        python: Some("executor_submit_rtt_us"),
        metric: Metric::Micros,
        what: "Executor submit(...).result() round trip of a no-op (CPython: ProcessPoolExecutor)",
        goal: "at most 5 us",
        rival: Some(("rayon, threads", "executor/rayon_spawn_rtt")),
    },
    Case {
        criterion: "executor/as_completed_100k",
        python: Some("executor_as_completed_per_s"),
        metric: Metric::PerSecond {
            per_iter: 100_000.0,
        },
        what: "100,000 no-op submits gathered with as_completed",
        goal: "at least 500 k tasks/s",
        rival: None,
    },
    Case {
        criterion: "executor/kill_after_deadline",
        python: None,
        metric: Metric::Millis,
        what: "a task past its time limit: from the deadline to its future's end (worker killed)",
        goal: "median under 5 ms (no CPython case: its executor cannot kill a task)",
        rival: None,
    },
    Case {
        criterion: "wire/rtt_with_cpython_listener",
        python: Some("wire_tcp_rtt_us"),
        metric: Metric::Micros,
        what: "TCP round trip of 16 bytes, our Client to a CPython Listener (CPython: a CPython Client to the same)",
        goal: "(interop: no slower than CPython to CPython)",
        rival: Some(("our Client to our Listener", "wire/rtt_rust_to_rust")),
    },
    Case {
        criterion: "async/queue_round_trip_get_async",
        python: None,
        metric: Metric::Micros,
        what: "Queue round trip between two processes, the reply taken with get_async (tokio, current thread)",
        goal: "within 2x of the blocking round trip",
        rival: Some(("blocking get", "async/queue_round_trip_blocking")),
    },
    Case {
        criterion: "async/pending_futures_100k",
        python: None,
        metric: Metric::Millis,
        what: "100,000 get_async futures made, polled once (pending) and dropped, on one queue",
        goal: "flat memory per future (printed by the benchmark)",
        rival: None,
    },
    // The MPI pool: `mpirun -n 3` (2 worker ranks), the local Pool of 2
    // processes beside it in the same run.
    Case {
        criterion: "mpi_pool/apply_round_trip_mpi",
        python: Some("pool_apply_async_rtt_us"),
        metric: Metric::Micros,
        what: "MPI pool: apply round trip (one task to a worker rank and back)",
        goal: "(see the next row)",
        rival: Some(("local Pool", "mpi_pool/apply_round_trip_local")),
    },
    Case {
        criterion: "mpi_pool/chunks_mpi",
        python: None,
        metric: Metric::MicrosEach { per_iter: 1000.0 },
        what: "MPI pool: dispatch per chunk, map of 1,000 one-item chunks on 2 worker ranks",
        goal: "under 20 us a chunk on one host",
        rival: Some(("local Pool", "mpi_pool/chunks_local")),
    },
    Case {
        criterion: "mpi_pool/map_tiny_1e6_mpi",
        python: Some("pool_map_tiny_items_per_s"),
        metric: Metric::PerSecond {
            per_iter: 1_000_000.0,
        },
        what: "MPI pool: map of 1,000,000 tiny items on 2 worker ranks",
        goal: "(CPython's local Pool beside it)",
        rival: Some(("local Pool", "mpi_pool/map_tiny_1e6_local")),
    },
    Case {
        criterion: "mpi_cpu/mpi",
        python: Some("pool_cpu_speedup_x"),
        metric: Metric::Speedup {
            serial: "mpi_cpu/serial",
        },
        what: "MPI pool: CPU-bound speedup, 16 tasks of 36 ms on 2 worker ranks, over serial",
        goal: "as the local Pool's on 2 CPUs",
        rival: Some(("local Pool", "mpi_cpu/local")),
    },
];

pub(crate) fn run(root: &Path, extra: &[String]) -> bool {
    // `--report`: rewrite the table from the last criterion run (CPython
    // is measured again, as it must be in the same session).
    let report_only = extra.iter().any(|a| a == "--report");
    let mut args = vec!["bench", "--package", "multiproc-benches", "--"];
    args.extend(
        extra
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "--report"),
    );
    if !report_only && let Err(e) = crate::cargo(root, &args, &[]) {
        eprintln!("bench: {e}");
        return false;
    }
    if !report_only && let Err(e) = mpi_bench(root, &args[4..]) {
        eprintln!("bench: {e}");
        return false;
    }
    let python = python_figures(root);
    let mut rows = String::new();
    for case in CASES {
        let ours = value(root, case.metric, case.criterion);
        let theirs = case
            .python
            .and_then(|p| python.iter().find(|(n, _)| n == p).map(|(_, v)| *v));
        let fmt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| case.metric.format(v));
        let ratio = match (ours, theirs) {
            (Some(o), Some(t)) if o > 0.0 && t > 0.0 => compared(case.metric.ratio(o, t)),
            _ => "n/a".to_owned(),
        };
        let unit = case.metric.unit();
        let rival_name = case.rival.map_or("", |(name, _)| name);
        let rival = case.rival.and_then(|(_, id)| value(root, case.metric, id));
        let rival = match (rival, ours) {
            (Some(r), Some(o)) if r > 0.0 => format!(
                "{rival_name}: {} {unit} (ours {})",
                case.metric.format(r),
                compared(case.metric.ratio(o, r))
            ),
            _ => "".to_owned(),
        };
        let _ = writeln!(
            rows,
            "| {} | {} {unit} | {} {unit} | {ratio} | {rival} | {} |",
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

/// The MPI pool's benchmark, as a job of 3 ranks, when MPI is here.
fn mpi_bench(root: &Path, extra: &[&str]) -> Result<(), String> {
    if !crate::mpi::available() {
        eprintln!(
            "bench: MPI not found: SKIPPING the MPI pool's benchmark (`{}`)",
            crate::mpi::INSTALL
        );
        return Ok(());
    }
    let out = Command::new("cargo")
        .current_dir(root)
        .args([
            "bench",
            "--package",
            "multiproc-mpi-tests",
            "--bench",
            "mpi",
            "--no-run",
            "--message-format=json",
        ])
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the MPI benchmark: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let exe = stdout
        .lines()
        .filter(|l| l.contains("\"kind\":[\"bench\"]") && l.contains("\"name\":\"mpi\""))
        .find_map(|l| {
            let v = &l[l.find("\"executable\":\"")? + "\"executable\":\"".len()..];
            Some(PathBuf::from(&v[..v.find('"')?]))
        })
        .ok_or("the MPI benchmark's executable is not in cargo's output")?;
    let status = crate::mpi::mpirun(root, 3, &exe)
        .arg("--bench")
        .args(extra)
        .env("CRITERION_HOME", crate::target_dir(root).join("criterion"))
        .status()
        .map_err(|e| format!("cannot run mpirun: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the MPI benchmark failed ({status})"))
    }
}

/// "2.0x better" or "1.3x worse" from ours over theirs.
fn compared(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("{ratio:.1}x better")
    } else {
        format!("{:.1}x worse", 1.0 / ratio)
    }
}

/// A case's figure from criterion's medians.
fn value(root: &Path, metric: Metric, id: &str) -> Option<f64> {
    let ns = criterion_median_ns(root, id)?;
    match metric {
        Metric::Speedup { serial } => Some(criterion_median_ns(root, serial)? / ns),
        Metric::MillisOver { base } => Some((ns - criterion_median_ns(root, base)?) / 1e6),
        _ => Some(metric.convert(ns)),
    }
}

/// Cases of `benches/python_extra.py`: work the shared baseline has no
/// case for, measured the same way.
const EXTRA_PYTHON: &[&str] = &[
    "pool_apply_async_rtt_us",
    "pool_apply_1GiB_bytes_ms",
    "wire_tcp_rtt_us",
    "executor_submit_rtt_us",
    "executor_as_completed_per_s",
    "py_client_dict_set_cpython_manager_ops_per_s",
    "py_client_queue_call_cpython_manager_us",
];

fn baseline_script(root: &Path) -> PathBuf {
    root.join("../shared/bench/python_baseline.py")
}

/// Runs the Python baseline for every case that has one.
fn python_figures(root: &Path) -> Vec<(String, f64)> {
    let mut figures = run_python(
        &baseline_script(root),
        CASES
            .iter()
            .filter_map(|c| c.python)
            .filter(|c| !EXTRA_PYTHON.contains(c))
            .collect(),
    );
    figures.extend(run_python(
        &root.join("benches/python_extra.py"),
        EXTRA_PYTHON.to_vec(),
    ));
    figures
}

fn run_python(script: &Path, cases: Vec<&str>) -> Vec<(String, f64)> {
    if !script.exists() || cases.is_empty() {
        eprintln!("bench: {} not found; no CPython figures", script.display());
        return Vec::new();
    }
    eprintln!("bench: running CPython baseline: {}", cases.join(" "));
    let out = match Command::new("python3").arg(script).args(&cases).output() {
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

/// The median of a criterion benchmark, in nanoseconds per iteration. The
/// median, not the mean: on a shared machine one slow sample moves the mean.
fn criterion_median_ns(root: &Path, id: &str) -> Option<f64> {
    // Criterion keeps a grouped benchmark under `group/function`, and a
    // top-level one under its name with `/` made `_`.
    let path = crate::target_dir(root)
        .join("criterion")
        .join(id)
        .join("new/estimates.json");
    let json = fs::read_to_string(path).ok()?;
    let median = &json[json.find("\"median\"")?..];
    let v = &median[median.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
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
         command. Figures are criterion's medians; the machine is shared and noisy,\n\
         so compare ratios, not single figures, and rerun before drawing conclusions.\n\
         CPython's figures are single runs of its own loops, as the baseline script\n\
         measures them.\n\
         \n\
         Machine: {machine}.\n\
         \n\
         | work | multiproc | CPython | ratio | another Rust crate, same work | goal |\n\
         |---|---|---|---|---|---|\n\
         {rows}\n\
         ## Reading the pool rows\n\
         \n\
         - CPU-bound speedup: CPython's `_cpu(300000)` takes about 36 ms a task.\n\
         \x20 The same n takes 0.2 ms in Rust, which would measure a pool's latency,\n\
         \x20 so the Rust tasks run n = 20,000,000, about as long. The function is\n\
         \x20 never inlined, so the serial and the parallel runs execute the same\n\
         \x20 machine code. On a machine whose CPUs share a core, or a host, a tight\n\
         \x20 integer loop slows down when both CPUs are busy, and threads alone fall\n\
         \x20 short of 2x: the rayon column (threads in one process, no copies) is\n\
         \x20 the ceiling the pool is measured against.\n\
         - Map of tiny items: rayon's figure is work in one process with nothing\n\
         \x20 encoded or copied between processes; the pool's includes encoding every\n\
         \x20 chunk (`codec::bulk`), two copies through shared memory, and decoding.\n\
         \n\
         ## Reading the rows between Rust and Python managers\n\
         \n\
         - Both are bounded by CPython's side of the wire. A CPython client's\n\
         \x20 bare round trip of 16 bytes to a CPython `Listener` (the TCP row)\n\
         \x20 takes most of what its dict set on our manager takes (the rest is its\n\
         \x20 own pickling of the call), so no server can make that client 3x\n\
         \x20 faster than on CPython's own manager.\n\
         - The Rust client's `qsize` on a CPython manager is our round trip to a\n\
         \x20 CPython `Listener` (the TCP row) plus CPython's unpickling, dispatch\n\
         \x20 and pickling of the call.\n\
         \n\
         ## Reproduce\n\
         \n\
         ```sh\n\
         cargo xtask bench            # everything, then rewrite this file\n\
         cargo xtask bench --report   # rewrite it from the last criterion run\n\
         python3 ../shared/bench/python_baseline.py spawn_fork_us   # one CPython figure\n\
         ```\n"
    )
}
