// Arguments are owned serde values: `String`, not `&str`. The compiler
// checks lifetimes after traits, so this one error is its own (about
// `Deserialize` not being general enough), not multiproc's; the docs of
// `mp::Args` and `Process::new` name the rule.
use multiproc as mp;

fn count(text: &str) -> usize {
    text.len()
}

fn main() {
    let _p = mp::Process::new(count, ("hello",));
}
