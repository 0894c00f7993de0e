#!/usr/bin/python3
"""Warehouse security end to end (docs/api.md §6): TLS, mutual TLS, bearer tokens, the
policy file, the admin listener, the actor in the ledger, and certificate rotation.

Goal: an independent gRPC stack (Debian's python3-grpcio; Node's grpc-js in
tests/interop/grpc_js_security.mjs, run from here) connects with mTLS and with a bearer token;
every wrong credential — wrong CA, expired certificate, revoked token, wrong tenant, wrong
role, plaintext to the TLS port — is refused with its code and changes nothing; certificates
rotate under load with no failed call.
Method: certificates made now with openssl (tests/integration/certs.py), one real stockd
serving TLS on 127.0.0.1:0 with --tls-client-ca and --auth-policy, calls over real sockets.
Usage: test_security.py PATH-TO-BUILD-DIR PYGEN-DIR
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

BUILD = sys.argv[1]
sys.path.insert(0, sys.argv[2])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
del sys.argv[1:3]

import grpc  # noqa: E402
from stockd.v1 import admin_pb2  # noqa: E402
from stockd.v1 import inventory_pb2 as pb  # noqa: E402

import certs  # noqa: E402

STOCKD = os.path.join(BUILD, "stockd")
INVENTORY = "/stockd.v1.Inventory/"
ADMIN = "/stockd.v1.Admin/"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

TOKENS = {"reader": "reader-token-0123456789abcdef", "ops": "ops-token-fedcba9876543210",
          "writer-b": "writer-b-token-00112233445566"}


def sha256_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def policy_document(revoked=()):
    identities = [
        {"name": "warehouse-a", "tls_subject": "warehouse-a", "tenants": ["t1"],
         "roles": ["read", "write"]},
        {"name": "cn-only", "tls_subject": "cn-client", "tenants": ["t1"], "roles": ["read"]},
        {"name": "stockd-gateway", "tls_subject": "stockd-gateway", "tenants": ["*"],
         "roles": ["write"]},
        {"name": "reader", "token_sha256": sha256_hex(TOKENS["reader"]), "tenants": ["t1", "t2"],
         "roles": ["read"]},
        {"name": "ops", "token_sha256": sha256_hex(TOKENS["ops"]), "tenants": ["*"],
         "roles": ["read", "write", "admin"]},
        {"name": "writer-b", "token_sha256": sha256_hex(TOKENS["writer-b"]), "tenants": ["t2"],
         "roles": ["write"]},
    ]
    return {"identities": [i for i in identities if i["name"] not in revoked]}


def write_atomically(path, data):
    """Replaces path as Kubernetes does with a Secret: a new file renamed over the old."""
    temporary = path + ".new"
    with open(temporary, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.replace(temporary, path)


class Stockd:
    """A real stockd with the given flags; bound addresses parsed from its log."""

    def __init__(self, directory, *flags, expect_start=True):
        self.dir = directory
        self.log_path = os.path.join(directory, "stockd-%d.log" % time.monotonic_ns())
        self.log = open(self.log_path, "w+")
        self.lines = []
        self.proc = subprocess.Popen(
            [STOCKD, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(directory, "data"),
             *flags], stderr=subprocess.PIPE, text=True)
        self.address = self.admin_address = self.metrics_port = None
        if not expect_start:
            return
        deadline = time.time() + 20
        while time.time() < deadline and self.address is None:
            line = self.proc.stderr.readline()
            if not line:
                break
            self._keep(line)
            m = re.search(r'"event":"(admin_)?listening","address":"(127\.0\.0\.1:\d+)"', line)
            if m and m.group(1):
                self.admin_address = m.group(2)
            elif m:
                self.address = m.group(2)
            m = re.search(r'"event":"metrics_listening".*"port":(\d+)', line)
            if m:
                self.metrics_port = int(m.group(1))
        if self.address is None:
            raise RuntimeError("stockd did not start; see " + self.log_path)
        self.drainer = threading.Thread(target=self._drain, daemon=True)
        self.drainer.start()

    def _keep(self, line):
        self.log.write(line)
        self.log.flush()
        self.lines.append(line)

    def _drain(self):
        for line in self.proc.stderr:
            self._keep(line)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.drainer.join(timeout=5)
        self.proc.stderr.close()
        self.log.close()
        return code

    def logged(self, *words, timeout=5):
        """True once a log line holds every word: the line of a call is written as its answer
        is sent, so the client may see the answer before the drain thread sees the line."""
        deadline = time.time() + timeout
        while True:
            if any(all(w in line for w in words) for line in list(self.lines)):
                return True
            if time.time() > deadline:
                return False
            time.sleep(0.05)

    def refusal(self):
        """For a stockd expected to refuse to start: (exit status, its log)."""
        _, err = self.proc.communicate(timeout=20)
        self.log.close()
        return self.proc.returncode, err


class Credentials:
    """Ways in: TLS channel credentials for a client certificate, or none; a token."""

    def __init__(self, ca_pem, cert=None, key=None):
        self.root = certs.read(ca_pem)
        self.cert = certs.read(cert) if cert else None
        self.key = certs.read(key) if key else None

    def channel(self, address):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.root, private_key=self.key, certificate_chain=self.cert)
        return grpc.secure_channel(address, credentials)


def call(channel, path, request, response_type, token=None, metadata=(), timeout=10):
    stub = channel.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response_type.FromString)
    md = list(metadata)
    if token is not None:
        md.append(("authorization", "Bearer " + token))
    return stub(request, timeout=timeout, metadata=md or None)


def item(sku):
    return pb.ItemRef(app_id="app", catalog_item_id=sku)


def set_request(tenant, sku, available, request_id=""):
    return pb.SetStockRequest(tenant_id=tenant, request_id=request_id,
                              lines=[pb.SetLine(item=item(sku), available=available)])


def decrement_request(tenant, sku, quantity=1):
    return pb.DecrementRequest(tenant_id=tenant, restrict_inventory=True,
                               lines=[pb.Line(item=item(sku), quantity=quantity)])


class Secured(unittest.TestCase):
    """One stockd: TLS with client certificates requested, a policy, an admin listener."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="stockd-sec-")
        cls.ca = certs.Authority(cls.dir, "ca")
        cls.other_ca = certs.Authority(cls.dir, "other-ca")
        cls.server_cert, cls.server_key = certs.server_certificate(cls.ca)
        cls.policy = os.path.join(cls.dir, "policy.json")
        write_atomically(cls.policy, json.dumps(policy_document()))
        cls.d = Stockd(cls.dir, "--tls-cert", cls.server_cert, "--tls-key", cls.server_key,
                       "--tls-client-ca", cls.ca.pem, "--auth-policy", cls.policy,
                       "--admin-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                       "--checkpoints-max", "2", "--checkpoint-interval", "0")
        a_cert, a_key = certs.client_certificate(cls.ca, "warehouse-a")
        cls.warehouse_a = Credentials(cls.ca.pem, a_cert, a_key).channel(cls.d.address)
        cn_cert, cn_key = certs.client_certificate(cls.ca, "cn-client", san=False)
        cls.cn_only = Credentials(cls.ca.pem, cn_cert, cn_key).channel(cls.d.address)
        cls.server_only = Credentials(cls.ca.pem).channel(cls.d.address)
        cls.admin = Credentials(cls.ca.pem).channel(cls.d.admin_address)

    @classmethod
    def tearDownClass(cls):
        for channel in (cls.warehouse_a, cls.cn_only, cls.server_only, cls.admin):
            channel.close()
        code = cls.d.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)
        assert code == 0, "stockd exits 0 after SIGTERM"

    def refused(self, code, channel, path, request, response_type, **kw):
        with self.assertRaises(grpc.RpcError) as caught:
            call(channel, path, request, response_type, **kw)
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        return caught.exception.details() or ""

    def level(self, tenant, sku):
        got = call(self.server_only, INVENTORY + "GetStock",
                   pb.GetStockRequest(tenant_id=tenant, items=[item(sku)]), pb.GetStockResponse,
                   token=TOKENS["ops"])
        return got.levels[0].available, got.levels[0].version

    def last_seq(self, tenant):
        entries = []
        after = 0
        while True:
            page = call(self.server_only, INVENTORY + "History",
                        pb.HistoryRequest(tenant_id=tenant, after_seq=after, page_size=1000),
                        pb.HistoryResponse, token=TOKENS["ops"])
            entries += page.entries
            if not page.next_after_seq:
                return entries[-1].seq if entries else 0
            after = page.next_after_seq

    # ---- ways in ----

    def test_mutual_tls_identity_writes_and_is_recorded_as_actor(self):
        call(self.warehouse_a, INVENTORY + "SetStock", set_request("t1", "mtls", 5),
             pb.SetStockResponse)
        response = call(self.warehouse_a, INVENTORY + "Decrement", decrement_request("t1", "mtls"),
                        pb.DecrementResponse)
        self.assertEqual(response.levels[0].available, 4)
        history = call(self.warehouse_a, INVENTORY + "History",
                       pb.HistoryRequest(tenant_id="t1", item=item("mtls")), pb.HistoryResponse)
        self.assertEqual([e.actor for e in history.entries], ["warehouse-a", "warehouse-a"])

    def test_bearer_token_identity_and_on_behalf_of(self):
        call(self.server_only, INVENTORY + "SetStock", set_request("t9", "tok", 3),
             pb.SetStockResponse, token=TOKENS["ops"],
             metadata=[("stockd-on-behalf-of", "wix-instance:abc")])
        history = call(self.server_only, INVENTORY + "History",
                       pb.HistoryRequest(tenant_id="t9", item=item("tok")), pb.HistoryResponse,
                       token=TOKENS["ops"])
        self.assertEqual(history.entries[-1].actor, "ops")
        self.assertEqual(history.entries[-1].on_behalf_of, "wix-instance:abc")

    def test_batch_checks_each_write_against_the_callers_tenants(self):
        writes = [pb.BatchWrite(set_stock=set_request("t2", "batch", 6)),
                  pb.BatchWrite(set_stock=set_request("t1", "batch", 6)),
                  pb.BatchWrite(decrement=decrement_request("t2", "batch"))]
        response = call(self.server_only, INVENTORY + "Batch", pb.BatchRequest(writes=writes),
                        pb.BatchResponse, token=TOKENS["writer-b"])
        self.assertEqual([r.status.code for r in response.results], [0, 7, 0])
        self.assertIn('identity "writer-b" may not call Batch for tenant "t1"',
                      response.results[1].status.message)
        self.assertEqual(self.level("t1", "batch"), (0, 0))  # never written
        self.assertEqual(self.level("t2", "batch")[0], 5)
        # the reader lacks the write role: the whole call is refused
        self.refused(grpc.StatusCode.PERMISSION_DENIED, self.server_only, INVENTORY + "Batch",
                     pb.BatchRequest(writes=writes[:1]), pb.BatchResponse,
                     token=TOKENS["reader"])
        self.assertEqual(self.level("t2", "batch")[0], 5)

    def test_common_name_identifies_a_certificate_without_dns_names(self):
        got = call(self.cn_only, INVENTORY + "GetStock",
                   pb.GetStockRequest(tenant_id="t1", items=[item("x")]), pb.GetStockResponse)
        self.assertEqual(len(got.levels), 1)

    def test_health_needs_no_identity(self):
        # raw bytes: generated health modules would shadow grpcio's own `grpc` package
        check = self.server_only.unary_unary("/grpc.health.v1.Health/Check",
                                             request_serializer=lambda b: b,
                                             response_deserializer=lambda b: b)
        self.assertEqual(check(b"", timeout=10), b"\x08\x01")  # status: SERVING

    # ---- refusals: the right code, and nothing changed ----

    def test_no_credentials_is_unauthenticated_and_changes_nothing(self):
        before = self.level("t1", "none"), self.last_seq("t1")
        message = self.refused(grpc.StatusCode.UNAUTHENTICATED, self.server_only,
                               INVENTORY + "SetStock", set_request("t1", "none", 9),
                               pb.SetStockResponse)
        self.assertIn("no credentials", message)
        self.assertEqual((self.level("t1", "none"), self.last_seq("t1")), before)

    def test_wrong_or_malformed_token_is_unauthenticated(self):
        for token in ("not-a-known-token", ""):
            self.refused(grpc.StatusCode.UNAUTHENTICATED, self.server_only,
                         INVENTORY + "SetStock", set_request("t1", "wrong", 9),
                         pb.SetStockResponse, token=token)
        self.refused(grpc.StatusCode.UNAUTHENTICATED, self.server_only, INVENTORY + "SetStock",
                     set_request("t1", "wrong", 9), pb.SetStockResponse,
                     metadata=[("authorization", "Basic b3BzOm9wcw==")])
        message = self.refused(grpc.StatusCode.UNAUTHENTICATED, self.server_only,
                               INVENTORY + "SetStock", set_request("t1", "wrong", 9),
                               pb.SetStockResponse, token=TOKENS["ops"],
                               metadata=[("authorization", "Bearer " + TOKENS["reader"])])
        self.assertIn("not several", message)
        self.assertEqual(self.level("t1", "wrong"), (0, 0))

    def test_wrong_tenant_is_permission_denied_naming_identity_method_tenant(self):
        before = self.last_seq("t2")
        message = self.refused(grpc.StatusCode.PERMISSION_DENIED, self.warehouse_a,
                               INVENTORY + "SetStock", set_request("t2", "other", 9),
                               pb.SetStockResponse)
        for word in ("warehouse-a", "SetStock", "t2"):
            self.assertIn(word, message)
        self.refused(grpc.StatusCode.PERMISSION_DENIED, self.warehouse_a, INVENTORY + "GetStock",
                     pb.GetStockRequest(tenant_id="t2", items=[item("other")]),
                     pb.GetStockResponse)
        self.assertEqual(self.level("t2", "other"), (0, 0))
        self.assertEqual(self.last_seq("t2"), before)
        # the refusal's log line names who was refused
        self.assertTrue(self.d.logged('"status":"PERMISSION_DENIED"', '"actor":"warehouse-a"'))

    def test_wrong_role_is_permission_denied(self):
        call(self.server_only, INVENTORY + "SetStock", set_request("t1", "role", 4),
             pb.SetStockResponse, token=TOKENS["ops"])
        message = self.refused(grpc.StatusCode.PERMISSION_DENIED, self.server_only,
                               INVENTORY + "Decrement", decrement_request("t1", "role"),
                               pb.DecrementResponse, token=TOKENS["reader"])
        for word in ("reader", "Decrement", '"t1"', "write role"):
            self.assertIn(word, message)
        self.assertTrue(self.d.logged('"status":"PERMISSION_DENIED"', '"actor":"reader"',
                                      '"tenant":"t1"'))
        self.refused(grpc.StatusCode.PERMISSION_DENIED, self.server_only, INVENTORY + "GetStock",
                     pb.GetStockRequest(tenant_id="t2", items=[item("x")]), pb.GetStockResponse,
                     token=TOKENS["writer-b"])
        self.refused(grpc.StatusCode.PERMISSION_DENIED, self.cn_only, INVENTORY + "Decrement",
                     decrement_request("t1", "role"), pb.DecrementResponse)
        self.assertEqual(self.level("t1", "role"), (4, 1))

    def test_watch_and_page_tokens_stay_inside_the_tenant(self):
        for sku in ("p1", "p2", "p3"):
            call(self.server_only, INVENTORY + "SetStock", set_request("t2", sku, 1),
                 pb.SetStockResponse, token=TOKENS["ops"])
        page = call(self.server_only, INVENTORY + "ListStock",
                    pb.ListStockRequest(tenant_id="t2", page_size=1), pb.ListStockResponse,
                    token=TOKENS["reader"])
        self.assertTrue(page.next_page_token)
        # the token of t2's listing opens nothing of t1, even for an identity allowed both
        self.refused(grpc.StatusCode.INVALID_ARGUMENT, self.server_only, INVENTORY + "ListStock",
                     pb.ListStockRequest(tenant_id="t1", page_token=page.next_page_token),
                     pb.ListStockResponse, token=TOKENS["reader"])
        # and an identity of t1 only cannot use it with t2
        self.refused(grpc.StatusCode.PERMISSION_DENIED, self.warehouse_a, INVENTORY + "ListStock",
                     pb.ListStockRequest(tenant_id="t2", page_token=page.next_page_token),
                     pb.ListStockResponse)
        stream = self.warehouse_a.unary_stream(
            INVENTORY + "Watch", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.LedgerEntry.FromString)(
                pb.WatchRequest(tenant_id="t2"), timeout=10)
        with self.assertRaises(grpc.RpcError) as caught:
            next(stream)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.PERMISSION_DENIED)

    def test_certificate_of_another_ca_is_refused_at_the_handshake(self):
        cert, key = certs.client_certificate(self.other_ca, "warehouse-a", leaf="impostor")
        channel = Credentials(self.ca.pem, cert, key).channel(self.d.address)
        try:
            self.refused(grpc.StatusCode.UNAVAILABLE, channel, INVENTORY + "SetStock",
                         set_request("t1", "impostor", 9), pb.SetStockResponse, timeout=5)
        finally:
            channel.close()
        self.assertEqual(self.level("t1", "impostor"), (0, 0))

    def test_expired_certificate_is_refused_at_the_handshake(self):
        cert, key = certs.client_certificate(self.ca, "warehouse-a", leaf="expired", expired=True)
        channel = Credentials(self.ca.pem, cert, key).channel(self.d.address)
        try:
            self.refused(grpc.StatusCode.UNAVAILABLE, channel, INVENTORY + "SetStock",
                         set_request("t1", "expired", 9), pb.SetStockResponse, timeout=5)
        finally:
            channel.close()
        self.assertEqual(self.level("t1", "expired"), (0, 0))

    def test_unknown_client_certificate_is_unauthenticated(self):
        cert, key = certs.client_certificate(self.ca, "stranger")
        channel = Credentials(self.ca.pem, cert, key).channel(self.d.address)
        try:
            message = self.refused(grpc.StatusCode.UNAUTHENTICATED, channel,
                                   INVENTORY + "SetStock", set_request("t1", "stranger", 9),
                                   pb.SetStockResponse)
        finally:
            channel.close()
        self.assertIn("stranger", message)

    def test_plaintext_to_the_tls_port_is_refused(self):
        channel = grpc.insecure_channel(self.d.address)
        try:
            self.refused(grpc.StatusCode.UNAVAILABLE, channel, INVENTORY + "SetStock",
                         set_request("t1", "plain", 9), pb.SetStockResponse,
                         token=TOKENS["ops"], timeout=5)
        finally:
            channel.close()
        self.assertEqual(self.level("t1", "plain"), (0, 0))

    def test_revoked_token_is_refused_once_the_policy_changes(self):
        call(self.server_only, INVENTORY + "GetStock",
             pb.GetStockRequest(tenant_id="t2", items=[item("x")]), pb.GetStockResponse,
             token=TOKENS["reader"])
        try:
            write_atomically(self.policy, json.dumps(policy_document(revoked=("reader",))))
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    call(self.server_only, INVENTORY + "GetStock",
                         pb.GetStockRequest(tenant_id="t2", items=[item("x")]),
                         pb.GetStockResponse, token=TOKENS["reader"])
                    time.sleep(0.1)
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.UNAUTHENTICATED)
                    break
            else:
                self.fail("the revoked token still works 10 s after the policy changed")
            # a broken policy file is ignored (logged); the last good one stays in force
            write_atomically(self.policy, "{not json")
            time.sleep(2.5)
            call(self.server_only, INVENTORY + "GetStock",
                 pb.GetStockRequest(tenant_id="t2", items=[item("x")]), pb.GetStockResponse,
                 token=TOKENS["ops"])
            self.assertTrue(self.d.logged("auth_policy_reload_failed"))
        finally:
            write_atomically(self.policy, json.dumps(policy_document()))
            time.sleep(2.5)

    def test_revoked_identity_ends_its_open_watch(self):
        stream = self.server_only.unary_stream(
            INVENTORY + "Watch", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.LedgerEntry.FromString)(
                pb.WatchRequest(tenant_id="t1", after_seq=self.last_seq("t1")), timeout=30,
                metadata=[("authorization", "Bearer " + TOKENS["reader"])])
        try:
            call(self.server_only, INVENTORY + "SetStock", set_request("t1", "watched", 1),
                 pb.SetStockResponse, token=TOKENS["ops"])
            self.assertEqual(next(stream).item.catalog_item_id, "watched")
            write_atomically(self.policy, json.dumps(policy_document(revoked=("reader",))))
            deadline = time.time() + 10
            while time.time() < deadline:  # until the reload is in force for new calls
                try:
                    call(self.server_only, INVENTORY + "GetStock",
                         pb.GetStockRequest(tenant_id="t1", items=[item("x")]),
                         pb.GetStockResponse, token=TOKENS["reader"])
                    time.sleep(0.1)
                except grpc.RpcError:
                    break
            call(self.server_only, INVENTORY + "SetStock", set_request("t1", "after-revoke", 1),
                 pb.SetStockResponse, token=TOKENS["ops"])
            with self.assertRaises(grpc.RpcError) as caught:
                leaked = next(stream)
                self.fail("a revoked identity still received %s" % leaked.item.catalog_item_id)
            self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        finally:
            stream.cancel()
            write_atomically(self.policy, json.dumps(policy_document()))
            time.sleep(2.5)

    # ---- admin ----

    def test_admin_is_not_on_the_public_port(self):
        message = self.refused(grpc.StatusCode.UNIMPLEMENTED, self.server_only,
                               ADMIN + "Checkpoint", admin_pb2.CheckpointRequest(name="x"),
                               admin_pb2.CheckpointResponse, token=TOKENS["ops"])
        self.assertIn("--admin-listen", message)

    def test_admin_needs_the_admin_role_and_checkpoints_are_bounded(self):
        self.refused(grpc.StatusCode.UNAUTHENTICATED, self.admin, ADMIN + "Checkpoint",
                     admin_pb2.CheckpointRequest(name="a"), admin_pb2.CheckpointResponse)
        self.refused(grpc.StatusCode.PERMISSION_DENIED, self.admin, ADMIN + "Checkpoint",
                     admin_pb2.CheckpointRequest(name="a"), admin_pb2.CheckpointResponse,
                     token=TOKENS["reader"])
        for name in ("first", "second"):
            call(self.admin, ADMIN + "Checkpoint", admin_pb2.CheckpointRequest(name=name),
                 admin_pb2.CheckpointResponse, token=TOKENS["ops"])
        message = self.refused(grpc.StatusCode.FAILED_PRECONDITION, self.admin,
                               ADMIN + "Checkpoint", admin_pb2.CheckpointRequest(name="third"),
                               admin_pb2.CheckpointResponse, token=TOKENS["ops"])
        self.assertIn("stockctl backup remove", message)
        listed = call(self.admin, ADMIN + "ListCheckpoints", admin_pb2.ListCheckpointsRequest(),
                      admin_pb2.ListCheckpointsResponse, token=TOKENS["ops"])
        self.assertEqual(sorted(c.name for c in listed.checkpoints), ["first", "second"])
        self.assertEqual(listed.checkpoints_max, 2)
        call(self.admin, ADMIN + "DeleteCheckpoint", admin_pb2.DeleteCheckpointRequest(name="first"),
             admin_pb2.DeleteCheckpointResponse, token=TOKENS["ops"])
        self.refused(grpc.StatusCode.NOT_FOUND, self.admin, ADMIN + "DeleteCheckpoint",
                     admin_pb2.DeleteCheckpointRequest(name="first"),
                     admin_pb2.DeleteCheckpointResponse, token=TOKENS["ops"])
        self.refused(grpc.StatusCode.INVALID_ARGUMENT, self.admin, ADMIN + "DeleteCheckpoint",
                     admin_pb2.DeleteCheckpointRequest(name="../data"),
                     admin_pb2.DeleteCheckpointResponse, token=TOKENS["ops"])
        call(self.admin, ADMIN + "Checkpoint", admin_pb2.CheckpointRequest(name="third"),
             admin_pb2.CheckpointResponse, token=TOKENS["ops"])
        # the admin listener serves no Inventory method
        self.refused(grpc.StatusCode.UNIMPLEMENTED, self.admin, INVENTORY + "GetStock",
                     pb.GetStockRequest(tenant_id="t1", items=[item("x")]), pb.GetStockResponse,
                     token=TOKENS["ops"])

    # ---- operators ----

    def test_probes_and_denials_on_the_metrics_listener(self):
        base = "http://127.0.0.1:%d" % self.d.metrics_port
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(base + path, timeout=5) as response:
                self.assertEqual(response.status, 200)
        self.refused(grpc.StatusCode.PERMISSION_DENIED, self.warehouse_a, INVENTORY + "GetStock",
                     pb.GetStockRequest(tenant_id="t2", items=[item("m")]), pb.GetStockResponse)
        with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
            text = response.read().decode()
        self.assertRegex(text, r'stockd_requests_total\{method="GetStock",'
                               r'status="PERMISSION_DENIED"\} [1-9]')

    def test_grpc_js_connects_with_mtls_and_with_a_token(self):
        node = shutil.which("node")
        script = os.path.join(ROOT, "tests", "interop", "grpc_js_security.mjs")
        if node is None:
            self.skipTest("node is not installed")
        self.assertTrue(os.path.isdir(os.path.join(ROOT, "tests", "interop", "node_modules")),
                        "run `npm ci` in tests/interop first (make test does)")
        cert, key = certs.client_certificate(self.ca, "warehouse-a", leaf="js-client")
        env = dict(os.environ, STOCKD_ADDRESS=self.d.address, TLS_CA=self.ca.pem, TLS_CERT=cert,
                   TLS_KEY=key, OPS_TOKEN=TOKENS["ops"], READER_TOKEN=TOKENS["reader"])
        result = subprocess.run([node, "--test", script], env=env, capture_output=True,
                                text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stdout[-4000:] + result.stderr[-4000:])


class ClientTransport(unittest.TestCase):
    def test_a_token_is_not_sent_in_plaintext_off_loopback(self):
        # refused before any connection is made: nothing is sent to the address
        result = subprocess.run(
            [os.path.join(BUILD, "stockctl"), "--stockd", "10.255.255.1:50051", "--token",
             "secret-token-value", "get", "app", "item"], capture_output=True, text=True,
            timeout=20)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("refusing to send the token in plaintext", result.stderr)
        self.assertNotIn("secret-token-value", result.stderr)


class Rotation(unittest.TestCase):
    def test_certificate_rotation_under_load_fails_no_call(self):
        directory = tempfile.mkdtemp(prefix="stockd-rot-")
        try:
            self._rotate(directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    @staticmethod
    def served_serial(address, ca_pem):
        host, port = address.rsplit(":", 1)
        context = ssl.create_default_context(cafile=ca_pem)
        context.set_alpn_protocols(["h2"])
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert()["serialNumber"]

    def _rotate(self, directory):
        ca = certs.Authority(directory, "ca")
        live_cert = os.path.join(directory, "tls.crt")
        live_key = os.path.join(directory, "tls.key")
        first_cert, first_key = certs.server_certificate(ca, "server-1")
        second_cert, second_key = certs.server_certificate(ca, "server-2")
        shutil.copy(first_cert, live_cert)
        shutil.copy(first_key, live_key)
        policy = os.path.join(directory, "policy.json")
        write_atomically(policy, json.dumps(policy_document()))
        d = Stockd(directory, "--tls-cert", live_cert, "--tls-key", live_key,
                   "--auth-policy", policy, "--sync", "never")
        before = self.served_serial(d.address, ca.pem)
        failures, done, counts = [], threading.Event(), [0, 0]
        creds = Credentials(ca.pem)
        call(creds.channel(d.address), INVENTORY + "SetStock", set_request("t1", "load", 10 ** 9),
             pb.SetStockResponse, token=TOKENS["ops"])

        def load(fresh_connections, slot):
            channel = creds.channel(d.address)
            while not done.is_set():
                if fresh_connections:  # a new connection: a new handshake every call
                    channel.close()
                    channel = creds.channel(d.address)
                try:
                    call(channel, INVENTORY + "Decrement", decrement_request("t1", "load"),
                         pb.DecrementResponse, token=TOKENS["ops"])
                    counts[slot] += 1
                except grpc.RpcError as e:
                    failures.append((e.code(), e.details()))
            channel.close()

        threads = [threading.Thread(target=load, args=(fresh, i))
                   for i, fresh in enumerate((False, True))]
        for t in threads:
            t.start()
        time.sleep(1)
        # the key first, then the certificate: in between the pair does not match, which
        # stockd must ride out on the old pair
        write_atomically(live_key, certs.read(second_key))
        time.sleep(0.3)
        write_atomically(live_cert, certs.read(second_cert))
        deadline = time.time() + 10
        after = before
        while time.time() < deadline and after == before:
            time.sleep(0.2)
            after = self.served_serial(d.address, ca.pem)
        time.sleep(1)
        done.set()
        for t in threads:
            t.join()
        code = d.stop()
        self.assertNotEqual(after, before, "new connections never saw the new certificate")
        # the mismatched pair is tried (and logged) once, not at every handshake in between
        self.assertLessEqual(sum("tls_reload_failed" in line for line in d.lines), 1)
        self.assertEqual(failures, [])
        self.assertGreater(min(counts), 10, counts)
        self.assertEqual(code, 0)


class StartRefusals(unittest.TestCase):
    """Refused before anything listens: these never bind the non-loopback address."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="stockd-ref-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def refuses(self, *flags):
        d = Stockd(self.dir, *flags, expect_start=False)
        code, log = d.refusal()
        self.assertNotEqual(code, 0)
        return log

    def test_plaintext_on_a_non_loopback_address_needs_insecure(self):
        log = self.refuses("--listen", "0.0.0.0:0")
        self.assertIn("refusing_plaintext", log)
        self.assertIn("--insecure", log)

    def test_no_policy_on_a_non_loopback_address(self):
        log = self.refuses("--listen", "0.0.0.0:0", "--insecure")
        self.assertIn("refusing_without_policy", log)
        log = self.refuses("--admin-listen", "0.0.0.0:0", "--insecure")
        self.assertIn("refusing_without_policy", log)

    def test_malformed_policy_is_refused_with_the_place_named(self):
        policy = os.path.join(self.dir, "policy.json")
        bad = policy_document()
        bad["identities"][1]["roles"] = ["read", "wirte"]
        write_atomically(policy, json.dumps(bad))
        log = self.refuses("--auth-policy", policy)
        self.assertIn("identities[1].roles[1]", log)
        write_atomically(policy, '{"identities": [{"name": "x", "tenants": ["*"], '
                                 '"roles": ["read"], "token_sha256": "ABC"}]}')
        self.assertIn("token_sha256", self.refuses("--auth-policy", policy))
        self.assertIn("cannot open", self.refuses("--auth-policy", policy + ".missing"))

    def test_backup_dir_holding_the_data_dir(self):
        # its "checkpoints" would include the live database: listable, countable, removable
        os.makedirs(os.path.join(self.dir, "vol"))
        log = self.refuses("--data-dir", os.path.join(self.dir, "vol", "data"),
                           "--backup-dir", os.path.join(self.dir, "vol"))
        self.assertIn("holds the data directory", log)

    def test_mismatched_key_and_certificate(self):
        ca = certs.Authority(self.dir, "ca")
        cert, _ = certs.server_certificate(ca, "one")
        _, other_key = certs.server_certificate(ca, "two")
        log = self.refuses("--tls-cert", cert, "--tls-key", other_key)
        self.assertIn("does not belong", log)
        self.assertIn("go together", self.refuses("--tls-cert", cert))

    def test_loopback_plaintext_with_a_policy_starts_without_warning(self):
        # (--insecure's warning needs a non-loopback bind, which tests must not make)
        policy = os.path.join(self.dir, "policy.json")
        write_atomically(policy, json.dumps(policy_document()))
        d = Stockd(self.dir, "--auth-policy", policy)
        self.assertEqual(d.stop(), 0)
        self.assertFalse(any("insecure_plaintext" in line for line in d.lines))


if __name__ == "__main__":
    unittest.main(verbosity=2)
