#!/usr/bin/env python3
"""Static checks of deploy/ that need no container engine (run by validate-deploy.sh).

Usage: check-deploy.py CHECK [ARGS]
  parse                       every YAML (multi-document) and JSON file under deploy/ loads
  metrics                     every ipg_* series and label in the alert rules and the
                              dashboard exists in src/ (names from src/metrics.rs, labels
                              from the metrics macros' call sites)
  dashboard-rules OUT         writes the dashboard's PromQL as recording rules to OUT (for
                              promtool check rules), Grafana variables substituted
  dashboard                   Grafana dashboard structure and datasource wiring
  k8s                         kustomization lists every manifest; names match between the
                              Deployment, the generated ConfigMap and the Secrets; the
                              example Secrets hold only CHANGE-ME placeholders; every *_env
                              of deploy/k8s/config.toml is a key of a Secret the Deployment
                              loads with envFrom, every TLS file it names a key of a Secret
                              the Deployment mounts in that file's directory
  compose                     bind mounts and build inputs exist; every *_env of the
                              mounted config is set in the service's environment
  compose-v1 OUT              writes the compose file without the top-level `name:` (which
                              docker-compose v1 predates) to OUT
  key-envs TOML               prints the environment variables a config file names
                              (api_key_env, kafka.sasl_password_env, redis.password_env),
                              one a line
  tls-files TOML              prints `IPG__SECTION__KEY PATH` for each TLS file the config
                              names (kafka.ssl_*_location, redis.*_file), one a line
Prints one "ok: ..." line per check; on failure prints the problems and exits 1.
"""

import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana/dashboards/ipg-switch.json"
ALERTS = DEPLOY / "prometheus/alerts.yml"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"

# Series Prometheus makes itself, allowed beside the switch's own.
BUILTIN_SERIES = {"up"}
# Target labels every scraped series carries.
TARGET_LABELS = {"job", "instance"}


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def die(problems):
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    sys.exit(1)


def yaml_files():
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


def load_yaml_docs(p: Path):
    with open(p, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# ---------------------------------------------------------------------------------------
def check_parse():
    problems = []
    ys = yaml_files()
    for p in ys:
        try:
            load_yaml_docs(p)
        except yaml.YAMLError as e:
            problems.append(f"{rel(p)}: not valid YAML: {e}")
    js = sorted(p for p in DEPLOY.rglob("*.json") if p.is_file())
    for p in js:
        try:
            json.loads(p.read_text(encoding="utf-8"))
        except ValueError as e:
            problems.append(f"{rel(p)}: not valid JSON: {e}")
    if problems:
        print("FAIL: YAML/JSON parse", file=sys.stderr)
        die(problems)
    print(f"ok: {len(ys)} YAML and {len(js)} JSON files under deploy/ parse")


# ---------------------------------------------------------------------------------------
def src_metrics():
    """{series name: set of labels} for every series the switch can export."""
    text = (ROOT / "src/metrics.rs").read_text(encoding="utf-8")
    consts = dict(re.findall(r'pub const ([A-Z0-9_]+): &str = "(ipg_[a-z0-9_]+)";', text))
    if not consts:
        die(["no `pub const NAME: &str = \"ipg_...\"` found in src/metrics.rs"])
    names = set(consts.values())
    labels = {n: set() for n in names}
    kinds = {}
    # Labels: every counter!/gauge!/histogram! call site in src/, `"label" => value` pairs.
    for rs in (ROOT / "src").rglob("*.rs"):
        code = rs.read_text(encoding="utf-8")
        for m in re.finditer(r"\b(counter|gauge|histogram)!\s*\(", code):
            depth, i = 1, m.end()
            while i < len(code) and depth:
                depth += {"(": 1, ")": -1}.get(code[i], 0)
                i += 1
            args = code[m.end():i - 1]
            first = args.split(",", 1)[0].strip()
            cm = re.fullmatch(r"(?:\w+::)*([A-Z0-9_]+)", first)
            lm = re.fullmatch(r'"(ipg_[a-z0-9_]+)"', first)
            name = consts.get(cm.group(1)) if cm else (lm.group(1) if lm else None)
            if name is None:
                continue
            kinds[name] = m.group(1)
            labels[name].update(re.findall(r'"([a-zA-Z_][a-zA-Z0-9_]*)"\s*=>', args))
    series = {}
    for n in names:
        # A histogram exports _bucket/_sum/_count only. The kind is the call site's macro;
        # without a call site, metrics.rs's describe() rule: `_seconds` names are histograms.
        if kinds.get(n, "histogram" if n.endswith("_seconds") else "") == "histogram":
            series[n + "_bucket"] = labels[n] | {"le"}
            series[n + "_sum"] = set(labels[n])
            series[n + "_count"] = set(labels[n])
        else:
            series[n] = set(labels[n])
    return series


SELECTOR_LABELS = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
METRIC_TOKEN = re.compile(r"(?<![A-Za-z0-9_:$.])(ipg_[a-zA-Z0-9_]+)")


def labels_in(expr: str):
    used = set()
    for braces in re.findall(r"\{([^{}]*)\}", expr):
        used.update(SELECTOR_LABELS.findall(braces))
    for group in GROUPING.findall(expr):
        used.update(x.strip() for x in group.split(",") if x.strip())
    return used


def check_expr(where: str, expr: str, series, problems, extra_labels=()):
    names = set(METRIC_TOKEN.findall(expr))
    if re.search(r"(?<![A-Za-z0-9_:])up\s*[{=<>!]", expr) or re.search(r"\bup\s*$", expr):
        names.add("up")
    unknown = sorted(n for n in names if n not in series and n not in BUILTIN_SERIES)
    for n in unknown:
        hint = ""
        if n + "_bucket" in series:
            hint = " (a histogram: use _bucket, _sum or _count)"
        problems.append(f"{where}: metric {n} does not exist in src/metrics.rs{hint}")
    known = set(TARGET_LABELS)
    for n in names:
        known |= series.get(n, set())
    for label in sorted((labels_in(expr) | set(extra_labels)) - known):
        problems.append(
            f"{where}: label {label!r} is not a label of {', '.join(sorted(names)) or 'any metric'}"
        )
    return names


def dashboard_targets(dash):
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    for p in walk(dash.get("panels", [])):
        for t in p.get("targets", []):
            if "expr" in t:
                yield p, t


def check_metrics():
    series = src_metrics()
    problems, used = [], set()
    n_rules = 0
    for group in load_yaml_docs(ALERTS)[0]["groups"]:
        for rule in group["rules"]:
            n_rules += 1
            name = rule.get("alert") or rule.get("record")
            text = json.dumps(rule.get("annotations", {})) + json.dumps(rule.get("labels", {}))
            extra = set(re.findall(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)", text))
            used |= check_expr(f"{rel(ALERTS)} {name}", rule["expr"], series, problems, extra)
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    n_targets = 0
    for panel, t in dashboard_targets(dash):
        n_targets += 1
        extra = set(re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", t.get("legendFormat", "")))
        used |= check_expr(f"{rel(DASHBOARD)} panel {panel.get('title')!r} {t.get('refId')}",
                           t["expr"], series, problems, extra)
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("definition") or ""
        if q:
            used |= check_expr(f"{rel(DASHBOARD)} variable {var['name']}", q, series, problems)
    if problems:
        print("FAIL: metric names and labels in alerts/dashboard vs src/metrics.rs", file=sys.stderr)
        die(problems)
    unused = sorted({s.rsplit("_", 1)[0] if s.endswith(("_bucket", "_sum", "_count")) else s
                     for s in series} - {u.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for u in used})
    note = f"; not used: {', '.join(unused)}" if unused else ""
    print(f"ok: {len(used)} series in {n_rules} alert rules and {n_targets} dashboard queries "
          f"exist in src/metrics.rs, with their labels{note}")


# ---------------------------------------------------------------------------------------
def grafana_to_promql(expr: str) -> str:
    expr = re.sub(r"\$__rate_interval|\$__interval|\$\{__rate_interval\}|\$\{__interval\}", "1m", expr)
    expr = re.sub(r"\$__range|\$\{__range\}", "1h", expr)
    expr = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?::[a-z]+)?\}?", ".*", expr)
    return expr


def dashboard_rules(out: str):
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    rules = []
    for i, (panel, t) in enumerate(dashboard_targets(dash)):
        rules.append({"record": f"dashboard:panel{panel.get('id')}:{t.get('refId')}",
                      "expr": grafana_to_promql(t["expr"])})
    Path(out).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}),
                         encoding="utf-8")


def check_dashboard():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    problems = []
    for key in ("title", "uid", "schemaVersion", "panels", "templating"):
        if key not in dash:
            problems.append(f"missing top-level {key!r}")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds_vars = {n for n, v in variables.items() if v.get("type") == "datasource"}
    if not ds_vars:
        problems.append("no datasource variable (e.g. DS_PROMETHEUS) in templating")
    ids = set()
    for p in dash.get("panels", []):
        pid = p.get("id")
        if pid in ids:
            problems.append(f"panel id {pid} used twice")
        ids.add(pid)
        g = p.get("gridPos", {})
        if not all(k in g for k in ("h", "w", "x", "y")) or g.get("x", 0) + g.get("w", 0) > 24:
            problems.append(f"panel {p.get('title')!r}: gridPos {g} invalid")
        if p.get("type") == "row":
            continue
        for t in [p] + p.get("targets", []):
            ds = t.get("datasource")
            uid = ds.get("uid", "") if isinstance(ds, dict) else ""
            m = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", uid)
            if not m or m.group(1) not in ds_vars:
                problems.append(f"panel {p.get('title')!r}: datasource {ds} is not a datasource variable")
        refs = [t.get("refId") for t in p.get("targets", [])]
        if not refs or len(refs) != len(set(refs)) or None in refs:
            problems.append(f"panel {p.get('title')!r}: targets need distinct refIds")
    boxes = [(p.get("title"), p.get("gridPos", {})) for p in dash.get("panels", [])]
    for i, (ta, a) in enumerate(boxes):
        for tb, b in boxes[i + 1:]:
            if (a.get("x", 0) < b.get("x", 0) + b.get("w", 0) and b.get("x", 0) < a.get("x", 0) + a.get("w", 0)
                    and a.get("y", 0) < b.get("y", 0) + b.get("h", 0) and b.get("y", 0) < a.get("y", 0) + a.get("h", 0)):
                problems.append(f"panels {ta!r} and {tb!r} overlap")
    # The provisioned datasource must be what the variable selects by default.
    prov = load_yaml_docs(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")[0]
    uids = {d.get("uid") for d in prov.get("datasources", [])}
    for n in ds_vars:
        cur = variables[n].get("current", {}).get("value")
        if cur not in uids:
            problems.append(f"variable {n} defaults to {cur!r}, provisioned datasources have uids {sorted(uids)}")
    provider = load_yaml_docs(DEPLOY / "grafana/provisioning/dashboards/ipg-switch.yml")[0]
    paths = [p.get("options", {}).get("path") for p in provider.get("providers", [])]
    compose = load_yaml_docs(COMPOSE)[0]
    mounts = compose["services"]["grafana"].get("volumes", [])
    if not any(str(m).startswith("./grafana/dashboards:" + (paths[0] or "")) for m in mounts):
        problems.append(f"grafana's dashboards mount does not match the provider path {paths}")
    if problems:
        print(f"FAIL: {rel(DASHBOARD)}", file=sys.stderr)
        die(problems)
    print(f"ok: Grafana dashboard (schemaVersion {dash['schemaVersion']}, {len(ids)} panels) "
          f"and provisioning agree on datasource uid and path")


# ---------------------------------------------------------------------------------------
def key_envs(toml_path: Path):
    """Environment variables the config names: keys (api_key_env) and passwords."""
    cfg = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    out = []
    for section in ("channels", "institutions"):
        for item in cfg.get(section, []):
            if "api_key_env" in item:
                out.append(item["api_key_env"])
    for section, key in (("kafka", "sasl_password_env"), ("redis", "password_env")):
        if key in cfg.get(section, {}):
            out.append(cfg[section][key])
    return out


# The settings that name TLS files (src/secure.rs): check-config requires them to be
# readable files.
TLS_FILE_KEYS = (
    ("kafka", "ssl_ca_location"),
    ("kafka", "ssl_certificate_location"),
    ("kafka", "ssl_key_location"),
    ("redis", "ca_file"),
    ("redis", "client_cert_file"),
    ("redis", "client_key_file"),
)


def tls_files(toml_path: Path):
    """[("section.key", path)] of the TLS files the config names."""
    cfg = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    return [(f"{s}.{k}", cfg[s][k]) for s, k in TLS_FILE_KEYS if k in cfg.get(s, {})]


def check_k8s():
    problems = []
    kust = load_yaml_docs(K8S / "kustomization.yaml")[0]
    listed = set(kust.get("resources", []))
    for r in sorted(listed):
        if not (K8S / r).is_file():
            problems.append(f"kustomization lists {r}, which does not exist")
    for p in sorted(K8S.glob("*.y*ml")):
        if p.name != "kustomization.yaml" and p.name not in listed:
            problems.append(f"{rel(p)} is not listed in kustomization.yaml resources")
    gen = {g["name"]: g for g in kust.get("configMapGenerator", [])}
    for g in gen.values():
        for f in g.get("files", []):
            if not (K8S / f.split("=")[-1]).is_file():
                problems.append(f"configMapGenerator {g['name']}: file {f} does not exist")
    docs = {}
    for r in listed:
        for d in load_yaml_docs(K8S / r):
            docs[(d.get("kind"), d.get("metadata", {}).get("name"))] = d
    dep = docs.get(("Deployment", "ipg-switch"))
    secrets = {n for (k, n) in docs if k == "Secret"}
    if dep is None:
        problems.append("no Deployment ipg-switch")
    else:
        spec = dep["spec"]["template"]["spec"]
        c = spec["containers"][0]
        for v in spec.get("volumes", []):
            cm = v.get("configMap", {}).get("name")
            if cm and cm not in gen:
                problems.append(f"Deployment mounts ConfigMap {cm}, which kustomization does not generate")
        if not any(m.get("mountPath") == "/etc/ipg-switch" for m in c.get("volumeMounts", [])):
            problems.append("Deployment does not mount the config at /etc/ipg-switch")
        if "/etc/ipg-switch/config.toml" not in c.get("args", []):
            problems.append("Deployment args do not read /etc/ipg-switch/config.toml")
        for ef in c.get("envFrom", []):
            name = ef.get("secretRef", {}).get("name")
            if name and name not in secrets:
                problems.append(f"Deployment reads Secret {name}, which is not among the resources")
        for v in spec.get("volumes", []):
            name = v.get("secret", {}).get("secretName")
            if name and name not in secrets:
                problems.append(f"Deployment mounts Secret {name}, which is not among the resources")
        port = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or port.get(get.get("port"), get.get("port")) != 9464:
                problems.append(f"{probe} is not GET {path} on 9464")
        sc = spec.get("securityContext", {})
        if not sc.get("runAsNonRoot"):
            problems.append("pod securityContext.runAsNonRoot is not true")
        if "resources" not in c or "requests" not in c["resources"] or "limits" not in c["resources"]:
            problems.append("container needs resource requests and limits")
    # The example Secrets: placeholders only.
    for (kind, name), d in docs.items():
        if kind != "Secret":
            continue
        for k, v in d.get("stringData", {}).items():
            if not str(v).startswith("CHANGE-ME"):
                problems.append(f"Secret {name}: {k} is not a CHANGE-ME placeholder (no real keys in git)")
        if d.get("data"):
            problems.append(f"Secret {name}: use stringData with CHANGE-ME placeholders, not data")

    def secret_keys(name):
        return set(docs.get(("Secret", name), {}).get("stringData", {}))

    # Every variable config.toml names is a key of a Secret loaded with envFrom, and every
    # TLS file it names is a key of a Secret mounted in that file's directory.
    envs = key_envs(K8S / "config.toml")
    files = tls_files(K8S / "config.toml")
    if dep is not None:
        spec = dep["spec"]["template"]["spec"]
        c = spec["containers"][0]
        env_keys = set()
        for ef in c.get("envFrom", []):
            env_keys |= secret_keys(ef.get("secretRef", {}).get("name"))
        for e in envs:
            if e not in env_keys:
                problems.append(f"deploy/k8s/config.toml names variable {e}, which no Secret "
                                "loaded with envFrom holds")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mounted = {}
        for m in c.get("volumeMounts", []):
            secret = volumes.get(m.get("name"), {}).get("secret", {}).get("secretName")
            if secret:
                mounted[m["mountPath"].rstrip("/")] = secret
        for key, path in files:
            directory, _, base = path.rpartition("/")
            secret = mounted.get(directory)
            if secret is None:
                problems.append(f"deploy/k8s/config.toml {key} = {path}: no Secret is mounted at {directory}")
            elif base not in secret_keys(secret):
                problems.append(f"deploy/k8s/config.toml {key} = {path}: {base} is not a key of "
                                f"Secret {secret} (mounted at {directory})")
    if problems:
        print("FAIL: deploy/k8s consistency", file=sys.stderr)
        die(problems)
    print(f"ok: kustomization lists {len(listed)} manifests + ConfigMap from config.toml; "
          f"Deployment, ConfigMap and Secret names agree; Secrets cover {len(envs)} *_env "
          f"names and {len(files)} TLS files, with placeholders only")


# ---------------------------------------------------------------------------------------
def check_compose():
    problems = []
    c = load_yaml_docs(COMPOSE)[0]
    services = c.get("services", {})
    named_volumes = set((c.get("volumes") or {}).keys())
    for name, s in services.items():
        b = s.get("build")
        if b:
            ctx = (DEPLOY / b.get("context", ".")).resolve()
            if not (ctx / b.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: build dockerfile {b.get('dockerfile')} not found in {ctx}")
        for v in s.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith((".", "/")):
                if not (DEPLOY / src).exists():
                    problems.append(f"{name}: bind mount source {src} does not exist")
            elif src not in named_volumes:
                problems.append(f"{name}: volume {src} is not declared under volumes:")
    sw = services.get("ipg-switch", {})
    cfg = None
    for v in sw.get("volumes", []):
        parts = str(v).split(":")
        if len(parts) >= 2 and parts[1] == "/etc/ipg-switch/config.toml":
            cfg = DEPLOY / parts[0]
    if cfg is None:
        problems.append("ipg-switch does not mount a config at /etc/ipg-switch/config.toml")
    else:
        env = sw.get("environment", {})
        env = env if isinstance(env, dict) else dict(x.split("=", 1) for x in env)
        for e in key_envs(cfg):
            if e not in env:
                problems.append(f"{rel(cfg)} names variable {e}, which is not set in ipg-switch's environment")
    if problems:
        print(f"FAIL: {rel(COMPOSE)}", file=sys.stderr)
        die(problems)
    print(f"ok: {rel(COMPOSE)}: build inputs and bind mounts exist, "
          "every *_env of the mounted config is set")


def compose_v1(out: str):
    lines = COMPOSE.read_text(encoding="utf-8").splitlines(keepends=True)
    Path(out).write_text("".join(l for l in lines if not l.startswith("name:")), encoding="utf-8")


# ---------------------------------------------------------------------------------------
def main():
    if len(sys.argv) < 2:
        die([__doc__])
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "parse":
        check_parse()
    elif cmd == "metrics":
        check_metrics()
    elif cmd == "dashboard-rules":
        dashboard_rules(args[0])
    elif cmd == "dashboard":
        check_dashboard()
    elif cmd == "k8s":
        check_k8s()
    elif cmd == "compose":
        check_compose()
    elif cmd == "compose-v1":
        compose_v1(args[0])
    elif cmd == "key-envs":
        print("\n".join(key_envs(Path(args[0]))))
    elif cmd == "tls-files":
        for key, path in tls_files(Path(args[0])):
            print(f"IPG__{key.replace('.', '__').upper()} {path}")
    else:
        die([f"unknown check {cmd}", __doc__])


if __name__ == "__main__":
    main()
