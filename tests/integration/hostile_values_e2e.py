#!/usr/bin/python3
"""Hostile recipient values through the whole engine (issue 7, "in the engine").

Loads a campaign whose CSV values carry CRLF, bare CR/LF, header and MIME
boundary injection attempts, `{{` sequences, encoded-word look-alikes, long
strings and text in many scripts; sends it with `salvo send` to `salvo sink
--save-dir`; then parses every message the sink received with Python's email
package (policy=email.policy.strict) and checks: no defects, exactly the
expected header fields (no value added one), every line <= 998 octets, the
Subject and X-Ref headers decode to the recipient's exact values, and both
MIME parts decode to bytes containing each value exactly. (NUL cannot be
loaded: the CSV loader rejects it with file:line; the unit tests render NUL.)

Usage: hostile_values_e2e.py PATH/TO/salvo
"""
import csv
import email.policy
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from email.parser import BytesParser

from e2e_common import free_port

N = 300
SALVO = sys.argv[1]

PIECES = [
    "\r\nBcc: victim@example.org", "\nX-Injected: yes", "\r", "\n", "\r\n\r\n",
    "--salvo-boundary-1", "\r\n--salvo-boundary-1--\r\n", "{{email}}", "{{", "}}", "{{x|y}}",
    "=?utf-8?B?SGVsbG8=?=", "=?", "?=", '"quoted"', "a,b;c", "tab\there", "trailing space ",
    "Ünïcödé", "日本語のテキスト", "中文字符", "한국어", "Ελληνικά", "Русский", "עברית", "العربية",
    "हिन्दी", "ไทย", "😀🎉", "e\u0301", "\u2028\u0085\ufeff", ".", "\r\n.\r\n", "From: evil@x",
    "x" * 1500, "y " * 400,
]


def hostile(rng):
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))


TEMPLATE = """From: Salvo Test <news@test.example>
Subject: {{subject}}
X-Ref: {{ref}}
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="salvo-boundary-1"

--salvo-boundary-1
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Name: {{name}}
City: {{city}}

--salvo-boundary-1
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

<p>{{name}}</p><p>{{city}}</p>

--salvo-boundary-1--
"""


def main():
    rng = random.Random(20261128)
    tmp = tempfile.mkdtemp(prefix="salvo-hostile-")
    sink = None
    try:
        rows = []
        for i in range(N):
            rows.append({
                "email": f"r{i}@hostile{i % 7}.example",
                "subject": hostile(rng), "ref": hostile(rng),
                "name": hostile(rng), "city": hostile(rng),
            })
        with open(os.path.join(tmp, "list.csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["email", "subject", "ref", "name", "city"],
                               lineterminator="\r\n")
            w.writeheader()
            w.writerows(rows)
        with open(os.path.join(tmp, "message.eml"), "w") as f:
            f.write(TEMPLATE)
        port = free_port()
        saved = os.path.join(tmp, "saved")
        os.mkdir(saved)
        sink = subprocess.Popen([SALVO, "--log-level", "error", "sink", "--listen",
                                 f"127.0.0.1:{port}", "--save-dir", saved],
                                stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        with open(os.path.join(tmp, "salvo.toml"), "w") as f:
            f.write(f'data_dir = "{tmp}/spool"\nshards = 2\nlog_level = "warning"\n'
                    f'[routes]\n"*" = "127.0.0.1:{port}"\n')
        send = subprocess.run(
            [SALVO, "send", "--config", os.path.join(tmp, "salvo.toml"), "--name", "hostile",
             "--template", os.path.join(tmp, "message.eml"), "--recipients",
             os.path.join(tmp, "list.csv"), "--from", "news@test.example", "--json"],
            capture_output=True, text=True, timeout=180)
        if send.returncode != 0:
            print("salvo send failed:", send.stdout, send.stderr)
            return 1
        summary = json.loads(send.stdout)
        if summary.get("delivered") != N:
            print("expected", N, "delivered:", send.stdout)
            return 1

        by_rcpt = {r["email"]: r for r in rows}
        problems, checked, ids = [], 0, set()
        for name in sorted(os.listdir(saved)):
            if not name.endswith(".eml"):
                continue
            raw = open(os.path.join(saved, name), "rb").read()
            env = open(os.path.join(saved, name[:-4] + ".env")).read()
            rcpt = [l.split(":", 1)[1].strip().strip("<>") for l in env.splitlines()
                    if l.upper().startswith("RCPT TO:")]
            if len(rcpt) != 1 or rcpt[0] not in by_rcpt:
                problems.append(f"{name}: unexpected envelope {env!r}")
                continue
            row = by_rcpt[rcpt[0]]
            for n, line in enumerate(raw.split(b"\r\n")):
                if len(line) > 998 or b"\n" in line or b"\r" in line or b"\0" in line:
                    problems.append(f"{name}: bad line {n + 1}")
            msg = BytesParser(policy=email.policy.strict).parsebytes(raw)
            names = sorted(k.lower() for k in msg.keys())
            expected = sorted(["from", "subject", "x-ref", "mime-version", "content-type",
                               "message-id", "date", "to"])
            if names != expected:
                problems.append(f"{name}: header fields {names}, expected {expected}")
            if str(msg["Subject"]) != row["subject"]:
                problems.append(f"{name}: Subject {str(msg['Subject'])!r} != {row['subject']!r}")
            if str(msg["X-Ref"]) != row["ref"]:
                problems.append(f"{name}: X-Ref {str(msg['X-Ref'])!r} != {row['ref']!r}")
            if msg["To"].addresses[0].addr_spec != row["email"]:
                problems.append(f"{name}: To {msg['To']}")
            ids.add(str(msg["Message-ID"]))
            parts = [p for p in msg.walk() if not p.is_multipart()]
            if len(parts) != 2:
                problems.append(f"{name}: {len(parts)} parts, expected 2")
            for part in parts:
                payload = part.get_payload(decode=True)
                for key in ("name", "city"):
                    if row[key].encode("utf-8") not in payload:
                        problems.append(f"{name}: {part.get_content_type()} lacks {key} exactly")
            checked += 1
        if checked != N:
            problems.append(f"checked {checked} messages, expected {N}")
        if len(ids) != checked:
            problems.append("Message-IDs are not unique")
        if problems:
            print("\n".join(problems[:30]))
            print(f"{len(problems)} problems")
            return 1
        print(f"ok: {checked} messages with hostile values parsed strictly, values exact")
        return 0
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
