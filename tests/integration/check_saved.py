#!/usr/bin/python3
"""Independent check of what `salvo sink --save-dir` received from Salvo.

Usage: check_saved.py SAVE_DIR RECIPIENTS.csv DKIM_TXT_FILE SELECTOR DOMAIN [--same-body]

For every n.eml (with its n.env envelope):
  * parse with Python's email package, policy=email.policy.strict: no defects;
  * the To header is the envelope recipient (one RCPT per message);
  * the Subject is "Hello <name>" with the recipient's CSV name, decoded;
  * the body contains the recipient's code from the CSV; with --same-body
    (a template whose body has no placeholder), the body lacks it and every
    message's body is the same bytes;
  * the DKIM signature verifies with dkimpy against the given TXT record;
  * Message-IDs are unique.
Prints "ok N" and exits 0, else prints each problem and exits 1.
"""
import csv
import email
import email.policy
import glob
import os
import sys
from email.parser import BytesParser

import dkim


def main():
    save_dir, csv_path, txt_file, selector, domain = sys.argv[1:6]
    same_body = "--same-body" in sys.argv[6:]
    bodies = set()
    with open(txt_file, "rb") as f:
        txt = f.read().strip()
    people = {}
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            people[row["email"]] = row
    want_name = ("%s._domainkey.%s." % (selector, domain)).encode()

    def dnsfunc(name, timeout=5):
        if name == want_name:
            return txt
        return None

    problems, seen_ids, n = [], set(), 0
    for env_path in sorted(glob.glob(os.path.join(save_dir, "*.env"))):
        eml_path = env_path[:-4] + ".eml"
        with open(env_path) as f:
            rcpts = [l[len("RCPT TO:<"):-1] for l in f.read().splitlines() if l.startswith("RCPT TO:<")]
        with open(eml_path, "rb") as f:
            raw = f.read()
        n += 1
        where = os.path.basename(eml_path)
        try:
            msg = BytesParser(policy=email.policy.strict).parsebytes(raw)
        except Exception as e:  # strict policy raises on defects
            problems.append("%s: strict parse failed: %s" % (where, e))
            continue
        if msg.defects:
            problems.append("%s: defects %r" % (where, msg.defects))
        if len(rcpts) != 1:
            problems.append("%s: %d recipients" % (where, len(rcpts)))
            continue
        rcpt = rcpts[0]
        to = msg["To"].addresses[0].addr_spec if msg["To"] else None
        if to != rcpt:
            problems.append("%s: To %r, envelope %r" % (where, to, rcpt))
        person = people.get(rcpt)
        if person is None:
            problems.append("%s: unknown recipient %r" % (where, rcpt))
            continue
        if str(msg["Subject"]) != "Hello " + person["name"]:
            problems.append("%s: Subject %r, want %r" % (where, str(msg["Subject"]), "Hello " + person["name"]))
        body = msg.get_body(("plain",)).get_content()
        if same_body:
            if person["code"] in body:
                problems.append("%s: body holds code %r" % (where, person["code"]))
            bodies.add(raw[raw.index(b"\r\n\r\n") + 4:])
        elif person["code"] not in body:
            problems.append("%s: body lacks code %r" % (where, person["code"]))
        mid = msg["Message-ID"]
        if mid in seen_ids:
            problems.append("%s: duplicate Message-ID %s" % (where, mid))
        seen_ids.add(mid)
        if not dkim.verify(raw, dnsfunc=dnsfunc):
            problems.append("%s: DKIM signature does not verify" % where)
    if n == 0:
        problems.append("no saved messages in %s" % save_dir)
    if same_body and len(bodies) > 1:
        problems.append("%d different bodies, want one" % len(bodies))
    for p in problems[:50]:
        print(p)
    if problems:
        print("%d problem(s) in %d message(s)" % (len(problems), n))
        return 1
    print("ok %d" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
