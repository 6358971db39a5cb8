#!/usr/bin/python3
"""Scriptable SMTP peer for the SMTP client integration tests (aiosmtpd).

Run with Debian's /usr/bin/python3. Binds 127.0.0.1 on a free port, prints
"PORT <n>" on stdout, serves until stdin closes or SIGTERM.

Behaviour is chosen by the addresses the client sends:
  MAIL FROM:<421-mail@...>      421 then close
  RCPT TO:<421-rcpt@...>        421 then close
  RCPT TO:<450-...@...>         450 4.2.2 mailbox full
  RCPT TO:<550-...@...>         550 5.1.1 user unknown
  RCPT TO:<slow-...@...>        reply after --slow seconds
  RCPT TO:<421-dot@...>         accept; 421 after the final dot, then close
  RCPT TO:<drop-data@...>       accept; after 354 read one line and close
With --auth-required it is a smarthost: MAIL before AUTH (user "user",
password "secret", only over STARTTLS) gets 530.
anything else is accepted and each delivered message is written to
--outdir as NNN.eml (content) and NNN.json (mail_from, rcpts).
"""
import argparse
import asyncio
import json
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult


class Handler:
    def __init__(self, outdir, slow):
        self.outdir = outdir
        self.slow = slow
        self.count = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # Announce PIPELINING (aiosmtpd reads commands line by line, so
        # pipelined input works; it just does not say so by default).
        return responses[:1] + ["250-PIPELINING"] + responses[1:]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if address.startswith("421-mail@"):
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 Try again later, closing connection"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0]
        if local.startswith("421-rcpt"):
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 Service shutting down"
        if local.startswith("450-"):
            return "450 4.2.2 Mailbox full, try later"
        if local.startswith("550-"):
            return "550 5.1.1 User unknown"
        if local.startswith("slow-"):
            await asyncio.sleep(self.slow)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.startswith("421-dot@") for r in envelope.rcpt_tos):
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.0 Closing after data"
        self.count += 1
        base = os.path.join(self.outdir, "%03d" % self.count)
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpts": envelope.rcpt_tos,
                       "mail_options": envelope.mail_options}, f)
        return "250 2.0.0 OK queued as %03d" % self.count


class DroppingSMTP(SMTP):
    async def smtp_DATA(self, arg):
        if any(r.startswith("drop-data@") for r in self.envelope.rcpt_tos):
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            try:
                await self._reader.readuntil(b"\r\n")
            except Exception:
                pass
            self.transport.abort()  # RST mid-DATA
            return
        return await super().smtp_DATA(arg)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = getattr(auth_data, "login", None) == b"user" and \
        getattr(auth_data, "password", None) == b"secret"
    return AuthResult(success=ok, handled=False)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--slow", type=float, default=3.0)
    ap.add_argument("--auth-required", action="store_true",
                    help="refuse MAIL before AUTH (user/secret, over TLS): a smarthost")
    args = ap.parse_args()
    tls = None
    if args.cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    handler = Handler(args.outdir, args.slow)
    loop = asyncio.get_running_loop()

    def factory():
        return DroppingSMTP(handler, hostname="aiosmtpd.test", tls_context=tls,
                            require_starttls=False, enable_SMTPUTF8=True,
                            authenticator=authenticator, auth_require_tls=True,
                            auth_required=args.auth_required)

    server = await loop.create_server(factory, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    print("PORT %d" % port, flush=True)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    loop.add_reader(sys.stdin.fileno(),
                    lambda: (sys.stdin.buffer.read1(4096) or stop.done()
                             or stop.set_result(None)))
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
