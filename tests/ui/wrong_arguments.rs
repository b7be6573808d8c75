// The arguments are a tuple of the function's parameters.
use multiproc as mp;

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn main() {
    let _p = mp::Process::new(add, (1u64,));
}
