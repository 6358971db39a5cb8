#!/usr/bin/env python3
"""Scores `salvo bounce parse` against an expected.tsv-format file.

  score_corpus.py SALVO EXPECTED.TSV MAILDIR [--misses]

The same rules as tests/bounce/corpus_test.cc (kind, recipients, first
recipient's status and category all right), for sets that are not checked
in with their messages: the held-out sisimai messages (make their
expectations with sisimai_expect.py). "?N" compares only the number of
recipients.
"""
import json
import os
import subprocess
import sys


def status_ok(want, got):
    if want == "*":
        return True
    if want == "-":
        return got == ""
    if len(want) == 3 and want[1:] == ".*":
        return got != "" and got[0] == want[0]
    return want == got


def main():
    salvo, tsv, maildir = sys.argv[1:4]
    show = "--misses" in sys.argv
    rows = [l.rstrip("\n").split("\t") for l in open(tsv, encoding="utf-8")
            if l.strip() and not l.startswith("#")]
    files = [os.path.join(maildir, os.path.basename(r[0])) for r in rows]
    out = subprocess.run([salvo, "bounce", "parse", "--json"] + files,
                         capture_output=True, check=True).stdout
    reports = json.loads(out)
    assert len(reports) == len(rows)
    right = 0
    counts = [0, 0, 0, 0]
    for row, rep in zip(rows, reports):
        want_kind, want_rcpt, want_status, want_cat = row[1:5]
        rcpts = rep.get("recipients", [])
        got_status = rcpts[0].get("status", "") if rcpts else ""
        got_cat = rcpts[0].get("category", "") if rcpts else ""
        ok_kind = rep["kind"] == want_kind
        if want_rcpt == "-":
            ok_rcpt = not rcpts
        elif want_rcpt.startswith("?"):
            ok_rcpt = len(rcpts) == int(want_rcpt[1:])
        else:
            ok_rcpt = [a.lower() for a in want_rcpt.split(" ")] == \
                [r["recipient"].lower() for r in rcpts]
        ok_status = status_ok(want_status, got_status)
        ok_cat = want_cat == "*" or (got_cat == "" if want_cat == "-" else got_cat in want_cat.split("|"))
        for i, ok in enumerate((ok_kind, ok_rcpt, ok_status, ok_cat)):
            counts[i] += ok
        if ok_kind and ok_rcpt and ok_status and ok_cat:
            right += 1
        elif show:
            print("MISS %s: want %s [%s] %s %s; got %s [%d] %s %s (%s)" % (
                row[0], want_kind, want_rcpt, want_status, want_cat, rep["kind"], len(rcpts),
                got_status, got_cat, rcpts[0].get("reply", "")[:140] if rcpts else ""))
    print("%d/%d right (%.1f%%); kind %d, recipients %d, status %d, category %d" % (
        right, len(rows), 100.0 * right / len(rows), *counts))


if __name__ == "__main__":
    sys.exit(main())
