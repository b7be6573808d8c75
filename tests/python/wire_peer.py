"""A CPython peer for the wire tests: the other end of a Rust Listener or
Client, through multiprocessing.connection only.

    wire_peer.py client ADDRESS KEY     connect to a Rust Listener
    wire_peer.py server ADDRESS KEY     listen; print the bound address

ADDRESS is host:port or a Unix socket path ('@name': abstract). The
exchange is the same either way; the last line printed is "ok" on success,
"AuthenticationError" when the other side refused the key.
"""

import queue
import sys
from multiprocessing import connection

SIZES = [0, 1, 64 << 10, 16 << 20]
EXPECTED = (None, True, 5, -7, 1.5, "h\u00e9llo", b"\x00\x01", [1, 2], {"a": 1}, (3, 4))


def pattern(n):
    return bytes(i % 251 for i in range(n)) if n < 70000 else (bytes(range(251)) * (n // 251 + 1))[:n]


def parse(address):
    if address.startswith("@"):
        return "\0" + address[1:], "AF_UNIX"
    if "/" in address:
        return address, "AF_UNIX"
    host, port = address.rsplit(":", 1)
    return (host, int(port)), "AF_INET"


def exchange(conn):
    for n in SIZES:
        data = conn.recv_bytes()
        assert data == pattern(n), f"bytes of {n} differ"
        conn.send_bytes(pattern(n)[::-1])
    value = conn.recv()
    assert value == EXPECTED, f"value {value!r}"
    assert type(value[9]) is tuple and type(value[7]) is list, repr(value)
    conn.send(["echo", value])
    conn.send({"set": {1, 2}, "frozen": frozenset([3]), "big": 2**62, "neg": -(2**40)})
    conn.send(2**70)
    conn.send(queue.Empty())
    conn.send(KeyError("k"))
    assert conn.recv() == "bye"


def main():
    role, address, key = sys.argv[1], sys.argv[2], sys.argv[3].encode()
    address, family = parse(address)
    listener = None
    try:
        if role == "client":
            conn = connection.Client(address, family=family, authkey=key)
        else:
            listener = connection.Listener(address, family=family, authkey=key)
            bound = listener.address
            if isinstance(bound, tuple):
                bound = f"{bound[0]}:{bound[1]}"
            elif isinstance(bound, bytes):  # an abstract name
                bound = "@" + bound[1:].decode()
            print(bound, flush=True)
            conn = listener.accept()
    except connection.AuthenticationError:
        print("AuthenticationError", flush=True)
        return
    finally:
        if listener is not None:
            close(listener)
    with conn:
        exchange(conn)
    print("ok", flush=True)


def close(listener):
    try:
        listener.close()
    except ValueError:
        # CPython 3.6 tries to unlink an abstract name ("embedded null
        # byte"); 3.7 and later know it has no file.
        if sys.version_info >= (3, 7):
            raise


if __name__ == "__main__":
    main()
