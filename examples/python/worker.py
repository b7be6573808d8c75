"""A Python worker of a Rust orchestrator: a stock BaseManager client.

    python3 worker.py HOST:PORT AUTHKEY

It takes numbers from the manager's get_jobs queue until a None, and puts
(number, is_prime) on get_results.
"""

import sys
from multiprocessing.managers import BaseManager


class QueueManager(BaseManager):
    pass


QueueManager.register("get_jobs")
QueueManager.register("get_results")


def is_prime(n):
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    m = QueueManager(address=(host, int(port)), authkey=sys.argv[2].encode())
    m.connect()
    jobs, results = m.get_jobs(), m.get_results()
    done = 0
    while (n := jobs.get(timeout=60)) is not None:
        results.put((n, is_prime(n)))
        done += 1
    print(f"python worker {m.address[1]}: {done} jobs", flush=True)


if __name__ == "__main__":
    main()
