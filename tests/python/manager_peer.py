"""A CPython manager for the tests of Rust clients of Python managers.

    manager_peer.py base KEY          a BaseManager serving get_queue (a
                                      queue.Queue of maxsize 3)
    manager_peer.py sync KEY          a SyncManager
    manager_peer.py orchestrate KEY N a BaseManager serving get_jobs and
                                      get_results: it puts N jobs and one
                                      None per worker (2), then checks the
                                      N squares that come back
    manager_peer.py hostile KEY       not a manager: answers every request
                                      with a #PROXY, and when its stdin
                                      closes prints how many it had
    manager_peer.py proxies KEY       a BaseManager serving get_box, whose
                                      inbox() and counts() return proxies
                                      (method_to_typeid) of a queue and a
                                      dict

Each prints the port it serves on, then serves until its stdin closes
(orchestrate: until the results are in, then prints "ok" or what went
wrong).
"""

import os
import queue
import sys
import threading
from multiprocessing.managers import BaseManager, DictProxy, SyncManager


class QueueManager(BaseManager):
    pass


class Box:
    """An object whose methods return other objects, served as proxies."""

    def __init__(self):
        self.queue = queue.Queue()
        self.tally = {}

    def inbox(self):
        return self.queue

    def counts(self):
        return self.tally

    def size(self):
        return self.queue.qsize()


def serve(manager):
    server = manager.get_server()
    print(server.address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def until_stdin_closes(manager=None):
    sys.stdin.read()
    if manager is not None:
        manager.shutdown()
    os._exit(0)


def main():
    mode, key = sys.argv[1], sys.argv[2].encode()
    if mode == "base":
        q = queue.Queue(maxsize=3)
        QueueManager.register("get_queue", callable=lambda: q)
        serve(QueueManager(address=("127.0.0.1", 0), authkey=key))
        until_stdin_closes()
    elif mode == "sync":
        m = SyncManager(address=("127.0.0.1", 0), authkey=key)
        m.start()
        print(m.address[1], flush=True)
        until_stdin_closes(m)
    elif mode == "hostile":
        from multiprocessing.connection import Listener
        from multiprocessing.managers import Token

        listener = Listener(("127.0.0.1", 0), authkey=key)
        print(listener.address[1], flush=True)
        count = [0]

        def answer(conn):
            try:
                while True:
                    conn.recv_bytes()
                    count[0] += 1
                    token = Token("Trap", listener.address, "%x" % count[0])
                    conn.send(("#PROXY", (["x"], token)))
            except (EOFError, OSError):
                pass

        def accept():
            while True:
                conn = listener.accept()
                threading.Thread(target=answer, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        sys.stdin.read()
        print(count[0], flush=True)
        os._exit(0)
    elif mode == "proxies":
        box = Box()
        QueueManager.register(
            "get_box",
            callable=lambda: box,
            method_to_typeid={"inbox": "Inbox", "counts": "Tally"},
        )
        QueueManager.register("Inbox")
        QueueManager.register("Tally", proxytype=DictProxy)
        serve(QueueManager(address=("127.0.0.1", 0), authkey=key))
        until_stdin_closes()
    elif mode == "orchestrate":
        n = int(sys.argv[3])
        jobs, results = queue.Queue(), queue.Queue()
        QueueManager.register("get_jobs", callable=lambda: jobs)
        QueueManager.register("get_results", callable=lambda: results)
        serve(QueueManager(address=("127.0.0.1", 0), authkey=key))
        for i in range(1, n + 1):
            jobs.put(i)
        for _ in range(2):
            jobs.put(None)
        got = sorted(results.get(timeout=60) for _ in range(n))
        want = [i * i for i in range(1, n + 1)]
        print("ok" if got == want else f"wrong results: {got[:5]}...", flush=True)
        until_stdin_closes()


if __name__ == "__main__":
    main()
