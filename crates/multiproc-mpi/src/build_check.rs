//! That every rank runs the same build of the program: a task crosses as
//! its function's place in the binary, which means something only in a
//! copy of the same binary.
//!
//! Each rank hashes its own executable (SHA-256 of `/proc/self/exe`, so a
//! copy on another host compares equal when its bytes are) and the ranks
//! exchange the digests and their host names.

use std::io::Read;

use mpi::topology::SimpleCommunicator;
use mpi::traits::Communicator;
use mpi::traits::CommunicatorCollectives;
use multiproc_process::{Error, Result};
use sha2::{Digest, Sha256};

/// The bytes of a host name exchanged (longer ones are cut).
const HOST_BYTES: usize = 256;

/// What the ranks learned of each other.
pub(crate) struct Ranks {
    /// Each rank's host, by rank.
    pub(crate) hosts: Vec<String>,
    /// Each rank's build digest, by rank.
    digests: Vec<[u8; 32]>,
}

impl Ranks {
    /// Exchanges every rank's build digest and host name (a collective
    /// call: every rank makes it, even one that cannot read its binary,
    /// which then sends [`UNREADABLE`] rather than leave the others
    /// waiting).
    pub(crate) fn exchange(world: &SimpleCommunicator) -> Ranks {
        let n = world.size() as usize;
        let digest = own_digest().unwrap_or(UNREADABLE);
        let mut digests = vec![0u8; 32 * n];
        world.all_gather_into(&digest[..], &mut digests[..]);
        let mut host = [0u8; HOST_BYTES];
        let name = mpi::environment::processor_name().unwrap_or_default();
        let len = name.len().min(HOST_BYTES);
        host[..len].copy_from_slice(&name.as_bytes()[..len]);
        let mut hosts = vec![0u8; HOST_BYTES * n];
        world.all_gather_into(&host[..], &mut hosts[..]);
        Ranks {
            hosts: hosts
                .chunks(HOST_BYTES)
                .map(|h| {
                    let end = h.iter().position(|b| *b == 0).unwrap_or(h.len());
                    String::from_utf8_lossy(&h[..end]).into_owned()
                })
                .collect(),
            digests: digests
                .chunks(32)
                .map(|d| d.try_into().unwrap_or(UNREADABLE))
                .collect(),
        }
    }

    /// Fails, naming them, if some ranks run another build than rank 0.
    pub(crate) fn same_build(&self) -> Result<()> {
        let ours = self.digests[0];
        let others: Vec<String> = self
            .digests
            .iter()
            .enumerate()
            .filter(|(_, d)| **d != ours)
            .map(|(rank, d)| format!("rank {rank} on {} ({})", self.hosts[rank], short(d)))
            .collect();
        if ours == UNREADABLE {
            return Err(Error::Mpi(format!(
                "rank 0 on {} cannot read its own binary (/proc/self/exe) to check that every \
                 rank runs the same build",
                self.hosts[0]
            )));
        }
        if others.is_empty() {
            return Ok(());
        }
        Err(Error::Mpi(format!(
            "the ranks run different builds of the program: rank 0 on {} runs {}, {} {} another; \
             every rank must run the same binary (copy the same build to every host)",
            self.hosts[0],
            short(&ours),
            others.join(", "),
            if others.len() == 1 { "runs" } else { "run" },
        )))
    }
}

/// The digest of a rank that could not read its own binary.
const UNREADABLE: [u8; 32] = [0; 32];

/// The first bytes of a digest, in hex.
fn short(d: &[u8; 32]) -> String {
    if *d == UNREADABLE {
        return "a binary it cannot read".into();
    }
    d[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of this process's executable.
fn own_digest() -> Result<[u8; 32]> {
    let cannot = |e: std::io::Error| Error::Mpi(format!("cannot read this program's binary: {e}"));
    let mut file = std::fs::File::open("/proc/self/exe").map_err(cannot)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(cannot)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}
