"""PromQL expressions shipped in deploy/: the Grafana dashboard's (with its
variables substituted) and the Prometheus rules'. Shared by
grafana_dashboard_test.py and tests/integration/prometheus_e2e.py."""
import json
import pathlib
import re
import subprocess
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "salvo.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"

# What Grafana puts in place of its variables: "All" for the template
# variables (their allValue), and intervals as Grafana computes them for a
# 15 s scrape interval over a 6 h range (callers may override).
STATIC_SUBSTITUTIONS = {
    "domain": ".*",
    "campaign": ".*",
    "datasource": "salvo-prometheus",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "6h",
}

VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def substitute(expr, values):
    """Replaces $var, ${var}, ${var:fmt} and [[var]]; raises KeyError for an unknown one."""
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return values[name]
    return VARIABLE.sub(repl, expr)


def load_dashboard(path=DASHBOARD):
    return json.loads(pathlib.Path(path).read_text())


def panels(dashboard):
    """Every panel, rows' nested panels included (rows themselves excluded)."""
    out = []
    for p in dashboard["panels"]:
        if p["type"] == "row":
            out.extend(p.get("panels", []))
        else:
            out.append(p)
    return out


def dashboard_exprs(dashboard, values=None):
    """[(panel title, refId, expression with variables substituted)]."""
    values = dict(STATIC_SUBSTITUTIONS, **(values or {}))
    out = []
    for p in panels(dashboard):
        for t in p.get("targets", []):
            out.append((p["title"], t["refId"], substitute(t["expr"], values)))
    return out


def variable_exprs(dashboard):
    """The series selectors of the template variables' label_values(METRIC, LABEL) queries."""
    out = []
    for v in dashboard["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q.strip())
        if not m:
            raise ValueError(f"variable {v['name']}: unsupported query {q!r}")
        out.append((f"variable {v['name']}", m.group(2), m.group(1)))
    return out


def rule_exprs(path=RULES):
    """[(record or alert name, expression)]."""
    doc = yaml.safe_load(pathlib.Path(path).read_text())
    return [(r.get("record") or r.get("alert"), r["expr"])
            for g in doc["groups"] for r in g["rules"]]


def promtool_parse(exprs):
    """Parses every expression with `promtool check rules` (each one a
    recording rule of its own); returns (ok, promtool output)."""
    rules = {"groups": [{"name": "parse", "rules": [
        {"record": f"parse:expr_{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        yaml.safe_dump(rules, f)
        f.flush()
        r = subprocess.run(["promtool", "check", "rules", "--lint=none", f.name],
                           capture_output=True, text=True, timeout=120)
    return r.returncode == 0, r.stdout + r.stderr


def metric_names(expr):
    """salvo_* metric names an expression reads (histogram suffixes removed)."""
    names = set(re.findall(r"\bsalvo_[a-z0-9_]+", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", n) if n.endswith(("_bucket",)) else n for n in names}
