#!/usr/bin/env python3
"""Expected results for sisimai's sample messages, from sisimai's own tests.

Reads the `$isexpected` tables of p5-sisimai's t/*.t ([status, reply code,
reason, hardbounce] per recipient) and maps each message of set-of-emails'
maildir/bsd to the expected.tsv columns, the way tests/bounce/README.md says
expected.tsv was made: KIND from the reason (and the Action: fields), STATUS
sisimai's when it appears in the message (else only its class), CATEGORY the
reason mapped to our categories, RECIPIENTS only their number ("?N").

  sisimai_expect.py P5_SISIMAI_DIR MAILDIR [--exclude expected.tsv] [--prefix DIR/]

prints one expected.tsv line per message that sisimai has expectations for
and whose file is in MAILDIR (minus the files --exclude lists): this is how
the held-out set (tests/data/bounces/heldout.tsv, --prefix
sisimai-heldout/) was made, and how a tuned-set line can be re-derived to
check a judgement. RECIPIENTS is always "?N" (sisimai's count), NOTE empty.
"""
import argparse
import glob
import os
import re
import sys

ANY_EXPIRY = "message-expired|no-answer-from-host|routing-errors|bad-connection"
ANY_NETWORK = "routing-errors|no-answer-from-host|bad-connection|bad-domain"
CATEGORY = {
    "userunknown": "bad-mailbox",
    "hasmoved": "bad-mailbox|inactive-mailbox",
    "suspend": "inactive-mailbox|bad-mailbox",
    "mailboxfull": "quota-issues",
    "hostunknown": "bad-domain",
    "notaccept": "bad-domain|policy-related",
    "expired": ANY_EXPIRY,
    "networkerror": ANY_NETWORK,
    "spamdetected": "spam-related|content-related",
    "blocked": "spam-related|policy-related",
    "badreputation": "spam-related|policy-related",
    "requireptr": "spam-related|policy-related",
    "norelaying": "relaying-issues",
    "virusdetected": "virus-related",
    "contenterror": "content-related",
    "mesgtoobig": "content-related",
    "exceedlimit": "content-related|quota-issues",
    "toomanyconn": "rate-limited",
    "speeding": "rate-limited",
    "ratelimited": "rate-limited",
    "rejected": "invalid-sender|policy-related",
    "securityerror": "policy-related",
    "authfailure": "policy-related",
    "policyviolation": "policy-related|content-related|spam-related",
    "syntaxerror": "protocol-errors",
    "feedback": "-",
    "vacation": "-",
    "delivered": "-",
}


def tables(t_dir):
    """Yields (engine name, is rhost test, {index: [[status, code, reason, hard], ...]})."""
    for path in sorted(glob.glob(os.path.join(t_dir, "*.t"))):
        text = open(path, encoding="utf-8", errors="replace").read()
        m = re.search(r"\$enginename\s*=\s*'([^']+)'", text)
        t = re.search(r"\$isexpected\s*=\s*\{(.*?)\n\};", text, re.S)
        if not m or not t:
            continue
        table = {}
        for idx, body in re.findall(r"'(\d+)'\s*=>\s*\[(.*?)\]\s*\]\s*,", t.group(1), re.S):
            rows = re.findall(r"\[\s*'([^']*)'\s*,\s*'([^']*)'\s*,\s*'([^']*)'\s*,\s*(\d)", body)
            table[idx] = rows
        yield m.group(1), "-rhost-" in os.path.basename(path), table


def message_file(maildir, engine, rhost, idx):
    lower = engine.lower()
    if engine in ("ARF", "RFC3464", "RFC3834"):
        names = ["%s-%02d.eml" % (lower, int(idx))]
    elif rhost:
        names = ["rhost-%s-%02d.eml" % (lower, int(idx))]
    else:  # set-of-emails moved some lhost samples to rhost-*
        names = ["lhost-%s-%02d.eml" % (lower, int(idx)), "rhost-%s-%02d.eml" % (lower, int(idx))]
    for n in names:
        if os.path.exists(os.path.join(maildir, n)):
            return n
    return None


def expected_line(maildir, name, rows, prefix):
    raw = open(os.path.join(maildir, name), "rb").read().decode("utf-8", "replace")
    status, _, reason, _ = rows[0]
    actions = re.findall(r"(?im)^Action:\s*(\S+)", raw)
    if reason == "feedback":
        kind = "complaint"
    elif reason == "vacation":
        kind = "auto-reply"
    elif reason == "delivered":
        kind = "not-a-report"
    elif actions and all(a.lower() == "delayed" for a in actions):
        kind = "delayed"
    else:
        kind = "bounce"
    if kind in ("auto-reply", "not-a-report"):
        return "\t".join([prefix + name, kind, "-", "-", "-", ""])
    if kind == "complaint":
        want_status = "-"
    elif status and re.search(r"(?<![\d.])" + re.escape(status) + r"(?![\d])", raw):
        want_status = status
    elif status:
        want_status = status[0] + ".*"
    else:
        want_status = "*"
    category = CATEGORY.get(reason, "*") if kind != "complaint" else "-"
    return "\t".join([prefix + name, kind, "?%d" % len(rows), want_status, category, ""])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("p5_sisimai")
    ap.add_argument("maildir")
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--prefix", default="sisimai/", help="directory before each file name")
    args = ap.parse_args()
    excluded = set()
    for path in args.exclude:
        for line in open(path, encoding="utf-8"):
            if line.strip() and not line.startswith("#"):
                excluded.add(os.path.basename(line.split("\t")[0]))
    out = []
    for engine, rhost, table in tables(os.path.join(args.p5_sisimai, "t")):
        for idx, rows in table.items():
            if not rows:
                continue
            name = message_file(args.maildir, engine, rhost, idx)
            if name is None or name in excluded:
                continue
            out.append(expected_line(args.maildir, name, rows, args.prefix))
    for line in sorted(set(out)):
        print(line)


if __name__ == "__main__":
    sys.exit(main())
