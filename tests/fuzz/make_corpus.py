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

# ---- dns_message: DNS answers as the resolver receives them. ----
import struct


def name(n):
    out = b""
    for label in n.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def dns(qname, qtype, answers=(), rcode=0, authority=(), flags=0x8180):
    h = struct.pack(">HHHHHH", 0x1234, flags | rcode, 1, len(answers), len(authority), 0)
    q = name(qname) + struct.pack(">HH", qtype, 1)
    body = b""
    for rr in list(answers) + list(authority):
        rname, rtype, ttl, rdata = rr
        body += name(rname) + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata
    return h + q + body


def mx(pref, host):
    return struct.pack(">H", pref) + name(host)


soa = name("ns.example") + name("host.example") + struct.pack(">IIIII", 1, 2, 3, 4, 300)
dns_seeds = [
    dns("example.org", 15, [("example.org", 15, 300, mx(10, "mx1.example.org")),
                            ("example.org", 15, 300, mx(20, "mx2.example.org"))]),
    dns("nullmx.example", 15, [("nullmx.example", 15, 60, mx(0, ""))]),
    dns("gone.example", 15, rcode=3, authority=[("example", 6, 60, soa)]),
    dns("servfail.example", 15, rcode=2),
    dns("mx1.example.org", 1, [("mx1.example.org", 1, 30, bytes([127, 0, 0, 2]))]),
    dns("mx1.example.org", 28, [("mx1.example.org", 28, 30, bytes(15) + b"\x01")]),
    dns("alias.example", 15, [("alias.example", 5, 30, name("real.example")),
                              ("real.example", 15, 30, mx(5, "mx.real.example"))]),
    # A compression pointer to the question name, and a pointer loop.
    dns("example.org", 15, [("example.org", 15, 300, struct.pack(">H", 10) + b"\xc0\x0c")]),
    struct.pack(">HHHHHH", 1, 0x8180, 1, 1, 0, 0) + b"\xc0\x0c\x00\x0f\x00\x01",
    dns("trunc.example", 15, flags=0x8380),
]
for d in dns_seeds:
    write("dns_message", d)

# ---- csv, template, config: the operator's files. ----
DATA = os.path.join(HERE, "..", "data")
for path in ("queue/recipients.csv",):
    write("csv", open(os.path.join(DATA, path), "rb").read())
for d in (b"email,first\r\na@example.org,Ann\r\n\"b@example.org\",\"Bo, \"\"the\"\" one\"\r\n",
          b"\xef\xbb\xbfemail\n\nc@example.org\n",
          b"email,note\n\"unterminated@example.org,x\n",
          b"email,x\na@b,\xff\xfe\n"):
    write("csv", d)
for path in ("queue/message.eml",):
    write("template", open(os.path.join(DATA, path), "rb").read())
write("template", open(os.path.join(HERE, "..", "..", "deploy", "demo", "message.eml"), "rb").read())
for d in (b"From: News <news@example.com>\r\nSubject: Hi {{first|friend}}\r\n\r\nHello {{first}}\r\n",
          b"Subject: {{first}}\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n\n"
          b"--b\nContent-Type: text/plain\n\nplain {{x}}\n--b\nContent-Type: text/html\n"
          b"Content-Transfer-Encoding: quoted-printable\n\n<p>{{x}}</p>\n--b--\n",
          b"Subject: {{unclosed\n\nbody\n"):
    write("template", d)
write("config", open(os.path.join(HERE, "..", "..", "deploy", "salvo.example.toml"), "rb").read())
for d in (b'data_dir = "/tmp/x"\nshards = 2\n[delivery]\nconnections_per_site = 0\n',
          b'[[route]]\ndomain = "*"\nhosts = ["127.0.0.1:2525"]\n[dns]\ntimeout = "250ms"\n',
          b'[delivery]\nshutdown_deadline = "9999999999999999d"\n',
          b'[[dkim_key]]\ndomain = "example.com"\nselector = "s"\nkey_file = "k.pem"\n'):
    write("config", d)

# ---- sink_session: byte 0 = line limit and read split, byte 1 = policy flags. ----
CLIENT = (b"EHLO client.example\r\nMAIL FROM:<a@example.org> SIZE=100\r\nRCPT TO:<b@x.example>\r\n"
          b"RCPT TO:<cc@x.example>\r\nDATA\r\nSubject: s\r\n\r\n..dot\r\nbody\r\n.\r\n")
for flags, data in [
        (0x00, CLIENT + b"QUIT\r\n"),
        (0x06, CLIENT * 3 + b"RSET\r\nNOOP\r\nVRFY x\r\nHELP\r\nQUIT\r\n"),
        (0x01, CLIENT * 4),
        (0x08, CLIENT),
        (0x10, b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<injected@x>\r\n"),
        (0x00, b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 5\r\nhelloBDAT 0 LAST\r\nQUIT\r\n"),
        (0x00, b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\n.\nMAIL FROM:<e@f>\r\n"),
        (0x00, b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nx\r.\r\n"),
        (0x00, b"HELO c\nMAIL FROM:<a@b>\n"),
        (0x00, b"EHLO " + b"x" * 5000 + b"\r\nQUIT\r\n")]:
    for split in (0, 3, 40):
        write("sink_session", bytes([split, flags]) + data)

# ---- inbound_session: byte 0 = line limit and read split, byte 1 = store verdicts
# (bit set: 451). A DSN to a VERP address, a relay attempt, relay tricks, pipelining
# after the final dot, smuggling. ----
BOUNCE = (b"EHLO mx.example\r\nMAIL FROM:<>\r\nRCPT TO:<b+t0k3n@bounce.example>\r\nDATA\r\n"
          b"Subject: Undelivered Mail\r\nContent-Type: multipart/report; report-type=delivery-status\r\n"
          b"\r\n..dot\r\nbody\r\n.\r\n")
for verdicts, data in [
        (0x00, BOUNCE + b"QUIT\r\n"),
        (0x05, BOUNCE * 3 + b"RSET\r\nNOOP\r\nQUIT\r\n"),
        (0x00, b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<victim@gmail.com>\r\nRCPT TO:<x%gmail.com@bounce.example>\r\n"
               b"RCPT TO:<@bounce.example:v@gmail.com>\r\nRCPT TO:<a@gmail.com@bounce.example>\r\n"
               b"RCPT TO:<abuse@FBL.example>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n"),
        (0x00, b"EHLO c\r\nMAIL FROM:<>\r\n" + b"RCPT TO:<a@bounce.example>\r\n" * 5 + b"DATA\r\nx\r\n.\r\n"),
        (0x00, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@bounce.example>\r\nBDAT 5\r\nhelloBDAT 0 LAST\r\nQUIT\r\n"),
        (0x00, b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@bounce.example>\r\nDATA\r\nx\n.\nMAIL FROM:<e@f>\r\n"),
        (0x01, BOUNCE + b"MAIL FROM:<>\r\n" * 200)]:
    for split in (0, 3, 40):
        write("inbound_session", bytes([split, verdicts]) + data)

# ---- admin_request: JSON request lines. ----
for req in ({"op": "list"}, {"op": "status", "campaign": "1", "top": 5},
            {"op": "status", "campaign": "nope", "top": -1},
            {"op": "pause", "campaign": 1}, {"op": "resume", "campaign": "x"},
            {"op": "cancel", "campaign": "99999999999999999999"},
            {"op": "suppression_add", "emails": ["a@example.org", 5], "reason": "r"},
            {"op": "suppression_remove", "emails": "a@example.org"},
            {"op": "suppression_list", "limit": 10, "after": ""},
            {"op": "frobnicate"}, {"nope": True}, [1, 2, 3]):
    write("admin_request", json.dumps(req).encode())

# ---- bounce_report: byte 0 = limits, the rest a received message (a few of
# tests/data/bounces, and hostile shapes). ----
BOUNCES = os.path.join(HERE, "..", "data", "bounces", "sisimai")
for f in ("lhost-postfix-03.eml", "lhost-qmail-01.eml", "lhost-exim-01.eml", "lhost-gmail-01.eml",
          "lhost-exchange2007-01.eml", "lhost-amazonses-09.eml", "arf-01.eml", "rfc3834-01.eml",
          "rfc3464-09.eml", "lhost-sendmail-01.eml", "lhost-v5sendmail-04.eml", "rhost-franceptt-01.eml"):
    write("bounce_report", bytes([40]) + open(os.path.join(BOUNCES, f), "rb").read())
nested = b"Content-Type: multipart/mixed; boundary=b\n\n" + b"--b\nContent-Type: multipart/mixed; boundary=b\n\n" * 30
write("bounce_report", bytes([3]) + nested)
write("bounce_report", bytes([0]) + b"From: MAILER-DAEMON@x\nSubject: Undelivered\nX-Failed-Recipients: a@b.example, ,@,x@\n\n"
      + b"<a@b.example>:\n550 5.1.1 " + b"x" * 3000 + b"\n")
write("bounce_report", bytes([9]) + b"Subject: AWS Notification Message\n\n{\"notificationType\":\"Bounce\",\"bounce\":{\"bouncedRecipients\":[{\"emailAddress\":5},{}]}}")
