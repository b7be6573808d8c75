// A closure that captures even a `Copy` value is refused: only its type
// reaches the child, not its bytes.
use multiproc as mp;

fn main() {
    let n = 5u64;
    let _p = mp::Process::new(move || n * 2, ());
}
