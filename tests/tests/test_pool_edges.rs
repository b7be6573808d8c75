//! Pool calls at their edges, after CPython's `_TestPool`: handles (a
//! descriptor, shared memory, a manager's proxy) as task arguments and
//! results, a `Serialize` or `Deserialize` that panics or fails, callbacks
//! that run before the result is ready, and the calls CPython has that
//! complete the set (`starmap_async`, a chunk size for `map_async` and
//! `imap_unordered`, `next(timeout)`).

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use multiproc as mp;
use multiproc_testkit::within;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const LIMIT: Duration = Duration::from_secs(30);

fn pool(ctx: &mp::Context, n: usize) -> mp::Pool {
    mp::Pool::builder()
        .processes(n)
        .start_method(ctx.start_method())
        .build()
        .unwrap()
}

fn square(n: u64) -> u64 {
    n * n
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn write_through(out: mp::handoff::HandoffFd, text: String) -> usize {
    use std::io::Write;
    let mut f = std::fs::File::from(OwnedFd::from(out));
    f.write_all(text.as_bytes()).unwrap();
    text.len()
}

fn push_to(list: mp::ListProxy<u64>, v: u64) -> usize {
    list.push(&v).unwrap();
    std::process::id() as usize
}

fn sum_array(a: mp::RawArray<u64>) -> u64 {
    a.to_vec().iter().sum()
}

fn double_in_place(a: mp::RawArray<u64>) -> usize {
    for i in 0..a.len() {
        a.set(i, a.get(i) * 2);
    }
    a.len()
}

fn segment_len(s: mp::Segment) -> usize {
    s.len()
}

fn make_array(n: u64) -> mp::RawArray<u64> {
    mp::RawArray::from_slice(&(0..n).collect::<Vec<_>>()).unwrap()
}

fn handles_cross_in_every_pool_call(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    within(LIMIT, move || {
        // A descriptor in `apply`: the worker writes, the parent reads to
        // the end, which comes once every copy of the write end is closed.
        let (mut reader, writer) = std::io::pipe().unwrap();
        let out = mp::handoff::HandoffFd::from(OwnedFd::from(writer));
        assert_eq!(
            p.apply(write_through, (out, "to the pool".to_string()))
                .unwrap(),
            11
        );
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "to the pool");

        // A manager's proxy in `starmap`, `apply_async`, `imap`.
        let m = mp::Manager::builder()
            .start_method(ctx.start_method())
            .start()
            .unwrap();
        let list = m.list::<u64, _>([]).unwrap();
        let items: Vec<_> = (0..10).map(|v| (list.clone(), v)).collect();
        assert_eq!(p.starmap(push_to, items).unwrap().len(), 10);
        p.apply_async(push_to, (list.clone(), 10))
            .unwrap()
            .get_timeout(LIMIT)
            .unwrap();
        let pushed: Vec<usize> = p
            .imap(
                |(l, v): (mp::ListProxy<u64>, u64)| push_to(l, v),
                (11..15).map(|v| (list.clone(), v)),
            )
            .map(Result::unwrap)
            .collect();
        assert_eq!(pushed.len(), 4);
        let mut seen = list.to_vec().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..15).collect::<Vec<_>>());

        // Shared memory crosses as a descriptor: the worker sees the
        // parent's memory and writes into it.
        let a = mp::RawArray::from_slice(&(1..=1000u64).collect::<Vec<_>>()).unwrap();
        assert_eq!(p.apply(sum_array, (a.clone(),)).unwrap(), 500_500);
        assert_eq!(p.apply(double_in_place, (a.clone(),)).unwrap(), 1000);
        assert_eq!(a.get(999), 2000);
        let arrays: Vec<_> = (0..6)
            .map(|k| mp::RawArray::from_slice(&[k, k, k]).unwrap())
            .collect();
        assert_eq!(
            p.map_chunked(sum_array, arrays.clone(), 2).unwrap(),
            vec![0, 3, 6, 9, 12, 15]
        );
        let mut sums: Vec<u64> = p
            .imap_unordered(sum_array, arrays)
            .map(Result::unwrap)
            .collect();
        sums.sort_unstable();
        assert_eq!(sums, vec![0, 3, 6, 9, 12, 15]);
        let seg = mp::Segment::new(1 << 20).unwrap();
        assert_eq!(p.apply(segment_len, (seg,)).unwrap(), 1 << 20);

        // A task's result may be a handle to memory the worker made; it
        // outlives the task, and reads the same each time it is got.
        let r = p.apply_async(make_array, (100,)).unwrap();
        let made = r.get_timeout(LIMIT).unwrap();
        assert_eq!(made.to_vec(), (0..100).collect::<Vec<_>>());
        made.set(0, 7);
        assert_eq!(r.get_timeout(LIMIT).unwrap().get(0), 7);
        let many = p.map(make_array, [1, 2, 3]).unwrap();
        assert_eq!(many.iter().map(mp::RawArray::len).sum::<usize>(), 6);
        m.shutdown().unwrap();
    });
}

/// A value whose `Serialize` panics for 13 and whose `Deserialize` panics
/// for 14, as a buggy impl in a user's crate may.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Touchy(u64);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert!(self.0 != 13, "Touchy cannot write 13");
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Touchy, D::Error> {
        let v = u64::deserialize(d)?;
        assert!(v != 14, "Touchy cannot read 14");
        Ok(Touchy(v))
    }
}

fn touchy_id(t: Touchy) -> Touchy {
    t
}

fn touchy_of(n: u64) -> Touchy {
    Touchy(n)
}

fn a_panicking_serde_fails_the_call_and_keeps_the_pool(ctx: mp::Context) {
    let p = pool(&ctx, 1);
    let pids = p.worker_pids();
    within(LIMIT, move || {
        let serial: Vec<u64> = (0..20).map(square).collect();
        // An argument that panics as it is written (in the caller's
        // process), or as it is read (in the worker).
        for bad in [13, 14] {
            let items = [Touchy(1), Touchy(bad), Touchy(2)];
            let e = p.map(touchy_id, items).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("Touchy cannot"), "{bad}: {text}");
            let e = p.apply(touchy_id, (Touchy(bad),)).unwrap_err();
            assert!(e.to_string().contains("Touchy cannot"), "{e}");
            let items: Vec<_> = p.imap(touchy_id, items).collect();
            assert!(items[1].is_err(), "{items:?}");
            assert_eq!(items[0].as_ref().unwrap(), &Touchy(1));
            assert_eq!(p.map(square, 0..20).unwrap(), serial);
        }
        // A result that panics as the worker writes it, or as the caller
        // reads it.
        for bad in [13, 14] {
            let e = p.map(touchy_of, [1, bad, 2]).unwrap_err();
            assert!(e.to_string().contains("Touchy cannot"), "{bad}: {e}");
            let e = p.apply(touchy_of, (bad,)).unwrap_err();
            assert!(e.to_string().contains("Touchy cannot"), "{bad}: {e}");
            assert_eq!(p.map(square, 0..20).unwrap(), serial);
        }
        // The one worker served it all, never lost.
        assert_eq!(p.worker_pids(), pids);
    });
}

/// A value whose `Serialize` fails with its own message, as a type that
/// cannot cross a process boundary says so.
#[derive(Debug)]
struct Bad;

impl Serialize for Bad {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Bad is not serializable"))
    }
}

impl<'de> Deserialize<'de> for Bad {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bad, D::Error> {
        <()>::deserialize(d).map(|()| Bad)
    }
}

fn take_bad(_: Bad) -> u64 {
    0
}

fn make_bad(_: u64) -> Bad {
    Bad
}

fn expect_encode<T: std::fmt::Debug>(r: mp::Result<T>) {
    match r {
        Err(mp::Error::Encode(why)) => assert!(why.contains("Bad is not serializable"), "{why}"),
        other => panic!("{other:?}"),
    }
}

fn an_encoding_failure_is_an_encode_error_with_the_users_message(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    within(LIMIT, move || {
        expect_encode(p.map(take_bad, [Bad]));
        expect_encode(p.map_async(take_bad, [Bad]).and_then(|r| r.get()));
        expect_encode(p.apply(take_bad, (Bad,)));
        expect_encode(p.map(make_bad, [1, 2]));
        expect_encode(p.apply(make_bad, (1,)));
        let from_imap: Vec<_> = p.imap(make_bad, [1]).collect();
        assert_eq!(from_imap.len(), 1);
        expect_encode(from_imap.into_iter().next().unwrap());

        let q = mp::Queue::<Bad>::new().unwrap();
        match q.put(Bad) {
            Err(mp::PutError::Encode(_, mp::Error::Encode(why))) => {
                assert!(why.contains("Bad is not serializable"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let (a, _b) = mp::Pipe::new().unwrap();
        expect_encode(a.send(&Bad));
        assert_eq!(p.map(square, [3]).unwrap(), vec![9]);
    });
}

fn explode(n: u64) -> u64 {
    panic!("unlucky {n}")
}

/// A callback that takes a while, then says it ran.
fn slow_flag(flag: &Arc<AtomicBool>) -> impl FnOnce() + Send + 'static {
    let flag = flag.clone();
    move || {
        std::thread::sleep(Duration::from_millis(150));
        flag.store(true, Ordering::SeqCst);
    }
}

fn callbacks_run_before_the_result_is_ready(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    within(LIMIT, move || {
        let done = Arc::new(AtomicBool::new(false));
        let cb = slow_flag(&done);
        let r = p
            .apply_async_with(square, (4,), move |_| cb(), |e| panic!("{e}"))
            .unwrap();
        assert_eq!(r.get_timeout(LIMIT).unwrap(), 16);
        assert!(
            done.load(Ordering::SeqCst),
            "get returned before the callback ran"
        );

        let failed = Arc::new(AtomicBool::new(false));
        let cb = slow_flag(&failed);
        let r = p
            .apply_async_with(explode, (5,), |v| panic!("{v}"), move |_| cb())
            .unwrap();
        assert!(r.wait(Some(LIMIT)));
        assert!(
            failed.load(Ordering::SeqCst),
            "wait returned before the error callback ran"
        );
        assert!(r.ready() && !r.successful().unwrap());

        let mapped = Arc::new(AtomicBool::new(false));
        let cb = slow_flag(&mapped);
        let r = p
            .map_async_with(square, 0..50, move |_| cb(), |e| panic!("{e}"))
            .unwrap();
        while !r.ready() {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            mapped.load(Ordering::SeqCst),
            "ready before the callback ran"
        );
        assert_eq!(r.get().unwrap().len(), 50);
    });
}

fn sleep_then_square(n: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(if n == 0 { 300 } else { 0 }));
    n * n
}

fn the_rest_of_cpythons_calls(ctx: mp::Context) {
    let p = pool(&ctx, 2);
    within(LIMIT, move || {
        let serial: Vec<u64> = (0..100).map(square).collect();
        // starmap_async, starmap with a chunk size, map_async with one.
        let r = p.starmap_async(add, (0..100).map(|i| (i, i))).unwrap();
        assert_eq!(
            r.get_timeout(LIMIT).unwrap(),
            (0..100).map(|i| 2 * i).collect::<Vec<_>>()
        );
        assert_eq!(
            p.starmap_chunked(add, [(1, 2), (3, 4), (5, 6)], 2).unwrap(),
            vec![3, 7, 11]
        );
        let r = p.map_async_chunked(square, 0..100, 7).unwrap();
        assert_eq!(r.get_timeout(LIMIT).unwrap(), serial);

        // imap_unordered in chunks: every result once; a chunk's results
        // come together, in its order.
        let got: Vec<u64> = p
            .imap_unordered_chunked(square, 0..100, 10)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got.len(), 100);
        for chunk in got.chunks(10) {
            let first = (chunk[0] as f64).sqrt() as u64;
            let want: Vec<u64> = (first..first + 10).map(square).collect();
            assert_eq!(chunk, want.as_slice());
        }

        // next(timeout): a result not ready is a timeout, and still comes.
        let mut it = p.imap(sleep_then_square, [0, 1, 2]);
        assert!(matches!(
            it.next_timeout(Duration::from_millis(20)),
            Some(Err(mp::Error::Timeout))
        ));
        assert_eq!(it.next_timeout(LIMIT).unwrap().unwrap(), 0);
        assert_eq!(it.next_timeout(LIMIT).unwrap().unwrap(), 1);
        assert_eq!(it.next().unwrap().unwrap(), 4);
        assert!(it.next_timeout(LIMIT).is_none());
        let mut it = p.imap_unordered(sleep_then_square, [0]);
        assert!(matches!(
            it.next_timeout(Duration::from_millis(20)),
            Some(Err(mp::Error::Timeout))
        ));
        assert_eq!(it.next_timeout(LIMIT).unwrap().unwrap(), 0);
        assert!(it.next_timeout(Duration::ZERO).is_none());
    });
}

multiproc_testkit::each_start_method!(
    handles_cross_in_every_pool_call,
    a_panicking_serde_fails_the_call_and_keeps_the_pool,
    an_encoding_failure_is_an_encode_error_with_the_users_message,
    callbacks_run_before_the_result_is_ready,
    the_rest_of_cpythons_calls,
);
