//! Whether this machine can build the MPI pool, and what the steps of
//! `test-all` then add or leave out.

use std::path::Path;
use std::process::{Command, Stdio};

/// The packages that need an MPI library to build.
const MPI_PACKAGES: &[&str] = &["multiproc-mpi", "multiproc-mpi-tests"];

/// How to get MPI on Debian or Ubuntu.
pub(crate) const INSTALL: &str = "apt-get install mpich libmpich-dev libclang-dev";

/// Whether an MPI with its compiler wrapper (what rsmpi's build probes)
/// and `mpirun` is installed.
pub(crate) fn available() -> bool {
    let runs = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    runs("mpicc", "-show") && runs("mpirun", "--version")
}

/// Says, once, what the run does about MPI.
pub(crate) fn announce(mpi: bool) {
    if mpi {
        eprintln!("MPI found: building and testing multiproc-mpi and the mpi_pool example");
    } else {
        eprintln!(
            "MPI not found (no mpicc or mpirun): SKIPPING multiproc-mpi, its tests and the \
             mpi_pool example; install them with `{INSTALL}`"
        );
    }
}

/// `--workspace`, leaving out the MPI packages when there is no MPI, and
/// with the MPI example's feature when there is.
pub(crate) fn workspace_args(mpi: bool) -> Vec<&'static str> {
    let mut args = vec!["--workspace"];
    if mpi {
        args.extend(["--features", "multiproc-examples/mpi"]);
    } else {
        for p in MPI_PACKAGES {
            args.extend(["--exclude", p]);
        }
    }
    args
}

/// Settings Open MPI needs to run as root and with more ranks than
/// cores; MPICH ignores them.
pub(crate) const MPIRUN_ENV: &[(&str, &str)] = &[
    ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
    ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
    ("OMPI_MCA_rmaps_base_oversubscribe", "1"),
];

/// `mpirun -n ranks program`, in `root`.
pub(crate) fn mpirun(root: &Path, ranks: usize, program: &Path) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.current_dir(root)
        .envs(MPIRUN_ENV.iter().copied())
        .arg("-n")
        .arg(ranks.to_string())
        .arg(program)
        .stdin(Stdio::null());
    cmd
}
