#!/usr/bin/python3
"""Independent check of rendered Salvo messages with Python's email package.

Usage: check_messages.py EXPECTATIONS.json

The JSON is a list of objects, one per message:
  file          path of the .eml (CRLF line ends, as sent)
  headers       [[name, decoded value or null], ...]: the exact top-level header
                fields in order; a null value is not compared
  display_name  expected From display name (optional)
  parts         [[content-type, base64 of the exact decoded payload], ...]:
                every leaf part in order (a single-part message has one)
  unsubscribe_token  the token expected in the List-Unsubscribe URL (optional)
  same_message_id_as_previous  true for a re-encoded variant of the previous copy
  seven_bit     true: no octet may be >= 0x80

Each message is parsed with policy=email.policy.strict (any defect raises);
every header value is parsed and compared; every part is decoded and compared
byte for byte; header names must match exactly (no extra header can appear);
Message-IDs must be unique. Prints "ok N" and exits 0, or prints each problem
and exits 1.
"""
import base64
import email
import email.policy
import json
import sys
import urllib.parse
from email.parser import BytesParser


def check_one(exp, seen_ids):
    problems = []
    with open(exp["file"], "rb") as f:
        raw = f.read()
    for n, line in enumerate(raw.split(b"\r\n")):
        if len(line) > 998:
            problems.append("line %d is %d octets" % (n + 1, len(line)))
        if b"\n" in line or b"\r" in line:
            problems.append("bare CR or LF on line %d" % (n + 1))
        if b"\x00" in line:
            problems.append("NUL on line %d" % (n + 1))
    if exp.get("seven_bit") and any(b >= 0x80 for b in raw):
        problems.append("8-bit octets in a copy that must be 7-bit")
    msg = BytesParser(policy=email.policy.strict).parsebytes(raw)
    if msg.defects:
        problems.append("message defects: %r" % msg.defects)
    names = [k for k in msg.keys()]
    want_names = [h[0] for h in exp["headers"]]
    if [n.lower() for n in names] != [n.lower() for n in want_names]:
        problems.append("header names %r, expected %r" % (names, want_names))
    for name, want in exp["headers"]:
        values = msg.get_all(name) or []
        for v in values:
            if v.defects:
                problems.append("%s defects: %r" % (name, v.defects))
        if want is not None and (len(values) != 1 or str(values[0]) != want):
            problems.append("%s is %r, expected %r" % (name, [str(v) for v in values], want))
    if "display_name" in exp:
        addrs = msg["From"].addresses
        # Display names are compared ignoring whitespace: a phrase is a run of
        # words, and parsers (Python included) normalise the space between
        # them and around adjacent encoded-words.
        def squash(s):
            return "".join(s.split())
        if len(addrs) != 1 or squash(addrs[0].display_name) != squash(exp["display_name"]):
            problems.append("From display name %r, expected %r"
                            % ([a.display_name for a in addrs], exp["display_name"]))
    mid = str(msg["Message-ID"])
    if mid in seen_ids and not exp.get("same_message_id_as_previous"):
        problems.append("duplicate Message-ID %s" % mid)
    seen_ids.add(mid)
    if "unsubscribe_token" in exp:
        lu = str(msg["List-Unsubscribe"])
        url = lu.split("<", 1)[1].split(">", 1)[0]
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
        if q.get("t") != [exp["unsubscribe_token"]]:
            problems.append("List-Unsubscribe token %r" % q.get("t"))
        if q.get("r") != [exp["recipient"]]:
            problems.append("List-Unsubscribe recipient %r" % q.get("r"))
        if str(msg["List-Unsubscribe-Post"]) != "List-Unsubscribe=One-Click":
            problems.append("List-Unsubscribe-Post %r" % str(msg["List-Unsubscribe-Post"]))
    leaves = [p for p in msg.walk() if not p.is_multipart()]
    if len(leaves) != len(exp["parts"]):
        problems.append("%d parts, expected %d" % (len(leaves), len(exp["parts"])))
    for i, (part, (ctype, want_b64)) in enumerate(zip(leaves, exp["parts"])):
        if part is not msg:
            for k in part.keys():
                if k.lower() not in ("content-type", "content-transfer-encoding"):
                    problems.append("part %d has an unexpected header %s" % (i, k))
                if part[k].defects:
                    problems.append("part %d %s defects %r" % (i, k, part[k].defects))
        if part.defects:
            problems.append("part %d defects %r" % (i, part.defects))
        if part.get_content_type() != ctype:
            problems.append("part %d is %s, expected %s" % (i, part.get_content_type(), ctype))
        got = part.get_payload(decode=True)
        want = base64.b64decode(want_b64)
        if got != want:
            problems.append("part %d payload differs:\n got  %r\n want %r" % (i, got[:300], want[:300]))
        part.get_content()  # the strict content manager must accept it too
    return problems


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        expectations = json.load(f)
    seen_ids = set()
    failed = 0
    for exp in expectations:
        try:
            problems = check_one(exp, seen_ids)
        except Exception as e:  # a strict-policy defect raises
            problems = ["parse error: %s: %s" % (type(e).__name__, e)]
        if problems:
            failed += 1
            if failed <= 20:
                print("FAIL %s" % exp["file"])
                for p in problems:
                    print("  " + p)
    if failed:
        print("failed %d of %d" % (failed, len(expectations)))
        return 1
    print("ok %d" % len(expectations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
