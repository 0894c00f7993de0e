#!/usr/bin/python3
"""Disk faults under the real stockd: an answer is never a lie, and stockd is fail-stop.

Goal: when the disk fails under stockd (fdatasync EIO, a full disk on WAL writes, a read-only
data directory), no acknowledged write is missing after a restart, no answer claims a state
that was not stored ("not applied" only for writes that were never evaluated; the batch whose
commit failed is "outcome unknown"), Health reports NOT_SERVING, stockd exits with status 3
instead of limping on, and the next start recovers.
Method: stockd runs with tests/fault/faultfs.c preloaded (LD_PRELOAD); the test arms a fault
by writing the shim's control file while writes are flowing, records every answer, restarts
stockd without the fault on the same data directory and compares what is stored (levels and
the ledger, read with python3-grpcio) with what was answered. In-doubt writes are re-sent with
their request_id: answered `replayed` exactly when they had been stored.
Usage: test_faults.py PATH-TO-STOCKD PYGEN-DIR PATH-TO-LIBFAULTFS
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

STOCKD, PYGEN, FAULTFS = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, PYGEN)
del sys.argv[1:4]

import grpc  # noqa: E402
from stockd.v1 import inventory_pb2 as pb  # noqa: E402

SERVICE = "/stockd.v1.Inventory/"
TENANT = "faults"
SERVING, NOT_SERVING = b"\x08\x01", b"\x08\x02"
EXIT_STORAGE_FAILED = 3


class Stockd:
    """One stockd process on a given data directory, optionally under the fault shim."""

    def __init__(self, data_dir, control=None, extra=()):
        env = dict(os.environ)
        if control is not None:
            env["LD_PRELOAD"] = FAULTFS
            env["STOCKD_FAULT_CONTROL"] = control
            # In the ASan build the shim is preloaded ahead of the sanitizer runtime.
            env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
        self.lines = []
        self.proc = subprocess.Popen(
            [STOCKD, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
             "--failure-exit-delay", "2s", *extra],
            stderr=subprocess.PIPE, text=True, env=env)
        self.address = self._wait_listening()
        self.channel = grpc.insecure_channel(self.address) if self.address else None

    def _wait_listening(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                return None
            self.lines.append(line)
            m = re.search(r'"event":"listening","address":"(127\.0\.0\.1:\d+)"', line)
            if m:
                threading.Thread(target=self._drain, daemon=True).start()
                return m.group(1)
        return None

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def log(self):
        return "".join(self.lines)

    def call(self, method, request, response_type, timeout=10):
        stub = self.channel.unary_unary(SERVICE + method,
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=response_type.FromString)
        return stub(request, timeout=timeout)

    def health(self):
        return self.channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)

    def wait(self, timeout=30):
        code = self.proc.wait(timeout=timeout)
        if self.channel:
            self.channel.close()
        self.proc.stderr.close()
        return code

    def stop(self):
        self.proc.terminate()
        return self.wait()


def item(sku):
    return pb.ItemRef(app_id="app", catalog_item_id=sku)


def increment(sku, quantity, request_id):
    return pb.IncrementRequest(tenant_id=TENANT, lines=[pb.Line(item=item(sku), quantity=quantity)],
                               order_id=request_id, request_id=request_id)


class Outcomes:
    """Every answer, sorted by what it says about the write's fate."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acknowledged, self.not_applied, self.in_doubt = {}, {}, {}

    def record(self, request_id, request, error):
        with self.lock:
            if error is None:
                self.acknowledged[request_id] = request
            elif "outcome unknown" in (error.details() or "") or \
                    error.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED) \
                    or (error.code() == grpc.StatusCode.UNAVAILABLE
                        and "not applied" not in (error.details() or "")):
                # a broken connection or an explicit "outcome unknown": nobody knows
                self.in_doubt[request_id] = request
            else:
                self.not_applied[request_id] = (request, error.code(), error.details())


def send(daemon, outcomes, request_id, request):
    try:
        daemon.call("Increment", request, pb.IncrementResponse)
        outcomes.record(request_id, request, None)
    except grpc.RpcError as error:
        outcomes.record(request_id, request, error)


class BatchResultError:
    """One write's non-OK BatchResult, seen as the RpcError its lone call would have raised."""
    CODES = {status.value[0]: status for status in grpc.StatusCode}

    def __init__(self, result):
        self.result = result

    def code(self):
        return self.CODES[self.result.status.code]

    def details(self):
        return self.result.status.message


def send_batch(daemon, outcomes, writes):
    """writes: [(request_id, IncrementRequest)], sent as one Batch; each outcome recorded as
    its own (a failed call: every write as that call's error)."""
    request = pb.BatchRequest(writes=[pb.BatchWrite(increment=r) for _, r in writes])
    try:
        response = daemon.call("Batch", request, pb.BatchResponse)
    except grpc.RpcError as error:
        for request_id, r in writes:
            outcomes.record(request_id, r, error)
        return
    for (request_id, r), result in zip(writes, response.results):
        outcomes.record(request_id, r, None if result.status.code == 0 else BatchResultError(result))


def stored_request_ids(daemon):
    """Every request_id in the tenant's ledger, read page by page."""
    found, after = {}, 0
    while True:
        page = daemon.call("History", pb.HistoryRequest(tenant_id=TENANT, after_seq=after,
                                                        page_size=1000), pb.HistoryResponse)
        for entry in page.entries:
            found.setdefault(entry.request_id, 0)
            found[entry.request_id] += entry.delta
        if not page.next_after_seq or not page.entries:
            return found
        after = page.next_after_seq


def level(daemon, sku):
    response = daemon.call("GetStock", pb.GetStockRequest(tenant_id=TENANT, items=[item(sku)]),
                           pb.GetStockResponse)
    return response.levels[0].available


class DiskFaults(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="stockd-faults-")
        self.data = os.path.join(self.dir, "data")
        self.control = os.path.join(self.dir, "fault-control")
        open(self.control, "w").close()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def arm(self, rule):
        with open(self.control, "w") as f:
            f.write(rule + "\n")

    def hits(self):
        try:
            with open(self.control + ".hits") as f:
                return int(f.read().strip() or 0)
        except FileNotFoundError:
            return 0

    def run_fault(self, rule, writers=8, per_writer=40, batch=0):
        """Writes flow from several threads (in Batch calls of `batch` writes when given); the
        fault is armed midway. Returns the outcomes."""
        daemon = Stockd(self.data, control=self.control)
        self.assertIsNotNone(daemon.address, daemon.log())
        outcomes = Outcomes()
        for i in range(20):  # acknowledged before the fault
            send(daemon, outcomes, "before-%d" % i, increment("sku-%d" % (i % 4), 1, "before-%d" % i))
        self.assertEqual(len(outcomes.acknowledged), 20)
        self.assertEqual(daemon.health(), SERVING)

        def writer(w):
            writes = [("w%d-%d" % (w, i), increment("sku-%d" % (i % 4), 1 + w, "w%d-%d" % (w, i)))
                      for i in range(per_writer)]
            if batch:
                for start in range(0, per_writer, batch):
                    send_batch(daemon, outcomes, writes[start:start + batch])
                return
            for request_id, request in writes:
                send(daemon, outcomes, request_id, request)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
        health_watch = daemon.channel.unary_stream("/grpc.health.v1.Health/Watch")(b"", timeout=30)
        self.assertEqual(next(health_watch), SERVING)
        # armed before the writers start: on a fast machine they could all be done before a
        # fault armed after them (a flaky "never reached" that left stockd running)
        self.arm(rule)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.hits() == 0:
            daemon.proc.kill()
            self.fail("the fault was never reached:\n" + daemon.log())
        # Health reflects the failure while the process lingers (Check, and Watch streams are
        # told), then it exits with status 3.
        self.assertEqual(daemon.health(), NOT_SERVING)
        self.assertEqual(next(health_watch), NOT_SERVING)
        self.assertEqual(daemon.wait(), EXIT_STORAGE_FAILED, daemon.log())
        self.assertIn('"event":"storage_failed"', daemon.log())
        self.assertNotIn("Aborted", daemon.log())
        self.assertTrue(outcomes.in_doubt, "the failed batch must be answered 'outcome unknown'")
        return outcomes

    def check_after_restart(self, outcomes):
        daemon = Stockd(self.data)  # no fault: recovery from the WAL
        self.assertIsNotNone(daemon.address, daemon.log())
        try:
            self.assertEqual(daemon.health(), SERVING)
            stored = stored_request_ids(daemon)
            for request_id in outcomes.acknowledged:
                self.assertIn(request_id, stored, "acknowledged write lost")
            for request_id, (_, code, details) in outcomes.not_applied.items():
                self.assertNotIn(request_id, stored,
                                 "answered %s '%s' but stored" % (code, details))
                self.assertIn("not applied", details)
            for request_id in stored:
                self.assertTrue(request_id in outcomes.acknowledged or request_id in outcomes.in_doubt,
                                "stored but never sent: " + request_id)
            # Every in-doubt write re-sent with its request_id: replayed exactly when stored.
            for request_id, request in outcomes.in_doubt.items():
                response = daemon.call("Increment", request, pb.IncrementResponse)
                self.assertEqual(response.replayed, request_id in stored, request_id)
            # Levels are the sum of what the ledger holds, now including the re-sent writes.
            stored = stored_request_ids(daemon)
            for sku in ("sku-0", "sku-1", "sku-2", "sku-3"):
                expected = sum(r.lines[0].quantity for rid, r in
                               list(outcomes.acknowledged.items()) + list(outcomes.in_doubt.items())
                               if r.lines[0].item.catalog_item_id == sku and rid in stored)
                self.assertEqual(level(daemon, sku), expected, sku)
        finally:
            self.assertEqual(daemon.stop(), 0)

    def test_fdatasync_eio_once(self):
        """One failed WAL sync (the 'fsyncgate' case): later syncs would succeed, but the
        batch's fate is unknown, so stockd stops and recovers from the log."""
        self.check_after_restart(self.run_fault("fdatasync EIO 1 .log"))

    def test_fdatasync_eio_once_under_batch_calls(self):
        """The same through Batch calls: every write of the failed commit is answered
        'outcome unknown' in its own result, none 'not applied' that was stored, none lost."""
        self.check_after_restart(self.run_fault("fdatasync EIO 1 .log", batch=5))

    def test_wal_write_enospc(self):
        """A full disk while appending to the WAL."""
        self.check_after_restart(self.run_fault("write ENOSPC 0 .log"))

    def test_disk_full_for_every_file(self):
        """A full disk fails every file of the data directory, RocksDB's own info LOG too.
        Regression: a failed append to that LOG tripped an assertion in Debian's RocksDB and
        the process aborted instead of stopping cleanly."""
        self.check_after_restart(self.run_fault("write ENOSPC 0 " + self.data + "/"))

    def test_fdatasync_eio_forever_then_sigterm(self):
        """A dead disk, and SIGTERM during the failure: still exit status 3, never an abort."""
        daemon = Stockd(self.data, control=self.control)
        outcomes = Outcomes()
        send(daemon, outcomes, "a", increment("x", 1, "a"))
        self.arm("fdatasync EIO 0 -")
        send(daemon, outcomes, "b", increment("x", 1, "b"))
        self.assertIn("b", outcomes.in_doubt)
        daemon.proc.terminate()
        self.assertEqual(daemon.wait(), EXIT_STORAGE_FAILED, daemon.log())
        self.check_after_restart(outcomes)

    def test_disk_fails_while_shutting_down(self):
        """SIGTERM, then the disk fails while the last writes drain. Regression (found by
        review): stockd went on to flush and close RocksDB and exited 0. A failure during
        shutdown is still a storage failure: exit 3, no flush, no close."""
        daemon = Stockd(self.data, control=self.control, extra=("--queue-depth", "100000"))
        outcomes, stop = Outcomes(), threading.Event()

        def writer(w):
            i = 0
            while not stop.is_set():
                request_id = "d%d-%d" % (w, i)
                send(daemon, outcomes, request_id, increment("sku-0", 1, request_id))
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(16)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        daemon.proc.terminate()
        self.arm("fdatasync EIO 0 -")
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        code = daemon.wait()
        if self.hits() > 0:  # a commit met the failed disk while draining
            self.assertEqual(code, EXIT_STORAGE_FAILED, daemon.log())
            self.assertNotIn('"event":"shutdown_complete"', daemon.log())
        else:
            self.assertEqual(code, 0, daemon.log())
        self.arm("")
        self.check_after_restart(outcomes)

    def test_read_only_data_directory(self):
        """stockd cannot open a read-only data directory: it says so and exits non-zero
        (the shim answers EROFS, as root ignores permission bits)."""
        first = Stockd(self.data)
        self.assertEqual(first.stop(), 0)
        self.arm("open EROFS 0 " + self.data)
        daemon = Stockd(self.data, control=self.control)
        self.assertIsNone(daemon.address)
        code = daemon.wait()
        self.assertNotEqual(code, 0)
        self.assertIn("storage_open_failed", daemon.log())
        self.assertIn("Read-only file system", daemon.log())
        self.arm("")
        again = Stockd(self.data)
        self.assertIsNotNone(again.address, again.log())
        self.assertEqual(again.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
