#!/usr/bin/python3
"""What comes back after sending, end to end (issue 17 items 2 and 5).

`salvo run` sends a campaign (unsubscribe_url, unsubscribe_mailto, a secret)
to `salvo sink --save-dir`; then, against the running engine's inbound
listener ([inbound]) and one-click endpoint ([unsubscribe]):
- swaks relaying through the listener (RCPT outside inbound.domains) gets
  550 5.7.1 and nothing is stored;
- SMTP smuggling ("<LF>.<LF>" inside DATA) ends the session with 521 and
  nothing is stored;
- `curl -X POST` to the List-Unsubscribe URL of a sent copy suppresses that
  address (200, reason unsubscribe); the same URL with a forged token gets
  403 and changes nothing; an unknown campaign 404; GET shows a page and
  suppresses nothing;
- swaks mails the List-Unsubscribe mailto (Subject "unsubscribe CAMPAIGN
  TOKEN" from the recipient): the address is suppressed; the same with a
  forged token changes nothing;
- kill -9 of `salvo run` the moment the listener answers 250 to a message:
  after a restart the message is processed (the address suppressed);
- the metrics count all of it (salvo_inbound_*, salvo_unsubscribe_requests_total);
- intake_checks: swaks delivers a DSN for one copy (to its VERP envelope
  sender, the original headers returned), an ARF complaint about another
  (Original-Mail-From and the original headers) and an auto-reply to a
  third: the first becomes bounced and suppressed, the second suppressed
  (still delivered), the third unchanged; `salvo campaign status`, the
  metrics (async bounces, complaints, salvo_inbound_processed_total) and the
  delivery log say so.

Usage: inbound_e2e.py PATH/TO/salvo
"""
import email
import glob
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from e2e_common import Procs, check, clean_up, free_port, report, start_sink, wait_for

SALVO = os.path.abspath(sys.argv[1])
N = 8


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def metrics(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def swaks(*args):
    return subprocess.run(["swaks", "--timeout", "20", *args], capture_output=True, text=True,
                          timeout=60)


def smtp_dialogue(port, lines, until_code=None):
    """Sends each line and reads one reply per line; returns the replies."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")

    def reply():
        text = b""
        while True:
            line = f.readline()
            if not line:
                return text.decode(errors="replace")
            text += line
            if len(line) >= 4 and line[3:4] == b" ":
                return text.decode(errors="replace")

    replies = [reply()]
    for line in lines:
        s.sendall(line)
        replies.append(reply())
        if until_code and replies[-1].startswith(until_code):
            break
    s.close()
    return replies


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="salvo-inbound-e2e-"))
    procs = Procs(tmp, cwd=tmp)
    try:
        run(tmp, procs)
    finally:
        clean_up(tmp, procs, tails=("salvo.err", "sink.err"))
    report("inbound e2e")


def run(tmp, procs):
    start = procs.start
    sink_port, _, saved = start_sink(procs, SALVO, tmp, "sink")

    (tmp / "msg.eml").write_text("From: News <news@sender.example>\nSubject: Hello {{name}}\n\n"
                                 "Hello {{name}}, this is the inbound e2e campaign.\n")
    (tmp / "list.csv").write_text(
        "email,name\n" + "".join(f"user{i}@rcpt.example,User {i}\n" for i in range(N)))
    (tmp / "unsub.key").write_text("e2e-unsubscribe-secret-0123456789\n")
    (tmp / "verp.key").write_text("e2e-verp-secret-9876543210\n")
    os.chmod(tmp / "unsub.key", 0o600)
    os.chmod(tmp / "verp.key", 0o600)
    (tmp / "campaign.toml").write_text(
        'name = "e2e"\ntemplate = "msg.eml"\nrecipients = "list.csv"\nfrom = "news@sender.example"\n'
        '[options]\nunsubscribe_url = "https://u.example/unsub"\n'
        'unsubscribe_mailto = "unsubscribe@bounce.example"\n'
        'unsubscribe_secret_file = "unsub.key"\n')
    inbound_port, unsub_port, metrics_port = free_port(), free_port(), free_port()
    config = tmp / "salvo.toml"
    config.write_text(
        f'data_dir = "data"\nshards = 1\n[routes]\n"*" = "127.0.0.1:{sink_port}"\n'
        f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
        f'[delivery_log]\npath = "{tmp / "delivery.jsonl"}"\n[queue]\npoll_interval = "100ms"\n'
        f'[inbound]\nlisten = "127.0.0.1:{inbound_port}"\ndomains = ["bounce.example"]\n'
        f'hostname = "mx-in.e2e.example"\n'
        f'[unsubscribe]\nlisten = "127.0.0.1:{unsub_port}"\n'
        f'[verp]\ndomain = "bounce.example"\nsecret_file = "verp.key"\n')
    load = subprocess.run([SALVO, "campaign", "load", str(tmp / "campaign.toml"), "--config",
                           str(config)], capture_output=True, text=True, timeout=120)
    assert load.returncode == 0, f"campaign load failed: {load.stderr}"

    def salvo(*args):
        return subprocess.run([SALVO, *args, "--config", str(config)], capture_output=True,
                              text=True, timeout=60)

    start([SALVO, "run", "--config", str(config)], "salvo")
    check(wait_for(lambda: port_open(inbound_port) and port_open(unsub_port), 30) is not None,
          "salvo run listens on [inbound] listen and [unsubscribe] listen")
    done = wait_for(lambda: len(glob.glob(str(saved / "*.env"))) >= N, 60)
    check(done is not None, f"the sink saved all {N} copies")

    # ---- the copies the sink saved: List-Unsubscribe of each recipient ----
    copies = {}
    for path in glob.glob(str(saved / "*.eml")):
        msg = email.message_from_bytes(pathlib.Path(path).read_bytes())
        header = re.sub(r"\s+", " ", str(msg["List-Unsubscribe"] or ""))
        m = re.search(r"<(https://[^>]+)>", header)
        mailto = re.search(r"<mailto:([^?>]+)\?subject=([^>]+)>", header)
        env = pathlib.Path(path[:-4] + ".env").read_text()
        rcpt = re.search(r"RCPT TO:<([^>]+)>", env).group(1)
        copies[rcpt] = {"url": m.group(1) if m else None,
                        "mailto": mailto.group(1) if mailto else None,
                        "subject": urllib.parse.unquote(mailto.group(2)) if mailto else None,
                        "raw": pathlib.Path(path).read_bytes(),
                        "mail_from": re.search(r"MAIL FROM:<([^>]*)>", env).group(1),
                        "message_id": str(msg["Message-ID"] or "")}
    check(all(c["url"] and c["mailto"] == "unsubscribe@bounce.example" for c in copies.values())
          and len(copies) == N, "every copy carries the https and mailto List-Unsubscribe links")

    def suppressed():
        r = salvo("suppression", "list", "--json")
        try:
            rows = json.loads(r.stdout)
        except ValueError:
            return {}
        rows = rows.get("entries", rows) if isinstance(rows, dict) else rows
        return {row["email"]: row.get("reason", "") for row in rows}

    # ---- relaying: 550 5.7.1, nothing stored ----
    r = swaks("--server", f"127.0.0.1:{inbound_port}", "--from", "spammer@evil.example",
              "--to", "victim@gmail.com")
    check(r.returncode != 0 and "550 5.7.1" in r.stdout,
          "swaks relaying through the listener (victim@gmail.com) gets 550 5.7.1")
    r = swaks("--server", f"127.0.0.1:{inbound_port}", "--from", "spammer@evil.example",
              "--to", "victim%gmail.com@bounce.example")
    check(r.returncode != 0 and "550 5.7.1" in r.stdout,
          "the %-hack (victim%gmail.com@bounce.example) gets 550 5.7.1 too")

    # ---- SMTP smuggling: bare LF ends the session with 521 ----
    replies = smtp_dialogue(inbound_port, [
        b"EHLO smuggler.example\r\n", b"MAIL FROM:<>\r\n", b"RCPT TO:<x@bounce.example>\r\n",
        b"DATA\r\n",
        b"Subject: first\r\n\r\nx\n.\nMAIL FROM:<>\r\nRCPT TO:<y@bounce.example>\r\nDATA\r\n"
        b"Subject: smuggled\r\n\r\ny\r\n.\r\n"])
    check(replies[-1].startswith("521 5.5.2"), f"bare <LF>.<LF> inside DATA gets 521 5.5.2 "
          f"({replies[-1].strip()})")
    m = metrics(metrics_port)
    check(m.get('salvo_inbound_messages_total{result="accepted"}') == 0,
          "nothing was stored from the relay and smuggling attempts")
    check(m.get('salvo_inbound_rejected_total{reason="relay"}') == 2 and
          m.get('salvo_inbound_rejected_total{reason="bare_line_ending"}') == 1,
          "salvo_inbound_rejected_total counts 2 relay and 1 bare_line_ending")

    # ---- one-click unsubscribe (RFC 8058) ----
    target = "user0@rcpt.example"
    url = copies[target]["url"]
    local = f"http://127.0.0.1:{unsub_port}/unsub?" + url.split("?", 1)[1]
    forged = re.sub(r"t=[^&]+", "t=" + "A" * 43, local)
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                        "-d", "List-Unsubscribe=One-Click", forged], capture_output=True,
                       text=True, timeout=30)
    check(r.stdout == "403", f"curl -X POST with a forged token gets 403 (got {r.stdout})")
    check(target not in suppressed(), "the forged token suppressed nothing")
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        re.sub(r"c=\d+", "c=999", local)], capture_output=True, text=True,
                       timeout=30)
    check(r.stdout == "404", f"an unknown campaign gets 404 (got {r.stdout})")
    r = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", local], capture_output=True,
                       text=True, timeout=30)
    check(r.stdout.endswith("200") and "<form method=\"post\"" in r.stdout and
          target not in suppressed(), "GET shows a confirmation page and suppresses nothing")
    r = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "POST", "-d",
                        "List-Unsubscribe=One-Click", local], capture_output=True, text=True,
                       timeout=30)
    check(r.stdout.endswith("200"), f"curl -X POST to the copy's unsubscribe URL gets 200 "
          f"({r.stdout.strip()!r})")
    check(suppressed().get(target) == "unsubscribe",
          f"{target} is suppressed with reason unsubscribe")
    m = metrics(metrics_port)
    check(m.get('salvo_unsubscribe_requests_total{result="unsubscribed"}') == 1 and
          m.get('salvo_unsubscribe_requests_total{result="forged"}') == 1,
          "salvo_unsubscribe_requests_total counts 1 unsubscribed and 1 forged")

    # ---- unsubscribe by mail (the mailto link) ----
    target = "user1@rcpt.example"
    words = copies[target]["subject"].split()
    forged_subject = " ".join(words[:2] + ["B" * 43])
    r = swaks("--server", f"127.0.0.1:{inbound_port}", "--from", target, "--to",
              "unsubscribe@bounce.example", "--header", f"Subject: {forged_subject}",
              "--header", f"From: <{target}>", "--body", "unsubscribe")
    check(r.returncode == 0 and "250 2.0.0" in r.stdout, "a forged mailto unsubscribe is received")
    r = swaks("--server", f"127.0.0.1:{inbound_port}", "--from", target, "--to",
              "unsubscribe@bounce.example", "--header", f"Subject: {copies[target]['subject']}",
              "--header", f"From: User One <{target}>", "--body", "unsubscribe")
    check(r.returncode == 0 and "250 2.0.0" in r.stdout,
          "swaks mails the List-Unsubscribe mailto address: 250")
    check(wait_for(lambda: suppressed().get(target) == "unsubscribe", 30) is not None,
          f"{target} is suppressed by mail (reason unsubscribe)")
    check(wait_for(lambda: metrics(metrics_port).get(
        'salvo_inbound_processed_total{result="unsubscribe_forged"}') == 1, 10) is not None,
        "the forged mailto request is counted unsubscribe_forged and changed nothing")

    # ---- kill -9 right after the 250: processed after the restart ----
    target = "user2@rcpt.example"
    pid = procs.by_name["salvo"].pid
    s = socket.create_connection(("127.0.0.1", inbound_port), timeout=10)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line or line[3:4] == b" ":
                return line

    reply()
    for cmd in (b"EHLO mta.example\r\n", f"MAIL FROM:<{target}>\r\n".encode(),
                b"RCPT TO:<unsubscribe@bounce.example>\r\n", b"DATA\r\n"):
        s.sendall(cmd)
        reply()
    s.sendall(f"From: <{target}>\r\nSubject: {copies[target]['subject']}\r\n\r\nplease\r\n.\r\n"
              .encode())
    final = reply()
    os.kill(pid, signal.SIGKILL)
    s.close()
    procs.by_name["salvo"].wait(10)
    check(final.startswith(b"250 "), f"the listener answered 250 ({final.strip()!r}), then "
          "salvo run was killed with SIGKILL")
    before = suppressed().get(target)
    print(f"     (processed before the kill: {before == 'unsubscribe'})")
    start([SALVO, "run", "--config", str(config)], "salvo")
    check(wait_for(lambda: suppressed().get(target) == "unsubscribe", 30) is not None,
          f"after the restart the stored message is processed: {target} suppressed")
    check(wait_for(lambda: metrics(metrics_port).get("salvo_inbound_pending") == 0, 20)
          is not None, "nothing is left pending after the restart")
    check(metrics(metrics_port).get("salvo_inbound_buffered_bytes") == 0,
          "salvo_inbound_buffered_bytes is exported, 0 with nothing being received")

    intake_checks(tmp, salvo, copies, inbound_port, metrics_port, suppressed)


def original_headers(raw):
    return raw.split(b"\r\n\r\n", 1)[0].decode(errors="replace")


def intake_checks(tmp, salvo, copies, inbound_port, metrics_port, suppressed):
    """A DSN for one copy, an ARF complaint about another and an auto-reply to
    a third, built from the copies the sink saved (their VERP envelope sender
    and Message-ID), delivered with swaks to the inbound listener."""
    bounced, complained, replied = "user3@rcpt.example", "user4@rcpt.example", \
        "user5@rcpt.example"
    check(all(copies[a]["mail_from"].endswith("@bounce.example") for a in copies),
          "every copy's envelope sender is a VERP address at the bounce domain")

    def return_path(addr):
        # Where a bounce goes: the copy's envelope sender (VERP); a test of a
        # build without VERP composition falls back to the Message-ID match.
        mf = copies[addr]["mail_from"]
        return mf if mf.endswith("@bounce.example") else "bounces@bounce.example"

    def status(addr):
        r = salvo("recipient", "show", addr, "--json")
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {}

    def state(addr):
        s = status(addr)
        recs = s.get("recipients", s if isinstance(s, list) else [])
        return recs[0].get("state") if recs else None

    before = {a: state(a) for a in (bounced, complained, replied)}
    check(all(v == "delivered" for v in before.values()),
          f"the three recipients are delivered before any report ({before})")

    dsn = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.rcpt.example>\r\n"
        f"To: {return_path(bounced)}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r\n\r\n"
        "--B1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.rcpt.example\r\n\r\n"
        f"Final-Recipient: rfc822; {bounced}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Remote-MTA: dns; mx.rcpt.example\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <user3@rcpt.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table\r\n\r\n"
        "--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        + original_headers(copies[bounced]["raw"]) + "\r\n--B1--\r\n")
    arf = (
        "From: Feedback Loop <fbl@isp.example>\r\nTo: fbl@bounce.example\r\n"
        "Subject: Abuse report\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=feedback-report; boundary=\"B2\"\r\n\r\n"
        "--B2\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--B2\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: e2e-fbl/1.0\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{copies[complained]['mail_from']}>\r\n"
        f"Original-Rcpt-To: <{complained}>\r\nSource-IP: 127.0.0.1\r\n\r\n"
        "--B2\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        + original_headers(copies[complained]["raw"]) + "\r\n--B2--\r\n")
    auto = (
        f"From: User Five <{replied}>\r\nTo: {return_path(replied)}\r\n"
        "Subject: Out of office: Hello User 5\r\nAuto-Submitted: auto-replied\r\n"
        f"In-Reply-To: {copies[replied]['message_id']}\r\n\r\n"
        "I am away until Monday.\r\n")
    for name, rcpt, text in (("dsn", return_path(bounced), dsn),
                             ("arf", "fbl@bounce.example", arf),
                             ("auto-reply", return_path(replied), auto)):
        (tmp / f"{name}.eml").write_text(text)
        r = swaks("--server", f"127.0.0.1:{inbound_port}", "--from", "", "--to", rcpt,
                  "--data", f"@{tmp / (name + '.eml')}")
        check(r.returncode == 0 and "250 2.0.0" in r.stdout,
              f"swaks delivers the {name} to <{rcpt}>: 250")

    check(wait_for(lambda: state(bounced) == "bounced", 30) is not None,
          f"the DSN turned {bounced} from delivered into bounced")
    log = (tmp / "salvo.err").read_text(errors="replace")
    check(re.search(r"bounce for campaign \d+ recipient \d+ \(matched by verp\)", log) is not None,
          "the DSN was matched through the VERP token of the address it came back to")
    sup = suppressed()
    check(sup.get(bounced, "").startswith("bounce"), f"{bounced} is suppressed ({sup.get(bounced)})")
    check(wait_for(lambda: complained in suppressed(), 30) is not None,
          f"the ARF report suppressed {complained} ({suppressed().get(complained)})")
    check(state(complained) == "delivered", "the complaint left the delivered state as it was")
    time.sleep(1)
    check(state(replied) == "delivered" and replied not in suppressed(),
          "the auto-reply changed nothing (still delivered, not suppressed)")

    r = salvo("campaign", "status", "e2e", "--json")
    try:
        st = json.loads(r.stdout)
    except ValueError:
        st = {}
    reports = st.get("reports", {})
    check(reports.get("async_bounces") == 1 and reports.get("complaints") == 1 and
          reports.get("auto_replies") == 1,
          f"campaign status counts 1 async bounce, 1 complaint, 1 auto-reply ({reports})")
    counts = st.get("counts", {})
    check(counts.get("bounced") == 1, f"campaign status: 1 recipient bounced ({counts})")

    m = wait_for(lambda: (lambda m: m if m.get(
        'salvo_inbound_processed_total{result="auto_reply"}') else None)(metrics(metrics_port)),
        10) or {}
    bounced_async = sum(v for k, v in m.items()
                        if k.startswith("salvo_recipients_bounced_total{") and 'phase="async"' in k)
    complaints = sum(v for k, v in m.items() if k.startswith("salvo_complaints_total{"))
    check(bounced_async == 1, f"salvo_recipients_bounced_total{{phase=\"async\"}} = 1 "
          f"({bounced_async})")
    check(complaints == 1, f"salvo_complaints_total = 1 ({complaints})")
    check(m.get('salvo_inbound_processed_total{result="bounce"}') == 1 and
          m.get('salvo_inbound_processed_total{result="complaint"}') == 1 and
          m.get('salvo_inbound_processed_total{result="auto_reply"}') == 1,
          "salvo_inbound_processed_total counts the bounce, the complaint and the auto-reply")

    # A forged bounce: a VERP address whose token does not verify.
    victim = "user6@rcpt.example"
    forged_rcpt = re.sub(r"-[a-z0-9]+@", "-" + "a" * 16 + "@", copies[victim]["mail_from"])
    (tmp / "forged.eml").write_text(dsn.replace(bounced, victim).replace(
        copies[bounced]["mail_from"], forged_rcpt).replace(
        original_headers(copies[bounced]["raw"]), original_headers(copies[victim]["raw"])))
    r = swaks("--server", f"127.0.0.1:{inbound_port}", "--from", "", "--to", forged_rcpt,
              "--data", f"@{tmp / 'forged.eml'}")
    check(r.returncode == 0 and wait_for(lambda: metrics(metrics_port).get(
        'salvo_inbound_processed_total{result="forged"}') == 1, 20) is not None,
        f"a bounce to a forged VERP address ({forged_rcpt}) is counted forged")
    check(state(victim) == "delivered" and victim not in suppressed(),
          "the forged bounce changed nothing")

    lines = []
    for path in sorted(glob.glob(str(tmp / "delivery*.jsonl*"))):
        for line in pathlib.Path(path).read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    about = lambda addr: [l for l in lines if addr in json.dumps(l)]  # noqa: E731
    check(any("bounce" in json.dumps(l) for l in about(bounced)[1:]),
          f"the delivery log has a later bounce line for {bounced}")
    check(any("complaint" in json.dumps(l) for l in about(complained)),
          f"the delivery log has a complaint line for {complained}")


if __name__ == "__main__":
    main()
