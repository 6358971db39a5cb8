#!/usr/bin/env python3
"""deploy/prometheus is valid and tested: promtool accepts the scrape config and
the rule file (lint included), `promtool test rules` passes, and every alert of
rules.yml has at least one test case where it fires and one where it stays quiet."""
import pathlib
import shutil
import subprocess
import sys

import yaml

here = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parents[2] / "deploy" / "prometheus")
promtool = shutil.which("promtool")
if not promtool:
    print("promtool not found: install Debian's `prometheus` package (deploy/bootstrap.sh test)")
    sys.exit(1)

failed = False
for args in (["check", "config", "prometheus.yml"], ["check", "rules", "rules.yml"],
             ["test", "rules", "rules_test.yml"]):
    r = subprocess.run([promtool, *args], cwd=here, capture_output=True, text=True, timeout=120)
    print(f"promtool {' '.join(args)}: exit {r.returncode}")
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        failed = True

rules = yaml.safe_load((here / "rules.yml").read_text())
alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
tests = yaml.safe_load((here / "rules_test.yml").read_text())["tests"]
fires, quiet = set(), set()
for t in tests:
    for a in t.get("alert_rule_test", []):
        (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
for name in alerts:
    if name not in fires:
        print(f"alert {name} has no test case where it fires")
        failed = True
    if name not in quiet:
        print(f"alert {name} has no test case where it stays quiet")
        failed = True
print(f"{len(alerts)} alerts, each tested firing and quiet" if not failed else "FAILED")
sys.exit(1 if failed else 0)
