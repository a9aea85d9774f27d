"""A slowloris client for the gateway benchmark: CONNECTIONS connections, each sending a request
head one byte a second and never finishing it. A connection the server closes is opened again,
so the attack keeps its strength for the whole run.

Usage: slowloris.py HOST:PORT --connections N --seconds S

Prints how many connections were opened and how many the server cut, and how long the cut ones
had lived (their first byte to the close), for comparison with the gateway's header_timeout.
"""

import argparse
import selectors
import socket
import statistics
import time

HEAD = b"POST /v1/logs HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nX-Padding: " + b"a" * 4096


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--connections", type=int, default=256)
    p.add_argument("--seconds", type=float, default=30)
    a = p.parse_args()
    host, port = a.addr.rsplit(":", 1)
    sel = selectors.DefaultSelector()
    conns = {}  # socket -> [bytes sent, first byte at]
    opened, refused, lived = 0, 0, []

    def open_one():
        nonlocal opened, refused
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect((host, int(port)))
        except OSError:
            refused += 1
            s.close()
            return
        s.setblocking(False)
        opened += 1
        conns[s] = [0, None]
        sel.register(s, selectors.EVENT_READ)

    def drop(s, cut):
        sent, first = conns.pop(s)
        sel.unregister(s)
        s.close()
        if cut and first is not None:
            lived.append(time.monotonic() - first)

    for _ in range(a.connections):
        open_one()
    end = time.monotonic() + a.seconds
    next_tick = time.monotonic()
    while time.monotonic() < end:
        # A read event is the server closing (or answering, which ends the request as well).
        for key, _ in sel.select(timeout=max(0.0, min(next_tick, end) - time.monotonic())):
            drop(key.fileobj, cut=True)
        if time.monotonic() >= next_tick:
            next_tick += 1.0
            for s, state in list(conns.items()):
                try:
                    s.send(HEAD[state[0] % len(HEAD) : state[0] % len(HEAD) + 1])
                except OSError:
                    drop(s, cut=True)
                    continue
                if state[1] is None:
                    state[1] = time.monotonic()
                state[0] += 1
            while len(conns) < a.connections and time.monotonic() < end:
                before = opened
                open_one()
                if opened == before:
                    break
    for s in list(conns):
        drop(s, cut=False)
    median = f"{statistics.median(lived):.1f} s" if lived else "-"
    longest = f"{max(lived):.1f} s" if lived else "-"
    print(
        f"slowloris: {opened} connections opened ({refused} refused), {len(lived)} cut by the server "
        f"after their first byte: median {median}, longest {longest}"
    )


if __name__ == "__main__":
    main()
