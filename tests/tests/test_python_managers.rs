#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

//! Rust clients of CPython managers, against every CPython 3.x this
//! machine has: the queue of a `BaseManager` (`register("get_queue")`),
//! a `SyncManager`'s dict, list, Value and Namespace, the mapping of
//! Python's exceptions, and the distributed-queue pattern with a Python
//! orchestrator and two Rust worker processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use multiproc as mp;
use multiproc_testkit::{Python, cpythons, within};

multiproc::test_setup!();

const LIMIT: Duration = Duration::from_secs(120);
const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/manager_peer.py");
const KEY: &str = "py manager key";

/// A Python manager of `mode`, and the address it serves on.
struct Peer {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
    address: mp::connection::Address,
}

impl Peer {
    fn start(py: &Python, args: &[&str]) -> Peer {
        let mut child = py
            .command()
            .arg(PEER)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let port = read_line(&mut lines);
        let address = format!("127.0.0.1:{port}").parse().unwrap();
        Peer {
            child,
            lines,
            address,
        }
    }

    fn line(&mut self) -> String {
        read_line(&mut self.lines)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Closing its stdin ends it (a SyncManager's server with it).
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line.trim().to_string()
}

#[test]
fn a_base_managers_queue_with_every_method_and_its_errors() {
    within(LIMIT, || {
        for py in cpythons() {
            let peer = Peer::start(&py, &["base", KEY]);
            let m = mp::python::Manager::connect(&peer.address, KEY.as_bytes()).unwrap();
            let q = m.queue::<(i64, String)>("get_queue").unwrap();
            assert!(q.empty().unwrap(), "{}", py.version);
            q.put(&(1, "one".into())).unwrap();
            q.put_nowait(&(2, "two".into())).unwrap();
            q.put(&(3, "three".into())).unwrap();
            assert!(q.full().unwrap());
            assert!(matches!(
                q.put_nowait(&(4, "four".into())),
                Err(mp::Error::Full)
            ));
            assert_eq!(q.qsize().unwrap(), 3);
            assert_eq!(q.get().unwrap(), (1, "one".into()));
            assert_eq!(q.get_nowait().unwrap(), (2, "two".into()));
            assert_eq!(
                q.get_timeout(Duration::from_secs(5)).unwrap(),
                (3, "three".into())
            );
            assert!(
                matches!(q.get_nowait(), Err(mp::Error::Empty)),
                "{}",
                py.version
            );
            let started = std::time::Instant::now();
            assert!(matches!(
                q.get_timeout(Duration::from_millis(200)),
                Err(mp::Error::Empty)
            ));
            assert!(started.elapsed() >= Duration::from_millis(150));
            for _ in 0..3 {
                q.task_done().unwrap();
            }
            q.join().unwrap();
            // One task_done too many: Python's ValueError, class kept.
            match q.task_done() {
                Err(mp::Error::Python { class, .. }) => assert_eq!(class, "builtins.ValueError"),
                other => panic!("{}: {other:?}", py.version),
            }
            // A method the queue does not expose: the server's traceback.
            match q.proxy().call::<i64>("no_such_method", ()) {
                Err(mp::Error::Python { class, message }) => {
                    assert_eq!(class, "multiprocessing.managers.RemoteError");
                    assert!(message.contains("no_such_method"), "{message}");
                }
                other => panic!("{}: {other:?}", py.version),
            }
            assert!(q.proxy().exposed().iter().any(|m| m == "put_nowait"));
            // An unknown typeid: the server's traceback (a KeyError in
            // `create`), as a Python client gets it.
            match m.queue::<i64>("get_nothing") {
                Err(mp::Error::Python { class, message }) => {
                    assert_eq!(class, "multiprocessing.managers.RemoteError");
                    assert!(message.contains("get_nothing"), "{message}");
                }
                other => panic!("{}: {other:?}", py.version),
            }
            // A wrong key is refused.
            assert!(matches!(
                mp::python::Manager::connect(&peer.address, b"wrong"),
                Err(mp::Error::Auth(_))
            ));
        }
    });
}

#[test]
fn methods_that_return_proxies_give_proxies_that_hold_their_own_reference() {
    within(LIMIT, || {
        for py in cpythons() {
            let peer = Peer::start(&py, &["proxies", KEY]);
            let m = mp::python::Manager::connect(&peer.address, KEY.as_bytes()).unwrap();
            let before = m.number_of_objects().unwrap();
            {
                let b = m.create("get_box", ()).unwrap();
                let inbox: mp::python::QueueProxy<i64> = b.call_proxy("inbox", ()).unwrap().into();
                assert_eq!(inbox.proxy().typeid(), "Inbox");
                inbox.put(&5).unwrap();
                // The same queue, seen through the object that returned it.
                assert_eq!(b.call::<i64>("size", ()).unwrap(), 1);
                assert_eq!(inbox.get().unwrap(), 5);
                let tally: mp::python::DictProxy<String, i64> =
                    b.call_proxy("counts", ()).unwrap().into();
                tally.insert(&"a".into(), &1).unwrap();
                assert_eq!(tally.items().unwrap(), [("a".to_string(), 1)]);
                assert_eq!(m.number_of_objects().unwrap(), before + 3, "{}", py.version);
                // A proxy not asked for is given back at once.
                match b.call::<i64>("inbox", ()) {
                    Err(mp::Error::Decode(text)) => assert!(text.contains("call_proxy"), "{text}"),
                    other => panic!("{}: {other:?}", py.version),
                }
                match b.call_proxy("size", ()) {
                    Err(mp::Error::Decode(text)) => assert!(text.contains("not a proxy"), "{text}"),
                    other => panic!("{}: {other:?}", py.version),
                }
                assert_eq!(m.number_of_objects().unwrap(), before + 3, "{}", py.version);
                drop(inbox);
                // Asked again, the queue comes back under a new hold.
                let again: mp::python::QueueProxy<i64> = b.call_proxy("inbox", ()).unwrap().into();
                assert!(again.empty().unwrap());
            }
            // Every proxy dropped gave its reference back.
            assert_eq!(m.number_of_objects().unwrap(), before, "{}", py.version);
        }
    });
}

#[test]
fn a_manager_that_answers_proxies_to_everything_gets_one_decref_each() {
    within(LIMIT, || {
        for py in cpythons() {
            let mut peer = Peer::start(&py, &["hostile", KEY]);
            // `dummy` is answered by a proxy: given back by one `decref`,
            // itself answered by a proxy, which is let be.
            match mp::python::Manager::connect(&peer.address, KEY.as_bytes()) {
                Err(mp::Error::Decode(text)) => assert!(text.contains("proxy"), "{text}"),
                other => panic!("{}: {other:?}", py.version),
            }
            drop(peer.child.stdin.take());
            assert_eq!(peer.line(), "2", "{}", py.version);
        }
    });
}

#[test]
fn a_sync_managers_dict_list_value_and_namespace_and_refcounts() {
    within(LIMIT, || {
        for py in cpythons() {
            let peer = Peer::start(&py, &["sync", KEY]);
            let m = mp::python::Manager::connect(&peer.address, KEY.as_bytes()).unwrap();
            let before = m.number_of_objects().unwrap();
            {
                let d = m.dict::<String, Vec<i64>>("dict").unwrap();
                d.insert(&"a".into(), &vec![1, 2]).unwrap();
                d.insert(&"b".into(), &vec![]).unwrap();
                assert_eq!(d.get(&"a".into()).unwrap(), vec![1, 2]);
                assert_eq!(d.len().unwrap(), 2);
                assert!(d.contains_key(&"b".into()).unwrap());
                assert_eq!(d.get_or_none(&"z".into()).unwrap(), None);
                match d.get(&"z".into()) {
                    Err(mp::Error::NotFound(text)) => assert!(text.contains("KeyError"), "{text}"),
                    other => panic!("{}: {other:?}", py.version),
                }
                assert_eq!(d.pop(&"b".into()).unwrap(), Vec::<i64>::new());
                let copy: std::collections::BTreeMap<String, Vec<i64>> = d.copy().unwrap();
                assert_eq!(copy, [("a".to_string(), vec![1, 2])].into());
                d.insert(&"c".into(), &vec![3]).unwrap();
                // The views come back as a call of `list`, in the dict's order.
                assert_eq!(d.keys().unwrap(), ["a", "c"]);
                assert_eq!(d.values().unwrap(), [vec![1, 2], vec![3]]);
                assert_eq!(
                    d.items().unwrap(),
                    [("a".to_string(), vec![1, 2]), ("c".to_string(), vec![3])]
                );
                let l = m.list::<f64>("list").unwrap();
                l.push(&1.5).unwrap();
                l.push(&2.5).unwrap();
                l.set(0, &0.5).unwrap();
                assert_eq!(l.to_vec().unwrap(), vec![0.5, 2.5]);
                assert_eq!(l.get(-1).unwrap(), 2.5);
                assert_eq!(l.pop().unwrap(), 2.5);
                assert_eq!(l.pop().unwrap(), 0.5);
                match l.pop() {
                    Err(mp::Error::Python { class, .. }) => {
                        assert_eq!(class, "builtins.IndexError")
                    }
                    other => panic!("{}: {other:?}", py.version),
                }
                let v = m.value::<i64>("i", &5).unwrap();
                assert_eq!(v.get().unwrap(), 5);
                v.set(&-7).unwrap();
                assert_eq!(v.get().unwrap(), -7);
                let ns = m.namespace().unwrap();
                ns.set("x", &"y").unwrap();
                assert_eq!(ns.get::<String>("x").unwrap(), "y");
                match ns.get::<String>("missing") {
                    Err(mp::Error::Python { class, .. }) => {
                        assert_eq!(class, "builtins.AttributeError");
                    }
                    other => panic!("{}: {other:?}", py.version),
                }
                let q = m.queue::<i64>("Queue").unwrap();
                q.put(&9).unwrap();
                assert_eq!(q.get().unwrap(), 9);
                assert_eq!(m.number_of_objects().unwrap(), before + 5, "{}", py.version);
            }
            // Every proxy dropped gave its reference back.
            assert_eq!(m.number_of_objects().unwrap(), before, "{}", py.version);
        }
    });
}

/// A Rust worker of a Python orchestrator: squares jobs until a `None`.
fn square_jobs(address: String, key: String) -> u64 {
    let m = mp::python::Manager::connect(&address.parse().unwrap(), key.as_bytes()).unwrap();
    let jobs = m.queue::<Option<i64>>("get_jobs").unwrap();
    let results = m.queue::<i64>("get_results").unwrap();
    let mut done = 0;
    while let Some(n) = jobs.get_timeout(Duration::from_secs(30)).unwrap() {
        results.put(&(n * n)).unwrap();
        done += 1;
    }
    done
}

#[test]
fn a_python_orchestrator_feeds_two_rust_workers() {
    within(LIMIT, || {
        for py in cpythons() {
            let mut peer = Peer::start(&py, &["orchestrate", KEY, "200"]);
            let address = peer.address.to_string();
            let mut workers: Vec<_> = (0..2)
                .map(|_| mp::Process::new(square_jobs, (address.clone(), KEY.to_string())))
                .collect();
            for w in &mut workers {
                w.start().unwrap();
            }
            assert_eq!(peer.line(), "ok", "{}", py.version);
            let mut total = 0;
            for w in &mut workers {
                w.join_timeout(Duration::from_secs(30)).unwrap();
                assert_eq!(w.exitcode(), Some(0));
                total += w.take_result().unwrap();
            }
            assert_eq!(total, 200, "{}", py.version);
        }
    });
}

// --- Python programs as clients of a Rust manager. ---

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/manager_client.py");

/// A Rust manager that Python programs reach too.
fn rust_manager() -> mp::Manager {
    mp::Manager::builder()
        .serve_python_on("127.0.0.1:0".parse().unwrap(), KEY.as_bytes())
        .start()
        .unwrap()
}

/// Starts `manager_client.py mode` against `m`.
fn python_client(py: &Python, m: &mp::Manager, args: &[&str]) -> Child {
    python_client_of(py, &m.python_address().unwrap().to_string(), args)
}

/// Starts `manager_client.py mode` against the manager at `address`.
fn python_client_of(py: &Python, address: &str, args: &[&str]) -> Child {
    py.command()
        .arg(CLIENT)
        .arg(args[0])
        .arg(address)
        .arg(KEY)
        .args(&args[1..])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The last line a client printed, after it ended (within the limit).
fn last_line(child: Child) -> String {
    let out = multiproc_testkit::output_within(child, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines().last().unwrap_or_default().to_string()
}

#[test]
fn a_python_sync_manager_client_uses_a_rust_managers_objects() {
    within(LIMIT, || {
        let m = rust_manager();
        for py in cpythons() {
            // What the client expects is what CPython's own server does.
            let cpython = Peer::start(&py, &["sync", KEY]);
            let got = last_line(python_client_of(
                &py,
                &cpython.address.to_string(),
                &["sync"],
            ));
            assert_eq!(got, "ok", "{} against CPython's SyncManager", py.version);
            drop(cpython);
            let before = m.number_of_objects().unwrap();
            let got = last_line(python_client(&py, &m, &["sync"]));
            assert_eq!(got, "ok", "{}", py.version);
            // Its proxies gave back every hold when the program ended.
            let settled = multiproc_testkit::wait_until(Duration::from_secs(10), || {
                m.number_of_objects().unwrap() == before
            });
            assert!(
                settled,
                "{}: {} objects left",
                py.version,
                m.number_of_objects().unwrap()
            );
        }
    });
}

#[test]
fn a_python_base_manager_client_gets_a_published_queue_and_bad_requests_get_errors() {
    within(LIMIT, || {
        let m = rust_manager();
        let q = m.queue::<String>().unwrap();
        m.publish("get_queue", &q).unwrap();
        for py in cpythons() {
            assert_eq!(
                last_line(python_client(&py, &m, &["base"])),
                "ok",
                "{}",
                py.version
            );
        }
        // The Rust side still uses the same queue.
        q.put("from rust".into()).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), "from rust");
        assert!(matches!(q.try_get(), Err(mp::Error::Empty)));
    });
}

#[test]
fn a_rust_orchestrator_feeds_two_python_workers() {
    within(LIMIT, || {
        let m = rust_manager();
        for py in cpythons() {
            let jobs = m.queue::<Option<i64>>().unwrap();
            let results = m.queue::<i64>().unwrap();
            m.publish("get_jobs", &jobs).unwrap();
            m.publish("get_results", &results).unwrap();
            for n in 1..=200 {
                jobs.put(Some(n)).unwrap();
            }
            jobs.put(None).unwrap();
            jobs.put(None).unwrap();
            let workers: Vec<Child> = (0..2)
                .map(|_| python_client(&py, &m, &["worker"]))
                .collect();
            let mut got: Vec<i64> = (0..200)
                .map(|_| results.get_timeout(Duration::from_secs(60)).unwrap())
                .collect();
            got.sort_unstable();
            assert_eq!(
                got,
                (1..=200).map(|n| n * n).collect::<Vec<i64>>(),
                "{}",
                py.version
            );
            let done: usize = workers
                .into_iter()
                .map(|w| {
                    let line = last_line(w);
                    line.strip_prefix("ok ")
                        .unwrap_or_else(|| panic!("{line}"))
                        .parse::<usize>()
                        .unwrap()
                })
                .sum();
            assert_eq!(done, 200, "{}", py.version);
        }
    });
}

#[test]
fn python_and_rust_calls_interleave_on_one_queue_and_lose_nothing() {
    within(LIMIT, || {
        let m = rust_manager();
        let q = m.queue::<(String, i64)>().unwrap();
        m.publish("get_queue", &q).unwrap();
        let py = cpythons().into_iter().last().unwrap();
        let client = python_client(&py, &m, &["hammer", "1000"]);
        // Rust calls at the same time: 1,000 puts.
        for i in 0..1000 {
            q.put(("rs".into(), i)).unwrap();
        }
        let line = last_line(client);
        let taken_by_python: Vec<(String, i64)> = line
            .split(',')
            .map(|item| {
                let (kind, i) = item.split_once(':').unwrap_or_else(|| panic!("{line}"));
                (kind.to_string(), i.parse().unwrap())
            })
            .collect();
        assert_eq!(taken_by_python.len(), 500);
        let mut all = taken_by_python;
        while let Ok(item) = q.get_timeout(Duration::from_millis(500)) {
            all.push(item);
        }
        all.sort();
        let mut want: Vec<(String, i64)> = (0..1000)
            .flat_map(|i| [("py".to_string(), i), ("rs".to_string(), i)])
            .collect();
        want.sort();
        assert_eq!(all.len(), want.len(), "every item once");
        assert_eq!(all, want);
    });
}

/// A registered type that Python programs may use too.
#[derive(serde::Serialize, serde::Deserialize)]
struct Counter {
    n: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
enum CounterOp {
    #[serde(rename = "add")]
    Add(i64),
    #[serde(rename = "add_both")]
    AddBoth(i64, i64),
    #[serde(rename = "get")]
    Get,
}

impl mp::Served for Counter {
    const NAME: &'static str = "Counter";
    const PYTHON_METHODS: &'static [&'static str] = &["add", "add_both", "get"];
    type Request = CounterOp;
    type Reply = i64;
    fn handle(&mut self, op: CounterOp) -> i64 {
        match op {
            CounterOp::Add(k) => self.n += k,
            CounterOp::AddBoth(a, b) => self.n += a + b,
            CounterOp::Get => {}
        }
        self.n
    }
}

#[test]
fn python_programs_call_a_registered_rust_type_by_its_method_table() {
    within(LIMIT, || {
        let m = mp::Manager::builder()
            .register::<Counter>()
            .serve_python_on("127.0.0.1:0".parse().unwrap(), KEY.as_bytes())
            .start()
            .unwrap();
        for py in cpythons() {
            let shared = m.create(Counter { n: 100 }).unwrap();
            m.publish("get_counter", &shared).unwrap();
            assert_eq!(
                last_line(python_client(&py, &m, &["served"])),
                "ok",
                "{}",
                py.version
            );
            // The Python program's call reached the Rust object.
            assert_eq!(shared.call(CounterOp::Get).unwrap(), 101, "{}", py.version);
        }
    });
}
