#!/usr/bin/python3
"""The fleet manifests stay valid and agree with Salvo's configuration
(issue 18): deploy/Containerfile, deploy/compose.yaml, deploy/k8s/.

- compose: `docker-compose config -q` accepts it (when installed); N salvo
  services with the shares 0/N .. N-1/N, each with its own spool volume, the
  seccomp profile, a stop grace period above delivery.shutdown_deadline, the
  health check `salvo health`, the admin token secret; Prometheus loads
  deploy/prometheus/rules.yml and scrapes every node on its metrics port;
  Grafana gets the dashboard and its provisioning; Redis is there; every
  file it mounts exists; the node configuration is accepted by the real
  `salvo` (strict parser) with the node's environment applied.
- k8s: `kubectl kustomize` builds it (when kubectl is installed); a
  StatefulSet with a volume claim mounted at the ConfigMap's data_dir, a
  headless Service named by serviceName, ConfigMap with salvo.toml (accepted
  by `salvo`) and shaping.toml, Secret with the admin token, unsubscribe,
  VERP and DKIM entries, a PodDisruptionBudget selecting the pods, requests
  and limits, probes running `salvo health`, scrape annotations on the
  metrics port, terminationGracePeriodSeconds >= shutdown_deadline, the
  seccomp profile, a non-root user equal to the image's, SALVO_NODE=auto/N
  with N = replicas.
- Containerfile: two stages on the local Debian 12 base, the build stage
  runs deploy/bootstrap.sh, the runtime stage runs as uid 10001 with the
  spool volume at the baked configuration's data_dir, HEALTHCHECK salvo
  health, STOPSIGNAL SIGTERM.

Usage: manifests_test.py PATH/TO/salvo
"""
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

SALVO = sys.argv[1]
ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECCOMP = (DEPLOY / "seccomp-salvo.json").resolve()
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def seconds(text):
    """Compose/Salvo durations: 45s, 1m30s, 30, "250ms"."""
    if isinstance(text, (int, float)):
        return float(text)
    total, found = 0.0, False
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?", str(text)):
        found = True
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}[unit]
    assert found, f"not a duration: {text}"
    return total


def salvo_accepts(config_text, env, what):
    """The real strict parser (and the environment overrides) accept it."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="salvo-manifest-"))
    try:
        cfg = tmp / "salvo.toml"
        cfg.write_text(config_text)
        run_env = {k: v for k, v in os.environ.items() if not k.startswith("SALVO_")}
        run_env.update(env)
        run_env["SALVO_DATA_DIR"] = str(tmp / "data")  # never touch the real path
        r = subprocess.run([SALVO, "campaign", "list", "--config", str(cfg), "--json"],
                           capture_output=True, text=True, timeout=60, env=run_env)
        # No spool there yet: "not found" means the configuration was accepted.
        ok = r.returncode == 0 or "load a campaign first" in r.stderr
        check(ok, f"{what}: salvo accepts the configuration {r.stderr.strip()}")
        return tomllib.loads(config_text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def shutdown_deadline(cfg):
    return seconds(cfg.get("delivery", {}).get("shutdown_deadline", "30s"))


def metrics_port(cfg, env):
    listen = env.get("SALVO_METRICS_LISTEN") or cfg.get("metrics", {}).get("listen", "127.0.0.1:9465")
    return int(listen.rsplit(":", 1)[1])


# ---------------------------------------------------------------- Containerfile
def containerfile():
    text = (DEPLOY / "Containerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M)
    check(len(stages) == 2, f"Containerfile: two stages ({len(stages)})")
    check("./deploy/bootstrap.sh build" in text, "build stage runs deploy/bootstrap.sh build")
    check(re.search(r"^ARG BASE=localhost/salvo-debian:bookworm", text, re.M) is not None,
          "base: the locally made Debian 12 image")
    runtime = text[text.rfind("\nFROM "):]
    check("bootstrap.sh" not in runtime and "build-essential" not in runtime,
          "runtime stage installs no build tools")
    user = re.search(r"^USER (\d+)(?::(\d+))?", runtime, re.M)
    check(user is not None and user.group(1) != "0", "runtime runs as a non-root uid")
    baked = tomllib.loads((DEPLOY / "container" / "salvo.toml").read_text())
    salvo_accepts((DEPLOY / "container" / "salvo.toml").read_text(), {}, "image salvo.toml")
    vol = re.search(r'^VOLUME \["([^"]+)"\]', runtime, re.M)
    check(vol is not None and vol.group(1) == baked["data_dir"],
          f"the spool volume is the baked data_dir ({vol and vol.group(1)})")
    check(re.search(r'^ENV SALVO_DATA_DIR=' + re.escape(baked["data_dir"]), runtime, re.M) is not None,
          "SALVO_DATA_DIR points at the volume")
    check(re.search(r'HEALTHCHECK .*\n?.*"salvo", "health"', runtime) is not None or
          '"/usr/local/bin/salvo", "health"' in runtime, "HEALTHCHECK runs salvo health")
    check(re.search(r"^STOPSIGNAL SIGTERM", runtime, re.M) is not None, "STOPSIGNAL SIGTERM")
    check("deploy/container/salvo.toml" in runtime, "the image carries a default configuration")
    return int(user.group(1)) if user else None


# ---------------------------------------------------------------- compose
def compose(image_uid):
    path = DEPLOY / "compose.yaml"
    if shutil.which("docker-compose"):
        # From deploy/, as its header says: the seccomp path is read relative
        # to the working directory.
        r = subprocess.run(["docker-compose", "-f", str(path), "config", "-q"], capture_output=True,
                           text=True, timeout=60, cwd=DEPLOY)
        check(r.returncode == 0, f"docker-compose config -q accepts compose.yaml {r.stderr.strip()}")
        check("ignored" not in r.stderr, f"docker-compose ignores nothing {r.stderr.strip()}")
    else:
        print("skip docker-compose config: docker-compose not installed")
    doc = yaml.safe_load(path.read_text())
    services = doc["services"]
    nodes = {n: s for n, s in services.items() if s.get("command", [None])[0] == "run"}
    n = len(nodes)
    check(n >= 2, f"compose: {n} salvo nodes")
    shares = sorted(s["environment"]["SALVO_NODE"] for s in nodes.values())
    check(shares == sorted(f"{i}/{n}" for i in range(n)), f"shares 0/{n} .. {n - 1}/{n}: {shares}")
    spools = set()
    for name, s in nodes.items():
        env = {k: str(v) for k, v in s["environment"].items()}
        mounts = {v.split(":")[1]: v.split(":")[0] for v in s["volumes"]}
        cfg_src = mounts.get("/etc/salvo/salvo.toml")
        check(cfg_src is not None, f"{name}: configuration mounted at /etc/salvo/salvo.toml")
        cfg_text = (DEPLOY / cfg_src).read_text()
        cfg = salvo_accepts(cfg_text, {k: v for k, v in env.items() if k != "SALVO_ADMIN_TOKEN_FILE"},
                            f"compose {name}")
        data_dir = cfg.get("data_dir")
        check(data_dir in mounts and not mounts[data_dir].startswith("."),
              f"{name}: a named volume at data_dir {data_dir}")
        spools.add(mounts.get(data_dir))
        for dst, src in mounts.items():
            if src.startswith("."):
                check((DEPLOY / src).exists(), f"{name}: mounted {src} exists")
        seccomp = [o for o in s.get("security_opt", []) if o.startswith("seccomp=")]
        check(len(seccomp) == 1 and (DEPLOY / seccomp[0].split("=", 1)[1]).resolve() == SECCOMP,
              f"{name}: seccomp profile deploy/seccomp-salvo.json")
        grace = seconds(s.get("stop_grace_period", "10s"))
        check(grace > shutdown_deadline(cfg),
              f"{name}: stop_grace_period {grace:.0f}s > shutdown_deadline {shutdown_deadline(cfg):.0f}s")
        check(s.get("stop_signal", "SIGTERM") == "SIGTERM", f"{name}: stops with SIGTERM")
        hc = s.get("healthcheck", {}).get("test", [])
        check("health" in hc and any(x.endswith("salvo") for x in hc), f"{name}: healthcheck salvo health")
        check(env.get("SALVO_ADMIN_LISTEN", "").endswith(":9470") and
              env.get("SALVO_ADMIN_TOKEN_FILE") in [x["target"] for x in s.get("secrets", [])],
              f"{name}: admin listener with the token secret")
        check(s.get("image", "").endswith("salvo:latest}") or "salvo" in s.get("image", ""),
              f"{name}: the Salvo image")
    check(len(spools) == n, "each node has its own spool volume")
    for sec in doc.get("secrets", {}).values():
        check(sec["file"].startswith("./compose/"), "the token secret lives under deploy/compose")

    check("redis" in services, "compose: Redis")
    check("sink" in services and services["sink"]["command"][0] == "sink", "compose: the sink")
    # every node's route goes to the sink service
    cfg = tomllib.loads((DEPLOY / "compose" / "salvo.toml").read_text())
    sink_listen = services["sink"]["command"][services["sink"]["command"].index("--listen") + 1]
    check(cfg.get("routes", {}).get("*") == "sink:" + sink_listen.rsplit(":", 1)[1],
          "the nodes route everything to the sink")

    prom = services["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    check((DEPLOY / mounts.get("/etc/prometheus/rules.yml", "x")).resolve() ==
          (DEPLOY / "prometheus" / "rules.yml").resolve(), "Prometheus loads deploy/prometheus/rules.yml")
    pcfg = yaml.safe_load((DEPLOY / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    check("/etc/prometheus/rules.yml" in pcfg["rule_files"], "prometheus.yml names the rules")
    targets = {t for sc in pcfg["scrape_configs"] for st in sc["static_configs"] for t in st["targets"]}
    want = {f"{name}:{metrics_port(cfg, {k: str(v) for k, v in s['environment'].items()})}"
            for name, s in nodes.items()}
    check(targets == want, f"Prometheus scrapes every node: {sorted(targets)}")

    graf = services["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in graf["volumes"]}
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/salvo.yml").read_text())
    dash_path = prov["providers"][0]["options"]["path"]
    check((DEPLOY / mounts.get(dash_path, "x")).resolve() == (DEPLOY / "grafana/dashboards").resolve(),
          "Grafana: the dashboards at the provisioned path")
    ds = [yaml.safe_load((DEPLOY / src).read_text()) for dst, src in mounts.items()
          if "/provisioning/datasources/" in dst]
    check(len(ds) == 1 and ds[0]["datasources"][0]["url"] == "http://prometheus:9090" and
          ds[0]["datasources"][0]["uid"] == "salvo-prometheus",
          "Grafana: the datasource is the stack's Prometheus, with the dashboard's uid")


# ---------------------------------------------------------------- k8s
def k8s(image_uid):
    kdir = DEPLOY / "k8s"
    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", str(kdir)], capture_output=True, text=True,
                           timeout=60)
        check(r.returncode == 0, f"kubectl kustomize builds deploy/k8s {r.stderr.strip()}")
    else:
        print("skip kubectl kustomize: kubectl not installed")
    docs = []
    for f in sorted(kdir.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                check(all(k in d for k in ("apiVersion", "kind", "metadata")) and
                      "name" in d["metadata"], f"{f.name}: apiVersion, kind, metadata.name")
                docs.append(d)
    kust = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    check(sorted(kust["resources"]) == sorted(f.name for f in kdir.glob("*.yaml")
                                              if f.name != "kustomization.yaml"),
          "kustomization lists every manifest")
    by = {}
    for d in docs:
        by.setdefault(d["kind"], []).append(d)
    kinds = ("StatefulSet", "Service", "ConfigMap", "Secret", "PodDisruptionBudget")
    for kind in kinds:
        check(len(by.get(kind, [])) == 1, f"k8s: one {kind}")
    if any(len(by.get(kind, [])) != 1 for kind in kinds):
        return
    sts, svc, cm, secret, pdb = (by[k][0] for k in ("StatefulSet", "Service", "ConfigMap", "Secret",
                                                     "PodDisruptionBudget"))
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
          "StatefulSet selector matches its pods")
    check(svc["spec"].get("clusterIP") == "None" and spec["serviceName"] == svc["metadata"]["name"],
          "headless Service named by serviceName")
    check(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selects the pods")
    check(all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()) and
          ("maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]),
          "PodDisruptionBudget selects the pods")
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    cfg = salvo_accepts(cm["data"]["salvo.toml"],
                        {k: v for k, v in env.items() if v is not None and k not in
                         ("SALVO_ADMIN_TOKEN_FILE", "SALVO_NODE")}, "k8s ConfigMap salvo.toml")
    check("shaping.toml" in cm["data"], "ConfigMap carries shaping.toml")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    shaping = cfg.get("shaping_file")
    check(shaping is None or (shaping in mounts and mounts[shaping].get("subPath") == "shaping.toml"),
          "shaping_file is the mounted shaping.toml")
    claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
    check(cfg["data_dir"] in mounts and mounts[cfg["data_dir"]]["name"] in claims,
          f"a persistent volume per pod at data_dir {cfg['data_dir']}")
    check(mounts.get("/etc/salvo/salvo.toml", {}).get("subPath") == "salvo.toml", "salvo.toml mounted")
    sec_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    check("admin-token" in sec_keys and "unsubscribe-secret" in sec_keys and "verp-secret" in sec_keys
          and any(k.startswith("dkim") for k in sec_keys),
          f"Secret: admin token, unsubscribe, VERP, DKIM ({sorted(sec_keys)})")
    secret_mount = [m for m in c["volumeMounts"]
                    if any(v["name"] == m["name"] and v.get("secret", {}).get("secretName") ==
                           secret["metadata"]["name"] for v in pod["volumes"])]
    check(len(secret_mount) == 1 and env.get("SALVO_ADMIN_TOKEN_FILE") ==
          secret_mount[0]["mountPath"] + "/admin-token", "the admin token file is the Secret's")
    res = c.get("resources", {})
    check(all(k in res.get(w, {}) for w in ("requests", "limits") for k in ("cpu", "memory")),
          "requests and limits for cpu and memory")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        cmd = c.get(probe, {}).get("exec", {}).get("command", [])
        check(len(cmd) >= 2 and cmd[0].endswith("salvo") and cmd[1] == "health", f"{probe}: salvo health")
    ann = spec["template"]["metadata"].get("annotations", {})
    port = metrics_port(cfg, {k: v for k, v in env.items() if v})
    check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port),
          f"scrape annotations on the metrics port {port}")
    check(any(p["containerPort"] == port for p in c["ports"]), "the metrics port is declared")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace >= shutdown_deadline(cfg) + 5,
          f"terminationGracePeriodSeconds {grace} covers shutdown_deadline {shutdown_deadline(cfg):.0f}s")
    sc = pod.get("securityContext", {})
    prof = sc.get("seccompProfile", {}) or c.get("securityContext", {}).get("seccompProfile", {})
    check(prof.get("type") == "Localhost" and
          prof.get("localhostProfile", "").endswith("/" + SECCOMP.name), "seccomp: deploy/seccomp-salvo.json")
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == image_uid,
          f"non-root, the image's uid {image_uid}")
    check(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
          "no privilege escalation")
    m = re.fullmatch(r"(auto|\d+)/(\d+)", env.get("SALVO_NODE") or "")
    check(m is not None and m.group(1) == "auto" and int(m.group(2)) == spec["replicas"],
          f"SALVO_NODE auto/N with N = replicas ({env.get('SALVO_NODE')}, {spec['replicas']})")


def main():
    uid = containerfile()
    compose(uid)
    k8s(uid)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("manifests: all checks passed")


if __name__ == "__main__":
    main()
