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

CASES = {
    "pool_apply_async_rtt_us": lambda: bench_apply_async_rtt(5000),
    "pool_apply_1GiB_bytes_ms": lambda: bench_apply_1gib_bytes(3),
    "wire_tcp_rtt_us": lambda: bench_wire_rtt(20000),
    "executor_submit_rtt_us": lambda: bench_executor_rtt(3000),
    "executor_as_completed_per_s": lambda: bench_executor_as_completed(100000),
}

if __name__ == "__main__":
    if sys.argv[1:] == ["--echo"]:
        echo_server()
        sys.exit(0)
    for name in sys.argv[1:] or list(CASES):
        print(f"{name} {CASES[name]():.3f}", flush=True)
