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

CASES = {
    "pool_apply_async_rtt_us": lambda: bench_apply_async_rtt(5000),
}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(CASES):
        print(f"{name} {CASES[name]():.3f}", flush=True)
