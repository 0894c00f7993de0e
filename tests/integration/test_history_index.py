#!/usr/bin/python3
"""Integration test of History over the ledger's index, through the real stockd and
python3-grpcio.

Goal: History filtered by item or order_id answers its first page directly in a tenant whose
ledger is mostly other items (the scan it replaced came back with many short pages), and every
answer is what the unfiltered ledger says, page after page: filters alone and combined, other
tenants invisible, after a restart, from a restored checkpoint, and around ledger retention.
Usage: test_history_index.py PATH-TO-STOCKD PYGEN-DIR
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

STOCKD = sys.argv[1]
sys.path.insert(0, sys.argv[2])
del sys.argv[1:3]

import grpc  # noqa: E402
from stockd.v1 import admin_pb2, inventory_pb2 as pb  # noqa: E402

LISTENING = re.compile(r'"event":"(admin_)?listening","address":"(127\.0\.0\.1:\d+)"')


class Daemon:
    """stockd on 127.0.0.1:0 over data_dir, with the admin listener; its log in log_path."""

    def __init__(self, data_dir, log_path, *extra):
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen(
            [STOCKD, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--data-dir", data_dir, *extra], stderr=subprocess.PIPE, text=True)
        self.address = self.admin = None
        deadline = time.time() + 30
        while time.time() < deadline and self.address is None:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.write(line)
            m = LISTENING.search(line)
            if m and m.group(1):
                self.admin = m.group(2)
            elif m:
                self.address = m.group(2)
        if self.address is None or self.admin is None:
            raise RuntimeError("stockd did not start; see %s" % log_path)
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()
        self.channel = grpc.insecure_channel(self.address)
        self.admin_channel = grpc.insecure_channel(self.admin)

    def _drain(self):
        for line in self.proc.stderr:
            self.log.write(line)

    def call(self, method, request, response_type, service="Inventory", timeout=30):
        channel = self.admin_channel if service == "Admin" else self.channel
        stub = channel.unary_unary("/stockd.v1.%s/%s" % (service, method),
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=response_type.FromString)
        return stub(request, timeout=timeout)

    def history(self, tenant, item=None, order_id="", after_seq=0, page_size=0):
        return self.call("History", pb.HistoryRequest(
            tenant_id=tenant, item=item, order_id=order_id, after_seq=after_seq,
            page_size=page_size), pb.HistoryResponse)

    def history_all(self, tenant, item=None, order_id="", after_seq=0, page_size=0):
        """Every entry, following next_after_seq; and how many calls it took."""
        entries, calls = [], 0
        while True:
            r = self.history(tenant, item, order_id, after_seq, page_size)
            calls += 1
            entries += r.entries
            if not r.next_after_seq:
                return entries, calls
            after_seq = r.next_after_seq

    def stop(self):
        self.channel.close()
        self.admin_channel.close()
        self.proc.terminate()
        code = self.proc.wait(timeout=60)
        self.drain.join(timeout=5)
        self.log.close()
        return code


def item(sku, variant=""):
    return pb.ItemRef(app_id="app", catalog_item_id=sku, variant=variant)


def same_item(a, b):
    return (a.location_id, a.app_id, a.catalog_item_id, a.variant) == \
        (b.location_id, b.app_id, b.catalog_item_id, b.variant)


class HistoryIndex(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="stockd-hist-")
        cls.data = os.path.join(cls.dir, "data")
        cls.log = os.path.join(cls.dir, "stockd.log")
        cls.d = Daemon(cls.data, cls.log)
        noise = [item("n%d" % i) for i in range(100)]
        # tenant w: 40 requests of 200 noise lines; every 4th also takes one mug, under an order
        for r in range(40):
            lines = [pb.Line(item=noise[(r + i) % 100], quantity=1) for i in range(200)]
            order = ""
            if r % 4 == 3:
                lines.insert(100, pb.Line(item=item("mug"), quantity=1))
                order = "o-%d" % r
            cls.d.call("Increment", pb.IncrementRequest(tenant_id="w", order_id=order,
                                                        lines=lines), pb.IncrementResponse)
        # one order of several lines, twice, with a variant of mug in it
        for _ in range(2):
            cls.d.call("Decrement", pb.DecrementRequest(
                tenant_id="w", order_id="o-multi", reason=pb.REASON_ORDER_PLACED,
                lines=[pb.Line(item=item("mug"), quantity=1),
                       pb.Line(item=item("mug", "L"), quantity=2),
                       pb.Line(item=noise[3], quantity=1),
                       pb.Line(item=item("mug"), quantity=1)]), pb.DecrementResponse)
        # tenant w2: the same items and order ids
        cls.d.call("Increment", pb.IncrementRequest(
            tenant_id="w2", order_id="o-multi",
            lines=[pb.Line(item=item("mug"), quantity=5)]), pb.IncrementResponse)
        cls.everything = {t: cls.d.history_all(t, page_size=1000)[0] for t in ("w", "w2")}

    @classmethod
    def tearDownClass(cls):
        code = cls.d.stop()
        if code != 0:
            with open(cls.log) as log:
                sys.stderr.write(log.read()[-20000:])
        shutil.rmtree(cls.dir, ignore_errors=True)
        assert code == 0

    def expected(self, tenant, want_item=None, order_id=""):
        return [e for e in self.everything[tenant]
                if (want_item is None or same_item(e.item, want_item)) and
                (not order_id or e.order_id == order_id)]

    def check(self, d, tenant, want_item=None, order_id="", page_size=0):
        got, calls = d.history_all(tenant, want_item, order_id, page_size=page_size)
        self.assertEqual([e.SerializeToString() for e in got],
                         [e.SerializeToString() for e in self.expected(tenant, want_item,
                                                                       order_id)])
        return got, calls

    def test_item_first_page_is_direct(self):
        self.assertGreater(len(self.everything["w"]), 8000)
        r = self.d.history("w", item("mug"), page_size=5)
        self.assertEqual(len(r.entries), 5)
        self.assertEqual(r.next_after_seq, r.entries[-1].seq)
        self.assertTrue(all(same_item(e.item, item("mug")) for e in r.entries))
        got, calls = self.check(self.d, "w", item("mug"), page_size=5)
        self.assertEqual(len(got), 10 + 4)
        self.assertEqual(calls, 3)  # 5 + 5 + 4; the scan needed a call per 1,000 entries
        for page_size in (1, 3, 100):
            self.check(self.d, "w", item("mug"), page_size=page_size)
        self.check(self.d, "w", item("mug", "L"), page_size=1)
        self.check(self.d, "w", item("n7"), page_size=37)

    def test_order_filter_and_combined(self):
        got, _ = self.check(self.d, "w", order_id="o-multi", page_size=3)
        self.assertEqual(len(got), 8)
        self.assertEqual([e.delta for e in got], [-1, -2, -1, -1] * 2)
        self.check(self.d, "w", order_id="o-7", page_size=50)
        self.check(self.d, "w", item("mug"), "o-multi", page_size=1)
        self.check(self.d, "w", item("mug", "L"), "o-multi")
        self.check(self.d, "w", item("mug"), "o-7")
        self.assertEqual(self.check(self.d, "w", item("nothing"), "o-multi")[0], [])
        # a cursor inside a request's lines resumes inside it
        first = self.d.history("w", order_id="o-multi", page_size=2)
        rest = self.d.history("w", order_id="o-multi", after_seq=first.next_after_seq)
        self.assertEqual([e.seq for e in list(first.entries) + list(rest.entries)],
                         [e.seq for e in self.expected("w", order_id="o-multi")])

    def test_other_tenants_are_invisible(self):
        got, _ = self.check(self.d, "w2", item("mug"))
        self.assertEqual([e.delta for e in got], [5])
        self.check(self.d, "w2", order_id="o-multi")
        self.assertEqual(list(self.d.history("w3", item("mug")).entries), [])
        self.assertEqual(list(self.d.history("w", order_id="o-multi", item=item("mug"),
                                             after_seq=self.everything["w2"][-1].seq).entries), [])

    def test_errors_are_unchanged(self):
        for request, code in (
                (pb.HistoryRequest(tenant_id="w", item=item("mug"), page_size=-1),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (pb.HistoryRequest(tenant_id="w", order_id="o" * 129),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (pb.HistoryRequest(tenant_id="w", item=pb.ItemRef(catalog_item_id="x" * 300)),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (pb.HistoryRequest(tenant_id="w", order_id="o-1", after_seq=2**64 - 1),
                 grpc.StatusCode.INVALID_ARGUMENT)):
            with self.assertRaises(grpc.RpcError) as caught:
                self.d.call("History", request, pb.HistoryResponse)
            self.assertEqual(caught.exception.code(), code)

    def test_restart_and_restored_checkpoint_keep_the_index(self):
        checkpoint = self.d.call("Checkpoint", admin_pb2.CheckpointRequest(name="hist"),
                                 admin_pb2.CheckpointResponse, service="Admin")
        restored = os.path.join(self.dir, "restored")
        shutil.copytree(checkpoint.path, restored)
        other = Daemon(restored, os.path.join(self.dir, "restored.log"))
        try:
            self.check(other, "w", item("mug"), page_size=4)
            self.check(other, "w", item("mug"), "o-multi", page_size=2)
            self.check(other, "w2", order_id="o-multi")
        finally:
            self.assertEqual(other.stop(), 0)
        # and the live directory after a restart
        self.assertEqual(self.d.stop(), 0)
        type(self).d = Daemon(self.data, self.log)
        self.check(self.d, "w", item("mug"), page_size=6)
        self.check(self.d, "w", order_id="o-multi", page_size=5)
        with open(self.log) as log:
            self.assertNotIn('"ledger_index_built"', log.read())  # built as written, never again


class Retention(unittest.TestCase):
    def test_pruned_entries_leave_the_filtered_history(self):
        work = tempfile.mkdtemp(prefix="stockd-hist-ret-")
        d = Daemon(os.path.join(work, "data"), os.path.join(work, "stockd.log"),
                   "--ledger-retention", "1s", "--ledger-prune-interval", "1s")
        try:
            for _ in range(3):
                d.call("Increment", pb.IncrementRequest(tenant_id="r", order_id="o", lines=[
                    pb.Line(item=item("old"), quantity=1)]), pb.IncrementResponse)
            time.sleep(3.5)
            d.call("Increment", pb.IncrementRequest(tenant_id="r", order_id="o", lines=[
                pb.Line(item=item("old"), quantity=1)]), pb.IncrementResponse)
            for kw in ({"item": item("old")}, {"order_id": "o"},
                       {"item": item("old"), "order_id": "o"}):
                with self.assertRaises(grpc.RpcError) as caught:
                    d.call("History", pb.HistoryRequest(tenant_id="r", **kw), pb.HistoryResponse)
                self.assertEqual(caught.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
                r = d.call("History", pb.HistoryRequest(tenant_id="r", after_seq=3, **kw),
                           pb.HistoryResponse)
                self.assertEqual([e.seq for e in r.entries], [4])
        finally:
            self.assertEqual(d.stop(), 0)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
