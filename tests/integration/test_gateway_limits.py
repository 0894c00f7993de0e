#!/usr/bin/python3
"""Integration test: stockd-gateway cannot be exhausted before a caller is authenticated.

Goal: what an unauthenticated caller can make the gateway hold is bounded. 64 concurrent hostile
1 MiB bodies — each a "token" whose header segment is JSON built to make a parser allocate many
times its size — keep the gateway's peak resident memory (VmHWM) under 64 MiB (a quarter of the
256 MiB pod limit; 128 MiB for an ASan build, whose allocator and shadow memory cost more),
while honest Wix calls sent at the same time all succeed. Tokens over 64 KiB and header
segments over 4 KiB are refused with 401 even when their signature is valid.
Method: start stockd and the gateway (default limits) on 127.0.0.1:0; sign tokens with
python3-jwt; send the hostile bodies and the honest calls from one thread pool; read VmHWM from
/proc/PID/status. A watchdog kills the gateway if its RSS passes 768 MiB, so that a regression
fails this test instead of exhausting the machine.
Usage: test_gateway_limits.py BUILD-DIR PYGEN-DIR
"""
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

BUILD, PYGEN = sys.argv[1], sys.argv[2]
sys.path.insert(0, PYGEN)
del sys.argv[1:3]

import grpc  # noqa: E402
import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from stockd.v1 import inventory_pb2 as pb  # noqa: E402

APP_ID = "228540bd-2509-4dfa-90c5-bcc6b493e7d4"
STORES = "215238eb-22a5-4c36-9e7b-e7c08025e04e"
INSTANCE = "8469f2fd-764b-4ea0-b748-13520b1f453b"
MIB = 1024 * 1024
HOSTILE_COUNT = 64
HONEST_COUNT = 32
KILL_RSS_MIB = 768


from procs import start, stop  # noqa: E402


def memory_kib(pid, field):
    """VmRSS / VmHWM of a process in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s for pid %d" % (field, pid))


def sanitized(binary):
    """True for an ASan build (libasan linked in)."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return "libasan" in out


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def hostile_body(size):
    """A `size`-byte body: header segment = base64url of {"alg":"RS256","x":[{},{},…]} (one JSON
    object per 3 bytes, tens of bytes each once parsed), an empty payload and a junk
    signature."""
    tail = b"." + b64url(b"{}") + b"." + b"A" * 342
    objects = (size - len(tail)) * 3 // 4 // 3 - 10
    header = b'{"alg":"RS256","x":[' + b"{}," * objects + b'{}]}'
    body = b64url(header) + tail
    assert len(body) <= size, len(body)
    return body


class RssWatchdog(threading.Thread):
    """Kills the process when its RSS passes limit_kib; `killed_at_kib` tells."""

    def __init__(self, proc, limit_kib):
        super().__init__(daemon=True)
        self.proc, self.limit_kib = proc, limit_kib
        self.killed_at_kib = None
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.wait(0.02):
            try:
                rss = memory_kib(self.proc.pid, "VmRSS")
            except (OSError, RuntimeError):
                return
            if rss > self.limit_kib:
                self.killed_at_kib = rss
                self.proc.kill()
                return


class Limits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="stockd-gw-limits-")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.private_pem = key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        cls.public_path = os.path.join(cls.dir, "public.pem")
        with open(cls.public_path, "wb") as f:
            f.write(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        cls.stockd, cls.grpc_address = start(
            [os.path.join(BUILD, "stockd"), "--listen", "127.0.0.1:0", "--data-dir",
             os.path.join(cls.dir, "data")], os.path.join(cls.dir, "stockd.log"))
        cls.channel = grpc.insecure_channel(cls.grpc_address)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        assert stop(cls.stockd) == 0
        shutil.rmtree(cls.dir, ignore_errors=True)

    def start_gateway(self, name):
        binary = os.path.join(BUILD, "stockd-gateway")
        return start([binary, "--listen", "127.0.0.1:0", "--stockd", self.grpc_address,
                      "--wix-app-id", APP_ID, "--wix-public-key", self.public_path,
                      "--deadline-ms", "10000"], os.path.join(self.dir, name + ".log"))

    def set_level(self, sku, available):
        self.channel.unary_unary(
            "/stockd.v1.Inventory/SetStock", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.SetStockResponse.FromString)(pb.SetStockRequest(
                tenant_id=INSTANCE, lines=[pb.SetLine(item=pb.ItemRef(
                    app_id=STORES, catalog_item_id=sku), available=available)]), timeout=10)

    def level(self, sku):
        r = self.channel.unary_unary(
            "/stockd.v1.Inventory/GetStock", request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=pb.GetStockResponse.FromString)(pb.GetStockRequest(
                tenant_id=INSTANCE, items=[pb.ItemRef(app_id=STORES, catalog_item_id=sku)]),
                timeout=10)
        return r.levels[0].available

    def token(self, sku, headers=None, padding=0):
        now = int(time.time())
        request = {"items": [{"catalogReference": {"catalogItemId": sku, "appId": STORES},
                              "quantity": 1}], "orderId": "o-limits",
                   "reason": "ORDER_PLACED", "restrictInventoryValue": True}
        if padding:
            request["padding"] = "p" * padding  # unknown fields are ignored
        claims = {"data": {"request": request, "metadata": {
            "requestId": "limits.%f" % time.time(), "instanceId": INSTANCE,
            "appExtensionType": "ECOM_INVENTORY"}},
            "aud": APP_ID, "iss": "wix.com", "iat": now, "exp": now + 300}
        return jwt.encode(claims, self.private_pem, algorithm="RS256", headers=headers)

    @staticmethod
    def post(address, body):
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request("http://%s/v1/decrement" % address, data=data,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()
        except (OSError, urllib.error.URLError):  # e.g. the watchdog killed the gateway
            return 0, {}, b""

    def test_hostile_bodies_do_not_exhaust_memory(self):
        binary = os.path.join(BUILD, "stockd-gateway")
        bound_mib = 128 if sanitized(binary) else 64
        gateway, http = self.start_gateway("gateway-hostile")
        watchdog = RssWatchdog(gateway, KILL_RSS_MIB * 1024)
        watchdog.start()
        try:
            self.set_level("honest", 1000)
            self.assertEqual(self.post(http, self.token("honest"))[0], 200)
            hostile = hostile_body(MIB)
            honest = [self.token("honest") for _ in range(HONEST_COUNT)]
            jobs = [hostile] * HOSTILE_COUNT
            for i, token in enumerate(honest):  # spread the honest calls through the flood
                jobs.insert(i * 3, token)
            with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                results = list(pool.map(lambda body: self.post(http, body)[0], jobs))
            self.assertIsNone(watchdog.killed_at_kib,
                              "gateway killed at %s KiB RSS" % watchdog.killed_at_kib)
            hwm_mib = memory_kib(gateway.pid, "VmHWM") / 1024
            print("\ngateway peak RSS %.1f MiB (bound %d MiB)" % (hwm_mib, bound_mib),
                  file=sys.stderr)
            statuses = {body: [] for body in ("hostile", "honest")}
            for body, status in zip(jobs, results):
                statuses["hostile" if body is hostile else "honest"].append(status)
            self.assertEqual(statuses["honest"], [200] * HONEST_COUNT)
            self.assertEqual(statuses["hostile"], [401] * HOSTILE_COUNT)
            self.assertLess(hwm_mib, bound_mib, "peak RSS %.1f MiB" % hwm_mib)
            self.assertEqual(self.level("honest"), 1000 - 1 - HONEST_COUNT)
        finally:
            watchdog.stopping.set()
            watchdog.join()
            if watchdog.killed_at_kib is None:
                self.assertEqual(stop(gateway), 0)
            else:
                gateway.wait()

    def test_token_and_header_caps(self):
        """Honest tokens of some KB pass; a validly signed token over 64 KiB, or with a header
        segment over 4 KiB, is refused before anything in it is decoded."""
        gateway, http = self.start_gateway("gateway-caps")
        try:
            self.set_level("caps", 10)
            token = self.token("caps", padding=16 * 1024)
            self.assertEqual(self.post(http, token)[0], 200)
            token = self.token("caps", padding=64 * 1024)
            self.assertGreater(len(token), 64 * 1024)
            status, headers, _ = self.post(http, token)
            self.assertEqual(status, 401)
            self.assertIn("too large", headers["X-Stockd-Reason"])
            token = self.token("caps", headers={"kid": "k" * 2900})
            self.assertLessEqual(len(token.split(".")[0]), 4 * 1024)  # under the cap: fine
            self.assertEqual(self.post(http, token)[0], 200)
            token = self.token("caps", headers={"kid": "k" * 3200})
            self.assertGreater(len(token.split(".")[0]), 4 * 1024)
            status, headers, _ = self.post(http, token)
            self.assertEqual(status, 401)
            self.assertIn("too large", headers["X-Stockd-Reason"])
            self.assertEqual(self.level("caps"), 8)
        finally:
            self.assertEqual(stop(gateway), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
