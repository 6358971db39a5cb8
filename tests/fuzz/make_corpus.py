#!/usr/bin/python3
"""Regenerates the seed corpus in tests/fuzz/corpus/ (checked in).

reply_parser: byte 0 picks limits and read sizes, the rest is server output.
session:      byte 0 = option flags, byte 1 = read split, the rest is the
              server's whole side of a conversation.
"""
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def write(kind, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


seqs = json.load(open(os.path.join(HERE, "..", "data", "smtp", "tricky-reply-sequences.json")))
for s in seqs:
    server = s["server"]
    text = "".join(server) if isinstance(server, list) else server
    text = text.replace("|", "").replace("<EOF>", "")
    raw = text.encode("utf-8", "surrogateescape")
    for b in (0, 7, 200):
        write("reply_parser", bytes([b]) + raw)

EHLO = (b"220 mx.fuzz ESMTP\r\n"
        b"250-mx.fuzz\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
        b"250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250-CHUNKING\r\n250-AUTH PLAIN LOGIN\r\n"
        b"250 STARTTLS\r\n")
TXN_DATA = b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n354 go\r\n250 2.0.0 queued\r\n"
TXN_BDAT = b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n250 2.0.0 queued\r\n"
sessions = [
    (0x01, EHLO + TXN_DATA * 3 + b"221 bye\r\n"),
    (0x03, EHLO + TXN_BDAT * 3 + b"221 bye\r\n"),
    (0x00, EHLO + b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n" * 3 + b"221 bye\r\n"),
    (0x01, EHLO + b"421 4.7.0 go away\r\n"),
    (0x01, EHLO + b"250 ok\r\n550 5.1.1 a\r\n550 5.1.1 b\r\n554 no valid rcpt\r\n250 reset\r\n"),
    (0x01, EHLO + b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"),
    (0x00, b"554 5.7.1 no service\r\n"),
    (0x00, b"220-a\r\n220 b\r\n502 no ehlo\r\n250 helo ok\r\n" + TXN_DATA),
    (0x04, EHLO + b"220 go ahead\r\n\x16\x03\x03\x00\x02\x02\x28"),
    (0x04, EHLO + b"454 4.7.0 no tls\r\n" + TXN_DATA),
    (0x30, EHLO + b"235 2.7.0 ok\r\n" + TXN_DATA),
    (0x30, b"220 mx\r\n250-mx\r\n250 AUTH LOGIN\r\n334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8 no\r\n"),
    (0x08, EHLO.replace(b"250 STARTTLS", b"250 HELP")),
    (0x01, EHLO + b"250-ok\r\n251 mismatched\r\n"),
    (0x01, EHLO + b"250 " + b"x" * 5000 + b"\r\n"),
    (0x01, b"220 mx\n250-mx\n250 PIPELINING\n" + TXN_DATA.replace(b"\r\n", b"\n")),
]
for flags, data in sessions:
    for split in (0, 5, 60):
        write("session", bytes([flags, split]) + data)
