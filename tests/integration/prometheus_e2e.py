#!/usr/bin/python3
"""Salvo's metrics end to end, through a real Prometheus (issue 14).

Starts `salvo sink --bounce-rate 0.03 --defer-rate 0.05`, a real Prometheus
(Debian's, on a free loopback port, 1 s scrape and evaluation interval,
loading deploy/prometheus/rules.yml) scraping a running `salvo run` that
sends one campaign over several domains (gmail.com, yahoo.com, outlook.com
and 20 long-tail domains). Then, through Prometheus's HTTP API, while the
target is still up:
- the recipient counters equal the sink's counts exactly, and so do the
  queue gauges; the bounce and deferral ratios are 3% and 5% within sampling
  error (4 sigma), from the counters and from the recording rules;
- a scrape taken during the campaign passes `promtool check metrics`;
- every rule is healthy, every dashboard and rule expression (Grafana
  variables substituted) evaluates without error, and the bounce and deferral
  panels return data; every metric they read is in Salvo's scrape (the
  throttle gauges excepted until traffic shaping provides them).

Then `wired_checks()`: the counters per domain label equal the sink's
per-domain counts, the delivery log's lines by type equal the sink's counts,
histograms, DNS and connections by domain.

Usage: prometheus_e2e.py PATH/TO/salvo
"""
import json
import math
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "deploy"))
import promql_exprs as px  # noqa: E402
from e2e_common import Procs, check, clean_up, free_port, report, start_sink  # noqa: E402


SALVO = sys.argv[1]
N = 3000
BOUNCE, DEFER = 0.03, 0.05
LISTED = ["gmail.com", "yahoo.com", "outlook.com"]  # in metrics.domains (the default list)
TAIL = [f"t{i}.example" for i in range(20)]          # "other"
# Grafana's $__rate_interval for a 1 s scrape interval: max(4 x scrape, interval + scrape).
RATE_INTERVAL = "4s"

def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400/422 carry the error as JSON
            return json.loads(e.read())

    def query(self, expr, **kw):
        return self.api("query", query=expr, **kw)

    def value(self, expr):
        """The single value of an instant query, or None."""
        r = self.query(expr)
        res = r.get("data", {}).get("result", [])
        if r.get("status") != "success" or len(res) != 1:
            return None
        return float(res[0]["value"][1])

    def vector(self, expr, label):
        r = self.query(expr)
        return {s["metric"].get(label, ""): float(s["value"][1])
                for s in r.get("data", {}).get("result", [])}


def scrape_values(text, name):
    """{labels-string: value} of one metric in a Prometheus text scrape."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key[len(name):]] = float(value)
    return out


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="salvo-prom-e2e-"))
    procs = Procs(tmp)
    try:
        run(tmp, procs)
    finally:
        clean_up(tmp, procs, tails=("salvo.err", "sink.err", "prometheus.err"), tail_bytes=3000)
    report("prometheus e2e")


def run(tmp, procs):
    start = procs.start
    # ---- the sink ----
    sink_port, _, _ = start_sink(
        procs, SALVO, tmp, "sink", "--bounce-rate", str(BOUNCE), "--defer-rate", str(DEFER),
        "--seed", "7",
        # ~10 s of sending, so rate windows see the campaign as it goes
        "--delay-ms", "50")

    # ---- the campaign ----
    (tmp / "msg.eml").write_text("From: News <news@sender.example>\nSubject: Hello {{name}}\n\n"
                                 "Hello {{name}}, this is the e2e campaign.\n")
    lines = ["email,name"]
    for i in range(N):
        r = i % 100
        domain = ("gmail.com" if r < 30 else "yahoo.com" if r < 50 else "outlook.com" if r < 65
                  else TAIL[i % len(TAIL)])
        lines.append(f"user{i}@{domain},User {i}")
    (tmp / "list.csv").write_text("\n".join(lines) + "\n")
    (tmp / "campaign.toml").write_text(
        'name = "e2e"\ntemplate = "msg.eml"\nrecipients = "list.csv"\nfrom = "news@sender.example"\n'
        '[retry]\nfirst_retry_min = "1s"\nfirst_retry_max = "2s"\nmultiplier = 1.0\n'
        'max_delay = "2s"\n')
    metrics_port, prom_port = free_port(), free_port()
    log_path = tmp / "delivery.jsonl"
    config = tmp / "salvo.toml"
    config.write_text(
        f'data_dir = "data"\nshards = 2\n[routes]\n"*" = "127.0.0.1:{sink_port}"\n'
        f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
        f'[delivery_log]\npath = "{log_path}"\n[queue]\npoll_interval = "100ms"\n')
    load = subprocess.run([SALVO, "campaign", "load", str(tmp / "campaign.toml"), "--config",
                           str(config)], capture_output=True, text=True, timeout=120)
    assert load.returncode == 0, f"campaign load failed: {load.stderr}"

    # ---- Prometheus, before Salvo starts, so it sees the whole campaign ----
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {px.RULES}\n"
        "scrape_configs:\n  - job_name: salvo\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n")
    start(["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
           f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}",
           "--log.level=warn"], "prometheus")
    prom = Prometheus(prom_port)
    for _ in range(300):
        try:
            if "Ready" in http_get(f"{prom.base}/-/ready", timeout=2):
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        raise AssertionError("Prometheus did not become ready")

    # ---- salvo run, the campaign paused until Prometheus scrapes it ----
    def campaign(cmd):
        r = subprocess.run([SALVO, "campaign", cmd, "e2e", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"campaign {cmd}: {r.stderr}"

    campaign("pause")
    start([SALVO, "run", "--config", str(config)], "salvo")
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    # Prometheus applies new targets after up to 5 s; wait for two scrapes.
    for _ in range(300):
        if (prom.value('count_over_time(up{job="salvo"}[1m])') or 0) >= 2:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("Prometheus never scraped salvo run")
    t_start = time.time()
    campaign("resume")
    mid_scrape, final = None, None
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            text = http_get(metrics_url)
        except OSError:
            time.sleep(0.1)
            continue
        queue = scrape_values(text, "salvo_queue_recipients")
        done = sum(v for k, v in queue.items() if 'campaign="e2e"' in k and
                   ('state="delivered"' in k or 'state="bounced"' in k))
        pending = sum(v for k, v in queue.items() if 'campaign="e2e"' in k and
                      any(f'state="{s}"' in k for s in ("queued", "in_flight", "deferred")))
        if mid_scrape is None and 0 < done and pending > 0:
            mid_scrape = text
        if queue and pending == 0 and done == N:
            final = text
            break
        time.sleep(0.2)
    t_end = time.time()
    check(final is not None, f"the campaign finished within 180 s ({t_end - t_start:.1f} s)")
    if final is None:
        return
    # Let Prometheus scrape the final state and evaluate the rules on it.
    for _ in range(100):
        if prom.value('sum(salvo_queue_recipients{campaign="e2e",state=~"delivered|bounced"})') == N:
            break
        time.sleep(0.1)
    time.sleep(3)

    # ---- a scrape taken during the campaign passes promtool ----
    check(mid_scrape is not None, "a scrape was taken while the campaign was sending")
    if mid_scrape:
        r = subprocess.run(["promtool", "check", "metrics"], input=mid_scrape, capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 0, f"promtool check metrics on a mid-campaign scrape: exit "
                                 f"{r.returncode} {r.stdout}{r.stderr}")

    # ---- counters = the sink's counts, exactly ----
    sink = json.loads(pathlib.Path(tmp / "sink.json").read_text())
    delivered = prom.value("sum(salvo_recipients_delivered_total)")
    deferred = prom.value("sum(salvo_recipients_deferred_total)")
    bounced = prom.value("sum(salvo_recipients_bounced_total)")
    check(delivered == sink["recipients_delivered"],
          f"delivered {delivered} = sink {sink['recipients_delivered']}")
    check(deferred == sink["recipients_deferred"],
          f"deferred {deferred} = sink {sink['recipients_deferred']}")
    check(bounced == sink["recipients_bounced"],
          f"bounced {bounced} = sink {sink['recipients_bounced']}")
    states = prom.vector('sum by (state) (salvo_queue_recipients{campaign="e2e"})', "state")
    check(states.get("delivered") == sink["recipients_delivered"] and
          states.get("bounced") == sink["recipients_bounced"],
          f"queue gauge delivered {states.get('delivered')}, bounced {states.get('bounced')} = sink")
    check(prom.value('count(salvo_queue_recipients{campaign="e2e"})') is not None,
          'salvo_queue_recipients carries campaign="e2e"')

    # ---- ratios within sampling error ----
    attempts = (delivered or 0) + (deferred or 0) + (bounced or 0)

    def near(got, p, n, what):
        tol = 4 * math.sqrt(p * (1 - p) / max(n, 1))
        check(got is not None and abs(got - p) <= tol,
              f"{what} = {got if got is None else round(got, 4)} within {p} +- {tol:.4f} (n={n:.0f})")

    near((bounced or 0) / attempts if attempts else None, BOUNCE, attempts, "bounce ratio (counters)")
    near((deferred or 0) / attempts if attempts else None, DEFER, attempts, "deferral ratio (counters)")
    # The recording rules over their 5 m window: the whole campaign is in it
    # (rate() extrapolation at the window edges: a little more slack).
    for record, p in (("salvo:bounce_rate:ratio_rate5m", BOUNCE),
                      ("salvo:deferral_rate:ratio_rate5m", DEFER)):
        got = prom.value(f'{record}{{by="total"}}')
        tol = 4 * math.sqrt(p * (1 - p) / max(attempts, 1)) + 0.005
        check(got is not None and abs(got - p) <= tol,
              f"{record}{{by=\"total\"}} = {got} within {p} +- {tol:.4f}")

    # ---- every rule healthy, every expression evaluates ----
    rules = prom.api("rules")
    groups = rules.get("data", {}).get("groups", [])
    all_rules = [r for g in groups for r in g["rules"]]
    check(len(all_rules) == len(px.rule_exprs()), f"Prometheus loaded all {len(all_rules)} rules")
    for r in all_rules:
        check(r.get("health") == "ok" and not r.get("lastError"),
              f"rule {r['name']}: health {r.get('health')} {r.get('lastError', '')}")
    for name, expr in px.rule_exprs():
        res = prom.query(expr)
        check(res.get("status") == "success", f"rule expression {name} evaluates: {res.get('error', '')}")

    d = px.load_dashboard()
    window = {"start": f"{t_start - 5:.3f}", "end": f"{time.time():.3f}", "step": "1"}
    data_panels = {"Bounce rate by domain", "Deferral rate by domain", "Bounce rate by category",
                   "Deferral rate by category", "Bounce rate", "Deferral rate"}
    returned = set()
    for title, ref, expr in px.dashboard_exprs(d, {"__rate_interval": RATE_INTERVAL,
                                                   "__range": f"{int(time.time() - t_start) + 10}s"}):
        res = prom.query(expr)
        ok = res.get("status") == "success"
        rng = prom.api("query_range", query=expr, **window)
        ok = ok and rng.get("status") == "success"
        check(ok, f"dashboard {title!r} {ref} evaluates: {res.get('error', '')}{rng.get('error', '')}")
        if ok and any(s.get("values") for s in rng["data"]["result"]):
            returned.add(title)
    for title in sorted(data_panels):
        check(title in returned, f"dashboard panel {title!r} returns data")
    campaigns = prom.vector("count by (campaign) (salvo_queue_recipients)", "campaign")
    check("e2e" in campaigns, "the `campaign` variable (label_values(salvo_queue_recipients, campaign)) offers e2e")

    # Every metric the dashboard and rules read exists in Salvo's scrape.
    used = set()
    for _, _, e in px.dashboard_exprs(d):
        used |= px.metric_names(e)
    for _, e in px.rule_exprs():
        used |= px.metric_names(e)
    # The throttle gauges have samples only while a shaping key is shown
    # (named in the shaping file, throttled or suspended); this run has none.
    not_yet = {"salvo_throttle_message_rate_limit", "salvo_throttle_connection_limit",
               "salvo_throttle_suspended", "salvo_throttle_suspended_keys"}
    for name in sorted(used - not_yet):
        check(f"# TYPE {name} " in final, f"metric {name} is in Salvo's scrape")

    wired_checks(prom, sink, final, log_path, attempts)
    status_checks(sink, config)
    recipient_checks(config, log_path)
    export_checks(sink, config)


def status_checks(sink, config):
    """`salvo campaign status` (through the running engine's admin socket)
    gives the sink's numbers per domain, and the bounce reasons."""
    r = subprocess.run([SALVO, "campaign", "status", "e2e", "--top", "50", "--json", "--config",
                        str(config)], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, f"campaign status --json: {r.stderr.strip()}")
    if r.returncode != 0:
        return
    st = json.loads(r.stdout)
    rows = {d["domain"]: d for d in st["top_domains"]}
    check(set(rows) == set(sink["domains"]) and "other_domains" not in st,
          f"status lists every domain: {sorted(rows)}")
    for domain, c in sink["domains"].items():
        d = rows.get(domain, {})
        got = (d.get("deliveries"), d.get("deferrals"), d.get("bounces"), d.get("attempts"))
        want = (c["delivered"], c["deferred"], c["bounced"],
                c["delivered"] + c["deferred"] + c["bounced"])
        check(got == want, f"status {domain}: deliveries, deferrals, bounces, attempts {got} = sink {want}")
        n = want[3]
        check(n > 0 and abs(d.get("bounce_rate", -1) - c["bounced"] / n) < 1e-9 and
              abs(d.get("deferral_rate", -1) - c["deferred"] / n) < 1e-9,
              f"status {domain}: rates of attempts")
    reasons = {x["category"]: x for x in st.get("bounce_reasons", [])}
    bad = reasons.get("bad-mailbox", {})
    check(bad.get("count") == sink["recipients_bounced"] and bad.get("sample", "").startswith("550 5.1.1"),
          f"bounce reasons: bad-mailbox {bad} for the sink's {sink['recipients_bounced']} bounces")
    text = subprocess.run([SALVO, "campaign", "status", "e2e", "--config", str(config)],
                          capture_output=True, text=True, timeout=60).stdout
    print(text)
    check("top bounce reasons" in text and "bad-mailbox" in text and "gmail.com" in text,
          "campaign status prints the reasons and the domains")


def recipient_checks(config, log_path):
    """`salvo recipient show` gives every attempt of an address as the
    delivery log recorded it, and the suppression entry of a bad mailbox."""
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    by_rcpt = {}
    for t in lines:
        by_rcpt.setdefault(t["recipient"], []).append(t)
    bounced = next(r for r, ts in by_rcpt.items() if ts[-1]["type"] == "bounced")
    retried = next((r for r, ts in by_rcpt.items()
                    if [t["type"] for t in ts] == ["deferred", "delivered"]), None)

    def show(email):
        r = subprocess.run([SALVO, "recipient", "show", email.upper(), "--json", "--config",
                            str(config)], capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"recipient show {email}: {r.stderr.strip()}")
        return json.loads(r.stdout) if r.returncode == 0 else {}

    out = show(bounced)
    recs = out.get("recipients", [])
    check(len(recs) == 1 and recs[0]["state"] == "bounced" and recs[0]["campaign"] == "e2e",
          f"recipient show {bounced} (asked in upper case): one bounced recipient: {recs}")
    if recs:
        last = recs[0]["history"][-1]
        check(last["reply"].startswith("550 5.1.1") and last["enhanced_code"] == "5.1.1" and
              last["category"] == "bad-mailbox" and last["scope"] == "recipient" and
              "127.0.0.1" in last["host"], f"the bounce attempt: {last}")
    sup = out.get("suppression") or {}
    check(sup.get("reason", "").startswith("bounce: 550 5.1.1"), f"its suppression entry: {sup}")
    check(retried is not None, "a recipient deferred once, then delivered")
    if retried:
        recs = show(retried).get("recipients", [])
        hist = recs[0]["history"] if recs else []
        check(len(recs) == 1 and recs[0]["attempts"] == 2 and
              [h["to"] for h in hist] == ["deferred", "delivered"] and
              hist[0]["reply"].startswith("4") and hist[0]["scope"] != "",
              f"recipient show {retried}: deferred then delivered: {recs}")
    text = subprocess.run([SALVO, "recipient", "show", bounced, "--config", str(config)],
                          capture_output=True, text=True, timeout=60).stdout
    print(text)
    check("suppressed since" in text and "550 5.1.1" in text, "recipient show prints the attempts")


def export_checks(sink, config):
    """`salvo campaign export` streams every recipient; its states equal the sink's counts."""
    import csv
    import io
    r = subprocess.run([SALVO, "campaign", "export", "e2e", "--config", str(config)],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, f"campaign export (csv): {r.stderr.strip()}")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    states = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    check(len(rows) == N and states.get("delivered") == sink["recipients_delivered"] and
          states.get("bounced") == sink["recipients_bounced"],
          f"export: {len(rows)} rows, states {states} = sink delivered "
          f"{sink['recipients_delivered']}, bounced {sink['recipients_bounced']}")
    bad = [row for row in rows if row["state"] == "bounced"]
    check(all(row["category"] == "bad-mailbox" and row["last_reply"].startswith("550 5.1.1")
              for row in bad), "exported bounces carry their category and reply")
    j = subprocess.run([SALVO, "campaign", "export", "e2e", "--state", "bounced", "--format",
                        "jsonl", "--config", str(config)], capture_output=True, text=True,
                       timeout=120)
    lines = [json.loads(x) for x in j.stdout.splitlines()]
    check(j.returncode == 0 and len(lines) == sink["recipients_bounced"] and
          all(x["state"] == "bounced" for x in lines),
          f"export --state bounced --format jsonl: {len(lines)} lines {j.stderr.strip()}")
    bad_state = subprocess.run([SALVO, "campaign", "export", "e2e", "--state", "bogus",
                                "--config", str(config)], capture_output=True, text=True,
                               timeout=60)
    check(bad_state.returncode != 0 and "unknown state 'bogus'" in bad_state.stderr,
          f"an unknown state is an error: {bad_state.stderr.strip()}")


def wired_checks(prom, sink, final, log_path, attempts):
    """The acceptance checks that need the engine to count with labels."""
    # Per domain label: counters equal the sink's per-domain counts exactly.
    expected = {}
    for domain, c in sink["domains"].items():
        label = domain if domain in LISTED else "other"
        e = expected.setdefault(label, {"delivered": 0, "deferred": 0, "bounced": 0})
        for k in e:
            e[k] += c[k]
    for family in ("delivered", "deferred", "bounced"):
        got = prom.vector(f"sum by (domain) (salvo_recipients_{family}_total)", "domain")
        want = {d: e[family] for d, e in expected.items() if e[family]}
        check(got == want, f"{family} by domain {got} = sink {want}")
    got_c = prom.vector("sum by (campaign) (salvo_recipients_delivered_total)", "campaign")
    check(set(got_c) == {"e2e"}, f"campaign label on the counters: {got_c}")
    # Ratios per domain, from the counters and from the recording rules.
    for domain, e in expected.items():
        n = e["delivered"] + e["deferred"] + e["bounced"]
        for family, p, record in (("bounced", BOUNCE, "salvo:bounce_rate:ratio_rate5m"),
                                  ("deferred", DEFER, "salvo:deferral_rate:ratio_rate5m")):
            tol = 4 * math.sqrt(p * (1 - p) / n)
            check(abs(e[family] / n - p) <= tol, f"{domain} {family} ratio {e[family] / n:.4f} ~ {p}")
            got = prom.value(f'{record}{{by="domain",domain="{domain}"}}')
            check(got is not None and abs(got - p) <= tol + 0.005, f"{record} {domain} = {got}")
    # Categories: the sink bounces with 550 5.1.1 and defers with 450/451.
    cats = prom.vector("sum by (category) (salvo_recipients_bounced_total)", "category")
    check(set(cats) == {"bad-mailbox"}, f"bounce categories {cats}")
    # The delivery log's lines equal the counters exactly.
    counts = {}
    for line in log_path.read_text().splitlines():
        t = json.loads(line)["type"]
        counts[t] = counts.get(t, 0) + 1
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    delivered = next((t for t in lines if t["type"] == "delivered"), {})
    check(delivered.get("campaign") == "e2e" and delivered.get("mx_ip") == "127.0.0.1" and
          delivered.get("code") == 250 and delivered.get("size", 0) > 0 and
          delivered.get("attempt", 0) >= 1 and delivered.get("recipient", "").endswith(
              "@" + delivered.get("domain", "?")),
          f"a delivered line has campaign, MX IP, reply code, size, attempt: {delivered}")
    bounced = next((t for t in lines if t["type"] == "bounced"), {})
    check(bounced.get("code") == 550 and bounced.get("enhanced_code") == "5.1.1" and
          bounced.get("category") == "bad-mailbox",
          f"a bounced line has the reply and its category: {bounced}")
    check((prom.value("sum(salvo_dns_lookups_total)") or 0) >= N, "a DNS look-up per job")
    check(counts.get("delivered") == sink["recipients_delivered"] and
          counts.get("deferred") == sink["recipients_deferred"] and
          counts.get("bounced") == sink["recipients_bounced"],
          f"delivery log lines by type {counts} = sink counts")
    # Histograms and connections.
    check((prom.value("sum(salvo_smtp_transaction_seconds_count)") or 0) > 0, "SMTP transaction times")
    check(prom.value("sum(salvo_delivery_latency_seconds_count)") ==
          sink["recipients_delivered"] + sink["recipients_bounced"],
          "one delivery latency per final outcome")
    check(prom.value('sum(salvo_smtp_sessions_opened_total{domain!=""})') == sink["connections"],
          "connections opened by domain = the sink's connections")
    # The resource caps' gauges (delivery.max_connections, max_composed_bytes).
    for name, kind in (("salvo_delivery_connections", "gauge"),
                       ("salvo_delivery_connection_waits_total", "counter"),
                       ("salvo_delivery_composed_bytes", "gauge"),
                       ("salvo_delivery_compose_waits_total", "counter")):
        check(f"# TYPE {name} {kind}" in final, f"{name} is in Salvo's scrape")
    check((prom.value("max_over_time(salvo_delivery_connections[1h])") or 0) >= 1,
          "salvo_delivery_connections counted an open connection during the run")


if __name__ == "__main__":
    main()
