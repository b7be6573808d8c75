// A pool's tasks follow the rule of process targets.
use multiproc as mp;

fn main() -> mp::Result<()> {
    let pool = mp::Pool::new()?;
    let offset = String::from("1");
    let _ = pool.map(move |n: u64| n + offset.len() as u64, 0..10u64)?;
    Ok(())
}
