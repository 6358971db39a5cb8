#!/usr/bin/env python3
"""deploy/grafana: the dashboard is Grafana 9+ JSON with the datasource as a
variable and `domain`/`campaign` template variables, has the panels the issue
asks for, every PromQL expression in it (variables substituted) parses with
promtool, every salvo_* metric it or the rules read is documented in README.md,
and the provisioning files are well formed."""
import pathlib
import sys

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import promql_exprs as px  # noqa: E402

errors = []


def check(cond, what):
    if not cond:
        errors.append(what)


d = px.load_dashboard()
check(d.get("schemaVersion", 0) >= 36, "schemaVersion must be 36 (Grafana 9.0) or later")
check(d.get("uid") and d.get("title"), "uid and title")
variables = {v["name"]: v for v in d["templating"]["list"]}
ds = variables.get("datasource", {})
check(ds.get("type") == "datasource" and ds.get("query") == "prometheus",
      "a `datasource` variable of type datasource, query prometheus")
for name in ("domain", "campaign"):
    v = variables.get(name, {})
    check(v.get("type") == "query" and v.get("multi") and v.get("includeAll")
          and v.get("allValue") == ".*", f"`{name}` variable: query, multi, include All (.*)")
    check(v.get("datasource", {}).get("uid") == "${datasource}", f"`{name}` variable uses ${{datasource}}")

all_panels = px.panels(d)
ids = [p["id"] for p in d["panels"]] + [p["id"] for p in all_panels if p not in d["panels"]]
check(len(ids) == len(set(ids)), "panel ids are unique")
cells = set()
for p in d["panels"]:
    g = p["gridPos"]
    check(0 <= g["x"] and g["x"] + g["w"] <= 24, f"panel {p['title']!r} fits the 24-column grid")
    for cx in range(g["x"], g["x"] + g["w"]):
        for cy in range(g["y"], g["y"] + g["h"]):
            check((cx, cy) not in cells, f"panel {p['title']!r} overlaps another at {(cx, cy)}")
            cells.add((cx, cy))
for p in all_panels:
    check(p.get("datasource") == {"type": "prometheus", "uid": "${datasource}"},
          f"panel {p['title']!r}: datasource is the variable")
    refs = [t["refId"] for t in p.get("targets", [])]
    check(refs and len(refs) == len(set(refs)), f"panel {p['title']!r}: targets with unique refIds")
    for t in p.get("targets", []):
        check(t.get("datasource", {}).get("uid") == "${datasource}",
              f"panel {p['title']!r} {t['refId']}: target datasource is the variable")
        check(bool(t.get("expr", "").strip()), f"panel {p['title']!r} {t['refId']}: an expression")

titles = [p["title"] for p in all_panels]
for required in ("Bounce rate by domain", "Deferral rate by domain", "Bounce rate by category",
                 "Deferral rate by category", "Deliveries per second by domain",
                 "Queue depth by state", "Open connections by domain",
                 "Throttle: message rate now allowed", "Throttle: connections now allowed",
                 "Suspended destinations", "Delivery latency (first attempt to final outcome)",
                 "SMTP transaction time", "DKIM signing time", "DNS lookup time"):
    check(required in titles, f"a panel titled {required!r}")

try:
    exprs = px.dashboard_exprs(d)
except KeyError as e:
    exprs = []
    errors.append(f"a dashboard expression uses an unknown variable: {e}")
var_exprs = px.variable_exprs(d)
rules = px.rule_exprs()
all_exprs = [e for _, _, e in exprs] + [e for _, _, e in var_exprs] + [e for _, e in rules]
ok, out = px.promtool_parse(all_exprs)
if not ok:
    errors.append("promtool cannot parse every expression:\n" + out)
    for i, e in enumerate(all_exprs):
        print(f"expr_{i}: {e}")

readme = (px.ROOT / "README.md").read_text()
used = set()
for e in all_exprs:
    used |= px.metric_names(e)
for name in sorted(used):
    check(f"`{name}`" in readme, f"metric {name} (read by the dashboard or rules) is documented in README.md")

for f in ("datasources/salvo.yml", "dashboards/salvo.yml"):
    doc = yaml.safe_load((px.ROOT / "deploy" / "grafana" / "provisioning" / f).read_text())
    check(doc.get("apiVersion") == 1, f"provisioning/{f}: apiVersion 1")
    key = "datasources" if f.startswith("datasources") else "providers"
    check(isinstance(doc.get(key), list) and doc[key], f"provisioning/{f}: {key}")
src = yaml.safe_load((px.ROOT / "deploy/grafana/provisioning/datasources/salvo.yml").read_text())
check(src["datasources"][0]["type"] == "prometheus", "the provisioned datasource is Prometheus")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"dashboard: {len(all_panels)} panels, {len(exprs)} expressions, {len(var_exprs)} variable "
      f"queries and {len(rules)} rules parse; {len(used)} metrics documented")
