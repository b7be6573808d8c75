// A closure that captures a variable cannot run in another process: pass
// the variable as an argument instead.
use multiproc as mp;

fn main() {
    let name = String::from("worker");
    let _p = mp::Process::new(move || name.len(), ());
}
