#!/usr/bin/python3
"""Consistency of the rendered Kubernetes manifests with the binaries.

Goal: a manifest that passes the schema can still be wrong for stockd; this catches that.
Every flag and environment variable the manifests pass exists in the binary's --help; every
container port matches the address the binary is told to listen on; every Service,
NetworkPolicy, Ingress, HPA and PDB points at ports and pods that exist; every probe
targets an endpoint the binaries really serve. Checked live: the real stockd and gateway are
started as the manifests declare them (their args and environment, each Secret file made
locally: a CA and certificates shaped as components/cert-manager issues them, the example
policy deploy/auth-policy.example.json), each probe is exercised (stockd's are HTTP on its
metrics port: its gRPC port speaks TLS only, which the kubelet's gRPC probe cannot; the
gateway's /readyz reaches stockd over mutual TLS), and stockd lets the gateway's certificate
write and refuses a caller without credentials and plaintext. tests/deploy/security.py
checks the TLS, policy and NetworkPolicy side of the manifests themselves.
Usage: consistency.py BUILD-DIR RENDERED.yaml...
"""
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

BUILD = sys.argv[1]
FILES = sys.argv[2:]
SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
            # stockd answers HTTP probes on its metrics port, the gateway on its listen port
            http_port = listen_port(args, "metrics-listen" if binary == "stockd" else "listen")
            tls = any(a.startswith("--tls-cert=") for a in args)
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(kind)
                if probe is None:
                    continue
                if "grpc" in probe:
                    port = resolve(probe["grpc"]["port"], ports)
                    if port != listen_port(args, "listen"):
                        fail("%s %s: gRPC probe on %s, not the gRPC port" % (binary, kind, port))
                    if tls:
                        fail("%s %s: gRPC probe on a TLS port: the kubelet cannot speak TLS" % (binary, kind))
                    probes.append((binary, "grpc", None))
                elif "httpGet" in probe:
                    port = resolve(probe["httpGet"]["port"], ports)
                    if port != http_port:
                        fail("%s %s: HTTP probe on port %s, not the port %s serving HTTP" % (binary, kind, port, http_port))
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
            for rule in o["spec"].get("ingress", []):
                for p in rule.get("ports", []):
                    if not any(p["port"] in container_ports(t).values() for t in targets):
                        fail("NetworkPolicy %s: port %s is on no selected pod" % (o["metadata"]["name"], p["port"]))
                for peer in rule.get("from", []):
                    if "podSelector" in peer and not any(labels_match(peer["podSelector"]["matchLabels"], t["metadata"]["labels"]) for t in templates):
                        fail("NetworkPolicy %s: allowed pods %s do not exist" % (o["metadata"]["name"], peer["podSelector"]))
            for rule in o["spec"].get("egress", []):
                for peer in rule.get("to", []):
                    if "podSelector" not in peer or "namespaceSelector" in peer:
                        continue
                    selected = [t for t in templates if labels_match(peer["podSelector"].get("matchLabels", {}), t["metadata"]["labels"])]
                    if not selected:
                        fail("NetworkPolicy %s: egress to pods %s that do not exist" % (o["metadata"]["name"], peer["podSelector"]))
                    for p in rule.get("ports", []):
                        if selected and not any(p["port"] in container_ports(t).values() for t in selected):
                            fail("NetworkPolicy %s: egress port %s is on none of those pods" % (o["metadata"]["name"], p["port"]))


def start(args, log, env=None):
    """Starts a binary; returns it and the port of its "listening" event (None: it exited)."""
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 15
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            proc.wait(timeout=5)
            return proc, None
        log.append(line)
        m = re.search(r'"event":"listening","address":"[^"]*:(\d+)"', line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, int(m.group(1))
    raise RuntimeError("did not start: %s" % "".join(log))


def openssl(work, *args):
    subprocess.run(["openssl"] + list(args), cwd=work, check=True, capture_output=True)


def make_pki(work):
    """Files the manifests' Secrets hold, by key: a CA, stockd's server certificate (the names
    components/cert-manager gives it, and 127.0.0.1 for the loopback check), the gateway's
    client certificate (DNS SAN stockd-gateway), the example policy and a Wix public key."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl(work, "req", "-x509", "-new", *ec, "-days", "2", "-subj", "/CN=stockd-ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    leaves = {"server": "subjectAltName=DNS:stockd,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
              "client": "subjectAltName=DNS:stockd-gateway\nextendedKeyUsage=clientAuth\n"}
    for name, extensions in leaves.items():
        with open(os.path.join(work, name + ".ext"), "w") as f:
            f.write(extensions)
        openssl(work, "req", "-new", *ec, "-subj", "/CN=" + name, "-keyout", name + ".key", "-out", name + ".csr")
        openssl(work, "x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", name + ".ext", "-out", name + ".crt")
    openssl(work, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "wix.key")
    openssl(work, "pkey", "-in", "wix.key", "-pubout", "-out", "wix.pem")
    read = lambda name: open(os.path.join(work, name), "rb").read()
    return {"ca.crt": read("ca.crt"), "public-key.pem": read("wix.pem"),
            "policy.json": open(os.path.join(SRC, "deploy/auth-policy.example.json"), "rb").read(),
            ("stockd", "tls.crt"): read("server.crt"), ("stockd", "tls.key"): read("server.key"),
            ("stockd-gateway", "tls.crt"): read("client.crt"), ("stockd-gateway", "tls.key"): read("client.key")}


def launch_as_declared(objects, template, c, work, pki, overrides):
    """Runs a container's binary with its manifest's args and environment, each mounted Secret
    file replaced by a local file and each address by a loopback one (OVERRIDES: flag -> value)."""
    binary = os.path.basename(c["command"][0])
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    mounts = {}
    for mount in c.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret is None:
            continue
        directory = os.path.join(work, binary, mount["name"])
        os.makedirs(directory)
        for item in secret.get("items", []):
            content = pki.get((binary, item["key"]), pki.get(item["key"]))
            if content is None:
                fail("%s: no test content for Secret %s key %s" % (binary, secret["secretName"], item["key"]))
                continue
            with open(os.path.join(directory, item["path"]), "wb") as f:
                f.write(content)
        mounts[mount["mountPath"].rstrip("/")] = directory
    args = []
    for arg in c.get("args", []):
        flag, _, value = arg.partition("=")
        if flag in overrides:
            continue
        for mount_path, directory in mounts.items():
            if value.startswith(mount_path + "/"):
                value = directory + value[len(mount_path):]
        args.append("%s=%s" % (flag, value) if value else flag)
    args += ["%s=%s" % item for item in overrides.items()]
    env = dict(os.environ)
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    for source in c.get("envFrom", []):
        env.update(configmaps.get(source.get("configMapRef", {}).get("name"), {}))
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", "deploy-check")  # a Secret's value: any will do
    log = []
    proc, port = start([os.path.join(BUILD, binary)] + args, log, env)
    if port is None:
        fail("%s does not start with the manifest's flags: %s" % (binary, "".join(log[-3:]).strip()))
    return proc, port, "".join(log)


def check_grpc_as_declared(grpc, port, admin_port, pki):
    """The example policy lets the gateway's certificate write, not use Admin; a caller with
    no credentials is refused; plaintext does not get through; Admin answers over TLS on
    127.0.0.1 (what stockctl inside the pod dials)."""
    from stockd.v1 import inventory_pb2 as pb
    request = pb.IncrementRequest(tenant_id="deploy-check", request_id="deploy-check-1", lines=[
        pb.Line(item=pb.ItemRef(catalog_item_id="i", app_id="a"), quantity=1)]).SerializeToString()
    increment, checkpoints = "/stockd.v1.Inventory/Increment", "/stockd.v1.Admin/ListCheckpoints"
    target = "127.0.0.1:%d" % port
    gateway = grpc.ssl_channel_credentials(pki["ca.crt"], pki[("stockd-gateway", "tls.key")],
                                           pki[("stockd-gateway", "tls.crt")])
    anonymous = grpc.ssl_channel_credentials(pki["ca.crt"])
    cases = [("the gateway's certificate", target, gateway, increment, request, "OK"),
             ("no credentials", target, anonymous, increment, request, "UNAUTHENTICATED"),
             ("plaintext", target, None, increment, request, "UNAVAILABLE")]
    if admin_port is not None:
        admin = "127.0.0.1:%d" % admin_port
        cases += [("no credentials on the Admin port", admin, anonymous, checkpoints, b"", "UNAUTHENTICATED"),
                  ("the gateway's certificate on the Admin port", admin, gateway, checkpoints, b"",
                   "PERMISSION_DENIED")]
    for who, address, credentials, method, message, expected in cases:
        channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
        try:
            channel.unary_unary(method)(message, timeout=5)
            code = "OK"
        except grpc.RpcError as error:
            code = error.code().name
        channel.close()
        if code != expected:
            fail("stockd as declared: %s with %s answers %s, expected %s" % (method, who, code, expected))


def check_live(objects, probes):
    """Starts the real binaries as the manifests declare them (flags, environment, Secret
    files) and exercises every probe they declare, and stockd's mutual TLS and policy."""
    sys.path.insert(0, os.path.join(BUILD, "pygen"))
    import grpc
    work = tempfile.mkdtemp(prefix="stockd-deploy-")
    pki = make_pki(work)
    declared = {os.path.basename(c["command"][0]): (t, c) for _, t in pod_templates(objects)
                for c in t["spec"]["containers"]}
    template, c = declared["stockd"]
    stockd, grpc_port, log = launch_as_declared(objects, template, c, work, pki, {
        "--listen": "0.0.0.0:0", "--metrics-listen": "127.0.0.1:0", "--admin-listen": "127.0.0.1:0",
        "--data-dir": os.path.join(work, "data"), "--backup-dir": os.path.join(work, "backups")})
    if grpc_port is None:
        shutil.rmtree(work, ignore_errors=True)
        return
    http = {"stockd": int(re.search(r'"event":"metrics_listening".*?"port":(\d+)', log).group(1))}
    admin = re.search(r'"event":"admin_listening","address":"[^"]*:(\d+)"', log)
    if admin is None and any(a.startswith("--admin-listen=") for a in c.get("args", [])):
        fail("stockd: --admin-listen declared, but no admin_listening before listening in its log")
    template, c = declared["stockd-gateway"]
    gateway, http["stockd-gateway"], _ = launch_as_declared(objects, template, c, work, pki, {
        "--listen": "127.0.0.1:0", "--stockd": "127.0.0.1:%d" % grpc_port})
    try:
        check_grpc_as_declared(grpc, grpc_port, admin and int(admin.group(1)), pki)
        for binary, protocol, path in sorted(set(probes), key=str):
            if protocol == "grpc":
                fail("%s: a gRPC probe; stockd's gRPC port speaks TLS only" % binary)
            elif http.get(binary) is not None:
                # /readyz of the gateway asks stockd's health: over mutual TLS, as declared
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (http[binary], path), timeout=5) as r:
                        status = r.status
                except urllib.error.HTTPError as error:
                    status = error.code
                if status != 200:
                    fail("%s probe %s answers %s" % (binary, path, status))
    except Exception as error:  # an unreachable or failing endpoint
        fail("live check failed: %s" % error)
    finally:
        for proc in (gateway, stockd):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def main():
    for path in FILES:
        objects = [o for o in yaml.safe_load_all(open(path)) if o]
        print("%s: %d objects" % (path, len(objects)))
        check_flags_and_env(objects)
        probes = check_ports_and_probes(objects)
        check_references(objects)
        if not probes:
            fail("%s declares no probes" % path)
        check_live(objects, probes)
    print("manifests consistent with the binaries" if not failures else "%d inconsistencies" % len(failures))
    sys.exit(1 if failures else 0)


main()
