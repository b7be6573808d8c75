//! Seed program 3: a child squares a list into a shared `Array` and sums
//! it into a shared `Value`; the parent sees both after `join`.
//!
//! Python:
//! ```python
//! result = multiprocessing.Array('i', 4)
//! square_sum = multiprocessing.Value('i')
//! p1 = multiprocessing.Process(target=square_list, args=(mylist, result, square_sum))
//! ```

use multiproc as mp;

fn square_list(mylist: Vec<i32>, result: mp::Array<i32>, square_sum: mp::Value<i32>) {
    // append squares of mylist to result array
    for (idx, num) in mylist.iter().enumerate() {
        result.set(idx, num * num);
    }
    // square_sum value
    square_sum.set(result.lock().iter().sum());
    println!("Result(in process p1): {:?}", result.to_vec());
    println!("Sum of squares(in process p1): {}", square_sum.get());
}

pub(crate) fn main() -> mp::Result<()> {
    // input list
    let mylist = vec![1, 2, 3, 4];
    // an Array of i32 with space for 4 integers, and a Value of i32
    let result = mp::Array::<i32>::new(4)?;
    let square_sum = mp::Value::new(0i32)?;

    // creating new process
    let mut p1 = mp::Process::new(square_list, (mylist, result.clone(), square_sum.clone()));
    p1.start()?;
    p1.join()?;

    println!("Result(in main program): {:?}", result.to_vec());
    println!("Sum of squares(in main program): {}", square_sum.get());
    Ok(())
}
