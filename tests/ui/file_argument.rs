// A descriptor travels as `mp::handoff::HandoffFd`, not as a `File`.
use multiproc as mp;

fn size(file: std::fs::File) -> u64 {
    file.metadata().map(|m| m.len()).unwrap_or(0)
}

fn main() {
    let file = std::fs::File::open("/etc/hostname").unwrap();
    let _p = mp::Process::new(size, (file,));
}
