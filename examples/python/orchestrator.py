"""A Python orchestrator of Rust workers: a stock BaseManager server.

    python3 orchestrator.py N AUTHKEY

It serves get_jobs and get_results on a free port of 127.0.0.1 (printed
first), puts N numbers and one None per worker (2), and prints the sum of
the squares that come back. It serves until its stdin closes: a worker may
still be taking its None when the last result is in.
"""

import queue
import sys
import threading
from multiprocessing.managers import BaseManager


class QueueManager(BaseManager):
    pass


def main():
    n, key = int(sys.argv[1]), sys.argv[2].encode()
    jobs, results = queue.Queue(), queue.Queue()
    QueueManager.register("get_jobs", callable=lambda: jobs)
    QueueManager.register("get_results", callable=lambda: results)
    server = QueueManager(address=("127.0.0.1", 0), authkey=key).get_server()
    print(server.address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for i in range(1, n + 1):
        jobs.put(i)
    for _ in range(2):
        jobs.put(None)
    total = sum(results.get(timeout=60) for _ in range(n))
    print(f"python orchestrator: sum of squares {total}", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
