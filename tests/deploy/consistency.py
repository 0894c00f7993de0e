#!/usr/bin/python3
"""Consistency of the rendered Kubernetes manifests with the binaries.

Goal: a manifest that passes the schema can still be wrong for stockd; this catches that.
Every flag and environment variable the manifests pass exists in the binary's --help; every
container port matches the address the binary is told to listen on; every Service,
NetworkPolicy, Ingress, HPA and PDB points at ports and pods that exist; every probe
targets an endpoint the binaries really serve (checked live: the real stockd and gateway are
started on loopback and each probe path/protocol is exercised).
Usage: consistency.py BUILD-DIR RENDERED.yaml...
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import yaml

BUILD = sys.argv[1]
FILES = sys.argv[2:]
failures = []


def fail(message):
    failures.append(message)
    print("FAIL:", message)


def help_text(binary):
    return subprocess.run([os.path.join(BUILD, binary), "--help"], capture_output=True,
                          text=True, check=True).stdout


def listen_port(args, flag):
    for arg in args:
        if arg.startswith("--%s=" % flag):
            return int(arg.rsplit(":", 1)[1])
    return None


def pod_templates(objects):
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            yield o, o["spec"]["template"]


def check_flags_and_env(objects):
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    for workload, template in pod_templates(objects):
        for c in template["spec"]["containers"]:
            binary = os.path.basename(c["command"][0])
            text = help_text(binary)
            for arg in c.get("args", []):
                flag = arg.split("=", 1)[0]
                if not re.search(r"^\s+%s\s" % re.escape(flag), text, re.M):
                    fail("%s: %s passes %s, which %s --help does not list" % (workload["metadata"]["name"], binary, flag, binary))
            names = [e["name"] for e in c.get("env", [])]
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref not in configmaps:
                    fail("%s: envFrom ConfigMap %s does not exist" % (binary, ref))
                names += list(configmaps.get(ref, {}))
            for name in names:
                if "(env %s;" % name not in text:
                    fail("%s: environment variable %s is not read by %s" % (binary, name, binary))


def container_ports(template):
    ports = {}
    for c in template["spec"]["containers"]:
        for p in c.get("ports", []):
            ports[p.get("name")] = p["containerPort"]
    return ports


def resolve(port, ports):
    return ports.get(port) if isinstance(port, str) else port


def check_ports_and_probes(objects):
    probes = []
    for workload, template in pod_templates(objects):
        ports = container_ports(template)
        for c in template["spec"]["containers"]:
            binary = os.path.basename(c["command"][0])
            args = c.get("args", [])
            expected = {"grpc": listen_port(args, "listen")} if binary == "stockd" else {"http": listen_port(args, "listen")}
            if binary == "stockd":
                expected["metrics"] = listen_port(args, "metrics-listen")
            for name, port in expected.items():
                if ports.get(name) != port:
                    fail("%s: containerPort %s is %s but the binary listens on %s" % (binary, name, ports.get(name), port))
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(kind)
                if probe is None:
                    continue
                if "grpc" in probe:
                    port = resolve(probe["grpc"]["port"], ports)
                    if port != listen_port(args, "listen"):
                        fail("%s %s: gRPC probe on %s, not the gRPC port" % (binary, kind, port))
                    probes.append((binary, "grpc", None))
                elif "httpGet" in probe:
                    port = resolve(probe["httpGet"]["port"], ports)
                    if port != listen_port(args, "listen"):
                        fail("%s %s: HTTP probe on port %s, not the listen port" % (binary, kind, port))
                    probes.append((binary, "http", probe["httpGet"]["path"]))
                else:
                    fail("%s %s: neither grpc nor httpGet" % (binary, kind))
            annotations = template["metadata"].get("annotations", {})
            if "prometheus.io/port" in annotations and int(annotations["prometheus.io/port"]) not in ports.values():
                fail("%s: prometheus.io/port %s is no container port" % (binary, annotations["prometheus.io/port"]))
    return probes


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_references(objects):
    templates = [t for _, t in pod_templates(objects)]
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    workloads = {(o["kind"], o["metadata"]["name"]): o for o, _ in pod_templates(objects)}
    for name, service in services.items():
        selected = [t for t in templates if labels_match(service["spec"]["selector"], t["metadata"]["labels"])]
        if not selected:
            fail("Service %s selects no pods" % name)
        for p in service["spec"]["ports"]:
            if not any(resolve(p["targetPort"], container_ports(t)) for t in selected):
                fail("Service %s: targetPort %s is on no selected pod" % (name, p["targetPort"]))
    for o in objects:
        kind = o["kind"]
        if kind == "StatefulSet" and o["spec"]["serviceName"] not in services:
            fail("StatefulSet %s: serviceName %s does not exist" % (o["metadata"]["name"], o["spec"]["serviceName"]))
        if kind == "HorizontalPodAutoscaler":
            ref = o["spec"]["scaleTargetRef"]
            if (ref["kind"], ref["name"]) not in workloads:
                fail("HPA %s targets a missing %s" % (o["metadata"]["name"], ref["name"]))
        if kind == "PodDisruptionBudget":
            if not any(labels_match(o["spec"]["selector"]["matchLabels"], t["metadata"]["labels"]) for t in templates):
                fail("PDB %s selects no pods" % o["metadata"]["name"])
        if kind == "Ingress":
            for rule in o["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    service = services.get(backend["name"])
                    names = [p.get("name") for p in service["spec"]["ports"]] if service else []
                    if service is None or backend["port"].get("name", names[0] if names else None) not in names:
                        fail("Ingress %s: backend %s does not exist" % (o["metadata"]["name"], backend))
        if kind == "NetworkPolicy":
            targets = [t for t in templates if labels_match(o["spec"]["podSelector"]["matchLabels"], t["metadata"]["labels"])]
            if not targets:
                fail("NetworkPolicy %s selects no pods" % o["metadata"]["name"])
            for rule in o["spec"]["ingress"]:
                for p in rule.get("ports", []):
                    if not any(p["port"] in container_ports(t).values() for t in targets):
                        fail("NetworkPolicy %s: port %s is on no selected pod" % (o["metadata"]["name"], p["port"]))
                for peer in rule["from"]:
                    if "podSelector" in peer and not any(labels_match(peer["podSelector"]["matchLabels"], t["metadata"]["labels"]) for t in templates):
                        fail("NetworkPolicy %s: allowed pods %s do not exist" % (o["metadata"]["name"], peer["podSelector"]))


def start(args, log):
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 15
    while time.time() < deadline:
        line = proc.stderr.readline()
        log.append(line)
        m = re.search(r'"event":"listening","address":"(127\.0\.0\.1:\d+)"', line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1)
    raise RuntimeError("did not start: %s" % "".join(log))


def check_probes_live(probes):
    """Starts the real binaries and exercises every probe the manifests declare."""
    sys.path.insert(0, os.path.join(BUILD, "pygen"))
    import grpc
    work = tempfile.mkdtemp(prefix="stockd-deploy-")
    stockd, grpc_address = start([os.path.join(BUILD, "stockd"), "--listen", "127.0.0.1:0",
                                  "--data-dir", os.path.join(work, "data")], [])
    gateway, http_address = start([os.path.join(BUILD, "stockd-gateway"), "--listen", "127.0.0.1:0",
                                   "--stockd", grpc_address, "--dev", "--dev-dir", os.path.join(work, "dev")], [])
    try:
        channel = grpc.insecure_channel(grpc_address)
        for binary, protocol, path in sorted(set(probes), key=str):
            if protocol == "grpc":
                # what the kubelet sends: grpc.health.v1.Health/Check with service ""
                reply = channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
                if reply != b"\x08\x01":
                    fail("stockd gRPC health probe does not answer SERVING")
            else:
                with urllib.request.urlopen("http://%s%s" % (http_address, path), timeout=5) as r:
                    if r.status != 200:
                        fail("%s probe %s answers %s" % (binary, path, r.status))
        channel.close()
    except Exception as error:  # an unreachable or failing probe endpoint
        fail("probe check failed: %s" % error)
    finally:
        for proc in (gateway, stockd):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def main():
    for path in FILES:
        objects = [o for o in yaml.safe_load_all(open(path)) if o]
        print("%s: %d objects" % (path, len(objects)))
        check_flags_and_env(objects)
        probes = check_ports_and_probes(objects)
        check_references(objects)
        if not probes:
            fail("%s declares no probes" % path)
        check_probes_live(probes)
    print("manifests consistent with the binaries" if not failures else "%d inconsistencies" % len(failures))
    sys.exit(1 if failures else 0)


main()
