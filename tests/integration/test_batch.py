#!/usr/bin/python3
"""Inventory/Batch end to end, through Debian's python3-grpcio (not our client).

Goal: a Batch's writes are each applied, or not, exactly as if sent alone, in the order
given, each with its own status and details; the Batch-wide limits refuse the whole call and
change nothing; racing Batches never oversell.
Method: a real stockd on 127.0.0.1:0 with a temporary data directory; results are checked
against GetStock and History afterwards.
Usage: test_batch.py PATH-TO-STOCKD PYGEN-DIR
"""
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import unittest

STOCKD = sys.argv[1]
sys.path.insert(0, sys.argv[2])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
del sys.argv[1:3]

import grpc  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from stockd.v1 import inventory_pb2 as pb  # noqa: E402

import procs  # noqa: E402

SERVICE = "/stockd.v1.Inventory/"
OK, INVALID, PRECONDITION, EXISTS, EXHAUSTED = 0, 3, 9, 6, 8


class Daemon:
    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="stockd-batch-")
        self.proc, self.address = procs.start(
            [STOCKD, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(self.dir, "data"),
             *extra], os.path.join(self.dir, "stockd.log"))
        self.channel = grpc.insecure_channel(self.address)

    def call(self, method, request, response_type, timeout=30):
        stub = self.channel.unary_unary(SERVICE + method,
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=response_type.FromString)
        return stub(request, timeout=timeout)

    def batch(self, *writes):
        return self.call("Batch", pb.BatchRequest(writes=list(writes)), pb.BatchResponse)

    def stop(self):
        self.channel.close()
        code = procs.stop(self.proc)
        if code != 0:
            with open(os.path.join(self.dir, "stockd.log")) as log:
                sys.stderr.write("stockd exited %d; its log:\n%s\n" % (code, log.read()[-20000:]))
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


def item(sku):
    return pb.ItemRef(app_id="app", catalog_item_id=sku)


def decrement(tenant, skus, request_id="", restrict=True, quantity=1):
    return pb.BatchWrite(decrement=pb.DecrementRequest(
        tenant_id=tenant, restrict_inventory=restrict, request_id=request_id,
        lines=[pb.Line(item=item(s), quantity=quantity) for s in skus]))


def increment(tenant, sku, quantity, request_id=""):
    return pb.BatchWrite(increment=pb.IncrementRequest(
        tenant_id=tenant, request_id=request_id,
        lines=[pb.Line(item=item(sku), quantity=quantity)]))


def set_stock(tenant, sku, available, request_id=""):
    return pb.BatchWrite(set_stock=pb.SetStockRequest(
        tenant_id=tenant, request_id=request_id,
        lines=[pb.SetLine(item=item(sku), available=available)]))


def detail(status, cls):
    for any_detail in status.details:
        if any_detail.Is(cls.DESCRIPTOR):
            message = cls()
            any_detail.Unpack(message)
            return message
    return None


class Batch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Daemon()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0

    def level(self, tenant, sku):
        response = self.d.call("GetStock", pb.GetStockRequest(tenant_id=tenant, items=[item(sku)]),
                               pb.GetStockResponse)
        return response.levels[0].available

    def codes(self, response):
        return [r.status.code for r in response.results]

    def test_each_write_as_if_alone_in_order(self):
        self.d.batch(set_stock("order", "a", 5), set_stock("order", "b", 1))
        response = self.d.batch(
            decrement("order", ["a"], quantity=2),
            decrement("order", ["a", "b"], quantity=2),  # b is short: nothing of it applied
            increment("order", "b", 3),
            decrement("order", ["b"], quantity=2),  # sees the increment before it
            decrement("order", ["a"], quantity=1, restrict=False))
        self.assertEqual(self.codes(response), [OK, PRECONDITION, OK, OK, OK])
        self.assertEqual(response.results[0].WhichOneof("response"), "decrement")
        self.assertEqual(response.results[2].WhichOneof("response"), "increment")
        self.assertEqual(response.results[0].decrement.levels[0].available, 3)
        self.assertEqual(response.results[3].decrement.levels[0].available, 2)
        short = detail(response.results[1].status, error_details_pb2.PreconditionFailure)
        self.assertIsNotNone(short, response.results[1].status)
        self.assertIn('"b"', short.violations[0].subject)
        self.assertFalse(response.results[1].HasField("decrement"))
        self.assertEqual(self.level("order", "a"), 2)
        self.assertEqual(self.level("order", "b"), 2)
        seqs = [r.decrement.ledger_seq or r.increment.ledger_seq
                for r in response.results if r.status.code == OK]
        self.assertEqual(seqs, sorted(seqs), "applied in the order given")

    def test_a_bad_write_is_refused_alone_with_its_field(self):
        empty = pb.BatchWrite()
        zero = decrement("bad", ["x"], quantity=0)
        response = self.d.batch(increment("bad", "x", 4), empty, zero, set_stock("bad", "y", 7))
        self.assertEqual(self.codes(response), [OK, INVALID, INVALID, OK])
        self.assertIn("write", response.results[1].status.message)
        bad = detail(response.results[2].status, error_details_pb2.BadRequest)
        self.assertEqual(bad.field_violations[0].field, "lines[0].quantity")
        self.assertEqual(self.level("bad", "x"), 4)
        self.assertEqual(self.level("bad", "y"), 7)

    def test_request_ids_replay_within_and_across_batches(self):
        self.d.batch(set_stock("idem", "a", 10))
        first = self.d.batch(decrement("idem", ["a"], "r1"), decrement("idem", ["a"], "r1"),
                             decrement("idem", ["a"], "r2"))
        self.assertEqual(self.codes(first), [OK, OK, OK])
        self.assertFalse(first.results[0].decrement.replayed)
        self.assertTrue(first.results[1].decrement.replayed)
        again = self.d.batch(decrement("idem", ["a"], "r1"), decrement("idem", ["a"], "r2"),
                             decrement("idem", ["a"], "r2", quantity=3))
        self.assertEqual(self.codes(again), [OK, OK, EXISTS])
        self.assertTrue(again.results[0].decrement.replayed)
        self.assertEqual(self.level("idem", "a"), 8)
        history = self.d.call("History", pb.HistoryRequest(tenant_id="idem"), pb.HistoryResponse)
        self.assertEqual([e.request_id for e in history.entries if e.request_id],
                         ["r1", "r2"])

    def test_batch_limits_refuse_the_whole_call_and_change_nothing(self):
        self.d.batch(set_stock("limits", "a", 100))
        cases = [
            ([], "1..1024 writes"),
            ([decrement("limits", ["a"])] * 1025, "1..1024 writes"),
            ([decrement("limits", ["s%d" % i for i in range(4097)], restrict=False)] * 2,
             "8192 lines"),
            ([decrement("limits", ["x" * 250 + str(i) for i in range(300)])] * 15, "bytes"),
        ]
        for writes, words in cases:
            with self.assertRaises(grpc.RpcError) as caught:
                self.d.batch(*writes)
            self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("writes", caught.exception.details())
            self.assertIn(words, caught.exception.details())
        self.assertEqual(self.level("limits", "a"), 100)

    def test_each_write_records_whom_it_was_made_for(self):
        site_a = increment("obo", "a", 1)
        site_a.on_behalf_of = "wix-instance:site-a"
        site_b = increment("obo", "a", 2)
        site_b.on_behalf_of = "wix-instance:site-b"
        bad = increment("obo", "a", 4)
        bad.on_behalf_of = "tab\there"
        response = self.d.batch(site_a, site_b, increment("obo", "a", 3), bad)
        self.assertEqual(self.codes(response), [OK, OK, OK, INVALID])
        self.assertIn("on_behalf_of", response.results[3].status.message)
        history = self.d.call("History", pb.HistoryRequest(tenant_id="obo"), pb.HistoryResponse)
        self.assertEqual([e.on_behalf_of for e in history.entries],
                         ["wix-instance:site-a", "wix-instance:site-b", ""])
        self.assertEqual(self.level("obo", "a"), 6)

    def test_a_nul_byte_refuses_the_call_naming_the_write(self):
        with self.assertRaises(grpc.RpcError) as caught:
            self.d.batch(increment("nul", "ok", 1), increment("nul", "a\0b", 1))
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("writes[1].increment.lines[0].item.catalog_item_id",
                      caught.exception.details())
        self.assertEqual(self.level("nul", "ok"), 0)

    def test_racing_batches_never_oversell(self):
        stock = 50
        self.d.batch(set_stock("race", "hot", stock))
        granted = []
        lock = threading.Lock()

        def worker():
            for _ in range(10):
                response = self.d.batch(*[decrement("race", ["hot"]) for _ in range(4)])
                with lock:
                    granted.extend(r.status.code == OK for r in response.results)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sum(granted), stock)
        self.assertEqual(len(granted), 160)
        self.assertEqual(self.level("race", "hot"), 0)


class Stockbench(unittest.TestCase):
    def test_stockbench_batch_mode_loses_nothing(self):
        """stockbench --batch sends Batch calls of decrements and increments and checks
        afterwards, through GetStock, that every SKU moved by exactly what was acknowledged."""
        import json
        import subprocess
        d = Daemon()
        try:
            out = subprocess.run(
                [os.path.join(os.path.dirname(STOCKD), "stockbench"), "--stockd", d.address,
                 "--mode", "mixed", "--batch", "8", "--connections", "2", "--inflight", "4",
                 "--skus", "100", "--duration", "1s", "--warmup", "0s"],
                capture_output=True, text=True, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            self.assertEqual(result["batch"], 8)
            self.assertGreater(result["ops"], 0)
            self.assertEqual(result["errors"], 0)
            self.assertEqual(result["check_mismatches"], 0)
        finally:
            self.assertEqual(d.stop(), 0)


class Budget(unittest.TestCase):
    def test_a_batch_counts_its_writes_against_the_request_budget(self):
        """The jobs a Batch holds until its last write completes (~1 KiB per write) count
        against --inflight-mb: 1024 empty writes (a 2 KB request) do not fit 1 MiB."""
        d = Daemon("--inflight-mb", "1")
        try:
            with self.assertRaises(grpc.RpcError) as caught:
                d.batch(*[pb.BatchWrite() for _ in range(1024)])
            self.assertEqual(caught.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
            self.assertIn("too many request bytes", caught.exception.details())
            small = d.batch(*[pb.BatchWrite() for _ in range(16)])  # fits: answered per write
            self.assertEqual([r.status.code for r in small.results], [INVALID] * 16)
        finally:
            self.assertEqual(d.stop(), 0)


class Shutdown(unittest.TestCase):
    def test_sigterm_while_batches_are_answered(self):
        """SIGTERM while Batch answers are going out: stockd exits 0 (under the sanitizers:
        without touching freed memory), and every write answered OK is stored."""
        d = Daemon()
        acked, lock, stop = [], threading.Lock(), threading.Event()

        def sender(t):
            n = 0
            while not stop.is_set():
                skus = ["s-%d-%d-%d" % (t, n, i) for i in range(256)]
                n += 1
                try:
                    response = d.batch(*[increment("term", sku, 1, "r-" + sku) for sku in skus])
                except grpc.RpcError:
                    return
                with lock:
                    acked.extend(sku for sku, r in zip(skus, response.results)
                                 if r.status.code == OK)

        threads = [threading.Thread(target=sender, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        d.proc.send_signal(signal.SIGTERM)
        code = d.proc.wait(timeout=60)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        d.channel.close()
        self.assertEqual(code, 0)
        self.assertGreater(len(acked), 0)
        again, address = procs.start(
            [STOCKD, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(d.dir, "data")],
            os.path.join(d.dir, "again.log"))
        try:
            with grpc.insecure_channel(address) as channel:
                get = channel.unary_unary(SERVICE + "GetStock",
                                          request_serializer=lambda m: m.SerializeToString(),
                                          response_deserializer=pb.GetStockResponse.FromString)
                for start in range(0, len(acked), 1000):
                    chunk = acked[start:start + 1000]
                    levels = get(pb.GetStockRequest(tenant_id="term",
                                                    items=[item(s) for s in chunk]), timeout=30)
                    self.assertEqual([l.available for l in levels.levels], [1] * len(chunk))
        finally:
            self.assertEqual(procs.stop(again), 0)
            shutil.rmtree(d.dir, ignore_errors=True)


class FullQueue(unittest.TestCase):
    def test_a_batch_larger_than_the_queue_is_refused_whole(self):
        d = Daemon("--queue-depth", "4")
        try:
            response = d.batch(*[increment("q", "a", 1) for _ in range(5)])
            self.assertEqual([r.status.code for r in response.results], [EXHAUSTED] * 5)
            self.assertIn("more than stockd's write queue ever holds (--queue-depth 4)",
                          response.results[0].status.message)
            fits = d.batch(*[increment("q", "a", 1) for _ in range(4)])
            self.assertEqual([r.status.code for r in fits.results], [OK] * 4)
            level = d.call("GetStock", pb.GetStockRequest(tenant_id="q", items=[item("a")]),
                           pb.GetStockResponse)
            self.assertEqual(level.levels[0].available, 4)
        finally:
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
