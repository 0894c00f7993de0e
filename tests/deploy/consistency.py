#!/usr/bin/python3
"""Consistency of the rendered Kubernetes manifests with the binaries.

Goal: a manifest that passes the schema can still be wrong for stockd; this catches that.
Every flag and environment variable the manifests pass exists in the binary's --help (or, for
stockd, is read by the script that starts it, stockd-replica); every
container port matches the address the binary is told to listen on; every Service,
NetworkPolicy, Ingress, HPA and PDB points at ports and pods that exist; every probe
targets an endpoint the binaries really serve. Checked live: the real stockd and gateway are
started as the manifests declare them (their args and environment, each Secret file made
locally: a CA and certificates shaped as components/cert-manager issues them, the example
policy deploy/auth-policy.example.json), each probe is exercised (stockd's are HTTP on its
metrics port: its gRPC port speaks TLS only, which the kubelet's gRPC probe cannot; the
gateway's /readyz reaches stockd over mutual TLS), and stockd lets the gateway's certificate
write and refuses a caller without credentials and plaintext. stockd runs as the declared
number of replicas, each started by the declared stockd-replica script (from the rendered
ConfigMap) on loopback ports: they elect a leader and the gateway writes through it; then
the script's id rules are exercised with the real stockd: a restarted replica keeps its id,
a replica whose Raft log is lost comes back under a new id with --join and waits until it is
added, a damaged or missing id file is refused, and the declared preStop hook hands
leadership over. tests/deploy/security.py
checks the TLS, policy and NetworkPolicy side of the manifests themselves.
Usage: consistency.py BUILD-DIR RENDERED.yaml...
"""
import copy
import hashlib
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

BUILD = sys.argv[1]
FILES = sys.argv[2:]
SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
failures = []


def fail(message):
    failures.append(message)
    print("FAIL:", message)


# what a container runs, by the basename of its command: stockd-replica execs stockd
RUNS = {"stockd-replica": "stockd"}


def binary_of(container):
    name = os.path.basename(container["command"][0])
    return RUNS.get(name, name)


def script_text(objects, container):
    """The script a container's command runs from a ConfigMap volume ("" when it runs a binary)."""
    if os.path.basename(container["command"][0]) not in RUNS:
        return ""
    for o in objects:
        if o["kind"] == "ConfigMap" and os.path.basename(container["command"][0]) in o.get("data", {}):
            return o["data"][os.path.basename(container["command"][0])]
    fail("%s: the script it runs is in no ConfigMap" % container["command"][0])
    return ""


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
            binary = binary_of(c)
            text = help_text(binary)
            script = script_text(objects, c)
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
            # a variable the manifest's own values use, $(NAME), is read by the kubelet
            expanded = " ".join(e.get("value", "") for e in c.get("env", []))
            for name in names:
                if "(env %s;" % name not in text and not re.search(r"\b%s\b" % name, script) \
                        and "$(%s)" % name not in expanded:
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
            binary = binary_of(c)
            args = c.get("args", [])
            expected = {"grpc": listen_port(args, "listen")} if binary == "stockd" else {"http": listen_port(args, "listen")}
            if binary == "stockd":
                expected["metrics"] = listen_port(args, "metrics-listen")
                if listen_port(args, "raft-listen") is not None:
                    expected["raft"] = listen_port(args, "raft-listen")
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
    # the example policy plus an operator with the admin role (deploy/README.md, section 10),
    # whose token the optional Secret stockd-ops-token gives the preStop hook
    token = b"deploy-check-ops-token"
    policy = json.load(open(os.path.join(SRC, "deploy/auth-policy.example.json")))
    policy["identities"].append({"name": "ops", "token_sha256": hashlib.sha256(token).hexdigest(),
                                 "tenants": ["*"], "roles": ["admin"]})
    return {"ca.crt": read("ca.crt"), "public-key.pem": read("wix.pem"), "token": token,
            "policy.json": json.dumps(policy).encode(),
            ("stockd", "tls.crt"): read("server.crt"), ("stockd", "tls.key"): read("server.key"),
            ("stockd-gateway", "tls.crt"): read("client.crt"), ("stockd-gateway", "tls.key"): read("client.key")}


def mount_files(objects, template, c, directory, pki):
    """Each mounted Secret and ConfigMap volume as a local directory (the Secrets' keys from
    PKI, the ConfigMaps' from the rendered objects); returns {mount path: local directory}."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    mounts = {}
    for mount in c.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        local = os.path.join(directory, mount["name"])
        if "secret" in volume:
            secret = volume["secret"]
            os.makedirs(local)
            for item in secret.get("items", []):
                content = pki.get((binary_of(c), item["key"]), pki.get(item["key"]))
                if content is None:
                    if not secret.get("optional"):
                        fail("%s: no test content for Secret %s key %s" % (binary_of(c), secret["secretName"], item["key"]))
                    continue
                with open(os.path.join(local, item["path"]), "wb") as f:
                    f.write(content)
        elif "configMap" in volume:
            os.makedirs(local)
            data = configmaps.get(volume["configMap"]["name"])
            if data is None:
                fail("%s: ConfigMap %s is not in the manifests" % (binary_of(c), volume["configMap"]["name"]))
                continue
            for key, content in data.items():
                path = os.path.join(local, key)
                with open(path, "w") as f:
                    f.write(content)
                os.chmod(path, volume["configMap"].get("defaultMode", 0o644))
        else:
            continue
        mounts[mount["mountPath"].rstrip("/")] = local
    return mounts


def local_path(value, mounts):
    for mount_path, directory in mounts.items():
        if value.startswith(mount_path + "/"):
            return directory + value[len(mount_path):]
    return value


def launch_as_declared(objects, template, c, directory, pki, overrides, env_overrides=None, expect_exit=False):
    """Runs a container's command with its manifest's args and environment, each mounted Secret
    and ConfigMap file replaced by a local file and each address by a loopback one (OVERRIDES:
    flag -> value; ENV_OVERRIDES: what the kubelet would fill in). A script from a ConfigMap
    runs as declared, finding the binaries in the build directory."""
    binary = binary_of(c)
    mounts = mount_files(objects, template, c, directory, pki)
    args = []
    for arg in c.get("args", []):
        flag, _, value = arg.partition("=")
        if flag in overrides:
            continue
        value = local_path(value, mounts)
        args.append("%s=%s" % (flag, value) if value else flag)
    args += ["%s=%s" % item for item in overrides.items()]
    env = dict(os.environ)
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    for source in c.get("envFrom", []):
        env.update(configmaps.get(source.get("configMapRef", {}).get("name"), {}))
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", "deploy-check")  # a Secret's value: any will do
    env.update(env_overrides or {})
    env.update(STOCKD_BIN=os.path.join(BUILD, "stockd"), STOCKCTL_BIN=os.path.join(BUILD, "stockctl"))
    command = [local_path(part, mounts) for part in c["command"]]
    if os.path.basename(command[0]) not in RUNS:
        command[0] = os.path.join(BUILD, binary)
    log = []
    proc, port = start(command + args, log, env)
    if port is None and not expect_exit:
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


def http_get(port, path):
    """(status, body) of a plain-HTTP GET on loopback."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return None, ""


def wait_for(predicate, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    fail(what)
    return False


def free_port_prefix(count):
    """A four-digit P whose ports P0..P(count-1) and (P+1)0..(P+1)(count-1) are all free: the
    replicas' gRPC and Raft ports, written in the address templates as "127.0.0.1:P@"."""
    import random
    import socket
    for _ in range(200):
        prefix = random.randrange(2000, 6000, 2)
        sockets = []
        try:
            for port in [prefix * 10 + i for i in range(count)] + [(prefix + 1) * 10 + i for i in range(count)]:
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return prefix
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free ports")


class Replicas:
    """stockd's StatefulSet run as declared on loopback: replica I has the pod name stockd-I,
    a directory standing for its volume, and gRPC/Raft ports from the address templates."""

    def __init__(self, objects, template, c, work, pki):
        self.objects, self.template, self.c, self.work, self.pki = objects, template, c, work, pki
        self.count = next(o for o in objects if o["kind"] == "StatefulSet")["spec"]["replicas"]
        self.prefix = free_port_prefix(self.count)
        self.procs, self.metrics, self.admin, self.logs = {}, {}, {}, {}

    def grpc_port(self, i):
        return self.prefix * 10 + i

    def raft_port(self, i):
        return (self.prefix + 1) * 10 + i

    def volume(self, i):
        return os.path.join(self.work, "volume-%d" % i)

    def node_id(self, i):
        try:
            return open(os.path.join(self.volume(i), "node-id")).read().split()
        except OSError:
            return None

    def declared(self, i, env=None, ports=None):
        """The overrides and environment replica I runs with."""
        grpc_port, raft_port = ports or (self.grpc_port(i), self.raft_port(i))
        overrides = {"--listen": "127.0.0.1:%d" % grpc_port, "--raft-listen": "127.0.0.1:%d" % raft_port,
                     "--metrics-listen": "127.0.0.1:0", "--admin-listen": "127.0.0.1:0",
                     "--data-dir": os.path.join(self.volume(i), "data"),
                     "--backup-dir": os.path.join(self.volume(i), "backups")}
        kubelet = {"STOCKD_POD_NAME": "stockd-%d" % i, "STOCKD_POD_NAMESPACE": "deploy-check",
                   "STOCKD_RAFT_ADDRESS_TEMPLATE": "127.0.0.1:%d@" % (self.prefix + 1),
                   "STOCKD_GRPC_ADDRESS_TEMPLATE": "127.0.0.1:%d@" % self.prefix}
        kubelet.update(env or {})
        return overrides, kubelet

    def launch(self, i, env=None, ports=None):
        overrides, kubelet = self.declared(i, env, ports)
        mounts = tempfile.mkdtemp(dir=self.work, prefix="mounts-%d-" % i)
        proc, port, log = launch_as_declared(self.objects, self.template, self.c, mounts, self.pki,
                                             overrides, kubelet)
        self.procs[i], self.logs[i] = proc, log
        if port is None:
            return False
        self.metrics[i] = int(re.search(r'"event":"metrics_listening".*?"port":(\d+)', log).group(1))
        admin = re.search(r'"event":"admin_listening","address":"[^"]*:(\d+)"', log)
        self.admin[i] = admin and int(admin.group(1))
        return True

    def refused(self, i, env=None):
        """Runs replica I's start expecting the script to refuse it: (exit status, its log)."""
        overrides, kubelet = self.declared(i, env)
        mounts = tempfile.mkdtemp(dir=self.work, prefix="mounts-%d-" % i)
        proc, port, log = launch_as_declared(self.objects, self.template, self.c, mounts, self.pki,
                                             overrides, kubelet, expect_exit=True)
        if proc.poll() is None:  # it was not refused: it runs
            proc.kill()
            proc.wait(timeout=30)
            return None, log
        return proc.returncode, log

    def stop(self, i, sig=signal.SIGTERM):
        proc = self.procs.pop(i, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=60)
        return proc.returncode if proc else None

    def leaders(self):
        return [i for i in self.procs if "\nstockd_raft_leader 1" in http_get(self.metrics[i], "/metrics")[1]]

    def ready(self, i):
        return i in self.procs and http_get(self.metrics[i], "/readyz")[0] == 200

    def stockctl(self, i, *args):
        tls = os.path.join(self.work, "ops")
        os.makedirs(tls, exist_ok=True)
        with open(os.path.join(tls, "ca.crt"), "wb") as f:
            f.write(self.pki["ca.crt"])
        with open(os.path.join(tls, "token"), "wb") as f:
            f.write(self.pki["token"])
        return subprocess.run([os.path.join(BUILD, "stockctl"), "--admin", "127.0.0.1:%d" % self.admin[i],
                               "--tls-ca", os.path.join(tls, "ca.crt"), "--token-file",
                               os.path.join(tls, "token"), "--json", "--deadline-ms", "60000"] + list(args),
                              capture_output=True, text=True, timeout=120)

    def close(self):
        for i in list(self.procs):
            self.stop(i)

    def variant(self, name, container=None):
        """The same replicas' declaration (ports, PKI, objects) with volumes of their own under
        WORK/NAME, and another container declaration if given; no process of its own yet."""
        other = Replicas.__new__(Replicas)
        other.__dict__.update(self.__dict__)
        other.work, other.procs = os.path.join(self.work, name), {}
        other.c = container if container is not None else self.c
        os.makedirs(other.work)
        return other


def check_replica_ids(replicas):
    """The stockd-replica script's id rules, with the real stockd: first start, restart, a
    lost Raft log, refusals; then the declared preStop hook."""
    r = replicas
    for i in range(r.count):
        if r.node_id(i) != [str(i + 1), "bootstrap", "stockd-%d" % i]:
            fail("stockd-replica: replica %d started the group with id file %s, not '%d bootstrap stockd-%d'"
                 % (i, r.node_id(i), i + 1, i))
    if "cluster_state_still_new" in "".join(r.logs.values()):
        fail("stockd-replica: warned that the state is still new on a first start")
    leader = r.leaders()[0]
    follower = next(i for i in range(r.count) if i != leader)
    # a restart keeps the id (and, the group having formed, says the state should be existing)
    if r.stop(follower) != 0:
        fail("stockd-replica: replica %d did not stop cleanly on SIGTERM" % follower)
    if not r.launch(follower):
        return
    wait_for(lambda: r.ready(follower), 30, "stockd-replica: replica %d not Ready again after a restart" % follower)
    if r.node_id(follower) != [str(follower + 1), "bootstrap", "stockd-%d" % follower]:
        fail("stockd-replica: a restart changed the id file to %s" % r.node_id(follower))
    if "cluster_state_still_new" not in r.logs[follower]:
        fail("stockd-replica: no cluster_state_still_new warning on a restart while the state is new")
    # its Raft log lost (the id file left): never again under its id, even while the state is "new"
    r.stop(follower, signal.SIGKILL)
    shutil.rmtree(os.path.join(r.volume(follower), "data", "raft"))
    shutil.rmtree(os.path.join(r.volume(follower), "data"))
    if not r.launch(follower):
        return
    new_id = r.node_id(follower)
    if not new_id or new_id[1] != "join" or int(new_id[0]) < 1000:
        fail("stockd-replica: after the Raft log was lost the id file is %s, not a new id with join" % new_id)
        return
    for event in ('"event":"raft_log_lost"', '"event":"waiting_to_be_added"'):
        if event not in r.logs[follower]:
            fail("stockd-replica: no %s in the log of a replica that lost its Raft log" % event)
    time.sleep(2)
    if r.ready(follower):
        fail("stockd-replica: a replica waiting to be added reports Ready")
    out = r.stockctl(leader, "cluster", "remove-member", str(follower + 1))
    if out.returncode != 0:
        fail("stockctl cluster remove-member %d: %s" % (follower + 1, out.stdout + out.stderr))
    out = r.stockctl(leader, "cluster", "add-member", new_id[0], "127.0.0.1:%d" % r.raft_port(follower),
                     "127.0.0.1:%d" % r.grpc_port(follower))
    if out.returncode != 0:
        fail("stockctl cluster add-member %s: %s" % (new_id[0], out.stdout + out.stderr))
    wait_for(lambda: r.ready(follower), 60, "stockd-replica: the new member %s never became Ready" % new_id[0])
    check_refusals(r)
    check_first_start_failures(r)
    check_restore(r, leader)
    # the declared preStop hook on the leader hands leadership to another replica
    pre_stop = r.c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if not pre_stop:
        return
    mounts = mount_files(r.objects, r.template, r.c, tempfile.mkdtemp(dir=r.work, prefix="prestop-"), r.pki)
    command = []
    for part in pre_stop:
        flag, _, value = part.partition("=")
        if flag == "--admin":
            value = "127.0.0.1:%d" % r.admin[leader]
        command.append("%s=%s" % (flag, local_path(value, mounts)) if value else local_path(part, mounts))
    env = dict(os.environ, STOCKCTL_BIN=os.path.join(BUILD, "stockctl"))
    hook = subprocess.run(command, capture_output=True, text=True, timeout=30, env=env)
    if hook.returncode != 0:
        fail("the preStop hook exits %d: %s" % (hook.returncode, hook.stderr))
    if wait_for(lambda: r.leaders() and leader not in r.leaders(), 15,
                "the preStop hook did not hand leadership over: %s" % hook.stderr.strip()):
        print("stockd-replica: %d replicas started the group (ids 1..%d), a restart kept its id, a lost "
              "Raft log came back as %s (--join) and was added, damaged ids refused, preStop handed "
              "leadership from replica %d to %d" % (r.count, r.count, new_id[0], leader, r.leaders()[0]))


def check_refusals(r):
    """Id files the script must refuse: damaged, a directory, another pod's, and a Raft log
    without its id file or sentinel."""
    scratch = r.count + 1
    volume = r.volume(scratch)
    os.makedirs(os.path.join(volume, "data", "raft"))
    cases = [("a damaged id file", "seven\n"), ("another pod's id file", "1 bootstrap stockd-0\n"),
             ("an id file of an old format", "1 bootstrap\n")]
    for what, text in cases:
        with open(os.path.join(volume, "node-id"), "w") as f:
            f.write(text)
        status, log = r.refused(scratch)
        if status != 2 or "start_refused" not in log:
            fail("stockd-replica: %s was not refused (status %s)" % (what, status))
    os.remove(os.path.join(volume, "node-id"))
    os.mkdir(os.path.join(volume, "node-id"))
    status, log = r.refused(scratch)
    if status != 2 or "start_refused" not in log:
        fail("stockd-replica: a directory as the id file was not refused (status %s)" % status)
    os.rmdir(os.path.join(volume, "node-id"))
    open(os.path.join(volume, "data", "raft", "metadata1"), "w").close()
    status, log = r.refused(scratch)
    if status != 2 or "start_refused" not in log:
        fail("stockd-replica: a Raft log without its id file was not refused (status %s)" % status)
    with open(os.path.join(volume, "node-id"), "w") as f:
        f.write("%d bootstrap stockd-%d\n" % (scratch + 1, scratch))
    status, log = r.refused(scratch)
    if status != 2 or "start_refused" not in log:
        fail("stockd-replica: a Raft log without the sentinel of its id was not refused (status %s)" % status)
    shutil.rmtree(volume)


def check_first_start_failures(r):
    """A first start that fails before the Raft library writes anything (here: a bad flag)
    keeps the bootstrap id; so does a --join replica that restarts before it is added; a
    joined replica whose data is lost takes a new id."""
    scratch = 1  # stands for stockd-1 on a fresh volume while the state is "new"
    broken = copy.deepcopy(r.c)
    broken["args"] = broken.get("args", []) + ["--shutdown-grace=soon"]  # stockd refuses it at once
    r2 = r.variant("first-start", broken)
    for attempt in range(2):
        status, log = r2.refused(scratch)
        if status == 0 or r2.node_id(scratch) != [str(scratch + 1), "bootstrap", "stockd-%d" % scratch]:
            fail("stockd-replica: after a failed first start (attempt %d) the id file is %s, not the "
                 "bootstrap id %d" % (attempt + 1, r2.node_id(scratch), scratch + 1))
    # STOCKD_CLUSTER_STATE=existing: even stockd-0's empty volume joins under a new id, and
    # waits to be added (started, then stopped here); restarted before it is added it keeps
    # the id; its data lost, it takes another
    r3 = r.variant("join")
    replacement = {"STOCKD_CLUSTER_STATE": "existing", "STOCKD_POD_NAME": "stockd-0"}
    ids = []
    for lose_data in (False, False, True):
        if lose_data:
            shutil.rmtree(os.path.join(r3.volume(5), "data"))
        if r3.launch(5, replacement):
            ids.append(r3.node_id(5))
        r3.stop(5)
    if len(ids) != 3 or not ids[0] or ids[0][1] != "join" or int(ids[0][0]) < 1000 or ids[1] != ids[0]:
        fail("stockd-replica: under STOCKD_CLUSTER_STATE=existing, stockd-0 on an empty volume, "
             "restarted once, then its data lost, had the ids %s (want a new join id, the same, "
             "another)" % ids)
    elif ids[2] == ids[0] or ids[2][1] != "join":
        fail("stockd-replica: a --join replica whose data was lost kept its id %s" % ids[0])


def check_restore(r, leader):
    """STOCKD_CLUSTER_STATE=restore (deploy/README.md section 6): stockd-0 on a volume without
    the backup is refused; with the leader's checkpoint in VOLUME/restore it takes id 1,
    starts the group alone from it (--restore-group) and leads with the backup's ledger seq;
    restarted, it keeps its id and leads again (its data: test_replication.py RestoreGroup);
    a one-node data directory in place is restored the same way."""
    out = r.stockctl(leader, "backup", "restore-check")
    if out.returncode != 0:
        fail("stockctl backup: %s" % (out.stdout + out.stderr))
        return
    backup = json.loads(out.stdout)
    r4 = r.variant("restore")
    restore = {"STOCKD_CLUSTER_STATE": "restore", "STOCKD_POD_NAME": "stockd-0"}
    scratch = 6  # its own ports; the pod name makes it stockd-0
    status, log = r4.refused(scratch, restore)
    if status != 2 or "holds no backup checkpoint" not in log:
        fail("stockd-replica: under STOCKD_CLUSTER_STATE=restore, stockd-0 without a backup was not "
             "refused (status %s)" % status)
        return
    os.makedirs(r4.volume(scratch), exist_ok=True)
    shutil.copytree(backup["path"], os.path.join(r4.volume(scratch), "restore"))
    # and a one-node installation's data directory, in place (deploy/README.md section 7)
    r5 = r.variant("restore-in-place")
    shutil.copytree(backup["path"], os.path.join(r5.volume(scratch), "data"))
    for attempt, replica in enumerate((r4, r4, r5)):  # the first start, a restart; in place
        if not replica.launch(scratch, restore):
            fail("stockd-replica: the restored replica did not start (attempt %d)" % (attempt + 1))
            return
        if not wait_for(lambda: replica.leaders() == [scratch], 30,
                        "stockd-replica: the restored replica does not lead its group of one"):
            return
        if replica.node_id(scratch) != ["1", "bootstrap", "stockd-0"]:
            fail("stockd-replica: the restored replica's id file is %s" % replica.node_id(scratch))
        adopted = re.search(r'"event":"replication_group_base_adopted","base_ledger_seq":(\d+)',
                            replica.logs[scratch])
        if attempt != 1 and (adopted is None or int(adopted.group(1)) != backup["ledger_seq"]):
            fail("stockd-replica: the restored replica did not adopt the backup (ledger seq %s, "
                 "backup's %d)" % (adopted and adopted.group(1), backup["ledger_seq"]))
        replica.stop(scratch)
    print("stockd-replica: STOCKD_CLUSTER_STATE=restore refused stockd-0 without a backup, then "
          "started a group of one from the leader's checkpoint (ledger seq %d), restarted it, and "
          "from a data directory in place" % backup["ledger_seq"])


def check_live(objects, probes):
    """Starts the real binaries as the manifests declare them (flags, environment, Secret and
    ConfigMap files): stockd as its StatefulSet's replicas, the gateway given all of them.
    Exercises every probe they declare, stockd's mutual TLS and policy, and the replicas'
    id rules and preStop hook."""
    sys.path.insert(0, os.path.join(BUILD, "pygen"))
    import grpc
    work = tempfile.mkdtemp(prefix="stockd-deploy-")
    pki = make_pki(work)
    declared = {binary_of(c): (t, c) for _, t in pod_templates(objects) for c in t["spec"]["containers"]}
    template, c = declared["stockd"]
    replicas = Replicas(objects, template, c, work, pki)
    gateway = None
    try:
        if not all([replicas.launch(i) for i in range(replicas.count)]):
            return
        if not wait_for(lambda: len(replicas.leaders()) == 1 and all(replicas.ready(i) for i in range(replicas.count)),
                        60, "stockd: the %d replicas as declared elected no leader or are not all Ready" % replicas.count):
            return
        leader = replicas.leaders()[0]
        if replicas.admin[leader] is None and any(a.startswith("--admin-listen=") for a in c.get("args", [])):
            fail("stockd: --admin-listen declared, but no admin_listening before listening in its log")
        template, c = declared["stockd-gateway"]
        stockd_list = ",".join("127.0.0.1:%d" % replicas.grpc_port(i) for i in range(replicas.count))
        gateway, gateway_port, _ = launch_as_declared(objects, template, c, tempfile.mkdtemp(dir=work), pki, {
            "--listen": "127.0.0.1:0", "--stockd": stockd_list})
        http = {"stockd": [replicas.metrics[i] for i in range(replicas.count)], "stockd-gateway": [gateway_port]}
        check_grpc_as_declared(grpc, replicas.grpc_port(leader), replicas.admin[leader], pki)
        for binary, protocol, path in sorted(set(probes), key=str):
            if protocol == "grpc":
                fail("%s: a gRPC probe; stockd's gRPC port speaks TLS only" % binary)
                continue
            # /readyz of the gateway asks stockd's health: over mutual TLS, as declared
            for port in http.get(binary) or []:
                status = http_get(port, path)[0]
                if status != 200:
                    fail("%s probe %s on port %s answers %s" % (binary, path, port, status))
        check_replica_ids(replicas)
    except Exception as error:  # an unreachable or failing endpoint
        fail("live check failed: %r" % error)
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=30)
        replicas.close()
        if failures and os.environ.get("STOCKD_KEEP_LOGS"):
            for i, log in replicas.logs.items():
                print("--- replica %s ---\n%s" % (i, log))
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
