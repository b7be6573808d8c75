//! `ShareableList` between real processes, and with CPython itself: a
//! Python program opens ours by name and reads what we wrote, and we open
//! one a Python program made (CPython's layout, byte for byte); and
//! `SharedMemoryManager` unlinks what it made.

#![allow(clippy::unwrap_used)] // a failed call fails the test, as it should

multiproc::test_setup!();

use std::process::{Command, Stdio};
use std::time::Duration;

use mp::ShareableItem as Item;
use multiproc as mp;
use multiproc_testkit::output_within;

const LIMIT: Duration = Duration::from_secs(30);

fn sample() -> Vec<Item> {
    vec![
        Item::Int(-7),
        Item::Float(2.5),
        Item::Bool(true),
        Item::from("howdy"),
        Item::from(&b"HoWdY"[..]),
        Item::None,
        Item::from("exactly8"),
    ]
}

fn edit(list: mp::ShareableList) -> (Vec<Item>, String) {
    let seen = list.to_vec().unwrap();
    list.set(0, 1.25).unwrap(); // an int's slot takes a float
    list.set(3, "hi").unwrap(); // a shorter string
    list.set(5, 42i64).unwrap(); // None's slot takes an int
    list.set(-1, "sixteen bytes!!").unwrap(); // fits the 16-byte slot
    let refused = list.set(3, "far too long for it").unwrap_err().to_string();
    (seen, refused)
}

fn a_list_is_shared_with_children(ctx: mp::Context) {
    let list = mp::ShareableList::create(None, sample()).unwrap();
    assert_eq!(list.len(), 7);
    assert_eq!(list.formats().unwrap(), "qdxxxxxxx?8s8sxxxxxx?x16s");
    let mut p = ctx.process(edit, (list.clone(),));
    p.start().unwrap();
    p.join_timeout(LIMIT).unwrap();
    let (seen, refused) = p.take_result().unwrap();
    assert_eq!(seen, sample());
    assert!(refused.contains("exceeds available storage"), "{refused}");
    assert_eq!(
        list.to_vec().unwrap(),
        vec![
            Item::Float(1.25),
            Item::Float(2.5),
            Item::Bool(true),
            Item::from("hi"),
            Item::from(&b"HoWdY"[..]),
            Item::Int(42),
            Item::from("sixteen bytes!!"),
        ]
    );
    assert_eq!(list.count(&Item::Float(2.5)).unwrap(), 1);
    assert_eq!(list.index(&Item::Int(42)).unwrap(), 5);
    assert!(list.get(7).is_err() && list.get(-8).is_err());
    list.shm().unlink().unwrap();
}

fn made_and_unmade(smm: &mp::SharedMemoryManager) -> Vec<String> {
    let a = smm.shared_memory(100).unwrap();
    let l = smm.shareable_list([1i64, 2, 3]).unwrap();
    vec![a.name().to_owned(), l.name().to_owned()]
}

fn open_names(names: Vec<String>) -> usize {
    names
        .iter()
        .filter(|n| mp::SharedMemory::open(n).is_ok())
        .count()
}

fn a_shared_memory_manager_unlinks_what_it_made(ctx: mp::Context) {
    let smm = mp::SharedMemoryManager::new();
    let names = made_and_unmade(&smm);
    let mut p = ctx.process(open_names, (names.clone(),));
    p.start().unwrap();
    p.join_timeout(LIMIT).unwrap();
    assert_eq!(p.take_result().unwrap(), 2);
    drop(smm); // leaving Python's `with SharedMemoryManager() as smm:`
    for n in &names {
        assert!(
            !std::path::Path::new(&format!("/dev/shm/{n}")).exists(),
            "{n}"
        );
    }
}

/// Runs `code` in CPython (`PYENV_VERSION` chooses among those installed)
/// and returns what it printed.
fn python(version: Option<&str>, code: &str) -> String {
    let mut cmd = Command::new("python3");
    if let Some(v) = version {
        cmd.env("PYENV_VERSION", v);
    }
    let child = cmd
        .args(["-c", code])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("this test needs python3 (apt-get install python3)");
    let out = output_within(child, LIMIT);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The Python versions to try: the default, and 3.13 where pyenv has it.
fn pythons() -> Vec<Option<&'static str>> {
    let mut v = vec![None];
    let has_313 = Command::new("pyenv")
        .args(["versions", "--bare"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("3.13.0"));
    if has_313 {
        v.push(Some("3.13.0"));
    }
    v
}

#[test]
fn cpython_reads_ours_and_we_read_cpythons() {
    for version in pythons() {
        // Ours, read and written by CPython.
        let list = mp::ShareableList::create(None, sample()).unwrap();
        let code = format!(
            "from multiprocessing import shared_memory as s, resource_tracker as r\n\
             l = s.ShareableList(name={name:?})\n\
             r.unregister(l.shm._name, 'shared_memory')\n\
             print(repr(list(l)))\n\
             print(l.format)\n\
             l[1] = 'py'\n\
             l[2] = None\n",
            name = list.name()
        );
        let out = python(version, &code);
        let mut lines = out.lines();
        assert_eq!(
            lines.next().unwrap(),
            "[-7, 2.5, True, 'howdy', b'HoWdY', None, 'exactly8']",
            "{version:?}"
        );
        assert_eq!(lines.next().unwrap(), "qdxxxxxxx?8s8sxxxxxx?x16s");
        assert_eq!(list.get(1).unwrap(), Item::from("py"));
        assert_eq!(list.get(2).unwrap(), Item::None);
        list.shm().unlink().unwrap();

        // CPython's, read and written by us.
        let out = python(
            version,
            "from multiprocessing import shared_memory as s, resource_tracker as r\n\
             import sys\n\
             l = s.ShareableList([3, -1.5, False, 'abc', b'\\x00z', None, 'a' * 20])\n\
             r.unregister(l.shm._name, 'shared_memory')\n\
             print(l.shm.name)\n\
             sys.stdout.flush()\n\
             l.shm.close()\n",
        );
        let name = out.trim();
        let theirs = mp::ShareableList::open(name).unwrap();
        assert_eq!(
            theirs.to_vec().unwrap(),
            vec![
                Item::Int(3),
                Item::Float(-1.5),
                Item::Bool(false),
                Item::from("abc"),
                Item::from(&b"\0z"[..]),
                Item::None,
                Item::from("a".repeat(20).as_str()),
            ]
        );
        theirs.set(0, "set in Rust").unwrap_err();
        theirs.set(6, "set in Rust").unwrap();
        let back = python(
            version,
            &format!(
                "from multiprocessing import shared_memory as s, resource_tracker as r\n\
                 l = s.ShareableList(name={name:?})\n\
                 r.unregister(l.shm._name, 'shared_memory')\n\
                 print(l[6])\n"
            ),
        );
        assert_eq!(back.trim(), "set in Rust");
        theirs.shm().unlink().unwrap();
    }
}

multiproc_testkit::each_start_method!(
    a_list_is_shared_with_children,
    a_shared_memory_manager_unlinks_what_it_made,
);
