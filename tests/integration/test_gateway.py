#!/usr/bin/python3
"""Integration test of stockd-gateway with a real stockd, over real HTTP.

Goal: Wix's calls work end to end and are answered byte for byte as Wix's SDK would: the seed
flows (order placed; order edited), every example payload in tests/data/wix, refusals
(401/400/404/405/413/428), no oversell under 80 concurrent checkouts, replays applied once (with
or without metadata.requestId), tokens living longer than the maximum refused, slow clients
unable to lock the gateway out (per-address limit, absolute receive deadline), and 503 +
/readyz 503 when stockd is down.
Method: start stockd and the gateway on 127.0.0.1:0 with temporary directories; sign tokens
with Debian's python3-jwt (an independent JWT implementation) and with `stockctl wix-sign`;
send them with urllib; read levels back over gRPC with python3-grpcio.
Usage: test_gateway.py BUILD-DIR PYGEN-DIR EXAMPLES-DIR
"""
import copy
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

BUILD, PYGEN, EXAMPLES = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, PYGEN)
del sys.argv[1:4]

import grpc  # noqa: E402
import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from stockd.v1 import inventory_pb2 as pb  # noqa: E402

APP_ID = "228540bd-2509-4dfa-90c5-bcc6b493e7d4"
STORES = "215238eb-22a5-4c36-9e7b-e7c08025e04e"
INSTANCE = "8469f2fd-764b-4ea0-b748-13520b1f453b"
DECREMENT_REFUSED = b'{"applicationError":{"code":"DECREMENT_NOT_POSSIBLE"}}'
INCREMENT_REFUSED = b'{"applicationError":{"code":"INCREMENT_NOT_POSSIBLE"}}'


from procs import start, stop  # noqa: E402


def refused(source, server):
    """True when the server closes a new connection from source without answering."""
    s = socket.socket()
    try:
        s.bind(source)
        s.settimeout(2)
        s.connect(server)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        return s.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    finally:
        s.close()


class Tricklers:
    """Connections that send a request one byte every period_s, from given source addresses;
    records when each was opened and when the server closed it."""

    HEAD = b"POST /v1/decrement HTTP/1.1\r\nHost: x\r\n"

    def __init__(self, server, period_s):
        self.server, self.period_s = server, period_s
        self.lock = threading.Lock()
        self.entries = []  # [socket, opened, closed or None, bytes still to send]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def open(self, source, count):
        for i in range(count):
            s = socket.socket()
            s.bind((source, 0))
            s.connect(self.server)
            s.setblocking(False)
            # half trickle their headers, half their body
            if i % 2 == 0:
                first, rest = self.HEAD + b"X-Slow: ", b"a" * 10000
            else:
                first, rest = self.HEAD + b"Content-Length: 10000\r\n\r\n", b"e" * 10000
            s.send(first)
            with self.lock:
                self.entries.append([s, time.time(), None, rest])

    def run(self):
        while not self.stopping.wait(self.period_s / 5):
            with self.lock:
                for entry in self.entries:
                    if entry[2] is None:
                        self.tick(entry)

    def tick(self, entry):
        s = entry[0]
        try:
            if s.recv(100, socket.MSG_DONTWAIT) == b"":
                entry[2] = time.time()
                return
        except BlockingIOError:
            pass
        except OSError:
            entry[2] = time.time()
            return
        due = time.time() - entry[1] >= self.period_s * (1 + 10000 - len(entry[3]))
        try:
            if due:
                s.send(entry[3][:1])
                entry[3] = entry[3][1:]
        except OSError:
            entry[2] = time.time()

    def wait_all_closed(self, timeout_s):
        until = time.time() + timeout_s
        while time.time() < until:
            with self.lock:
                if all(entry[2] is not None for entry in self.entries):
                    return
            time.sleep(0.05)

    def lifetimes(self):
        with self.lock:
            return [(entry[1], entry[2]) for entry in self.entries]

    def close(self):
        self.stopping.set()
        self.thread.join()
        for entry in self.entries:
            entry[0].close()


class Gateway(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="stockd-gw-")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.private_pem = key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption())
        cls.private_path = os.path.join(cls.dir, "private.pem")
        with open(cls.private_path, "wb") as f:
            f.write(cls.private_pem)
        cls.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        cls.public_path = os.path.join(cls.dir, "public.pem")
        with open(cls.public_path, "wb") as f:
            f.write(cls.public_pem)
        cls.start_stockd()
        cls.gateway, cls.http = start(
            [os.path.join(BUILD, "stockd-gateway"), "--listen", "127.0.0.1:0", "--stockd",
             cls.grpc_address, "--wix-app-id", APP_ID, "--wix-public-key", cls.public_path,
             "--deadline-ms", "5000"], os.path.join(cls.dir, "gateway.log"))

    @classmethod
    def start_stockd(cls, port=0):
        cls.stockd, cls.grpc_address = start(
            [os.path.join(BUILD, "stockd"), "--listen", "127.0.0.1:%d" % port, "--data-dir",
             os.path.join(cls.dir, "data")], os.path.join(cls.dir, "stockd.log"))
        cls.channel = grpc.insecure_channel(cls.grpc_address)

    @classmethod
    def tearDownClass(cls):
        assert stop(cls.gateway) == 0
        if cls.stockd.poll() is None:
            assert stop(cls.stockd) == 0
        shutil.rmtree(cls.dir, ignore_errors=True)

    # ---- helpers ----

    def grpc_call(self, method, request, response_type):
        return self.channel.unary_unary(
            "/stockd.v1.Inventory/" + method, request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString)(request, timeout=10)

    def set_level(self, sku, available, variant="", location="", app=STORES, tenant=INSTANCE):
        self.grpc_call("SetStock", pb.SetStockRequest(tenant_id=tenant, lines=[pb.SetLine(
            item=pb.ItemRef(location_id=location, app_id=app, catalog_item_id=sku,
                            variant=variant), available=available)]), pb.SetStockResponse)

    def level(self, sku, variant="", location="", app=STORES, tenant=INSTANCE):
        r = self.grpc_call("GetStock", pb.GetStockRequest(tenant_id=tenant, items=[pb.ItemRef(
            location_id=location, app_id=app, catalog_item_id=sku, variant=variant)]),
            pb.GetStockResponse)
        return r.levels[0].available

    def claims(self, request, request_id=None, **overrides):
        now = int(time.time())
        claims = {"data": {"request": request, "metadata": {
            "requestId": request_id or "py.%f" % time.time(), "instanceId": INSTANCE,
            "currency": "USD", "appExtensionType": "ECOM_INVENTORY"}},
            "aud": APP_ID, "iss": "wix.com", "iat": now, "exp": now + 300}
        claims.update(overrides)
        return claims

    def sign(self, claims, algorithm="RS256"):
        return jwt.encode(claims, self.private_pem, algorithm=algorithm)

    def post(self, path, body, method="POST", address=None):
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request("http://%s%s" % (address or self.http, path), data=data,
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def order(self, items, restrict=True, reason="ORDER_PLACED", order_id="o-1"):
        request = {"items": items, "orderId": order_id, "reason": reason}
        if restrict is not None:
            request["restrictInventoryValue"] = restrict
        return request

    @staticmethod
    def item(sku, quantity, variant_id=None, location=None):
        ref = {"catalogItemId": sku, "appId": STORES}
        if variant_id:
            ref["options"] = {"variantId": variant_id}
        item = {"catalogReference": ref, "quantity": quantity, "subscriptionItem": False}
        if location:
            item["locationId"] = location
        return item

    # ---- the seed flows ----

    def test_order_placed_flow(self):
        self.set_level("shirt", 5, variant="v-red")
        self.set_level("mug", 1)
        request = self.order([self.item("shirt", 2, "v-red"), self.item("mug", 1)])
        status, headers, body = self.post("/v1/decrement", self.sign(self.claims(request)))
        self.assertEqual((status, body), (200, b"{}"))
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual((self.level("shirt", "v-red"), self.level("mug")), (3, 0))
        # the mug is gone: the whole order is refused and nothing changes
        status, headers, body = self.post("/v1/decrement", self.sign(self.claims(request)))
        self.assertEqual((status, body), (428, DECREMENT_REFUSED))
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertIn("mug", headers["X-Stockd-Reason"])
        self.assertEqual((self.level("shirt", "v-red"), self.level("mug")), (3, 0))

    def test_order_edited_flow(self):
        self.set_level("new-item", 1)
        self.set_level("old-item", 0)
        edit = self.order([self.item("new-item", 3)], restrict=False, reason="ORDER_EDITED")
        status, _, body = self.post("/any/base/path/v1/decrement", self.sign(self.claims(edit)))
        self.assertEqual((status, body), (200, b"{}"))
        self.assertEqual(self.level("new-item"), -2)
        back = self.order([self.item("old-item", 2)], restrict=None, reason="ORDER_EDITED")
        status, _, body = self.post("/v1/increment", self.sign(self.claims(back)))
        self.assertEqual((status, body), (200, b"{}"))
        self.assertEqual(self.level("old-item"), 2)
        restore = self.order([self.item("new-item", 3)], restrict=None, reason="ORDER_CANCELED")
        self.post("/v1/increment", self.sign(self.claims(restore)))
        self.assertEqual(self.level("new-item"), 1)

    def test_every_example_payload(self):
        files = sorted(glob.glob(os.path.join(EXAMPLES, "*.json")))
        self.assertGreaterEqual(len(files), 4)
        for path in files:
            with open(path) as f:
                example = json.load(f)
            claims = copy.deepcopy(example["claims"])
            claims["iat"] = int(time.time())
            claims["exp"] = claims["iat"] + 300
            claims["aud"] = APP_ID
            request = claims["data"]["request"]
            tenant = claims["data"]["metadata"]["instanceId"]
            expected = []
            for item in request["items"]:
                ref = item["catalogReference"]
                variant = (ref.get("options") or {}).get("variantId", "")
                key = dict(sku=ref["catalogItemId"], variant=variant,
                           location=item.get("locationId") or "", app=ref["appId"], tenant=tenant)
                self.set_level(available=100, **key)
                sign = -1 if example["path"].endswith("decrement") else 1
                expected.append((key, 100 + sign * item["quantity"]))
            status, _, body = self.post(example["path"], self.sign(claims))
            self.assertEqual((status, body), (200, b"{}"), path)
            for key, available in expected:
                self.assertEqual(self.level(**key), available, path)

    def test_replayed_call_applies_once(self):
        self.set_level("replay", 10)
        token = self.sign(self.claims(self.order([self.item("replay", 4)]), request_id="same-id"))
        self.assertEqual(self.post("/v1/decrement", token)[0], 200)
        self.assertEqual(self.post("/v1/decrement", token)[0], 200)
        self.assertEqual(self.level("replay"), 6)

    def test_call_without_request_id_applies_once(self):
        """A token without metadata.requestId cannot be replayed to apply its change again: the
        gateway derives a request_id from the token's signature, so stockd's idempotency record
        answers a replay as the original was answered (and it survives gateway restarts)."""
        self.set_level("no-id", 10)
        claims = self.claims(self.order([self.item("no-id", 4)]))
        del claims["data"]["metadata"]["requestId"]
        token = self.sign(claims)
        for body in (token, token, " %s\n" % token):
            self.assertEqual(self.post("/v1/decrement", body)[:3:2], (200, b"{}"))
        self.assertEqual(self.level("no-id"), 6)
        # a refused call replayed is refused again
        short = self.claims(self.order([self.item("no-id", 7)]))
        del short["data"]["metadata"]["requestId"]
        token = self.sign(short)
        for _ in range(2):
            self.assertEqual(self.post("/v1/decrement", token)[:3:2], (428, DECREMENT_REFUSED))
        self.assertEqual(self.level("no-id"), 6)
        # a new token for the same change is a new call
        claims["iat"] -= 1
        self.assertEqual(self.post("/v1/decrement", self.sign(claims))[0], 200)
        self.assertEqual(self.level("no-id"), 2)

    def test_token_lifetime_is_bounded(self):
        """A token whose lifetime (exp - iat) is longer than --jwt-lifetime-max (default 1 h) is
        refused with 401 however valid its signature: one with exp in 2100 would otherwise be a
        key to the shop for 75 years."""
        self.set_level("lifetime", 10)
        request = self.order([self.item("lifetime", 1)])
        now = int(time.time())
        for exp in (4102444800, now + 3600 + 10):  # 2100-01-01; just over an hour
            status, headers, body = self.post("/v1/decrement",
                                              self.sign(self.claims(request, exp=exp)))
            self.assertEqual(status, 401)
            self.assertEqual(json.loads(body)["error"]["code"], "UNAUTHENTICATED")
            self.assertIn("lifetime", headers["X-Stockd-Reason"])
        token = self.sign(self.claims(request, iat=now, exp=now + 3600))
        self.assertEqual(self.post("/v1/decrement", token)[0], 200)
        self.assertEqual(self.level("lifetime"), 9)

    def test_80_concurrent_checkouts_on_30(self):
        self.set_level("hot", 30)
        tokens = [self.sign(self.claims(self.order([self.item("hot", 1)]), request_id="hot-%d" % i))
                  for i in range(80)]
        with ThreadPoolExecutor(max_workers=80) as pool:
            results = list(pool.map(lambda t: self.post("/v1/decrement", t), tokens))
        statuses = sorted(r[0] for r in results)
        self.assertEqual(statuses.count(200), 30)
        self.assertEqual(statuses.count(428), 50)
        self.assertTrue(all(r[2] == DECREMENT_REFUSED for r in results if r[0] == 428))
        self.assertEqual(self.level("hot"), 0)

    def test_token_signed_by_stockctl_and_ps256(self):
        self.set_level("signed", 3)
        request_file = os.path.join(self.dir, "request.json")
        with open(request_file, "w") as f:
            json.dump(self.order([self.item("signed", 1)]), f)
        token = subprocess.run(
            [os.path.join(BUILD, "stockctl"), "wix-sign", "--key", self.private_path, "--app-id",
             APP_ID, "--instance-id", INSTANCE, request_file],
            check=True, capture_output=True, text=True).stdout
        self.assertEqual(self.post("/v1/decrement", token)[:3:2], (200, b"{}"))
        token = self.sign(self.claims(self.order([self.item("signed", 1)])), algorithm="PS256")
        self.assertEqual(self.post("/v1/decrement", token)[0], 200)
        self.assertEqual(self.level("signed"), 1)
        # the independent verifier accepts what stockctl signs
        decoded = jwt.decode(token, self.public_pem, algorithms=["PS256"], audience=APP_ID,
                             issuer="wix.com")
        self.assertEqual(decoded["aud"], APP_ID)

    # ---- refusals ----

    def test_refusals(self):
        request = self.order([self.item("x", 1)])
        none_token = jwt.encode(self.claims(request), None, algorithm="none")
        status, headers, body = self.post("/v1/decrement", none_token)
        self.assertEqual(status, 401)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(json.loads(body)["error"]["code"], "UNAUTHENTICATED")
        hs_token = jwt.encode(self.claims(request), "not-the-key", algorithm="HS256")
        self.assertEqual(self.post("/v1/decrement", hs_token)[0], 401)
        self.assertEqual(self.post("/v1/decrement", self.sign(self.claims(request, aud="other")))[0], 401)
        self.assertEqual(self.post("/v1/decrement", self.sign(self.claims(
            request, exp=int(time.time()) - 3600)))[0], 401)
        self.assertEqual(self.post("/v1/decrement", "garbage")[0], 401)
        other_plugin = self.claims(request)
        other_plugin["data"]["metadata"]["appExtensionType"] = "ECOM_SHIPPING_RATES"
        self.assertEqual(self.post("/v1/decrement", self.sign(other_plugin))[0], 401)
        status, _, body = self.post("/v1/decrement", self.sign({**self.claims(request), "data": "x"}))
        self.assertEqual(status, 400)
        bad = self.order([self.item("x", 0)])
        status, headers, body = self.post("/v1/increment", self.sign(self.claims(bad)))
        self.assertEqual((status, body), (428, INCREMENT_REFUSED))
        self.assertIn("quantity", headers["X-Stockd-Reason"])
        self.assertEqual(self.post("/v2/nothing", "x")[0], 404)
        status, headers, _ = self.post("/v1/decrement", None, method="GET")
        self.assertEqual((status, headers["Allow"]), (405, "POST"))
        self.assertEqual(self.post("/v1/decrement", b"x" * (1024 * 1024 + 1))[0], 413)

    def test_slow_clients_cannot_lock_out_the_gateway(self):
        """Slowloris: clients that send a request one byte at a time, never idle long enough for
        the idle timeout. The gateway runs with --max-connections 40 and, through the
        environment, a per-IP limit of 12 and a receive deadline of 4 s. 36 tricklers from
        127.0.0.2-4 (12 each; the gateway listens on 127.0.0.1, and every 127/8 address reaches
        it) leave room for honest Wix calls and /healthz from 127.0.0.1; a 13th connection from
        127.0.0.2 is refused at once; 4 more tricklers from 127.0.0.5 fill the gateway, and
        /healthz is answered again once the first 36 reach their deadline although they never
        stopped sending; the gateway closes every trickler about 4 s after it connected."""
        deadline_s, per_ip = 4, 12
        env = dict(os.environ, STOCKD_GATEWAY_MAX_CONNECTIONS_PER_IP=str(per_ip),
                   STOCKD_GATEWAY_RECEIVE_DEADLINE="%ds" % deadline_s)
        gateway, http = start(
            [os.path.join(BUILD, "stockd-gateway"), "--listen", "127.0.0.1:0", "--stockd",
             self.grpc_address, "--wix-app-id", APP_ID, "--wix-public-key", self.public_path,
             "--max-connections", "40"], os.path.join(self.dir, "gateway-slow.log"), env=env)
        host, port = http.rsplit(":", 1)
        slow = Tricklers((host, int(port)), period_s=0.5)
        try:
            self.set_level("busy", 10)
            started = time.time()
            for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
                slow.open(source, per_ip)
            for _ in range(2):
                token = self.sign(self.claims(self.order([self.item("busy", 1)])))
                self.assertEqual(self.post_to(http, "/v1/decrement", token)[:3:2], (200, b"{}"))
                self.assertEqual(self.post_to(http, "/healthz", None, method="GET")[0], 200)
            self.assertLess(time.time() - started, 2.0)
            self.assertEqual(self.level("busy"), 8)
            self.assertTrue(refused(("127.0.0.2", 0), (host, int(port))),
                            "a connection over the per-IP limit was served")
            time.sleep(max(0.0, started + 1.5 - time.time()))
            slow.open("127.0.0.5", 4)  # the gateway is now full
            answered = self.healthz_within(http, started + deadline_s + 2.5)
            self.assertIsNotNone(answered, "/healthz stayed locked out")
            self.assertGreater(answered - started, deadline_s - 1.0)
            slow.wait_all_closed(timeout_s=deadline_s + 4)
            for opened, closed in slow.lifetimes():
                self.assertIsNotNone(closed, "a trickler was never closed")
                self.assertGreater(closed - opened, deadline_s - 0.5)
                self.assertLess(closed - opened, deadline_s + 2.5)
            token = self.sign(self.claims(self.order([self.item("busy", 1)])))
            self.assertEqual(self.post_to(http, "/v1/decrement", token)[0], 200)
            self.assertEqual(self.level("busy"), 7)
        finally:
            slow.close()
            self.assertEqual(stop(gateway), 0)

    def post_to(self, address, path, body, method="POST"):
        """Like post, to another gateway (safe from several threads at once)."""
        return self.post(path, body, method, address=address)

    def healthz_within(self, address, until):
        """Polls /healthz until it answers 200 or `until`; returns when it answered, or None."""
        while time.time() < until:
            try:
                with urllib.request.urlopen("http://%s/healthz" % address,
                                            timeout=max(0.1, until - time.time())) as r:
                    if r.status == 200:
                        return time.time()
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        return None

    def test_health_and_metrics(self):
        self.assertEqual(self.post("/healthz", None, method="GET")[0], 200)
        self.assertEqual(self.post("/readyz", None, method="GET")[0], 200)
        self.post("/v1/decrement", "garbage")
        status, headers, body = self.post("/metrics", None, method="GET")
        self.assertEqual(status, 200)
        self.assertIn(b'stockd_gateway_jwt_refusals_total{reason="MALFORMED"}', body)
        # HTTP answers by `code`; `status` only ever holds status names, as in stockd's metrics
        self.assertIn(b'stockd_gateway_requests_total{route="decrement",code="401"}', body)
        text = body.decode()
        self.assertRegex(text, r'\nstockd_gateway_upstream_errors_total\{status="UNAVAILABLE"\} \d+\n')
        self.assertNotRegex(text, r'status="\d+"')
        self.assertNotIn("{}", text)  # no empty label set
        # latency in seconds, with the alert's 200 ms bound
        self.assertRegex(text, r'stockd_gateway_request_duration_seconds_bucket\{route="decrement",'
                               r'le="0\.2"\} [1-9]')
        self.assertRegex(text, r'\nstockd_gateway_build_info\{version="[^"]+"\} 1\n')
        values = dict(re.findall(r"^(process_\w+) (\S+)$", text, re.M))
        self.assertTrue(1 << 20 < float(values["process_resident_memory_bytes"]) < 4 << 30)
        self.assertTrue(0 < float(values["process_open_fds"]) <= float(values["process_max_fds"]))
        self.assertTrue(time.time() - 3600 < float(values["process_start_time_seconds"]) <= time.time())
        self.assertIn("process_cpu_seconds_total", values)

    def upstream_errors(self, status):
        body = self.post("/metrics", None, method="GET")[2].decode()
        return int(re.search(r'stockd_gateway_upstream_errors_total\{status="%s"\} (\d+)' % status,
                             body).group(1))

    def test_stockd_too_slow_is_504(self):
        """A stockd that does not answer within --deadline-ms gives 504 (it is paused here)."""
        gateway, http = start(
            [os.path.join(BUILD, "stockd-gateway"), "--listen", "127.0.0.1:0", "--stockd",
             self.grpc_address, "--wix-app-id", APP_ID, "--wix-public-key", self.public_path,
             "--deadline-ms", "300"], os.path.join(self.dir, "gateway-504.log"))
        try:
            self.set_level("slow", 5)
            token = self.sign(self.claims(self.order([self.item("slow", 1)])))
            os.kill(self.stockd.pid, signal.SIGSTOP)
            try:
                req = urllib.request.Request("http://%s/v1/decrement" % http, data=token.encode(),
                                             method="POST")
                with self.assertRaises(urllib.error.HTTPError) as caught:
                    urllib.request.urlopen(req, timeout=15)
                self.assertEqual(caught.exception.code, 504)
                body = caught.exception.read()
                self.assertEqual(json.loads(body)["error"]["code"], "DEADLINE_EXCEEDED")
            finally:
                os.kill(self.stockd.pid, signal.SIGCONT)
        finally:
            self.assertEqual(stop(gateway), 0)

    def coalescing(self, http):
        body = self.post_to(http, "/metrics", None, method="GET")[2].decode()

        def value(pattern):
            return float(re.search(pattern, body, re.M).group(1))
        return (value(r"^stockd_gateway_batches_total (\S+)$"),
                value(r'^stockd_gateway_stockd_calls_total\{how="alone"\} (\S+)$'),
                value(r'^stockd_gateway_stockd_calls_total\{how="batch"\} (\S+)$'))

    def test_concurrent_calls_go_to_stockd_together_each_answered_as_alone(self):
        """With one sender place, calls that arrive while a call is in flight (stockd paused
        here) wait and go together in one Batch; each is answered as if it had gone alone,
        and each is recorded for its own site."""
        gateway, http = start(
            [os.path.join(BUILD, "stockd-gateway"), "--listen", "127.0.0.1:0", "--stockd",
             self.grpc_address, "--wix-app-id", APP_ID, "--wix-public-key", self.public_path,
             "--deadline-ms", "20000", "--coalesce-senders", "1"],
            os.path.join(self.dir, "gateway-coalesce.log"))
        other = "other-site-7"
        try:
            self.set_level("together", 5)
            self.set_level("together", 5, tenant=other)
            self.assertEqual(self.coalescing(http), (0, 0, 0))
            tokens = []
            for i in range(12):
                claims = self.claims(self.order([self.item("together", 1)]),
                                     request_id="together-%d" % i)
                if i % 2:
                    claims["data"]["metadata"]["instanceId"] = other
                tokens.append(self.sign(claims))
            os.kill(self.stockd.pid, signal.SIGSTOP)
            try:
                with ThreadPoolExecutor(max_workers=12) as pool:
                    first = pool.submit(self.post_to, http, "/v1/decrement", tokens[0])
                    time.sleep(0.3)  # the first call is in flight: the others must queue
                    rest = [pool.submit(self.post_to, http, "/v1/decrement", t)
                            for t in tokens[1:]]
                    time.sleep(0.5)
                    os.kill(self.stockd.pid, signal.SIGCONT)
                    results = [first.result()] + [f.result() for f in rest]
            finally:
                os.kill(self.stockd.pid, signal.SIGCONT)
            statuses = [r[0] for r in results]
            self.assertEqual(sorted(statuses), [200] * 10 + [428] * 2)
            self.assertTrue(all(r[2] == DECREMENT_REFUSED for r in results if r[0] == 428))
            self.assertEqual(self.level("together"), 0)
            self.assertEqual(self.level("together", tenant=other), 0)
            batches, alone, batched = self.coalescing(http)
            self.assertGreaterEqual(batches, 1)
            self.assertGreaterEqual(batched, 2)
            self.assertEqual(alone + batched, 12)
            for tenant in (INSTANCE, other):
                history = self.grpc_call("History", pb.HistoryRequest(
                    tenant_id=tenant, item=pb.ItemRef(app_id=STORES, catalog_item_id="together")),
                    pb.HistoryResponse)
                self.assertEqual({e.on_behalf_of for e in history.entries
                                  if e.request_id.startswith("wix:")},
                                 {"wix-instance:" + tenant})
        finally:
            self.assertEqual(stop(gateway), 0)

    def test_a_queued_call_keeps_its_own_deadline(self):
        """Calls that go together in a Batch each keep their own deadline: one that waited
        long in the queue does not cut short one that arrived later (review finding)."""
        gateway, http = start(
            [os.path.join(BUILD, "stockd-gateway"), "--listen", "127.0.0.1:0", "--stockd",
             self.grpc_address, "--wix-app-id", APP_ID, "--wix-public-key", self.public_path,
             "--deadline-ms", "2000", "--coalesce-senders", "1"],
            os.path.join(self.dir, "gateway-deadline.log"))
        try:
            self.set_level("deadline", 10)
            tokens = [self.sign(self.claims(self.order([self.item("deadline", 1)]),
                                            request_id="deadline-%d" % i)) for i in range(3)]
            os.kill(self.stockd.pid, signal.SIGSTOP)
            try:
                with ThreadPoolExecutor(max_workers=3) as pool:
                    first = pool.submit(self.post_to, http, "/v1/decrement", tokens[0])
                    time.sleep(0.1)
                    early = pool.submit(self.post_to, http, "/v1/decrement", tokens[1])
                    time.sleep(1.7)
                    late = pool.submit(self.post_to, http, "/v1/decrement", tokens[2])
                    time.sleep(0.6)
                    os.kill(self.stockd.pid, signal.SIGCONT)
                    self.assertEqual(first.result()[0], 504)
                    self.assertIn(early.result()[0], (200, 504))
                    self.assertEqual(late.result()[0], 200)  # 0.6 s into its own 2 s
            finally:
                os.kill(self.stockd.pid, signal.SIGCONT)
        finally:
            self.assertEqual(stop(gateway), 0)

    def test_a_stockd_without_batch_still_gets_every_call(self):
        """Against a stockd that has no Batch (an older version, e.g. during an upgrade) the
        gateway sends the calls it would have batched one by one: none fails."""
        import grpc as grpc_module
        from concurrent import futures

        def decrement(request_bytes, context):
            time.sleep(0.3)  # slow enough that concurrent calls queue behind it
            pb.DecrementRequest.FromString(request_bytes)
            return pb.DecrementResponse(ledger_seq=1).SerializeToString()

        handler = grpc_module.method_handlers_generic_handler("stockd.v1.Inventory", {
            "Decrement": grpc_module.unary_unary_rpc_method_handler(decrement)})
        old = grpc_module.server(futures.ThreadPoolExecutor(max_workers=8))
        old.add_generic_rpc_handlers((handler,))
        port = old.add_insecure_port("127.0.0.1:0")
        old.start()
        gateway = None
        try:
            log = os.path.join(self.dir, "gateway-old-stockd.log")
            gateway, http = start(
                [os.path.join(BUILD, "stockd-gateway"), "--listen", "127.0.0.1:0", "--stockd",
                 "127.0.0.1:%d" % port, "--wix-app-id", APP_ID, "--wix-public-key",
                 self.public_path, "--coalesce-senders", "1"], log)
            tokens = [self.sign(self.claims(self.order([self.item("old", 1)]),
                                            request_id="old-%d" % i)) for i in range(6)]
            with ThreadPoolExecutor(max_workers=6) as pool:
                statuses = list(pool.map(
                    lambda t: self.post_to(http, "/v1/decrement", t)[0], tokens))
            self.assertEqual(statuses, [200] * 6)
            self.assertEqual(stop(gateway), 0)
            gateway = None
            deadline = time.time() + 10  # the log is complete once its drain thread closed it
            while time.time() < deadline and "shutdown_complete" not in open(log).read():
                time.sleep(0.1)
            self.assertIn("batch_not_served", open(log).read())
        finally:
            if gateway is not None:
                self.assertEqual(stop(gateway), 0)
            old.stop(0)

    def test_stockd_down_answers_503_until_it_returns(self):
        """Stops stockd, checks the 503s, then starts it again on the same port and data
        directory and waits for /readyz: the class's stockd is back as it was."""
        port = int(self.grpc_address.rsplit(":", 1)[1])
        unavailable = self.upstream_errors("UNAVAILABLE")
        self.assertEqual(stop(self.stockd), 0)
        token = self.sign(self.claims(self.order([self.item("down", 1)])))
        status, headers, body = self.post("/v1/decrement", token)
        self.assertEqual(status, 503)
        self.assertEqual(self.upstream_errors("UNAVAILABLE"), unavailable + 1)
        self.assertIn("Retry-After", headers)
        self.assertNotIn(b"127.0.0.1", body)
        self.assertEqual(self.post("/readyz", None, method="GET")[0], 503)
        self.assertEqual(self.post("/healthz", None, method="GET")[0], 200)
        type(self).start_stockd(port)
        deadline = time.time() + 20
        while time.time() < deadline and self.post("/readyz", None, method="GET")[0] != 200:
            time.sleep(0.2)
        self.assertEqual(self.post("/readyz", None, method="GET")[0], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
