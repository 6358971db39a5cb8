#!/usr/bin/python3
"""A hostile SMTP peer for the fault suite (tests/fault/fault_suite_test.cc).

Binds 127.0.0.1 on a free port, prints "PORT <n>" on stdout, serves every
connection with the one behaviour chosen by --mode until stdin closes or
SIGTERM. Plain sockets and threads: it must be able to misbehave in ways a
real SMTP library would not let it (stall, trickle, spew, cut).

Modes:
  garbage            on connect, --megabytes of random bytes (no greeting)
  garbage-no-eol     on connect, --megabytes of 'x' with no line end at all
  endless-reply      on connect, "220-" continuation lines for --megabytes
  garbage-after-dot  a normal session; after the final dot, --megabytes of
                     random bytes instead of the reply
  trickle-greeting   the greeting, one byte a second
  trickle-after-dot  a normal session; the reply to the final dot one byte a
                     second
  stall-<phase>      a normal session that never answers <phase>: greeting,
                     ehlo, starttls, mail, rcpt, data, dot, quit
  stop-reading-body  after 354 it never reads again (the client's writes
                     block: the data_block timeout)
  close-after-dot    reads the message to the final dot, closes, no reply
  close-on-connect   accepts and closes at once
  no-starttls        a normal session whose EHLO does not offer STARTTLS
  starttls-454       offers STARTTLS, answers it 454 (TLS not available)
  starttls-garbage   offers STARTTLS, answers 220, then sends random bytes
                     instead of a TLS ServerHello
A normal session offers PIPELINING and STARTTLS (unless said otherwise) and
answers 250/354/250 (221 to QUIT). Each connection is logged to stderr.
"""
import argparse
import os
import signal
import socket
import sys
import threading
import time

MODE = ""
MEGABYTES = 8
STOP = threading.Event()


def send_all(conn, data):
    try:
        conn.sendall(data)
        return True
    except OSError:
        return False


def spew(conn, make_chunk):
    """Writes MEGABYTES of make_chunk() pieces; stops when the client hangs up."""
    total = MEGABYTES << 20
    sent = 0
    while sent < total and not STOP.is_set():
        chunk = make_chunk()
        if not send_all(conn, chunk):
            break
        sent += len(chunk)
    sys.stderr.write("hostile_peer: %s wrote %d bytes\n" % (MODE, sent))


def trickle(conn, text):
    for i in range(len(text)):
        if STOP.is_set() or not send_all(conn, text[i:i + 1]):
            return
        time.sleep(1.0)


def stall(conn):
    """Never answer: read and drop until the client gives up (bounded)."""
    conn.settimeout(1.0)
    deadline = time.monotonic() + 120
    while not STOP.is_set() and time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                return
        except socket.timeout:
            continue
        except OSError:
            return


class Lines:
    def __init__(self, conn):
        self.conn = conn
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            try:
                data = self.conn.recv(65536)
            except OSError:
                return None
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line


def serve(conn):
    conn.settimeout(60)
    if MODE == "close-on-connect":
        return
    if MODE == "garbage":
        return spew(conn, lambda: os.urandom(65536))
    if MODE == "garbage-no-eol":
        return spew(conn, lambda: b"x" * 65536)
    if MODE == "endless-reply":
        return spew(conn, lambda: b"220-still greeting you\r\n" * 2048)
    if MODE == "trickle-greeting":
        return trickle(conn, b"220 hostile.test ESMTP\r\n")
    if MODE == "stall-greeting":
        return stall(conn)
    if not send_all(conn, b"220 hostile.test ESMTP\r\n"):
        return
    r = Lines(conn)
    while True:
        line = r.line()
        if line is None:
            return
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            if MODE == "stall-ehlo":
                return stall(conn)
            caps = [b"250-hostile.test", b"250-PIPELINING", b"250-8BITMIME"]
            if MODE != "no-starttls":
                caps.append(b"250-STARTTLS")
            caps.append(b"250 SIZE 100000000")
            send_all(conn, b"\r\n".join(caps) + b"\r\n")
        elif verb == b"STAR":
            if MODE == "stall-starttls":
                return stall(conn)
            if MODE == "starttls-garbage":
                send_all(conn, b"220 2.0.0 go ahead\r\n")
                return spew(conn, lambda: os.urandom(65536))
            send_all(conn, b"454 4.7.0 TLS not available\r\n")
        elif verb == b"MAIL":
            if MODE == "stall-mail":
                return stall(conn)
            send_all(conn, b"250 2.1.0 OK\r\n")
        elif verb == b"RCPT":
            if MODE == "stall-rcpt":
                return stall(conn)
            send_all(conn, b"250 2.1.5 OK\r\n")
        elif verb == b"DATA":
            if MODE == "stall-data":
                return stall(conn)
            send_all(conn, b"354 go ahead\r\n")
            if MODE == "stop-reading-body":
                # Hold the connection open without reading: the client's
                # socket buffer fills and its writes stop making progress.
                deadline = time.monotonic() + 120
                while not STOP.is_set() and time.monotonic() < deadline:
                    try:
                        conn.settimeout(0.2)
                        if conn.recv(1, socket.MSG_PEEK) == b"":
                            return
                    except socket.timeout:
                        pass
                    except OSError:
                        return
                    time.sleep(0.2)
                return
            while True:
                body = r.line()
                if body is None:
                    return
                if body == b".":
                    break
            if MODE == "close-after-dot":
                sys.stderr.write("hostile_peer: closing after the dot\n")
                return
            if MODE == "stall-dot":
                return stall(conn)
            if MODE == "garbage-after-dot":
                return spew(conn, lambda: os.urandom(65536))
            if MODE == "trickle-after-dot":
                return trickle(conn, b"250 2.0.0 queued as TRICKLE\r\n")
            send_all(conn, b"250 2.0.0 queued\r\n")
        elif verb == b"RSET" or verb == b"NOOP":
            send_all(conn, b"250 2.0.0 OK\r\n")
        elif verb == b"QUIT":
            if MODE == "stall-quit":
                return stall(conn)
            send_all(conn, b"221 2.0.0 bye\r\n")
            return
        else:
            send_all(conn, b"500 5.5.1 what?\r\n")


def handle(conn):
    try:
        serve(conn)
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    global MODE, MEGABYTES
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True)
    ap.add_argument("--megabytes", type=int, default=8)
    args = ap.parse_args()
    MODE, MEGABYTES = args.mode, args.megabytes
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    print("PORT %d" % srv.getsockname()[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())

    def watch_stdin():
        while sys.stdin.buffer.read1(4096):
            pass
        STOP.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    while not STOP.is_set():
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        except OSError:
            break
        threading.Thread(target=handle, args=(conn,), daemon=True).start()
    srv.close()


if __name__ == "__main__":
    main()
