#!/usr/bin/python3
"""Security properties of the rendered Kubernetes manifests (offline, no binaries needed).

Goal: the manifests keep stockd's gRPC behind mutual TLS and its policy, keep Admin off the
network, and keep the probes working over a TLS-only gRPC port. For every rendered overlay:
  - stockd gets --tls-cert, --tls-key, --tls-client-ca and --auth-policy, each a file of a
    Secret volume mounted whole (no subPath: kubelet then updates the files in place and
    stockd re-reads them), and neither --insecure nor a non-loopback --admin-listen;
  - stockd's probes are httpGet on its metrics port, /healthz (startup, liveness) and
    /readyz (readiness): the kubelet's gRPC (and a TCP) probe cannot check a TLS port;
  - the gateway dials stockd with --tls-ca, --tls-cert and --tls-key from a Secret volume;
  - a NetworkPolicy selects the gateway for Ingress and Egress: in only from selected
    namespaces to its HTTP port, out only to stockd's gRPC port and DNS; stockd's policies
    let the gateway in, let only stockd's own pods reach the (plaintext) Raft port, and let
    nothing out but DNS and the other replicas' Raft port;
  - replication: the StatefulSet runs an odd number (3+) of replicas started together
    (Parallel), through stockd-replica (ids kept on the volume) with as many initial members,
    spread over nodes, with a preStop hand-over; its headless Service publishes replicas that
    are not Ready (they must find each other to elect a leader); a PodDisruptionBudget keeps
    a majority; the gateway is given every replica;
  - with cert-manager objects (the optional component): every Certificate's Issuer exists,
    stockd's and the gateway's Secrets are issued by one CA Issuer, stockd's certificate
    names every host the gateway dials and every replica's leader-hint name and serves
    "server auth", the gateway's names its
    policy identity and serves "client auth", and no pod mounts the CA's key pair;
  - the example policy (--policy FILE) is well formed and gives the gateway's identity
    write, not admin.
With --self-test, each FILE must pass and each of a list of broken variants of it (gRPC
probes, a missing TLS flag or mount, no gateway NetworkPolicy, ...) must fail: the checks
are shown to catch what they are for.
Usage: security.py [--self-test] [--policy POLICY.json] RENDERED.yaml...
"""
import copy
import json
import re
import sys

import yaml

GATEWAY_SUBJECT = "stockd-gateway"
# what a container runs, by the basename of its command: stockd-replica execs stockd
RUNS = {"stockd-replica": "stockd"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
STOCKD_FILES = ("tls-cert", "tls-key", "tls-client-ca", "auth-policy")
GATEWAY_FILES = ("tls-ca", "tls-cert", "tls-key")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def runs(container):
    name = container["command"][0].rsplit("/", 1)[-1]
    return RUNS.get(name, name)


def port_of(address):
    return int(address.rsplit(":", 1)[1]) if address else None


class Checker:
    def __init__(self, objects, label):
        self.objects = objects
        self.label = label
        self.failures = []

    def fail(self, message):
        self.failures.append("%s: %s" % (self.label, message))

    def kind(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def workload(self, binary):
        """(pod template, container) of the workload whose container runs BINARY."""
        for o in self.kind("Deployment") + self.kind("StatefulSet"):
            template = o["spec"]["template"]
            for c in template["spec"]["containers"]:
                if c.get("command") and runs(c) == binary:
                    return template, c
        return None, None

    def statefulset(self, binary):
        for o in self.kind("StatefulSet"):
            for c in o["spec"]["template"]["spec"]["containers"]:
                if runs(c) == binary:
                    return o
        return None

    def setting(self, container, flag, env):
        """The value a flag gets from args, env or an envFrom ConfigMap (None when unset)."""
        args = container.get("args", [])
        for i, arg in enumerate(args):
            if arg == "--" + flag:
                return args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "true"
            if arg.startswith("--%s=" % flag):
                return arg.split("=", 1)[1]
        for e in container.get("env", []):
            if e["name"] == env:
                return e.get("value", "<from %s>" % list(e.get("valueFrom", {})))
        maps = {o["metadata"]["name"]: o.get("data", {}) for o in self.kind("ConfigMap")}
        for source in container.get("envFrom", []):
            data = maps.get(source.get("configMapRef", {}).get("name"), {})
            if env in data:
                return data[env]
        return None

    def secret_file(self, template, container, path, what):
        """Checks PATH is a key of a Secret volume mounted whole; returns the Secret's name."""
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            directory = mount["mountPath"].rstrip("/") + "/"
            if not path.startswith(directory):
                continue
            if mount.get("subPath") or mount.get("subPathExpr"):
                self.fail("%s: %s is mounted with subPath: kubelet never updates it (rotation)" % (what, path))
            secret = volumes.get(mount["name"], {}).get("secret")
            if secret is None:
                self.fail("%s: %s is not on a Secret volume" % (what, path))
                return None
            name = path[len(directory):]
            items = secret.get("items")
            if items is not None and name not in [i["path"] for i in items]:
                self.fail("%s: %s is not among the items of Secret %s" % (what, path, secret["secretName"]))
            return secret["secretName"]
        self.fail("%s: %s is on no mounted volume" % (what, path))
        return None

    # ---- stockd ----
    def check_stockd(self):
        template, c = self.workload("stockd")
        if c is None:
            self.fail("no stockd workload")
            return
        secrets = {}
        for flag in STOCKD_FILES:
            value = self.setting(c, flag, "STOCKD_" + flag.upper().replace("-", "_"))
            if not value:
                self.fail("stockd: --%s is not set" % flag)
                continue
            secrets[flag] = self.secret_file(template, c, value, "stockd --" + flag)
        self.stockd_tls_secret = secrets.get("tls-cert")
        insecure = self.setting(c, "insecure", "STOCKD_INSECURE")
        if insecure not in (None, "false", "0"):
            self.fail("stockd: --insecure (plaintext gRPC) is set")
        admin = self.setting(c, "admin-listen", "STOCKD_ADMIN_LISTEN")
        self.admin_host = admin.rsplit(":", 1)[0].strip("[]") if admin else None
        if admin and admin.rsplit(":", 1)[0] not in LOOPBACK_HOSTS:
            self.fail("stockd: --admin-listen %s is not loopback: Admin would be on the network" % admin)
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if admin and int(admin.rsplit(":", 1)[1]) in ports.values():
            self.fail("stockd: the Admin port %s is declared as a container port" % admin)
        metrics = self.setting(c, "metrics-listen", "STOCKD_METRICS_LISTEN")
        metrics_port = int(metrics.rsplit(":", 1)[1]) if metrics else None
        self.check_stockd_probes(c, ports, metrics_port)

    def check_stockd_probes(self, c, ports, metrics_port):
        wanted = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        for kind, path in wanted.items():
            probe = c.get(kind)
            if probe is None:
                if kind != "startupProbe":
                    self.fail("stockd: no %s" % kind)
                continue
            if "httpGet" not in probe:
                handler = [k for k in ("grpc", "tcpSocket", "exec") if k in probe]
                self.fail("stockd %s: %s probe, not httpGet on the metrics port (the kubelet's "
                          "probes cannot speak TLS to the gRPC port)" % (kind, handler or "no"))
                continue
            port = probe["httpGet"]["port"]
            port = ports.get(port) if isinstance(port, str) else port
            if port is None or port != metrics_port:
                self.fail("stockd %s: httpGet on port %s, not the metrics port %s" % (kind, port, metrics_port))
            if probe["httpGet"].get("path") != path:
                self.fail("stockd %s: path %s, expected %s" % (kind, probe["httpGet"].get("path"), path))
            if probe["httpGet"].get("scheme", "HTTP") != "HTTP":
                self.fail("stockd %s: scheme %s; the metrics port is plain HTTP" % (kind, probe["httpGet"]["scheme"]))

    # ---- gateway ----
    def check_gateway(self):
        template, c = self.workload("stockd-gateway")
        if c is None:
            self.fail("no stockd-gateway workload")
            return
        secrets = {}
        for flag in GATEWAY_FILES:
            value = self.setting(c, flag, "STOCKD_GATEWAY_" + flag.upper().replace("-", "_"))
            if not value:
                self.fail("gateway: --%s is not set: it would not dial stockd over mutual TLS" % flag)
                continue
            secrets[flag] = self.secret_file(template, c, value, "gateway --" + flag)
        self.gateway_tls_secret = secrets.get("tls-cert")
        if self.setting(c, "token", "STOCKD_GATEWAY_TOKEN") not in (None, "<from ['secretKeyRef']>"):
            self.fail("gateway: a literal --token in the manifest (use --token-file from a Secret)")
        target = self.namespaced(self.setting(c, "stockd", "STOCKD_GATEWAY_STOCKD") or "")
        self.gateway_targets = [t for t in target.split(",") if t]
        self.gateway_target_hosts = [t.rsplit(":", 1)[0] for t in self.gateway_targets]

    def namespaced(self, value):
        """VALUE with the kubelet's $(...NAMESPACE) expansion done (the rendered namespace)."""
        namespace = next((o["metadata"]["namespace"] for o in self.objects
                          if o["metadata"].get("namespace")), "default")
        return re.sub(r"\$\([A-Z_]*NAMESPACE\)", namespace, value)

    # ---- NetworkPolicies ----
    def pod_labels(self, binary):
        template, _ = self.workload(binary)
        return template["metadata"].get("labels", {}) if template else {}

    def container_ports(self, binary):
        _, c = self.workload(binary)
        return {p["containerPort"] for p in (c or {}).get("ports", [])}

    @staticmethod
    def selects(selector, labels):
        expressions = selector.get("matchExpressions")
        return not expressions and all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    def policies_for(self, binary):
        labels = self.pod_labels(binary)
        return [p for p in self.kind("NetworkPolicy") if self.selects(p["spec"]["podSelector"], labels)]

    @staticmethod
    def is_dns(rule):
        ports = rule.get("ports", [])
        return bool(ports) and all(p.get("port") == 53 and p.get("protocol", "TCP") in ("UDP", "TCP") for p in ports)

    def check_gateway_policy(self):
        policies = self.policies_for("stockd-gateway")
        if not policies:
            self.fail("no NetworkPolicy selects the gateway pods")
            return
        http_ports = self.container_ports("stockd-gateway")
        stockd_labels = self.pod_labels("stockd")
        _, stockd = self.workload("stockd")
        listen = self.setting(stockd, "listen", "STOCKD_LISTEN") if stockd else None
        grpc_port = int(listen.rsplit(":", 1)[1]) if listen else None
        for policy in policies:
            name = "NetworkPolicy " + policy["metadata"]["name"]
            types = policy["spec"].get("policyTypes", [])
            if "Ingress" not in types or "Egress" not in types:
                self.fail("%s: policyTypes %s must hold Ingress and Egress" % (name, types))
            for rule in policy["spec"].get("ingress", []):
                peers = rule.get("from", [])
                if not peers or not rule.get("ports"):
                    self.fail("%s: an ingress rule open to every source or port" % name)
                for peer in peers:
                    selector = peer.get("namespaceSelector")
                    if "ipBlock" in peer or (selector is not None and not selector):
                        self.fail("%s: ingress from %s: not a selected namespace" % (name, peer))
                for p in rule.get("ports", []):
                    if p.get("port") not in http_ports:
                        self.fail("%s: ingress to port %s, not the gateway's HTTP port" % (name, p.get("port")))
            egress = policy["spec"].get("egress", [])
            for rule in egress:
                if self.is_dns(rule):
                    continue
                peers, ports = rule.get("to", []), rule.get("ports", [])
                if not peers or not ports:
                    self.fail("%s: an egress rule open to every destination or port" % name)
                for peer in peers:
                    if set(peer) != {"podSelector"} or not peer["podSelector"] or \
                            not self.selects(peer["podSelector"], stockd_labels):
                        self.fail("%s: egress to %s, not to stockd's pods" % (name, peer))
                for p in ports:
                    if p.get("port") not in (grpc_port,):
                        self.fail("%s: egress to port %s, not stockd's gRPC port" % (name, p.get("port")))
        egress_rules = [r for p in policies for r in p["spec"].get("egress", [])]
        if not any(self.is_dns(r) for r in egress_rules):
            self.fail("the gateway's NetworkPolicy allows no DNS")
        if not any(not self.is_dns(r) and any(p.get("port") == grpc_port for p in r.get("ports", []))
                   for r in egress_rules):
            self.fail("the gateway's NetworkPolicy does not let it reach stockd's gRPC port")
        if not any(r.get("from") for p in policies for r in p["spec"].get("ingress", [])):
            self.fail("the gateway's NetworkPolicy lets no ingress controller in")

    def check_stockd_policy(self):
        policies = self.policies_for("stockd")
        if not policies:
            self.fail("no NetworkPolicy selects the stockd pods")
            return
        gateway_labels = self.pod_labels("stockd-gateway")
        stockd_labels = self.pod_labels("stockd")
        _, stockd = self.workload("stockd")
        raft_port = port_of(self.setting(stockd, "raft-listen", "STOCKD_RAFT_LISTEN")) if stockd else None
        if not any("Egress" in p["spec"].get("policyTypes", []) for p in policies):
            self.fail("stockd's NetworkPolicy does not restrict egress")

        def only_replicas(rule, direction):
            peers = rule.get(direction, [])
            return bool(peers) and all(set(peer) == {"podSelector"} and peer["podSelector"] and
                                       self.selects(peer["podSelector"], stockd_labels) for peer in peers)
        def covers_raft(rule):
            ports = rule.get("ports", [])
            return not ports or any(p.get("port") in (raft_port, "raft") or
                                    (isinstance(p.get("port"), int) and p.get("endPort") and
                                     p["port"] <= raft_port <= p["endPort"]) for p in ports)
        raft_in = False
        for policy in policies:
            name = policy["metadata"]["name"]
            for rule in policy["spec"].get("egress", []):
                ports = [p.get("port") for p in rule.get("ports", [])]
                if self.is_dns(rule):
                    continue
                if raft_port is None or not ports or set(ports) != {raft_port} or not only_replicas(rule, "to") \
                        or any(p.get("endPort") for p in rule.get("ports", [])):
                    self.fail("NetworkPolicy %s: stockd egress beyond DNS and the replicas' Raft port: %s" % (name, rule))
            for rule in policy["spec"].get("ingress", []):
                ports = [p.get("port") for p in rule.get("ports", [])]
                if raft_port is not None and covers_raft(rule):
                    if not only_replicas(rule, "from") or set(ports) != {raft_port} or \
                            any(p.get("endPort") for p in rule.get("ports", [])):
                        self.fail("NetworkPolicy %s: the Raft port %s (plaintext) is open beyond "
                                  "stockd's own pods: %s" % (name, raft_port, rule))
                    else:
                        raft_in = True
        if raft_port is not None and not raft_in:
            self.fail("stockd's NetworkPolicy does not let the replicas reach each other's Raft port %s" % raft_port)
        let_in = [peer for p in policies for r in p["spec"].get("ingress", []) for peer in r.get("from", [])]
        if not any("podSelector" in peer and "namespaceSelector" not in peer
                   and self.selects(peer["podSelector"], gateway_labels) for peer in let_in):
            self.fail("stockd's NetworkPolicy does not let the gateway in")

    # ---- cert-manager ----
    def check_cert_manager(self):
        certificates = {c["spec"]["secretName"]: c for c in self.kind("Certificate")}
        if not certificates:
            return
        issuers = {i["metadata"]["name"]: i for i in self.kind("Issuer")}
        for c in certificates.values():
            ref = c["spec"]["issuerRef"]
            if ref.get("kind", "Issuer") == "Issuer" and ref["name"] not in issuers:
                self.fail("Certificate %s: Issuer %s does not exist" % (c["metadata"]["name"], ref["name"]))
        ca_secrets = {c["spec"]["secretName"] for c in certificates.values() if c["spec"].get("isCA")}
        for i in issuers.values():
            if "ca" in i["spec"] and i["spec"]["ca"]["secretName"] not in ca_secrets:
                self.fail("Issuer %s: CA Secret %s is no CA Certificate here" % (i["metadata"]["name"], i["spec"]["ca"]["secretName"]))
        for o in self.kind("Deployment") + self.kind("StatefulSet"):
            for v in o["spec"]["template"]["spec"].get("volumes", []):
                if v.get("secret", {}).get("secretName") in ca_secrets:
                    self.fail("%s mounts the CA key pair %s" % (o["metadata"]["name"], v["secret"]["secretName"]))
        server = certificates.get(getattr(self, "stockd_tls_secret", None))
        client = certificates.get(getattr(self, "gateway_tls_secret", None))
        if server is None or client is None:
            self.fail("cert-manager issues %s but not both stockd's (%s) and the gateway's (%s) Secret"
                      % (sorted(certificates), getattr(self, "stockd_tls_secret", None),
                         getattr(self, "gateway_tls_secret", None)))
            return
        if server["spec"]["issuerRef"] != client["spec"]["issuerRef"]:
            self.fail("stockd's and the gateway's certificates come from different Issuers: "
                      "neither ca.crt would verify the other side")
        issuer = issuers.get(server["spec"]["issuerRef"]["name"], {})
        if server["spec"]["issuerRef"].get("kind", "Issuer") == "Issuer" and "ca" not in issuer.get("spec", {}):
            self.fail("Certificate %s: Issuer is not a CA Issuer" % server["metadata"]["name"])
        for host in self.gateway_target_hosts + getattr(self, "hint_hosts", []):
            if host not in server["spec"].get("dnsNames", []):
                self.fail("Certificate %s: dnsNames %s lack %s, a host the gateway dials or a "
                          "leader hint names" % (server["metadata"]["name"], server["spec"].get("dnsNames"), host))
        admin_host = getattr(self, "admin_host", None)
        if admin_host and admin_host not in server["spec"].get("ipAddresses", []) + server["spec"].get("dnsNames", []):
            self.fail("Certificate %s: names no %s, where stockctl reaches Admin (over TLS) inside the pod"
                      % (server["metadata"]["name"], admin_host))
        if "server auth" not in server["spec"].get("usages", ["server auth"]):
            self.fail("Certificate %s: no 'server auth' usage" % server["metadata"]["name"])
        names = client["spec"].get("dnsNames") or [client["spec"].get("commonName")]
        if GATEWAY_SUBJECT not in names:
            self.fail("Certificate %s: names %s lack %s, the gateway's identity in the policy"
                      % (client["metadata"]["name"], names, GATEWAY_SUBJECT))
        if "client auth" not in client["spec"].get("usages", []):
            self.fail("Certificate %s: no 'client auth' usage" % client["metadata"]["name"])

    # ---- replication ----
    def check_replication(self):
        workload = self.statefulset("stockd")
        _, c = self.workload("stockd")
        if workload is None or c is None:
            self.fail("stockd does not run as a StatefulSet")
            return
        spec = workload["spec"]
        replicas = spec.get("replicas", 1)
        if replicas < 3 or replicas % 2 == 0:
            self.fail("stockd: %s replicas; a Raft group needs an odd number, 3 or more" % replicas)
        if spec.get("podManagementPolicy") != "Parallel":
            self.fail("stockd: podManagementPolicy %s; OrderedReady waits for stockd-0 to be Ready, "
                      "which needs a leader, which needs a second replica" % spec.get("podManagementPolicy"))
        if c["command"][0].rsplit("/", 1)[-1] != "stockd-replica" or self.setting(c, "raft-listen", "STOCKD_RAFT_LISTEN") is None:
            self.fail("stockd: not started through stockd-replica with --raft-listen (ids kept on the volume)")
        # the group starts with the first N pods (ids 1..N); pods past them join under new ids
        initial = self.setting(c, "initial-members", "STOCKD_INITIAL_MEMBERS") or ""
        if not initial.isdigit() or int(initial) % 2 == 0 or not 3 <= int(initial) <= replicas:
            self.fail("stockd: STOCKD_INITIAL_MEMBERS %r: an odd 3..%d (the replicas)" % (initial, replicas))
        headless = [o for o in self.kind("Service") if o["metadata"]["name"] == spec.get("serviceName")]
        if not headless or headless[0]["spec"].get("clusterIP") != "None" or \
                not headless[0]["spec"].get("publishNotReadyAddresses"):
            self.fail("stockd: the headless Service %s must publish replicas that are not Ready: "
                      "they find each other by it before any is Ready" % spec.get("serviceName"))
        template = self.setting(c, "grpc-address-template", "STOCKD_GRPC_ADDRESS_TEMPLATE") or ""
        if "@.%s." % spec.get("serviceName") not in template:
            self.fail("stockd: STOCKD_GRPC_ADDRESS_TEMPLATE %r does not name pods of the headless Service" % template)
        hints = [self.namespaced(template).replace("@", str(i)) for i in range(replicas)]
        self.hint_hosts = [h.rsplit(":", 1)[0] for h in hints]
        majority = replicas // 2 + 1
        labels = workload["spec"]["template"]["metadata"].get("labels", {})
        budgets = [p for p in self.kind("PodDisruptionBudget")
                   if self.selects(p["spec"].get("selector", {}), labels)]

        def keeps_majority(spec):
            least, most = spec.get("minAvailable"), spec.get("maxUnavailable")
            if isinstance(least, str) or isinstance(most, str):  # a percentage: rounded by the cluster
                percent = int(str(least or most).rstrip("%"))
                least = -(-replicas * percent // 100) if least is not None else None
                most = -(-replicas * percent // 100) if most is not None else None
            return (least or 0) >= majority or (most is not None and 0 < most <= replicas - majority)
        if not budgets or not all(keeps_majority(p["spec"]) for p in budgets):
            self.fail("stockd: no PodDisruptionBudget keeps a majority (%d of %d) available" % (majority, replicas))
        spread = workload["spec"]["template"]["spec"].get("topologySpreadConstraints", [])
        if not any(s["topologyKey"] == "kubernetes.io/hostname" and s["whenUnsatisfiable"] == "DoNotSchedule"
                   and s.get("maxSkew") == 1 for s in spread):
            self.fail("stockd: replicas not spread over nodes (topologySpreadConstraints on "
                      "kubernetes.io/hostname, DoNotSchedule)")
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if pre_stop[:2] != [c["command"][0], "pre-stop"]:
            self.fail("stockd: no preStop hook handing leadership over (stockd-replica pre-stop)")
        admin = self.setting(c, "admin-listen", "STOCKD_ADMIN_LISTEN")
        if "--admin=%s" % admin not in pre_stop:
            self.fail("stockd: the preStop hook does not call Admin where stockd listens (%s): %s" % (admin, pre_stop))
        # the gateway must name the replicas as their leader hints do, or it never matches one
        _, gateway = self.workload("stockd-gateway")
        if gateway is not None and sorted(getattr(self, "gateway_targets", [])) != sorted(hints):
            self.fail("gateway: --stockd lists %s, not the %d replicas by their hint names %s"
                      % (getattr(self, "gateway_targets", []), replicas, hints))

    def run(self):
        self.check_stockd()
        self.check_gateway()
        self.check_replication()
        self.check_gateway_policy()
        self.check_stockd_policy()
        self.check_cert_manager()
        return self.failures


def check_policy(path):
    failures = []
    try:
        policy = json.load(open(path))
        identities = policy["identities"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return ["%s: not a policy: %s" % (path, error)]
    names = [i.get("name") for i in identities]
    if len(set(names)) != len(names):
        failures.append("%s: identity names repeat: %s" % (path, names))
    for i in identities:
        who = "%s: identity %s" % (path, i.get("name"))
        if ("token_sha256" in i) == ("tls_subject" in i):
            failures.append("%s: needs exactly one of token_sha256 and tls_subject" % who)
        if "token_sha256" in i and not HEX64.match(i["token_sha256"]):
            failures.append("%s: token_sha256 is not 64 lowercase hex" % who)
        if not i.get("tenants") or not set(i.get("roles") or ["?"]) <= {"read", "write", "admin"}:
            failures.append("%s: tenants %s / roles %s" % (who, i.get("tenants"), i.get("roles")))
    gateway = [i for i in identities if i.get("tls_subject") == GATEWAY_SUBJECT]
    if not gateway or "write" not in gateway[0]["roles"] or "admin" in gateway[0]["roles"]:
        failures.append("%s: the gateway (tls_subject %s) needs write and must not have admin" % (path, GATEWAY_SUBJECT))
    return failures


# ---- self-test: broken variants each checker must refuse ----
def stockd_container(objects):
    return Checker(objects, "").workload("stockd")[1]


def gateway_container(objects):
    return Checker(objects, "").workload("stockd-gateway")[1]


def set_probes(handler):
    def mutate(objects):
        c = stockd_container(objects)
        for kind in ("livenessProbe", "readinessProbe"):
            for key in ("httpGet", "grpc", "tcpSocket"):
                c[kind].pop(key, None)
            c[kind].update(copy.deepcopy(handler))
    return mutate


def drop_arg(container_of, prefix):
    def mutate(objects):
        c = container_of(objects)
        c["args"] = [a for a in c["args"] if not a.startswith(prefix)]
    return mutate


def add_arg(arg):
    def mutate(objects):
        c = stockd_container(objects)
        c["args"] = [a for a in c["args"] if not a.startswith(arg.split("=")[0] + "=")] + [arg]
    return mutate


def drop_mount(container_of):
    def mutate(objects):
        c = container_of(objects)
        c["volumeMounts"] = [m for m in c["volumeMounts"] if "tls" not in m["name"]]
    return mutate


def sub_path(objects):
    for mount in stockd_container(objects)["volumeMounts"]:
        if "tls" in mount["name"]:
            mount["subPath"] = "current"  # a fixed subdirectory of the volume


def drop_policy(name):
    def mutate(objects):
        objects[:] = [o for o in objects if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name)]
    return mutate


def policy(objects, name):
    return next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name)


def gateway_ingress_only(objects):
    p = policy(objects, "stockd-gateway")
    p["spec"]["policyTypes"] = ["Ingress"]
    p["spec"].pop("egress", None)


def gateway_egress_anywhere(objects):
    policy(objects, "stockd-gateway")["spec"]["egress"].append({"to": [{"namespaceSelector": {}}]})


def gateway_ingress_anyone(objects):
    policy(objects, "stockd-gateway")["spec"]["ingress"].append({"ports": [{"port": 8080}]})


def stockd_egress_anywhere(objects):
    policy(objects, "stockd")["spec"]["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})


def stockd_set(objects):
    return next(o for o in objects if o["kind"] == "StatefulSet")


def set_spec(change):
    def mutate(objects):
        change(stockd_set(objects)["spec"])
    return mutate


def raft_from_anyone(objects):
    for rule in policy(objects, "stockd")["spec"]["ingress"]:
        if any(p["port"] == 50053 for p in rule["ports"]):
            rule["from"].append({"namespaceSelector": {"matchLabels": {"team": "x"}}})


def stockd_egress_to_gateway(objects):
    policy(objects, "stockd")["spec"]["egress"].append(
        {"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "stockd-gateway"}}}],
         "ports": [{"port": 8080}]})


def budget(change):
    def mutate(objects):
        change(next(o for o in objects if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == "stockd")["spec"])
    return mutate


def headless_ready_only(objects):
    next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "stockd-headless")["spec"].pop(
        "publishNotReadyAddresses")


def no_pre_stop(objects):
    stockd_container(objects).pop("lifecycle")


def gateway_stockd(change):
    def mutate(objects):
        entry = next(e for e in gateway_container(objects)["env"] if e["name"] == "STOCKD_GATEWAY_STOCKD")
        entry["value"] = change(entry["value"])
    return mutate


def raft_range_open(objects):
    policy(objects, "stockd")["spec"]["ingress"].append(
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}], "ports": [{"port": 50000, "endPort": 50100}]})


def certificate(objects, secret):
    return next((o for o in objects if o["kind"] == "Certificate" and o["spec"]["secretName"] == secret), None)


def cert_mutation(secret, change):
    def mutate(objects):
        c = certificate(objects, secret)
        if c is None:
            raise LookupError
        change(c["spec"])
    return mutate


MUTATIONS = [
    ("stockd probes are gRPC on the TLS port", set_probes({"grpc": {"port": 50051}})),
    ("stockd probes are TCP on the TLS port", set_probes({"tcpSocket": {"port": "grpc"}})),
    ("stockd probes hit the gRPC port over HTTP", set_probes({"httpGet": {"path": "/healthz", "port": 50051}})),
    ("stockd lacks --tls-cert", drop_arg(stockd_container, "--tls-cert")),
    ("stockd lacks --tls-client-ca", drop_arg(stockd_container, "--tls-client-ca")),
    ("stockd lacks --auth-policy", drop_arg(stockd_container, "--auth-policy")),
    ("stockd lacks the TLS mount", drop_mount(stockd_container)),
    ("stockd's TLS mount uses subPath", sub_path),
    ("stockd runs --insecure", add_arg("--insecure=true")),
    ("stockd's Admin on the network", add_arg("--admin-listen=0.0.0.0:50052")),
    ("gateway lacks --tls-cert", drop_arg(gateway_container, "--tls-cert")),
    ("gateway lacks --tls-ca", drop_arg(gateway_container, "--tls-ca")),
    ("gateway lacks its TLS mount", drop_mount(gateway_container)),
    ("gateway has no NetworkPolicy", drop_policy("stockd-gateway")),
    ("gateway NetworkPolicy leaves egress open", gateway_ingress_only),
    ("gateway may call anywhere", gateway_egress_anywhere),
    ("gateway takes HTTP from anyone", gateway_ingress_anyone),
    ("stockd has no NetworkPolicy", drop_policy("stockd")),
    ("stockd may call anywhere", stockd_egress_anywhere),
    ("stockd may call the gateway", stockd_egress_to_gateway),
    ("the Raft port is open to another namespace", raft_from_anyone),
    ("two replicas", set_spec(lambda s: s.update(replicas=2))),
    ("replicas started in order", set_spec(lambda s: s.update(podManagementPolicy="OrderedReady"))),
    ("a disruption budget that lets a majority go", budget(lambda s: s.update(minAvailable=1))),
    ("replicas not spread over nodes",
     set_spec(lambda s: s["template"]["spec"].pop("topologySpreadConstraints"))),
    ("not-Ready replicas unpublished", headless_ready_only),
    ("no preStop hand-over", no_pre_stop),
    ("the gateway knows one replica", gateway_stockd(lambda v: v.split(",")[0])),
    ("the gateway names replicas otherwise than their hints", gateway_stockd(lambda v: v.replace(".svc:", ":"))),
    ("a port range over the Raft port open to another namespace", raft_range_open),
    ("a disruption budget of 33 % (1 of 3)", budget(lambda s: s.update(minAvailable="33%"))),
    ("initial members even", lambda objects: next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "stockd")["data"].update(STOCKD_INITIAL_MEMBERS="2")),
    ("the preStop hook calls Admin elsewhere",
     lambda objects: stockd_container(objects)["lifecycle"]["preStop"]["exec"]["command"].__setitem__(2, "--admin=127.0.0.1:1")),
    ("stockd's certificate lacks a replica's name",
     cert_mutation("stockd-tls", lambda s: s.update(dnsNames=[n for n in s["dnsNames"] if "stockd-2" not in n]))),
    ("stockd's certificate lacks the gateway's target hosts",
     cert_mutation("stockd-tls", lambda s: s.update(dnsNames=["elsewhere"]))),
    ("gateway certificate lacks its identity",
     cert_mutation("stockd-gateway-client-tls", lambda s: s.update(dnsNames=["someone"]))),
    ("gateway certificate lacks client auth",
     cert_mutation("stockd-gateway-client-tls", lambda s: s.update(usages=["server auth"]))),
    ("stockd's certificate does not name the Admin address",
     cert_mutation("stockd-tls", lambda s: s.pop("ipAddresses"))),
    ("certificates from different Issuers",
     cert_mutation("stockd-tls", lambda s: s.update(issuerRef={"kind": "Issuer", "name": "stockd-selfsigned"}))),
]


def self_test(path, objects):
    failures = Checker(copy.deepcopy(objects), path).run()
    if failures:
        return failures
    missed, tried = [], 0
    for name, mutate in MUTATIONS:
        broken = copy.deepcopy(objects)
        try:
            mutate(broken)
        except LookupError:
            continue  # e.g. no cert-manager objects in this overlay
        tried += 1
        if not Checker(broken, path).run():
            missed.append("%s: the check accepts a broken variant: %s" % (path, name))
    if not missed:
        print("%s: passes, and each of %d broken variants is refused" % (path, tried))
    return missed


def main():
    args = sys.argv[1:]
    selftest = "--self-test" in args
    args = [a for a in args if a != "--self-test"]
    failures = []
    if "--policy" in args:
        i = args.index("--policy")
        failures += check_policy(args[i + 1])
        del args[i:i + 2]
    for path in args:
        objects = [o for o in yaml.safe_load_all(open(path)) if o]
        if selftest:
            failures += self_test(path, objects)
        else:
            found = Checker(objects, path).run()
            failures += found
            if not found:
                print("%s: TLS, policy, probes and NetworkPolicies as required" % path)
    for failure in failures:
        print("FAIL:", failure)
    sys.exit(1 if failures else 0)


main()
