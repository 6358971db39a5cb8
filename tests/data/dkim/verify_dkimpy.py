#!/usr/bin/python3
"""Verifies every DKIM-Signature of every message with dkimpy (independent of Salvo).

usage: verify_dkimpy.py KEYS.json MESSAGE.eml...
KEYS.json maps "selector._domainkey.domain" to its TXT record value; dkimpy gets
it through dnsfunc (no DNS). Prints one line per signature ("ok" or "FAIL") and a
summary; exits 0 only if every message has at least one signature and all verify.
"""
import json
import re
import sys

import dkim


def main():
    with open(sys.argv[1]) as f:
        records = json.load(f)

    def dnsfunc(name, timeout=5):
        key = name.decode() if isinstance(name, bytes) else name
        key = key.rstrip(".")
        rec = records.get(key)
        return rec.encode() if rec is not None else None

    total = failed = 0
    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            msg = f.read()
        header_block = msg.split(b"\r\n\r\n", 1)[0]
        count = len(re.findall(rb"(?im)^DKIM-Signature:", header_block))
        if count == 0:
            print(f"{path}: FAIL no DKIM-Signature")
            failed += 1
            continue
        try:
            d = dkim.DKIM(msg)
        except Exception as e:
            print(f"{path}: FAIL cannot parse: {e!r}")
            failed += 1
            continue
        for idx in range(count):
            total += 1
            try:
                ok = d.verify(idx=idx, dnsfunc=dnsfunc)
            except Exception as e:  # dkimpy raises on malformed signatures
                ok = False
                print(f"{path}: signature {idx}: exception {e!r}")
            if not ok:
                failed += 1
            print(f"{path}: signature {idx}: {'ok' if ok else 'FAIL'}")
    print(f"dkimpy: {total - failed} of {total} signatures verified, {failed} failed")
    return 0 if failed == 0 and total > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
