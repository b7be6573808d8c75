"""Stock CPython clients of a Rust manager served with serve_python_on.

    manager_client.py sync HOST:PORT KEY     a SyncManager client: dict,
                                             list, Queue, Value, Lock, Event
                                             and the exceptions they raise
    manager_client.py base HOST:PORT KEY     a BaseManager that registers
                                             get_queue, and hostile requests
    manager_client.py worker HOST:PORT KEY   squares jobs from get_jobs into
                                             get_results until a None
    manager_client.py hammer HOST:PORT KEY N puts N ("py", i) on get_queue
                                             and takes N // 2 items, printed
                                             as kind:i,kind:i,... at the end

The last line printed is "ok" (or the items, for hammer), or what failed.
"""

import os
import pickle
import queue
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Client
from multiprocessing.managers import BaseManager, RemoteError, SyncManager


class QueueManager(BaseManager):
    pass


for name in ("get_queue", "get_jobs", "get_results", "Counter", "get_counter"):
    QueueManager.register(name)


def parse(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def check(cond, what):
    if not cond:
        print(f"failed: {what}", flush=True)
        sys.exit(1)


def raises(exc, f, *args):
    try:
        f(*args)
    except exc as e:
        return e
    check(False, f"{f} did not raise {exc.__name__}")


def sync(address, key):
    m = SyncManager(address=address, authkey=key)
    m.connect()
    d = m.dict()
    d["a"] = 1
    d[(1, 2)] = [3, 4]
    check(d["a"] == 1 and d[(1, 2)] == [3, 4], "dict get")
    check(len(d) == 2 and "a" in d and d.get("zz") is None and d.get("zz", 5) == 5, "dict len/in/get")
    raises(KeyError, lambda: d["missing"])
    check(sorted(map(str, d.keys())) == ["(1, 2)", "a"], "dict keys")
    check(d.pop("a") == 1 and len(d) == 1, "dict pop")
    d.update({"b": 2.5})
    check(d.copy() == {(1, 2): [3, 4], "b": 2.5}, f"dict copy {d.copy()!r}")
    l = m.list()
    l.append("x")
    l.extend([1, None])
    check(len(l) == 3 and l[0] == "x" and l[-1] is None, "list")
    l[1] = 2
    check(l.index(2) == 1 and l.count("x") == 1 and 2 in l, "list index/count")
    raises(IndexError, lambda: l[10])
    check(l.pop() is None and l.pop(0) == "x", "list pop")
    q = m.Queue()
    raises(queue.Empty, q.get_nowait)
    raises(queue.Empty, q.get, True, 0.1)
    q.put({"n": 1})
    check(q.qsize() == 1 and not q.empty(), "queue size")
    check(q.get() == {"n": 1}, "queue get")
    bq = m.Queue(1)
    bq.put(1)
    raises(queue.Full, bq.put_nowait, 2)
    check(bq.full(), "queue full")
    v = m.Value("i", 5)
    check(v.value == 5, "value")
    v.value = -3
    check(v.get() == -3, "value set")
    lock = m.Lock()
    check(lock.acquire() is True, "lock acquire")
    check(lock.acquire(False) is False, "lock taken")
    check(lock.acquire(True, 0.05) is False, "lock timeout")
    lock.release()
    with lock:
        pass
    raises(RuntimeError, lock.release)
    # acquire's arguments, checked as CPython's lock and semaphore do.
    raises(ValueError, lock.acquire, False, 1)
    raises(ValueError, lock.acquire, True, -2)
    check(lock.acquire(False, -1) is True, "acquire(False, -1) is the default")
    lock.release()
    sem = m.Semaphore(0)
    raises(ValueError, sem.acquire, False, 1)
    check(sem.acquire(True, -2) is False, "a semaphore's negative timeout is at once")
    raises(OverflowError, lock.acquire, True, 1e300)
    sem.release()
    check(sem.acquire(True, 1e300) is True, "a semaphore's huge timeout, not needed")
    # A Lock is released by any thread, an RLock by its owner only.
    lock.acquire()
    in_thread(lock.release)
    check(lock.acquire(False) is True, "lock released by another thread")
    lock.release()
    rlock = m.RLock()
    check(rlock.acquire() and rlock.acquire(), "rlock nests")
    check(isinstance(in_thread(rlock.release), RuntimeError), "rlock is its owner's")
    rlock.release()
    rlock.release()
    raises(RuntimeError, rlock.release)
    cond = m.Condition()
    with cond:
        check(cond.wait(0.05) is False, "condition wait times out")
        check(cond.wait(-1) is False, "a negative wait returns at once")
    raises(RuntimeError, cond.notify)
    raises(RuntimeError, cond.wait, 0.05)
    raises(RuntimeError, cond.release)
    flag = m.Value("i", 0)
    woken = []

    def waiter():
        with cond:
            woken.append(cond.wait_for(lambda: flag.value == 1, 10))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.1)
    with cond:
        flag.value = 1
        cond.notify_all()
    t.join(10)
    check(woken == [True], f"condition notify_all woke its waiter: {woken}")
    barrier = m.Barrier(2, timeout=10)
    check(
        (barrier.parties, barrier.n_waiting, barrier.broken) == (2, 0, False),
        "barrier attributes",
    )
    got = []
    t = threading.Thread(target=lambda: got.append(barrier.wait()))
    t.start()
    got.append(barrier.wait())
    t.join(10)
    check(sorted(got) == [0, 1], f"barrier arrival indices: {got}")
    barrier.abort()
    check(barrier.broken and barrier.n_waiting == 0, "barrier aborted")
    raises(threading.BrokenBarrierError, barrier.wait)
    barrier.reset()
    check(not barrier.broken, "barrier reset")
    alone = m.Barrier(2)
    raises(threading.BrokenBarrierError, alone.wait, 0.05)
    check(alone.broken, "a barrier's timeout breaks it")
    raises(threading.BrokenBarrierError, m.Barrier(2).wait, -1)
    e = m.Event()
    check(not e.is_set() and e.wait(0.05) is False, "event clear")
    check(e.wait(-1) is False, "a negative event wait returns at once")
    e.set()
    check(e.is_set() and e.wait() is True, "event set")
    ns = m.Namespace()
    ns.x = "y"
    check(ns.x == "y", "namespace")
    raises(AttributeError, lambda: ns.missing)
    print("ok", flush=True)


def in_thread(f):
    """What f() raised in another thread, or None."""
    raised = []

    def run():
        try:
            f()
        except Exception as e:
            raised.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    check(not t.is_alive(), "the thread's call returned")
    return raised[0] if raised else None


def base(address, key):
    m = QueueManager(address=address, authkey=key)
    m.connect()
    q = m.get_queue()
    q.put({"n": 1})
    got = q.get(timeout=10)
    check(got == {"n": 1}, f"round trip {got!r}")
    raises(queue.Empty, q.get_nowait)
    # Bad input: the client hears why, and the server goes on.
    e = raises(RemoteError, q._callmethod, "no_such_method")
    check("no_such_method" in str(e), str(e))
    raises(TypeError, q._callmethod, "put", ())
    # A pickle that would run code is refused, never run.
    marker = os.path.join(tempfile.gettempdir(), f"multiproc-pwned-{os.getpid()}")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    conn = Client(address, authkey=key)
    conn.send_bytes(pickle.dumps((None, "create", (Evil(),), {})))
    kind, text = conn.recv()
    check(kind == "#TRACEBACK" and "not plain data" in text, f"{kind}: {text}")
    check(not os.path.exists(marker), "the pickle ran")
    conn.close()
    # Bytes that are no pickle at all.
    conn = Client(address, authkey=key)
    conn.send_bytes(b"\x80\x04garbage")
    kind, text = conn.recv()
    check(kind == "#TRACEBACK", kind)
    conn.close()
    q.put("still here")
    check(q.get(timeout=10) == "still here", "the server went on")
    print("ok", flush=True)


def served(address, key):
    m = QueueManager(address=address, authkey=key)
    m.connect()
    c = m.Counter({"n": 5})
    check(c.add(3) == 8 and c.get() == 8, "a Counter made by Python")
    check(c.add_both(1, 2) == 11, "two arguments")
    shared = m.get_counter()
    check(shared.add(1) == 101, "the Counter the Rust program published")
    e = raises(RemoteError, c._callmethod, "nope")
    check("nope" in str(e), str(e))
    raises(ValueError, c._callmethod, "add", ("not a number",))
    check(c.get() == 11, "the object went on")
    print("ok", flush=True)


def worker(address, key):
    m = QueueManager(address=address, authkey=key)
    m.connect()
    jobs, results = m.get_jobs(), m.get_results()
    done = 0
    while True:
        n = jobs.get(timeout=60)
        if n is None:
            break
        results.put(n * n)
        done += 1
    print(f"ok {done}", flush=True)


def hammer(address, key, n):
    m = QueueManager(address=address, authkey=key)
    m.connect()
    q = m.get_queue()
    got = []
    for i in range(n):
        q.put(("py", i))
        if i % 2:
            kind, j = q.get(timeout=60)
            got.append(f"{kind}:{j}")
    print(",".join(got), flush=True)


def main():
    mode, address, key = sys.argv[1], parse(sys.argv[2]), sys.argv[3].encode()
    if mode == "sync":
        sync(address, key)
    elif mode == "base":
        base(address, key)
    elif mode == "served":
        served(address, key)
    elif mode == "worker":
        worker(address, key)
    elif mode == "hammer":
        hammer(address, key, int(sys.argv[4]))


if __name__ == "__main__":
    main()
