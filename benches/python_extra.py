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

CASES = {
    "pool_apply_async_rtt_us": lambda: bench_apply_async_rtt(5000),
    "pool_apply_1GiB_bytes_ms": lambda: bench_apply_1gib_bytes(3),
}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(CASES):
        print(f"{name} {CASES[name]():.3f}", flush=True)
