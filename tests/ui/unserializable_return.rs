// What a target returns crosses back to the parent, so it is a serde value.
use multiproc as mp;

fn open() -> std::fs::File {
    std::fs::File::open("/etc/hostname").unwrap()
}

fn main() {
    let _p = mp::Process::new(open, ());
}
