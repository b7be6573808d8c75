"""CPython figures for work the shared baseline has no case for, measured the
same way. Run: python3 python_extra.py [case...]; prints `name value` lines."""
import multiprocessing as mp
import sys, time

def _square(n): return n * n

def bench_apply_async_rtt(n):
    with mp.Pool() as pool:
        pool.apply_async(_square, (1,)).get()
        t = time.perf_counter()
        for i in range(n):
            pool.apply_async(_square, (i,)).get()
        return (time.perf_counter() - t) / n * 1e6

def _len(b): return len(b)

def bench_apply_1gib_bytes(n):
    # The task only takes the length: a sum of 1 GiB in Python would add
    # seconds of its own, and this measures what handing it over costs.
    data = bytes(1 << 30)
    with mp.Pool(1) as pool:
        pool.apply(_len, (b"",))
        t = time.perf_counter()
        for _ in range(n):
            assert pool.apply(_len, (data,)) == len(data)
        return (time.perf_counter() - t) / n * 1e3

def echo_server():
    """Serves one client: every message back as it came, until it closes.
    Prints the port first. The peer of the wire round-trip benchmarks."""
    from multiprocessing.connection import Listener
    with Listener(("127.0.0.1", 0), authkey=b"bench") as listener:
        print(listener.address[1], flush=True)
        with listener.accept() as conn:
            try:
                while True:
                    conn.send_bytes(conn.recv_bytes())
            except EOFError:
                pass

def bench_wire_rtt(n):
    # A Python client and a Python Listener, over TCP on loopback: the
    # round trip of a 16-byte message through send_bytes/recv_bytes.
    import subprocess
    from multiprocessing.connection import Client
    server = subprocess.Popen([sys.executable, __file__, "--echo"], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    with Client(("127.0.0.1", port), authkey=b"bench") as conn:
        msg = b"x" * 16
        for _ in range(100):
            conn.send_bytes(msg); conn.recv_bytes()
        t = time.perf_counter()
        for _ in range(n):
            conn.send_bytes(msg)
            conn.recv_bytes()
        took = (time.perf_counter() - t) / n * 1e6
    server.wait(timeout=10)
    return took

def _noop(n): return n

def bench_executor_rtt(n):
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor() as ex:
        ex.submit(_noop, 1).result()
        t = time.perf_counter()
        for i in range(n):
            ex.submit(_noop, i).result()
        return (time.perf_counter() - t) / n * 1e6

def bench_executor_as_completed(n):
    from concurrent.futures import ProcessPoolExecutor, as_completed
    with ProcessPoolExecutor() as ex:
        ex.submit(_noop, 1).result()
        t = time.perf_counter()
        futures = [ex.submit(_noop, i) for i in range(n)]
        total = sum(f.result() for f in as_completed(futures))
        assert total == n * (n - 1) // 2
        return n / (time.perf_counter() - t)

def dict_client(address, key):
    """A SyncManager client of the manager at `address` (CPython's or a
    Rust one served to Python): for each count N read from stdin, sets N
    items of one dict and prints the seconds it took. The peer of the
    Rust manager's dict benchmark."""
    from multiprocessing.managers import SyncManager
    host, port = address.rsplit(":", 1)
    m = SyncManager(address=(host, int(port)), authkey=key.encode())
    m.connect()
    d = m.dict()
    for line in sys.stdin:
        n = int(line)
        t = time.perf_counter()
        for i in range(n):
            d[i] = i
        print(f"{time.perf_counter() - t:.9f}", flush=True)

def queue_manager():
    """A CPython BaseManager serving get_queue on a free port (printed),
    until stdin closes: the server of the Rust client's benchmark."""
    import queue, threading
    from multiprocessing.managers import BaseManager
    class QueueManager(BaseManager): pass
    q = queue.Queue()
    QueueManager.register("get_queue", callable=lambda: q)
    server = QueueManager(address=("127.0.0.1", 0), authkey=b"bench").get_server()
    print(server.address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()

def bench_dict_set_cpython_manager(n):
    # A Python client's d[i] = i on a CPython SyncManager's dict, over TCP
    # on loopback (no process start counted).
    from multiprocessing.managers import SyncManager
    with SyncManager(address=("127.0.0.1", 0), authkey=b"bench") as m:
        d = m.dict()
        for i in range(100):
            d[i] = i
        t = time.perf_counter()
        for i in range(n):
            d[i] = i
        return n / (time.perf_counter() - t)

def bench_queue_call_cpython_manager(n):
    # A Python client's q.qsize() on a CPython BaseManager's queue.
    import subprocess
    from multiprocessing.managers import BaseManager
    server = subprocess.Popen([sys.executable, __file__, "--queue-manager"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    class QueueManager(BaseManager): pass
    QueueManager.register("get_queue")
    m = QueueManager(address=("127.0.0.1", port), authkey=b"bench")
    m.connect()
    q = m.get_queue()
    for _ in range(100):
        q.qsize()
    t = time.perf_counter()
    for _ in range(n):
        q.qsize()
    took = (time.perf_counter() - t) / n * 1e6
    server.stdin.close()
    server.wait(timeout=10)
    return took

CASES = {
    "pool_apply_async_rtt_us": lambda: bench_apply_async_rtt(5000),
    "pool_apply_1GiB_bytes_ms": lambda: bench_apply_1gib_bytes(3),
    "wire_tcp_rtt_us": lambda: bench_wire_rtt(20000),
    "executor_submit_rtt_us": lambda: bench_executor_rtt(3000),
    "executor_as_completed_per_s": lambda: bench_executor_as_completed(100000),
    "py_client_dict_set_cpython_manager_ops_per_s": lambda: bench_dict_set_cpython_manager(20000),
    "py_client_queue_call_cpython_manager_us": lambda: bench_queue_call_cpython_manager(5000),
}

if __name__ == "__main__":
    if sys.argv[1:] == ["--echo"]:
        echo_server()
        sys.exit(0)
    if sys.argv[1:2] == ["--dict-client"]:
        dict_client(sys.argv[2], sys.argv[3])
        sys.exit(0)
    if sys.argv[1:] == ["--queue-manager"]:
        queue_manager()
        sys.exit(0)
    for name in sys.argv[1:] or list(CASES):
        print(f"{name} {CASES[name]():.3f}", flush=True)
