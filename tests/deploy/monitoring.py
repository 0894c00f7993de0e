#!/usr/bin/python3
"""The monitoring that ships in deploy/ works against the real binaries.

Goal: an alert that can never fire (it names a metric or a label value nothing exports, as
`status="5xx"` once did) or a dashboard panel that stays empty is caught before an operator
relies on it.
Method:
  1. promtool (Debian's, from the prometheus package) checks deploy/prometheus/alerts.yaml,
     every YAML example of deploy/README.md section 8 (each must also equal the rule of the same
     name in alerts.yaml), and every query of the Grafana dashboard (as recording rules, the
     Grafana variables replaced by values);
  2. the real stockd and stockd-gateway are started on loopback, given a little traffic and
     scraped; `promtool check metrics` lints both expositions (base units, _total counters),
     no series has an empty `{}`, and every metric, label name and label value the rules, the
     examples, the dashboard and the README's metric table use is one they export.
Usage: monitoring.py SOURCE-DIR BUILD-DIR PROMTOOL
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import yaml

SRC, BUILD, PROMTOOL = sys.argv[1:4]
ALERTS = os.path.join(SRC, "deploy/prometheus/alerts.yaml")
DASHBOARD = os.path.join(SRC, "deploy/grafana/stockd-dashboard.json")
README = os.path.join(SRC, "deploy/README.md")
# labels Prometheus adds to every scraped series (the target's), and the histogram bucket label
TARGET_LABELS = {"job", "instance", "le"}
# what the dashboard's variables stand for when its queries are checked
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*",
                     "$gateway": ".*"}
failures = []


def fail(message):
    failures.append(message)
    print("FAIL:", message)


def promtool(*args, stdin=None):
    result = subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        fail("promtool %s: %s%s" % (" ".join(args[:2]), result.stdout, result.stderr))
    return result


def readme_section(title):
    text = open(README).read()
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def check_rule_files(work):
    """promtool on the rules, the README examples and the dashboard; returns every expression."""
    promtool("check", "rules", ALERTS)
    rules = {r["alert"]: r for g in yaml.safe_load(open(ALERTS))["groups"] for r in g["rules"]}
    exprs = [r["expr"] for r in rules.values()]
    examples = re.findall(r"```yaml\n(.*?)```", readme_section("## 8. Metrics and alerts"), re.S)
    if not examples:
        fail("deploy/README.md section 8 shows no alert example")
    for i, example in enumerate(examples):
        path = os.path.join(work, "readme-example-%d.yaml" % i)
        open(path, "w").write(example)
        promtool("check", "rules", path)
        for group in yaml.safe_load(example)["groups"]:
            for rule in group["rules"]:
                if rules.get(rule.get("alert")) != rule:
                    fail("README example %s differs from alerts.yaml" % rule.get("alert"))
    dashboard = json.load(open(DASHBOARD))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    ids = [p["id"] for p in dashboard["panels"]]
    if len(ids) != len(set(ids)):
        fail("dashboard panel ids are not unique")
    recorded = []
    for i, query in enumerate(queries):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        if "$" in query:
            fail("dashboard query uses an unknown variable: %s" % query)
        recorded.append({"record": "dashboard:query_%d" % i, "expr": query})
    path = os.path.join(work, "dashboard-queries.yaml")
    yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}, open(path, "w"))
    promtool("check", "rules", path)
    print("promtool: %d rules, %d README examples, %d dashboard queries valid"
          % (len(rules), len(examples), len(queries)))
    return exprs + [r["expr"] for r in recorded]


def start(args):
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    lines, deadline = [], time.time() + 15
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r'"event":"listening","address":"(127\.0\.0\.1:\d+)"', line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1), "".join(lines)
    raise RuntimeError("did not start: %s" % "".join(lines))


def traffic(grpc_address, http_address):
    """A write, its replay, a read, a refused Wix call and a health probe."""
    sys.path.insert(0, os.path.join(BUILD, "pygen"))
    import grpc
    from stockd.v1 import inventory_pb2 as pb
    channel = grpc.insecure_channel(grpc_address)
    request = pb.IncrementRequest(tenant_id="t", request_id="monitoring-1", lines=[
        pb.Line(item=pb.ItemRef(catalog_item_id="i", app_id="a"), quantity=1)])
    for _ in range(2):
        channel.unary_unary("/stockd.v1.Inventory/Increment")(request.SerializeToString(), timeout=5)
    channel.close()
    try:
        urllib.request.urlopen(urllib.request.Request("http://%s/v1/decrement" % http_address,
                                                      data=b"garbage", method="POST"), timeout=5)
    except urllib.error.HTTPError:
        pass  # 401, counted
    urllib.request.urlopen("http://%s/healthz" % http_address, timeout=5).read()


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def parse(text, exported):
    """Adds to exported: metric name -> {label name -> set of values} (TYPE names included)."""
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) ", line)
        if m:
            exported.setdefault(m.group(1), {})
            continue
        if line.startswith("#") or not line:
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? \S+$", line)
        if m is None:
            fail("not an exposition line: %r" % line)
            continue
        if m.group(2) == "{}":
            fail("empty label set: %r" % line)
        labels = exported.setdefault(m.group(1), {})
        for name, value in re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""):
            labels.setdefault(name, set()).add(value)


def scrape_binaries(work):
    stockd, grpc_address, log = start([os.path.join(BUILD, "stockd"), "--listen", "127.0.0.1:0",
                                       "--metrics-listen", "127.0.0.1:0", "--sync", "never",
                                       "--data-dir", os.path.join(work, "data")])
    metrics_port = re.search(r'"event":"metrics_listening".*?"port":(\d+)', log).group(1)
    gateway, http_address, _ = start([os.path.join(BUILD, "stockd-gateway"), "--listen",
                                      "127.0.0.1:0", "--stockd", grpc_address, "--dev",
                                      "--dev-dir", os.path.join(work, "dev")])
    exported = {}
    try:
        traffic(grpc_address, http_address)
        for who, url in (("stockd", "http://127.0.0.1:%s/metrics" % metrics_port),
                         ("stockd-gateway", "http://%s/metrics" % http_address)):
            text = scrape(url)
            promtool("check", "metrics", stdin=text)
            parse(text, exported)
            print("%s: /metrics passes promtool check metrics" % who)
    finally:
        for proc in (gateway, stockd):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return exported


def known_values(exported):
    values = {}
    for labels in exported.values():
        for name, seen in labels.items():
            values.setdefault(name, set()).update(seen)
    values.setdefault("status", set()).add("OK")  # never among the gateway's upstream errors
    return values


def check_selector(expr, name, matchers, exported, values):
    if name not in exported:
        fail("%r: no binary exports %s" % (expr, name))
        return
    for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
        if label in TARGET_LABELS:
            continue
        if label not in exported[name]:
            fail("%r: %s has no label %s (it has %s)" % (expr, name, label, sorted(exported[name])))
            continue
        alternatives = value.split("|") if op in ("=~", "!~") and re.fullmatch(r"[\w|]+", value) \
            else [value] if op in ("=", "!=") else []
        for alternative in alternatives:
            if alternative not in values[label]:
                fail("%r: %s=%r matches nothing exported (known: %s)"
                     % (expr, label, alternative, sorted(values[label])))


def check_names(exprs, exported):
    values = known_values(exported)
    for expr in exprs:
        names = set()
        for name, matchers in re.findall(r"\b((?:stockd|process)_[a-z_]+)\s*(\{[^}]*\})?", expr):
            names.add(name)
            check_selector(expr, name, matchers, exported, values)
        grouped = set()
        for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
            grouped.update(l.strip() for l in clause.split(",") if l.strip())
        available = set(TARGET_LABELS).union(*(exported.get(n, {}).keys() for n in names))
        for label in grouped - available:
            fail("%r: groups by %s, which none of its metrics has" % (expr, label))
    table = readme_section("## 8. Metrics and alerts")
    for name in sorted(set(re.findall(r"`((?:stockd|process)_[a-z_]+)", table))):
        if name not in exported:
            fail("deploy/README.md names %s, which no binary exports" % name)


def main():
    work = tempfile.mkdtemp(prefix="stockd-monitoring-")
    try:
        exprs = check_rule_files(work)
        exported = scrape_binaries(work)
        check_names(exprs, exported)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("monitoring consistent with the binaries" if not failures
          else "%d monitoring problems" % len(failures))
    sys.exit(1 if failures else 0)


main()
