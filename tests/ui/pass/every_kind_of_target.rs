// A program in a crate of its own (as a user's is) whose targets return
// values and every kind of `Result`; it runs them, with no `init`.
use multiproc as mp;

fn square(n: u64) -> u64 {
    n * n
}

fn parse(text: String) -> mp::Result<u64> {
    text.parse()
        .map_err(|e| mp::Error::InvalidArgument(format!("{text:?}: {e}")))
}

fn read(path: String) -> std::io::Result<usize> {
    Ok(std::fs::read(path)?.len())
}

fn boxed(fail: bool) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    if fail {
        return Err("no".into());
    }
    Ok(1)
}

fn run<R: serde::de::DeserializeOwned>(mut p: mp::Process<R>) -> mp::Result<R> {
    p.start()?;
    p.join()?;
    p.take_result()
}

fn main() {
    assert_eq!(run(mp::Process::new(square, (12,))).unwrap(), 144);
    assert_eq!(run(mp::Process::new(parse, ("7".to_string(),))).unwrap(), 7);
    assert!(matches!(
        run(mp::Process::new(parse, ("x".to_string(),))),
        Err(mp::Error::ChildFailed { .. })
    ));
    assert!(run(mp::Process::new(read, ("/proc/self/stat".to_string(),))).unwrap() > 0);
    assert!(matches!(
        run(mp::Process::new(boxed, (true,))),
        Err(mp::Error::ChildFailed { .. })
    ));
    let pool = mp::Pool::builder().processes(2).build().unwrap();
    assert_eq!(pool.map(square, 0..4u64).unwrap(), vec![0, 1, 4, 9]);
    assert!(matches!(
        pool.map(parse, ["1".to_string(), "x".to_string()]),
        Err(mp::Error::TaskFailed { .. })
    ));
}
