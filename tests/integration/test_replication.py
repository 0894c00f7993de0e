#!/usr/bin/python3
"""Three real stockd replicas on loopback (docs/api.md 7), through Debian's python3-grpcio.

Goal: with --node-id/--raft-listen/--peers, writes are acknowledged only once a majority holds
them, every replica applies the same entries, followers send clients to the leader, and a
leader killed with SIGKILL (or frozen with SIGSTOP) loses no acknowledged write and oversells
nothing.
Method: three processes with fixed free ports and their own data directories; clients follow
the stockd-leader hint; afterwards every item's level is checked against the acknowledged
decrements (an "outcome unknown" answer may or may not have been applied) and the three
ledgers are compared entry by entry.
Usage: test_replication.py PATH-TO-STOCKD PYGEN-DIR
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

STOCKD = sys.argv[1]
sys.path.insert(0, sys.argv[2])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
del sys.argv[1:3]

import grpc  # noqa: E402
from stockd.v1 import inventory_pb2 as pb  # noqa: E402

SERVICE = "/stockd.v1.Inventory/"
SANITIZED = bool(os.environ.get("STOCKD_SANITIZED"))


HANDED_OUT = set()


def free_port():
    """A free port not handed out before in this run: a port is free again once its probe
    socket closes, and two nodes were given the same one (listen_failed)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in HANDED_OUT:
            HANDED_OUT.add(port)
            return port


def item(sku):
    return pb.ItemRef(app_id="app", catalog_item_id=sku)


class Node:
    def __init__(self, cluster, node_id):
        self.cluster, self.id = cluster, node_id
        self.raft_port, self.grpc_port, self.admin_port = free_port(), free_port(), free_port()
        self.metrics_port = free_port()
        self.address = "127.0.0.1:%d" % self.grpc_port
        self.data = os.path.join(cluster.dir, "node%d" % node_id)
        self.log_path = os.path.join(cluster.dir, "node%d.log" % node_id)
        self.proc = None
        self.channel = None
        self.flags = []  # this replica's own extra flags
        self.env = {}  # and environment

    def start(self):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [STOCKD, "--node-id", str(self.id), "--raft-listen", "127.0.0.1:%d" % self.raft_port,
             "--peers", self.cluster.peers(), "--listen", self.address, "--data-dir", self.data,
             "--admin-listen", "127.0.0.1:%d" % self.admin_port,
             "--metrics-listen", "127.0.0.1:%d" % self.metrics_port,
             "--election-timeout-ms", "1000"] + self.cluster.extra_flags + self.flags,
            stderr=log, stdout=log, env=dict(os.environ, **self.env))
        log.close()
        self.channel = grpc.insecure_channel(self.address)
        grpc.channel_ready_future(self.channel).result(timeout=60)  # slow under ASan on 2 busy cores

    def call(self, method, request, response_type, timeout=10):
        stub = self.channel.unary_unary(SERVICE + method,
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=response_type.FromString)
        return stub.with_call(request, timeout=timeout)[0]

    def history(self):
        entries, after = [], 0
        while True:
            r = self.call("History", pb.HistoryRequest(tenant_id="t", after_seq=after,
                                                       page_size=500), pb.HistoryResponse)
            entries += [(e.seq, e.item.catalog_item_id, e.delta, e.available_after,
                         e.request_id) for e in r.entries]
            if not r.entries:
                return entries
            after = r.entries[-1].seq

    def metric(self, name):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                    timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise AssertionError("%s is not exported" % name)

    def readyz(self):
        """The HTTP status of /readyz (the kubelet's readiness probe), None when unreachable."""
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.metrics_port,
                                        timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return None

    def log_text(self):
        """Everything this replica wrote to its log (stderr and stdout), all its lives."""
        with open(self.log_path) as log:
            return log.read()

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=30)
            self.channel.close()

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGCONT)  # a frozen replica (SIGSTOP) must see SIGTERM
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.channel.close()
        return code


class Cluster:
    def __init__(self, size=3, extra_flags=()):
        self.dir = tempfile.mkdtemp(prefix="stockd-raft-")
        self.extra_flags = list(extra_flags)
        self.nodes = [Node(self, i + 1) for i in range(size)]

    def peers(self):
        return ",".join("%d=127.0.0.1:%d=%s" % (n.id, n.raft_port, n.address)
                        for n in self.nodes)

    def start(self):
        """Starts every node; if one does not come up, stops those started before re-raising
        (a failed setUp runs no tearDown: they were left running)."""
        try:
            for n in self.nodes:
                n.start()
        except BaseException:
            for n in self.nodes:
                try:
                    n.stop()
                except Exception:  # noqa: BLE001 - the first failure is the one to report
                    pass
            raise

    def by_address(self, address):
        return next(n for n in self.nodes if n.address == address)

    def leader(self, timeout=20, among=None):
        """The node that answers GetStock (only the leader does), following hints."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for n in among or self.nodes:
                if n.proc.poll() is not None:
                    continue
                try:
                    n.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[item("x")]),
                           pb.GetStockResponse, timeout=2)
                    return n
                except grpc.RpcError:
                    pass
            time.sleep(0.1)
        raise AssertionError("no leader within %d s" % timeout)

    def stop(self, test):
        codes = [n.stop() for n in self.nodes]
        failed = [c for c in codes if c not in (0, -signal.SIGKILL)]
        if failed:
            for n in (n for n in self.nodes if os.path.exists(n.log_path)):
                sys.stderr.write("node %d log:\n%s\n" % (n.id, n.log_text()[-6000:]))
        if os.environ.get("STOCKD_KEEP_LOGS"):
            sys.stderr.write("logs kept in %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        test.assertEqual(failed, [], "a replica exited badly: %s" % codes)


def write(node, sku, quantity, request_id, restrict=True):
    """A restricted decrement; returns (code, trailing metadata, message)."""
    stub = node.channel.unary_unary(SERVICE + "Decrement",
                                    request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=pb.DecrementResponse.FromString)
    request = pb.DecrementRequest(tenant_id="t", request_id=request_id, restrict_inventory=restrict,
                                  lines=[pb.Line(item=item(sku), quantity=quantity)])
    try:
        _, call = stub.with_call(request, timeout=3)
        return grpc.StatusCode.OK, dict(call.trailing_metadata() or ()), ""
    except grpc.RpcError as error:
        return error.code(), dict(error.trailing_metadata() or ()), error.details() or ""


class Replication(unittest.TestCase):
    def setUp(self):
        self.cluster = Cluster()
        self.cluster.start()

    def tearDown(self):
        self.cluster.stop(self)

    def set_level(self, node, sku, level):
        node.call("SetStock", pb.SetStockRequest(tenant_id="t", lines=[
            pb.SetLine(item=item(sku), available=level)]), pb.SetStockResponse)

    def wait_same_history(self, nodes, timeout=20):
        deadline = time.time() + timeout
        while True:
            histories = [n.history() for n in nodes]
            if all(h == histories[0] for h in histories) or time.time() > deadline:
                return histories
            time.sleep(0.2)

    def test_writes_replicate_and_followers_point_to_the_leader(self):
        leader = self.cluster.leader()
        self.set_level(leader, "a", 10)
        self.assertEqual(write(leader, "a", 3, "r1")[0], grpc.StatusCode.OK)
        for follower in (n for n in self.cluster.nodes if n is not leader):
            # the hint comes "when the leader is known": a follower learns it from the
            # leader's first message, which may still be on its way
            deadline = time.time() + 5
            while True:
                code, trailing, message = write(follower, "a", 1, "r2")
                self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
                self.assertIn("not the leader; not applied", message)
                if trailing.get("stockd-leader") or time.time() > deadline:
                    break
                time.sleep(0.05)
            self.assertEqual(trailing.get("stockd-leader"), leader.address)
            with self.assertRaises(grpc.RpcError) as caught:
                follower.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[item("a")]),
                              pb.GetStockResponse)
            self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
            # a Batch is refused as a whole, with the hint, like any other write
            with self.assertRaises(grpc.RpcError) as caught:
                follower.call("Batch", pb.BatchRequest(writes=[pb.BatchWrite(
                    decrement=pb.DecrementRequest(tenant_id="t", request_id="b1", lines=[
                        pb.Line(item=item("a"), quantity=1)]))]), pb.BatchResponse)
            self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
            self.assertIn("not applied", caught.exception.details())
            self.assertEqual(dict(caught.exception.trailing_metadata())["stockd-leader"],
                             leader.address)
        histories = self.wait_same_history(self.cluster.nodes)
        self.assertEqual(histories[0], histories[1])
        self.assertEqual(histories[0], histories[2])
        self.assertEqual([(e[1], e[2], e[3]) for e in histories[0]], [("a", 10, 10), ("a", -3, 7)])
        # a replay reaches the record the leader wrote, on whichever replica leads
        r = leader.call("Decrement", pb.DecrementRequest(
            tenant_id="t", request_id="r1", restrict_inventory=True,
            lines=[pb.Line(item=item("a"), quantity=3)]), pb.DecrementResponse)
        self.assertTrue(r.replayed)

    def run_load(self, skus, stop, results, lock):
        """Restricted 1-unit decrements, following the leader; records every answer."""
        node = self.cluster.leader()
        n = 0
        while not stop.is_set():
            sku = skus[n % len(skus)]
            n += 1
            request_id = "load-%d-%d" % (threading.get_ident(), n)
            sent = time.time()
            code, trailing, message = write(node, sku, 1, request_id)
            with lock:
                results.append((sent, sku, code, message, time.time()))
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                hint = trailing.get("stockd-leader")
                try:
                    node = self.cluster.by_address(hint) if hint else \
                        self.cluster.leader(timeout=30)
                except (StopIteration, AssertionError):
                    time.sleep(0.05)

    def check_accounting(self, results, skus, start_level, leader):
        got = leader.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[
            item(s) for s in skus]), pb.GetStockResponse)
        for sku, level in zip(skus, got.levels):
            acked = sum(1 for r in results if r[1] == sku and r[2] == grpc.StatusCode.OK)
            # unknown: stockd said so, or the client gave up (its deadline, a broken
            # connection) before an answer; "not applied" must be true
            unknown = sum(1 for r in results if r[1] == sku and (
                r[2] == grpc.StatusCode.DEADLINE_EXCEEDED or (
                    r[2] == grpc.StatusCode.UNAVAILABLE and "not applied" not in r[3])))
            others = [r for r in results if r[1] == sku and r[2] not in (
                grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DEADLINE_EXCEEDED)]
            self.assertEqual(others, [])
            self.assertGreaterEqual(level.available, 0, "oversold %s" % sku)
            self.assertLessEqual(level.available, start_level - acked,
                                 "an acknowledged decrement of %s was lost" % sku)
            self.assertGreaterEqual(level.available, start_level - acked - unknown,
                                    "%s lost more than was acknowledged or unknown" % sku)

    def failover(self, how):
        leader = self.cluster.leader()
        skus = ["s%d" % i for i in range(8)]
        for sku in skus:
            self.set_level(leader, sku, 100000)
        stop, lock, results = threading.Event(), threading.Lock(), []
        threads = [threading.Thread(target=self.run_load, args=(skus, stop, results, lock))
                   for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2)
        killed_at = time.time()
        leader.kill(how)
        survivors = [n for n in self.cluster.nodes if n is not leader]
        new_leader = self.cluster.leader(timeout=30, among=survivors)
        deadline = time.time() + 30
        while time.time() < deadline:
            with lock:
                after = [r for r in results if r[0] > killed_at and r[2] == grpc.StatusCode.OK]
            if len(after) >= 50:
                break
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join()
        self.assertGreaterEqual(len(after), 50, "writes did not resume after the leader went")
        first_ack_s = min(r[4] for r in after) - killed_at  # sent after the kill, answered
        sys.stderr.write("%s of the leader: first acknowledged write after %.2f s; %d writes "
                         "acknowledged in all\n" % (
                             how.name, first_ack_s,
                             sum(1 for r in results if r[2] == grpc.StatusCode.OK)))
        self.check_accounting(results, skus, 100000, new_leader)
        if how == signal.SIGSTOP:
            leader.proc.send_signal(signal.SIGCONT)
        else:
            leader.start()  # the killed replica comes back and catches up from the log
        histories = self.wait_same_history(self.cluster.nodes, timeout=30)
        self.assertEqual(histories[0], histories[1])
        self.assertEqual(histories[0], histories[2])
        return first_ack_s

    def test_leader_killed(self):
        """SIGKILL of the leader under load: a new leader takes writes within seconds, no
        acknowledged write is lost, nothing is oversold, and the restarted replica catches up
        to the same ledger."""
        first_ack_s = self.failover(signal.SIGKILL)
        self.assertLess(first_ack_s, 15 if SANITIZED else 10)

    def test_leader_frozen(self):
        """SIGSTOP of the leader (a zombie that wakes up later): it must not acknowledge
        anything the new leader does not have; after SIGCONT it follows."""
        self.failover(signal.SIGSTOP)

    def test_a_leader_without_its_majority_answers_no_read(self):
        """Both followers frozen: the leader may not know yet that it could be replaced, so it
        must not answer GetStock from its own state (a read that could be stale); writes are
        never acknowledged; once the followers are back, both work again."""
        leader = self.cluster.leader()
        self.set_level(leader, "p", 4)
        followers = [n for n in self.cluster.nodes if n is not leader]
        for n in followers:
            n.kill(signal.SIGSTOP)
        try:
            with self.assertRaises(grpc.RpcError) as caught:
                leader.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[item("p")]),
                            pb.GetStockResponse, timeout=10)
            self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
            # a refusal is a statement about the level too: not from a possibly stale state
            code, _, message = write(leader, "p", 100, "cut-off-short")
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, message)
            code, _, _ = write(leader, "p", 1, "cut-off")
            self.assertNotEqual(code, grpc.StatusCode.OK)
        finally:
            for n in followers:
                n.proc.send_signal(signal.SIGCONT)
        leader = self.cluster.leader()
        got = leader.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[item("p")]),
                          pb.GetStockResponse)
        self.assertIn(got.levels[0].available, (3, 4))  # the cut-off write: outcome unknown
        self.assertEqual(write(leader, "p", 1, "after")[0], grpc.StatusCode.OK)

    def test_a_replica_catching_up_is_not_ready(self):
        """A replica back after missing many writes is not ready (Health, /readyz, and so a
        Kubernetes rolling update) until it has applied what the leader had committed: the
        library's commit index on a follower moves only as far as the entries it holds, so
        "applied >= commit" held after every batch of a catch-up. Sampled from one /metrics
        scrape (stockd_raft_ready and stockd_raft_applied_index come from one status copy)."""
        leader = self.cluster.leader()
        self.set_level(leader, "c", 100000)
        lagging = next(n for n in self.cluster.nodes if n is not leader)
        self.assertEqual(lagging.stop(), 0)
        for i in range(1500):
            self.assertEqual(write(leader, "c", 1, "behind-%d" % i, restrict=False)[0],
                             grpc.StatusCode.OK)
        target = leader.metric("stockd_raft_commit_index")
        lagging.start()
        samples, deadline = 0, time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % lagging.metrics_port,
                                            timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                continue
            values = dict(line.split()[:2] for line in text.splitlines()
                          if line.startswith(("stockd_raft_ready ", "stockd_raft_applied_index ")))
            samples += 1
            if float(values["stockd_raft_ready"]) == 1:
                self.assertGreaterEqual(float(values["stockd_raft_applied_index"]), target,
                                        "ready while behind (after %d samples)" % samples)
                break
        else:
            self.fail("never ready again")

    def test_health_watch_follows_the_replica(self):
        """Health/Watch on a replica streams NOT_SERVING when it loses its leader (the other
        two frozen) and SERVING again once a leader is back (docs/api.md 7)."""
        self.cluster.leader()
        watched = self.cluster.nodes[0]
        others = self.cluster.nodes[1:]
        stream = watched.channel.unary_stream("/grpc.health.v1.Health/Watch")(b"", timeout=60)
        self.assertEqual(next(stream), b"\x08\x01")  # SERVING
        self.assertEqual(watched.readyz(), 200)
        for n in others:
            n.kill(signal.SIGSTOP)
        try:
            self.assertEqual(next(stream), b"\x08\x02")  # NOT_SERVING: no leader any more
            # the kubelet's readiness probe says the same (it answered 200 here before)
            self.assertEqual(watched.readyz(), 503)
        finally:
            for n in others:
                n.proc.send_signal(signal.SIGCONT)
        self.assertEqual(next(stream), b"\x08\x01")
        stream.cancel()
        self.assertEqual(watched.readyz(), 200)

    def test_restart_of_every_replica_keeps_the_data(self):
        leader = self.cluster.leader()
        self.set_level(leader, "k", 5)
        self.assertEqual(write(leader, "k", 2, "keep")[0], grpc.StatusCode.OK)
        for n in self.cluster.nodes:
            self.assertEqual(n.stop(), 0)
        self.cluster.start()
        leader = self.cluster.leader()
        got = leader.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[item("k")]),
                          pb.GetStockResponse)
        self.assertEqual(got.levels[0].available, 3)
        self.assertEqual(write(leader, "k", 3, "after")[0], grpc.StatusCode.OK)
        code, _, _ = write(leader, "k", 1, "short")
        self.assertEqual(code, grpc.StatusCode.FAILED_PRECONDITION)
        histories = self.wait_same_history(self.cluster.nodes)
        self.assertEqual(histories[0], histories[2])
        self.assertEqual(len(histories[0]), 3)


class Snapshots(unittest.TestCase):
    """With a tiny --snapshot-threshold, Raft replaces its log with snapshots every few dozen
    entries: a replica down past the leader's log catches up from a snapshot, one that lost its
    store rebuilds it from its own last snapshot, and restarts keep everything."""
    THRESHOLD, TRAILING = 32, 8

    def setUp(self):
        self.cluster = Cluster(extra_flags=["--snapshot-threshold", str(self.THRESHOLD),
                                            "--snapshot-trailing", str(self.TRAILING)])
        self.cluster.start()

    def tearDown(self):
        self.cluster.stop(self)

    def decrement_many(self, leader, count, prefix):
        for i in range(count):
            code, _, message = write(leader, "s", 1, "%s-%d" % (prefix, i))
            self.assertEqual(code, grpc.StatusCode.OK, message)

    def level(self, node):
        got = node.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[item("s")]),
                        pb.GetStockResponse)
        return got.levels[0].available

    def wait_for(self, what, timeout=30):
        deadline = time.time() + timeout
        while True:
            try:
                if what():
                    return
            except (OSError, AssertionError):
                pass  # the replica's metrics listener is not up yet
            self.assertLess(time.time(), deadline, "timed out")
            time.sleep(0.1)

    def same_history(self, nodes, entries):
        histories = Replication.wait_same_history(self, nodes)
        for h in histories:
            self.assertEqual(len(h), entries)
            self.assertEqual(h, histories[0])

    def test_a_replica_down_past_the_log_catches_up_from_a_snapshot(self):
        leader = self.cluster.leader()
        Replication.set_level(self, leader, "s", 1000)
        self.decrement_many(leader, 10, "before")
        behind = next(n for n in self.cluster.nodes if n is not leader)
        self.assertEqual(behind.stop(), 0)
        # five thresholds' worth: the leader's log no longer reaches back to where behind stopped
        self.decrement_many(leader, 5 * self.THRESHOLD, "while-down")
        self.assertGreaterEqual(leader.metric("stockd_raft_snapshots_taken_total"), 4)
        self.assertGreater(leader.metric("stockd_raft_snapshot_index"), 5 * self.THRESHOLD - 10)
        raft_files = os.listdir(os.path.join(leader.data, "raft"))
        self.assertTrue(any(f.startswith("snapshot-") for f in raft_files), raft_files)
        behind.start()
        self.wait_for(lambda: behind.metric("stockd_raft_snapshots_restored_total") >= 1)
        # the log after the snapshot applies on top of it
        self.decrement_many(leader, 5, "after")
        entries = 1 + 10 + 5 * self.THRESHOLD + 5
        self.same_history(self.cluster.nodes, entries)
        self.assertEqual(self.level(leader), 1000 - (entries - 1))
        # installing a snapshot answers heartbeats with stored index 0: not a lost log (review)
        self.assertNotIn("replication_member_lost_its_log", leader.log_text())
        # the replica that caught up leads with the same state
        code, moved = stockctl(leader, "cluster", "transfer-leader", str(behind.id))
        self.assertEqual(code, 0, moved)
        self.assertIs(self.cluster.leader(), behind)
        self.assertEqual(self.level(behind), 1000 - (entries - 1))
        self.assertEqual(write(behind, "s", 1, "on-the-restored")[0], grpc.StatusCode.OK)
        self.same_history(self.cluster.nodes, entries + 1)

    def test_a_replica_that_lost_its_store_rebuilds_it_from_its_snapshot(self):
        leader = self.cluster.leader()
        Replication.set_level(self, leader, "s", 1000)
        self.decrement_many(leader, 3 * self.THRESHOLD, "first")
        lost = next(n for n in self.cluster.nodes if n is not leader)
        self.wait_for(lambda: lost.metric("stockd_raft_snapshots_taken_total") >= 1)
        self.assertEqual(lost.stop(), 0)
        # the RocksDB files go (a wiped volume would take the Raft directory along; this is
        # the store being behind its own snapshot, as after a crash of the machine)
        for name in os.listdir(lost.data):
            if name != "raft":
                path = os.path.join(lost.data, name)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        lost.start()
        self.wait_for(lambda: lost.metric("stockd_raft_snapshots_restored_total") >= 1)
        self.same_history(self.cluster.nodes, 1 + 3 * self.THRESHOLD)

    def test_kill_9_of_every_replica_after_snapshots_keeps_the_data(self):
        leader = self.cluster.leader()
        Replication.set_level(self, leader, "s", 1000)
        self.decrement_many(leader, 3 * self.THRESHOLD + 5, "first")
        for n in self.cluster.nodes:
            n.kill(signal.SIGKILL)
        self.cluster.start()
        leader = self.cluster.leader()
        self.assertEqual(self.level(leader), 1000 - (3 * self.THRESHOLD + 5))
        for n in self.cluster.nodes:  # each store held its snapshot: nothing was restored
            self.assertEqual(n.metric("stockd_raft_snapshots_restored_total"), 0)
        # a replayed request_id is still known after the snapshot (idempotency records)
        self.assertEqual(write(leader, "s", 1, "first-0")[0], grpc.StatusCode.OK)
        self.assertEqual(self.level(leader), 1000 - (3 * self.THRESHOLD + 5))
        self.same_history(self.cluster.nodes, 1 + 3 * self.THRESHOLD + 5)


STOCKCTL = os.path.join(os.path.dirname(os.path.abspath(STOCKD)), "stockctl")


def stockctl(node, *args):
    """stockctl against a replica's admin listener; returns (exit code, parsed JSON or text)."""
    proc = subprocess.run([STOCKCTL, "--admin", "127.0.0.1:%d" % node.admin_port, "--json",
                           *args], capture_output=True, text=True, timeout=60)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        return proc.returncode, proc.stdout + proc.stderr


def acknowledged_all(leader, node):
    """Whether the leader counts node as holding its whole log (node applies entries before
    its own write of them completes: its history says less)."""
    code, status = stockctl(leader, "cluster", "status")
    matches = [m["match_index"] for m in status.get("members", []) if m["node_id"] == node.id]
    return code == 0 and matches and matches[0] >= status["last_index"]


def back_on_an_empty_volume(test, node, leader, timeout=40):
    """Kills node, deletes its data directory, starts it again under its id (without --join)
    and waits until it holds the leader's history and is ready."""
    node.kill()
    shutil.rmtree(node.data)
    node.start()
    Snapshots.wait_for(test, lambda: node.history() == leader.history() and
                       node.readyz() == 200, timeout=timeout)


class ReplicaStorageFault(unittest.TestCase):
    """A replica whose disk fails under it (RocksDB's writes fail with EIO, through the
    tests/fault/faultfs.c shim) cannot apply a committed entry: it stops (fail-stop, exit 3)
    after --failure-exit-delay, the other two go on, and restarted on a good disk it catches up
    with an identical ledger."""

    FAULTFS = os.path.join(os.path.dirname(os.path.abspath(STOCKD)), "tests", "libfaultfs.so")

    def setUp(self):
        self.cluster = Cluster()
        self.faulty = self.cluster.nodes[2]
        self.control = os.path.join(self.cluster.dir, "fault-control")
        open(self.control, "w").close()
        self.faulty.env = {"LD_PRELOAD": self.FAULTFS, "STOCKD_FAULT_CONTROL": self.control,
                           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") +
                           ":verify_asan_link_order=0"}
        self.cluster.start()

    def tearDown(self):
        self.cluster.stop(self)

    def test_a_replica_whose_disk_fails_stops_and_catches_up_after(self):
        leader = self.cluster.leader()
        if leader is self.faulty:
            code, moved = stockctl(leader, "cluster", "transfer-leader", "1")
            self.assertEqual(code, 0, moved)
            leader = self.cluster.leader()
        Replication.set_level(self, leader, "f", 100)
        with open(self.control, "w") as rule:  # RocksDB's files only, not the Raft log's
            rule.write("write EIO 0 %s/0\n" % self.faulty.data)
        for i in range(10):
            self.assertEqual(write(leader, "f", 1, "during-%d" % i)[0], grpc.StatusCode.OK)
        self.assertEqual(self.faulty.proc.wait(timeout=60), 3)
        self.assertIn("replication_apply_failed", self.faulty.log_text())
        for i in range(5):
            self.assertEqual(write(leader, "f", 1, "two-left-%d" % i)[0], grpc.StatusCode.OK)
        open(self.control, "w").close()  # a good disk again
        self.faulty.start()
        histories = Replication.wait_same_history(self, self.cluster.nodes, timeout=30)
        self.assertEqual(len(histories[0]), 1 + 15)
        for h in histories:
            self.assertEqual(h, histories[0])


class Stockbench(unittest.TestCase):
    """stockbench given the replicas, a follower first, follows the stockd-leader hint: its
    load reaches the leader and its check (every SKU lost exactly what was acknowledged) holds."""

    def setUp(self):
        self.cluster = Cluster()
        self.cluster.start()

    def tearDown(self):
        self.cluster.stop(self)

    def test_stockbench_follows_the_leader(self):
        leader = self.cluster.leader()
        followers = [n for n in self.cluster.nodes if n is not leader]
        targets = ",".join([followers[0].address, leader.address, followers[1].address])
        proc = subprocess.run([os.path.join(os.path.dirname(os.path.abspath(STOCKD)), "stockbench"),
                               "--stockd", targets, "--mode", "decrement", "--connections", "2",
                               "--inflight", "8", "--skus", "50", "--warmup", "0s",
                               "--duration", "2s"],
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stdout[-2000:] + proc.stderr[-2000:])
        result = json.loads([l for l in proc.stdout.splitlines() if l.startswith("{")][-1])
        self.assertEqual(result["check_mismatches"], 0, result)
        self.assertGreater(result["ops"], 100, result)
        # refused while each connection still pointed at the follower: a handful at most
        self.assertLess(result["errors"], 50, result)


class ClusterCommands(unittest.TestCase):
    def setUp(self):
        self.cluster = Cluster()
        self.cluster.start()

    def tearDown(self):
        self.cluster.stop(self)

    def test_status_and_transfer_leader(self):
        leader = self.cluster.leader()
        leader.call("SetStock", pb.SetStockRequest(tenant_id="t", lines=[
            pb.SetLine(item=item("c"), available=1)]), pb.SetStockResponse)
        code, status = stockctl(leader, "cluster", "status")
        self.assertEqual(code, 0, status)
        self.assertEqual((status["node_id"], status["role"]), (leader.id, "leader"))
        self.assertEqual(status["leader_address"], leader.address)
        self.assertEqual(sorted(m["node_id"] for m in status["members"]), [1, 2, 3])
        self.assertEqual([m["node_id"] for m in status["members"] if m["leader"]], [leader.id])
        self.assertGreaterEqual(status["applied_index"], 2)
        follower = next(n for n in self.cluster.nodes if n is not leader)
        code, seen = stockctl(follower, "cluster", "status")
        self.assertEqual((code, seen["role"], seen["leader_id"]), (0, "follower", leader.id))
        # transfer-leader is for the leader's admin: a follower refuses, naming the leader
        code, refused = stockctl(follower, "cluster", "transfer-leader")
        self.assertEqual(code, 1, refused)
        self.assertIn(leader.address, refused["error"]["message"])
        self.assertEqual(stockctl(leader, "cluster", "transfer-leader", "99")[0], 2)
        code, moved = stockctl(leader, "cluster", "transfer-leader", str(follower.id))
        self.assertEqual((code, moved), (0, {"leader_id": follower.id}))
        self.assertIs(self.cluster.leader(), follower)
        got = follower.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[item("c")]),
                            pb.GetStockResponse)
        self.assertEqual(got.levels[0].available, 1)

    def test_one_node_has_no_cluster(self):
        data = tempfile.mkdtemp(prefix="stockd-one-")
        admin = free_port()
        proc = subprocess.Popen([STOCKD, "--listen", "127.0.0.1:0", "--data-dir", data,
                                 "--admin-listen", "127.0.0.1:%d" % admin],
                                stderr=subprocess.DEVNULL)
        try:
            node = type("N", (), {"admin_port": admin})()
            deadline = time.time() + 20
            while True:
                code, answer = stockctl(node, "cluster", "status")
                if code != 3 or time.time() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(code, 1, answer)
            self.assertIn("one node", answer["error"]["message"])
        finally:
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
            shutil.rmtree(data, ignore_errors=True)


APP_ID = "228540bd-2509-4dfa-90c5-bcc6b493e7d4"
STORES = "215238eb-22a5-4c36-9e7b-e7c08025e04e"
INSTANCE = "8469f2fd-764b-4ea0-b748-13520b1f453b"


class Membership(unittest.TestCase):
    """add-member / remove-member: a replica on an empty volume joins under a new id (--join),
    catches up (here by snapshot: the group snapshots every 16 entries), votes and can lead; a
    member is removed and the group goes on without it. Refusals name the field or the leader."""

    def setUp(self):
        self.cluster = Cluster(extra_flags=["--snapshot-threshold", "16",
                                            "--snapshot-trailing", "8"])
        self.cluster.start()

    def tearDown(self):
        self.cluster.stop(self)

    def joiner(self, node_id):
        """A fourth replica, on an empty volume, told the group's addresses but not a member."""
        node = Node(self.cluster, node_id)
        self.cluster.nodes.append(node)
        node.flags = ["--join"]
        return node

    def members(self, node):
        code, status = stockctl(node, "cluster", "status")
        self.assertEqual(code, 0, status)
        return {m["node_id"]: m for m in status["members"]}

    def test_a_new_replica_joins_catches_up_leads_and_a_member_is_removed(self):
        leader = self.cluster.leader()
        Replication.set_level(self, leader, "m", 500)
        for i in range(40):
            self.assertEqual(write(leader, "m", 1, "before-%d" % i)[0], grpc.StatusCode.OK)
        new = self.joiner(7)
        new.start()
        # the joiner is nobody's member yet: it serves no reads and knows no leader
        self.assertEqual(self.members(new), {})
        follower = next(n for n in self.cluster.nodes[:3] if n is not leader)
        code, refused = stockctl(follower, "cluster", "add-member", "7",
                                 "127.0.0.1:%d" % new.raft_port, new.address)
        self.assertEqual(code, 1, refused)
        self.assertIn(leader.address, refused["error"]["message"])
        code, added = stockctl(leader, "cluster", "add-member", "7",
                               "127.0.0.1:%d" % new.raft_port, new.address)
        self.assertEqual((code, added), (0, {"done": True}))
        members = self.members(leader)
        self.assertEqual(sorted(members), [1, 2, 3, 7])
        self.assertEqual(members[7]["role"], "voter")
        self.assertEqual(members[7]["grpc_address"], new.address)
        # asked again: already done
        self.assertEqual(stockctl(leader, "cluster", "add-member", "7",
                                  "127.0.0.1:%d" % new.raft_port, new.address)[0], 0)
        for i in range(5):
            self.assertEqual(write(leader, "m", 1, "after-%d" % i)[0], grpc.StatusCode.OK)
        Snapshots.same_history(self, self.cluster.nodes, 1 + 45)
        self.assertGreaterEqual(new.metric("stockd_raft_snapshots_restored_total"), 1)
        # every replica names the new member as the leader once it leads (its recorded address)
        code, moved = stockctl(leader, "cluster", "transfer-leader", "7")
        self.assertEqual((code, moved), (0, {"leader_id": 7}))
        self.assertIs(self.cluster.leader(), new)
        code, _, _ = write(follower, "m", 1, "to-a-follower")
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        # a follower names the new leader once its first AppendEntries arrived (the majority
        # that elected it and answered GetStock's fence need not include this follower)
        Snapshots.wait_for(self, lambda: write(follower, "m", 1, "to-a-follower")[1].get(
            "stockd-leader") == new.address, timeout=5)
        # the old leader leaves: the group of three goes on
        code, removed = stockctl(new, "cluster", "remove-member", str(leader.id))
        self.assertEqual((code, removed), (0, {"done": True}))
        self.assertEqual(leader.stop(), 0)
        # its id is retired: asked again, removing it is done; adding it back is refused
        self.assertEqual(stockctl(new, "cluster", "remove-member", str(leader.id))[0], 0)
        code, refused = stockctl(new, "cluster", "add-member", str(leader.id),
                                 "127.0.0.1:%d" % leader.raft_port, leader.address)
        self.assertEqual(code, 2, refused)
        self.assertIn("ids are never reused", refused["error"]["message"])
        self.assertEqual(sorted(self.members(new)), sorted(n.id for n in self.cluster.nodes
                                                           if n is not leader))
        self.assertEqual(write(new, "m", 1, "without-the-old")[0], grpc.StatusCode.OK)
        got = new.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[item("m")]),
                       pb.GetStockResponse)
        self.assertEqual(got.levels[0].available, 500 - 46)

    def test_a_wiped_replica_cannot_come_back_under_its_id(self):
        """A voter whose volume is lost, started again under its id with --join: its log is
        empty, so it votes for nobody and is not ready (Health NOT_SERVING); the leader hands
        leadership over on its first rejection of entries it had acknowledged, the next leader
        sends it a configuration counting it as a voter, and it stops, saying why. The group
        goes on without it."""
        leader = self.cluster.leader()
        Replication.set_level(self, leader, "w", 10)
        wiped = next(n for n in self.cluster.nodes if n is not leader)
        self.assertEqual(wiped.stop(), 0)
        shutil.rmtree(wiped.data)
        log = open(wiped.log_path, "a")
        proc = subprocess.Popen(
            [STOCKD, "--node-id", str(wiped.id), "--join", "--raft-listen",
             "127.0.0.1:%d" % wiped.raft_port, "--peers", self.cluster.peers(), "--listen",
             wiped.address, "--data-dir", wiped.data], stderr=log, stdout=log)
        log.close()
        channel = grpc.insecure_channel(wiped.address)
        health = channel.unary_unary("/grpc.health.v1.Health/Check")
        deadline = time.time() + 8
        while time.time() < deadline and proc.poll() is None:
            try:
                self.assertNotEqual(health(b"", timeout=1), b"\x08\x01", "serving")
            except grpc.RpcError:
                pass  # not listening yet, or stopped
            time.sleep(0.2)
        channel.close()
        stopped = proc.poll() is not None
        if not stopped:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        # the leader ignored its rejections as stale (it had acknowledged the log) until it
        # handed leadership over; the next leader sent it the configuration
        self.assertTrue(stopped, "still running after 8 s")
        self.assertIn("replication_id_reused", wiped.log_text())
        self.assertIn("replication_member_lost_its_log", leader.log_text())
        leader = self.cluster.leader()
        self.assertEqual(write(leader, "w", 1, "still")[0], grpc.StatusCode.OK)
        wiped.proc = None  # stopped here; the cluster's teardown skips it

    def test_a_member_back_on_an_empty_volume_is_sent_the_log_again(self):
        """A voter's volume is lost and it is started again under its id without --join (what
        the docs say never to do): the leader's progress still counts what it acknowledged
        and libraft ignores its rejections as stale, so the leader hands leadership over
        (replication_member_lost_its_log) and the next leader sends it the log. Idle group: no
        write after it is back."""
        c = self.cluster
        leader = c.leader()
        Replication.set_level(self, leader, "i", 5)
        back = next(n for n in c.nodes if n is not leader)
        # it acknowledged the log (else the leader has nothing to count for it)
        Snapshots.wait_for(self, lambda: acknowledged_all(leader, back))
        back_on_an_empty_volume(self, back, leader)
        self.assertIn("replication_member_lost_its_log", leader.log_text())
        self.assertIsNot(c.leader(), leader)

    def test_a_replacement_at_an_old_members_address_is_not_ready_until_added(self):
        """What Kubernetes does when a pod's volume is lost: the replacement comes up at the old
        member's addresses (and metrics port) under a new id with --join, while the leader still
        counts the old id. It is no member, so it is not ready (/readyz 503 — it answered 200
        before: /readyz ignored replication — and Health NOT_SERVING) until the old id is
        removed and it is added."""
        leader = self.cluster.leader()
        Replication.set_level(self, leader, "r", 10)
        old = next(n for n in self.cluster.nodes if n is not leader)
        self.assertEqual(old.stop(), 0)
        shutil.rmtree(old.data)
        new = self.joiner(8)
        new.raft_port, new.grpc_port, new.metrics_port = old.raft_port, old.grpc_port, old.metrics_port
        new.admin_port, new.address, new.data = old.admin_port, old.address, old.data
        new.start()
        for _ in range(3):  # across the leader's heartbeats and reconnects
            time.sleep(1)
            self.assertEqual(new.readyz(), 503)
        health = new.channel.unary_unary("/grpc.health.v1.Health/Check")
        self.assertEqual(health(b"", timeout=5), b"\x08\x02")
        self.assertEqual(stockctl(leader, "cluster", "remove-member", str(old.id))[0], 0)
        self.cluster.nodes.remove(old)
        code, added = stockctl(leader, "cluster", "add-member", "8",
                               "127.0.0.1:%d" % new.raft_port, new.address)
        self.assertEqual((code, added), (0, {"done": True}))
        deadline = time.time() + 10
        while time.time() < deadline and new.readyz() != 200:
            time.sleep(0.1)
        self.assertEqual(new.readyz(), 200)
        self.assertEqual(health(b"", timeout=5), b"\x08\x01")

    def test_leader_killed_while_promoting_a_new_member(self):
        self.lose_leader_while_promoting("kill")

    def test_leader_frozen_while_promoting_a_new_member(self):
        self.lose_leader_while_promoting("freeze")

    def lose_leader_while_promoting(self, how):
        """Leadership lost in the middle of add-member: the joiner is frozen (SIGSTOP), so the
        leader adds it as a spare and waits in the promotion's catch-up round; then the leader
        is killed, or frozen past an election (it wakes up deposed, in the middle of the call).
        The call ends without claiming success (a deposed leader says "outcome unknown"); the
        new leader holds the spare, and add-member asked again there finishes the job once the
        joiner runs. Every replica ends with the same history; the old leader rejoins."""
        leader = self.cluster.leader()
        Replication.set_level(self, leader, "p", 100)
        for i in range(20):
            self.assertEqual(write(leader, "p", 1, "before-%d" % i)[0], grpc.StatusCode.OK)
        new = self.joiner(9)
        new.start()
        new.kill(signal.SIGSTOP)
        result = {}

        def add():
            result["answer"] = stockctl(leader, "cluster", "add-member", "9",
                                        "127.0.0.1:%d" % new.raft_port, new.address)
        adding = threading.Thread(target=add)
        adding.start()
        others = [n for n in self.cluster.nodes[:3] if n is not leader]
        deadline = time.time() + 30
        while 9 not in self.members(others[0]):  # the spare's entry reached a follower
            self.assertLess(time.time(), deadline, "the joiner was never added as a spare")
            time.sleep(0.1)
        time.sleep(1)  # into the promotion's catch-up round
        # the admin listener still answers meanwhile (it answered one call at a time: status,
        # backups and the preStop hand-over waited for the promotion, up to ~90 s)
        started = time.time()
        code, status = stockctl(leader, "cluster", "status")
        self.assertEqual((code, status.get("role")), (0, "leader"), status)
        self.assertLess(time.time() - started, 5, "cluster status waited for add-member")
        self.assertTrue(adding.is_alive(), "add-member ended with the joiner frozen")
        if how == "kill":
            leader.kill()
            successor = self.cluster.leader(among=others, timeout=30)
        else:
            leader.kill(signal.SIGSTOP)
            successor = self.cluster.leader(among=others, timeout=30)
            leader.proc.send_signal(signal.SIGCONT)
        adding.join(timeout=120)
        code, answer = result["answer"]
        self.assertNotEqual(code, 0, answer)  # never "done": it was not
        if how == "freeze":
            self.assertIn("outcome unknown", answer["error"]["message"])
        self.assertEqual(self.members(successor)[9]["role"], "spare")
        new.proc.send_signal(signal.SIGCONT)
        code, added = stockctl(successor, "cluster", "add-member", "9",
                               "127.0.0.1:%d" % new.raft_port, new.address)
        self.assertEqual((code, added), (0, {"done": True}))
        self.assertEqual(self.members(successor)[9]["role"], "voter")
        if how == "kill":
            leader.start()
        self.assertEqual(write(successor, "p", 1, "after")[0], grpc.StatusCode.OK)
        Snapshots.same_history(self, self.cluster.nodes, 1 + 20 + 1)

    def test_refusals_name_the_field(self):
        leader = self.cluster.leader()
        other = next(n for n in self.cluster.nodes if n is not leader)
        raft = "127.0.0.1:%d" % other.raft_port
        cases = [
            (("add-member", "0", "h:1", "h:2"), 2, "NODE_ID"),
            (("add-member", "4294967296", "h:1", "h:2"), 2, "NODE_ID"),
            (("add-member", "9", "nocolon", "h:2"), 2, "raft_address"),
            (("add-member", "9", "h:1", "a,b:2"), 2, "grpc_address"),
            (("add-member", str(other.id), "h:9", "h:2"), 2, "already a member"),
            (("add-member", "9", raft, "h:2"), 2, "raft_address"),
            (("remove-member", str(leader.id)), 1, "transfer-leader"),
            (("remove-member", "99"), None, "not a member"),
            (("add-member", "9"), 2, "add-member NODE_ID RAFT_ADDRESS GRPC_ADDRESS"),
            (("add-member", "9", "h:0", "h:2"), 2, "raft_address"),
            (("add-member", "9", "h:abc", "h:2"), 2, "raft_address"),
            (("add-member", "9", "h:1", "h:70000"), 2, "grpc_address"),
            (("add-member", "9", "h:1", other.address), 2, "grpc_address"),
            (("transfer-leader", "9"), 2, "not another voting member"),
        ]
        for args, want_code, text in cases:
            code, answer = stockctl(leader, "cluster", *args)
            if want_code is not None:
                self.assertEqual(code, want_code, (args, answer))
            self.assertNotEqual(code, 0, (args, answer))
            self.assertIn(text, json.dumps(answer), args)
        self.assertEqual(sorted(self.members(leader)), [1, 2, 3])


class LostLog(unittest.TestCase):
    """Five replicas. A member that acknowledged the log loses its volume and is started again
    under its id (docs: never do that) while another member is down. The leader's progress
    still counts what the member acknowledged, so it never resends the log (libraft ignores the
    rejections as stale, or probes below the match index and sends empty heartbeats); it hands
    leadership to a voter it has heard from lately - not to the dead one, which comes first in
    the configuration and ties on match index in an idle group - and the next leader sends the
    log. (Review findings: the heir was picked by match index alone, and the watch fired once.)"""

    def setUp(self):
        self.cluster = Cluster(size=5)
        self.cluster.start()

    def tearDown(self):
        self.cluster.stop(self)

    def test_the_hand_over_goes_to_a_live_voter(self):
        c = self.cluster
        leader = c.leader()
        Replication.set_level(self, leader, "l", 5)
        others = sorted((n for n in c.nodes if n is not leader), key=lambda n: n.id)
        dead, back = others[0], others[-1]
        Snapshots.wait_for(self, lambda: all(acknowledged_all(leader, n) for n in others))
        dead.kill()
        time.sleep(1)  # longer than half an election timeout: the leader counts it as dead
        back_on_an_empty_volume(self, back, leader)
        log = leader.log_text()
        self.assertIn('"event":"replication_member_lost_its_log","node_id":%d' % back.id, log)
        self.assertIn('"event":"replication_lost_log_hand_over","to":', log)
        self.assertNotIn('"to":%d,' % dead.id, log)
        # the next leader starts afresh: no member is suspected once the log was sent
        new_leader = c.leader(among=[n for n in c.nodes if n is not dead])
        self.assertEqual(new_leader.metric("stockd_raft_members_lost_log"), 0)
        self.assertNotIn(new_leader, (leader, dead))


class GatewayRollingRestart(unittest.TestCase):
    """Issue 13: through the gateway under Wix load, a rolling restart of all three replicas
    (SIGTERM, start again, wait until it is serving) causes zero failed Wix calls: followers
    send the gateway to the leader, a stopping leader hands leadership over, and a write of
    unknown outcome is sent again with its requestId within the call's deadline."""

    def setUp(self):
        import jwt  # noqa: F401  (python3-jwt, as in test_gateway.py)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        self.cluster = Cluster()
        self.cluster.start()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
        public_path = os.path.join(self.cluster.dir, "wix-public.pem")
        with open(public_path, "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        import procs
        gateway = os.path.join(os.path.dirname(os.path.abspath(STOCKD)), "stockd-gateway")
        self.gateway, self.http = procs.start(
            [gateway, "--listen", "127.0.0.1:0", "--stockd",
             ",".join(n.address for n in self.cluster.nodes), "--wix-app-id", APP_ID,
             "--wix-public-key", public_path, "--deadline-ms", "8000"],
            os.path.join(self.cluster.dir, "gateway.log"))

    def tearDown(self):
        import procs
        self.assertEqual(procs.stop(self.gateway), 0)
        self.cluster.stop(self)

    def wix_call(self, sku, request_id):
        import jwt
        import urllib.error
        import urllib.request
        now = int(time.time())
        claims = {"data": {"request": {
            "items": [{"catalogReference": {"catalogItemId": sku, "appId": STORES},
                       "quantity": 1, "subscriptionItem": False}],
            "orderId": "o-" + request_id, "reason": "ORDER_PLACED",
            "restrictInventoryValue": True},
            "metadata": {"requestId": request_id, "instanceId": INSTANCE, "currency": "USD",
                         "appExtensionType": "ECOM_INVENTORY"}},
            "aud": APP_ID, "iss": "wix.com", "iat": now, "exp": now + 300}
        token = jwt.encode(claims, self.private_pem, algorithm="RS256").encode()
        req = urllib.request.Request("http://%s/v1/decrement" % self.http, data=token,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def test_rolling_restart_fails_no_wix_call(self):
        leader = self.cluster.leader()
        skus = ["w%d" % i for i in range(4)]
        leader.call("SetStock", pb.SetStockRequest(tenant_id=INSTANCE, lines=[
            pb.SetLine(item=pb.ItemRef(app_id=STORES, catalog_item_id=sku), available=100000)
            for sku in skus]), pb.SetStockResponse)
        stop, lock, answers = threading.Event(), threading.Lock(), []

        def load(worker):
            n = 0
            while not stop.is_set():
                n += 1
                answer = self.wix_call(skus[n % len(skus)], "roll-%d-%d" % (worker, n))
                with lock:
                    answers.append(answer)

        # more callers than the gateway's 4 senders: calls are coalesced into Batch calls
        threads = [threading.Thread(target=load, args=(w,)) for w in range(12)]
        for t in threads:
            t.start()
        try:
            for node in self.cluster.nodes:
                time.sleep(1)
                self.assertEqual(node.stop(), 0)
                node.start()
                self.cluster.leader()
                deadline = time.time() + 30  # serving again: it has a leader and caught up
                while time.time() < deadline:
                    try:
                        r = node.channel.unary_unary("/grpc.health.v1.Health/Check")(
                            b"", timeout=2)
                        if r == b"\x08\x01":
                            break
                    except grpc.RpcError:
                        pass
                    time.sleep(0.1)
            time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join()
        failed = [a for a in answers if a != (200, b"{}")]
        self.assertGreater(len(answers), 100)
        self.assertEqual(failed[:5], [], "%d of %d Wix calls failed" % (len(failed), len(answers)))
        leader = self.cluster.leader()
        got = leader.call("GetStock", pb.GetStockRequest(tenant_id=INSTANCE, items=[
            pb.ItemRef(app_id=STORES, catalog_item_id=sku) for sku in skus]), pb.GetStockResponse)
        self.assertEqual(sum(100000 - level.available for level in got.levels), len(answers),
                         "every acknowledged Wix decrement applied exactly once")


class PreVote(unittest.TestCase):
    """raft 0.22.1's pre-vote can leave a group without a leader for good (a pre-vote answer
    hides the higher term it was refused for; the seeded simulation, tests/sim, found it and
    checks the way out: stockd_sim --seed 21517, and --pre-vote-always without it). A replica
    sets pre-vote aside only when it has known no leader for 5 election timeouts *while a
    majority answered its vote requests*; one merely cut off from the others keeps it, so it
    does not raise the term while away and unseat the leader when it is back."""

    def test_a_replica_cut_off_keeps_pre_vote_and_its_term(self):
        cluster = Cluster(3)
        try:
            alone = cluster.nodes[0]
            alone.start()  # its peers are not running: nobody answers its vote requests
            term_before = alone.metric("stockd_raft_term")
            time.sleep(8)  # more than 5 election timeouts of 1 s (2 s at most each)
            self.assertNotIn("replication_pre_vote_off", alone.log_text())
            self.assertEqual(alone.metric("stockd_raft_term"), term_before,
                             "a cut-off replica raised its term")
            self.assertEqual(alone.metric("stockd_raft_pre_vote"), 1)
            for n in cluster.nodes[1:]:
                n.start()
            leader = cluster.leader(timeout=30)
            code, _, message = write(leader, "x", 1, "pre-vote-1", restrict=False)
            self.assertEqual(code, grpc.StatusCode.OK, message)
        finally:
            cluster.stop(self)


class RestoreGroup(unittest.TestCase):
    """Restoring a group from a backup with its history (deploy/README.md section 6): a
    checkpoint of one group's replica, started with --restore-group, becomes a new group of one
    that keeps the ledger, the idempotency records and the ledger seq; two empty replicas join
    it and start from its snapshot — never from its log, whose first entries come after the
    store. Every replica then answers the old history and replays an old request id without
    applying it twice. Before, a checkpoint was refused as a replica (the group got the levels
    back only, through export/import), and a snapshot at applied index 0 never reached an empty
    store."""

    def setUp(self):
        self.groups = []

    def tearDown(self):
        for group in self.groups:
            group.stop(self)

    def group(self):
        self.groups.append(Cluster())
        return self.groups[-1]

    def backup_of_a_group(self):
        """A backup of a group's leader after 20 decrements; its history; the checkpoint path.
        One more decrement follows the backup (not in it). The group is then stopped."""
        source = self.group()
        source.start()
        leader = source.leader()
        Replication.set_level(self, leader, "r", 100)
        for i in range(20):
            self.assertEqual(write(leader, "r", 1, "old-%d" % i)[0], grpc.StatusCode.OK)
        code, backup = stockctl(leader, "backup", "before-the-loss")
        self.assertEqual(code, 0, backup)
        history = leader.history()
        self.assertEqual(len(history), 21)
        self.assertEqual(write(leader, "r", 1, "after-the-backup")[0], grpc.StatusCode.OK)
        checkpoint = os.path.join(tempfile.mkdtemp(prefix="stockd-raft-backup-"), "checkpoint")
        shutil.copytree(backup["path"], checkpoint)
        source.stop(self)
        self.groups.remove(source)
        return history, checkpoint

    def add_member(self, leader, node):
        """add-member, asked again while the restored group has not taken its first snapshot
        (the only refusal allowed here)."""
        deadline = time.time() + 30
        while True:
            code, added = stockctl(leader, "cluster", "add-member", str(node.id),
                                   "127.0.0.1:%d" % node.raft_port, node.address)
            if code == 0 or time.time() > deadline:
                self.assertEqual((code, added), (0, {"done": True}))
                return
            self.assertIn("has not yet taken the snapshot", added["error"]["message"])
            time.sleep(0.2)

    def wait_leading(self, node):
        deadline = time.time() + 30
        while True:
            code, status = stockctl(node, "cluster", "status")
            if code == 0 and status["role"] == "leader":
                return
            self.assertLess(time.time(), deadline, "no leader: %s" % status)
            time.sleep(0.1)

    def level(self, node):
        return node.call("GetStock", pb.GetStockRequest(tenant_id="t", items=[item("r")]),
                         pb.GetStockResponse).levels[0].available

    def test_a_group_restored_from_a_backup_keeps_its_history(self):
        history, checkpoint = self.backup_of_a_group()
        target = self.group()
        first, second, third = target.nodes
        shutil.copytree(checkpoint, first.data)
        shutil.rmtree(os.path.dirname(checkpoint))
        first.flags = ["--restore-group"]
        second.flags = third.flags = ["--join"]
        target.start()
        # nothing written or read (a read appends a barrier): the restored replica must append
        # what its first snapshot needs by itself (review: add-member was refused for ever)
        self.wait_leading(first)
        for joiner in (second, third):
            self.add_member(first, joiner)
        self.assertEqual(first.history(), history)
        self.assertEqual(self.level(first), 80)
        self.assertEqual(write(first, "r", 1, "new-0")[0], grpc.StatusCode.OK)
        Snapshots.same_history(self, target.nodes, 22)
        restored = second.history()
        self.assertEqual(restored[:21], history)
        self.assertEqual(restored[21][0], history[-1][0] + 1)  # the ledger seq goes on
        for joiner in (second, third):
            self.assertGreaterEqual(joiner.metric("stockd_raft_snapshots_restored_total"), 1)
        # an old request id is answered from its record, on the first replica and on a joiner
        self.assertEqual(write(first, "r", 1, "old-5")[0], grpc.StatusCode.OK)
        self.assertEqual(stockctl(first, "cluster", "transfer-leader", str(second.id)),
                         (0, {"leader_id": second.id}))
        self.assertIs(target.leader(), second)
        self.assertEqual(write(second, "r", 1, "old-7")[0], grpc.StatusCode.OK)
        self.assertEqual(self.level(second), 79)
        Snapshots.same_history(self, target.nodes, 22)
        # the first replica killed and started again, the flag still set: it rejoins its group
        first.kill()
        first.start()
        Snapshots.same_history(self, target.nodes, 22)
        events = [json.loads(line) for line in first.log_text().splitlines()
                  if line.startswith("{")]
        names = [e.get("event") for e in events]
        for event in ("replication_group_base_adopted", "replication_group_base_snapshotted",
                      "replication_restore_group_done_already"):
            self.assertIn(event, names)
        adopted = events[names.index("replication_group_base_adopted")]
        self.assertEqual(adopted["base_ledger_seq"], history[-1][0])
        self.assertGreater(adopted["previous_applied_index"], 0)  # a replica's checkpoint

    def test_a_one_node_data_directory_becomes_a_group(self):
        """One stockd's data directory (no Raft index at all) restored in place: the upgrade
        from one node to a group, with the history (deploy/README.md section 7)."""
        target = self.group()
        first, second, _ = target.nodes
        address = "127.0.0.1:%d" % free_port()
        one = subprocess.Popen([STOCKD, "--listen", address, "--data-dir", first.data],
                               stderr=subprocess.DEVNULL)
        node = type("N", (), {"channel": grpc.insecure_channel(address)})()
        deadline = time.time() + 30
        while write(node, "r", 1, "one-0", restrict=False)[0] != grpc.StatusCode.OK:
            self.assertLess(time.time(), deadline, "the one-node stockd did not start")
            time.sleep(0.1)
        self.assertEqual(write(node, "r", 1, "one-1", restrict=False)[0], grpc.StatusCode.OK)
        node.channel.close()
        one.send_signal(signal.SIGTERM)
        self.assertEqual(one.wait(timeout=30), 0)
        first.flags, second.flags = ["--restore-group"], ["--join"]
        first.start()
        second.start()
        self.wait_leading(first)
        self.add_member(first, second)
        self.assertEqual(write(first, "r", 1, "one-1", restrict=False)[0], grpc.StatusCode.OK)
        self.assertEqual(self.level(first), -2)  # the replay applied nothing
        self.assertEqual(write(first, "r", 1, "group-0", restrict=False)[0], grpc.StatusCode.OK)
        Snapshots.same_history(self, [first, second], 3)
        self.assertEqual([e[4] for e in second.history()], ["one-0", "one-1", "group-0"])

    def test_restore_group_refusals(self):
        """Nothing to restore; --join with it; a replica of a group not restored."""
        top = tempfile.mkdtemp(prefix="stockd-raft-refusals-")
        grpc_port, raft_port = free_port(), free_port()
        address = "127.0.0.1:%d" % grpc_port
        flags = ["--listen", address, "--node-id", "1", "--raft-listen",
                 "127.0.0.1:%d" % raft_port, "--peers",
                 "1=127.0.0.1:%d=%s" % (raft_port, address), "--restore-group"]
        try:
            for extra, data, message in (
                    ([], "empty", "holds nothing to restore"),
                    (["--join"], "join", "--restore-group and --join exclude each other")):
                refused = subprocess.run([STOCKD] + flags + extra +
                                         ["--data-dir", os.path.join(top, data)],
                                         capture_output=True, text=True, timeout=30)
                self.assertEqual(refused.returncode, 1, refused.stderr[-2000:])
                self.assertIn(message, refused.stderr)
        finally:
            shutil.rmtree(top, ignore_errors=True)
        group = self.group()  # its ports taken just before it starts
        group.start()
        group.leader()
        node = group.nodes[0]
        node.stop()
        refused = subprocess.run(
            [STOCKD, "--listen", node.address, "--node-id", "1", "--raft-listen",
             "127.0.0.1:%d" % node.raft_port, "--peers", group.peers(), "--restore-group",
             "--data-dir", node.data], capture_output=True, text=True, timeout=30)
        self.assertEqual(refused.returncode, 1, refused.stderr[-2000:])
        self.assertIn("not restored from a store", refused.stderr)


class Flags(unittest.TestCase):
    def run_stockd(self, *args):
        data = tempfile.mkdtemp(prefix="stockd-raft-flags-")
        try:
            proc = subprocess.run([STOCKD, "--listen", "127.0.0.1:0", "--data-dir", data, *args],
                                  capture_output=True, text=True, timeout=30)
            return proc.returncode, proc.stderr
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def test_one_member_group_with_the_shortest_election_timeout(self):
        """Regression (review): --election-timeout-ms 100, the least allowed, aborted at start
        (the library wants heartbeat < election timeout). A group of one elects itself."""
        data = tempfile.mkdtemp(prefix="stockd-raft-one-")
        grpc_port, raft_port = free_port(), free_port()
        address = "127.0.0.1:%d" % grpc_port
        proc = subprocess.Popen([STOCKD, "--listen", address, "--data-dir", data, "--node-id", "7",
                                 "--raft-listen", "127.0.0.1:%d" % raft_port, "--peers",
                                 "7=127.0.0.1:%d=%s" % (raft_port, address),
                                 "--election-timeout-ms", "100"], stderr=subprocess.DEVNULL)
        try:
            channel = grpc.insecure_channel(address)
            deadline, code = time.time() + 20, None
            while time.time() < deadline:
                code = write(type("N", (), {"channel": channel})(), "solo", 1, "s1",
                             restrict=False)[0]
                if code == grpc.StatusCode.OK:
                    break
                time.sleep(0.1)
            self.assertEqual(code, grpc.StatusCode.OK)
            channel.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(timeout=30), 0)
            shutil.rmtree(data, ignore_errors=True)

    def test_a_store_without_its_raft_log_is_refused(self):
        """A data directory with data but no Raft log beside it — one stockd's (no --node-id),
        or a replica's whose raft/ was deleted — is refused as a replica, with --join or
        without: the group's entries would be applied on top of what it holds (twice, or with
        the other replicas lacking it). So is one stockd's store with a replica's log put
        beside it, and a log started under another --node-id (it answers for that member's
        votes). Before, all of them started."""
        top = tempfile.mkdtemp(prefix="stockd-raft-store-")
        grpc_port, raft_port = free_port(), free_port()
        address = "127.0.0.1:%d" % grpc_port
        replica = ["--node-id", "1", "--raft-listen", "127.0.0.1:%d" % raft_port, "--peers",
                   "1=127.0.0.1:%d=%s" % (raft_port, address)]
        try:
            for flags in ([], replica):  # one stockd's data, then a replica's
                data = os.path.join(top, "replica" if flags else "one")
                proc = subprocess.Popen([STOCKD, "--listen", address, "--data-dir", data] + flags,
                                        stderr=subprocess.DEVNULL)
                channel = grpc.insecure_channel(address)
                deadline, code = time.time() + 20, None
                while time.time() < deadline and code != grpc.StatusCode.OK:
                    code = write(type("N", (), {"channel": channel})(), "s", 1,
                                 "r%d" % len(flags), restrict=False)[0]
                    time.sleep(0.05)
                self.assertEqual(code, grpc.StatusCode.OK)
                channel.close()
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=30), 0)
                if flags:
                    shutil.copytree(os.path.join(data, "raft"), os.path.join(top, "raft-copy"))
                    shutil.rmtree(os.path.join(data, "raft"))
                for extra in ([], ["--join"]):
                    refused = subprocess.run([STOCKD, "--listen", address, "--data-dir", data] +
                                             replica + extra, capture_output=True, text=True,
                                             timeout=30)
                    self.assertEqual(refused.returncode, 1, refused.stderr[-2000:])
                    self.assertIn("holds no Raft log", refused.stderr)
            # a one-node store with a replica's Raft log put beside it
            shutil.copytree(os.path.join(top, "raft-copy"), os.path.join(top, "one", "raft"),
                            dirs_exist_ok=True)  # the refused starts made it, empty
            refused = subprocess.run([STOCKD, "--listen", address, "--data-dir",
                                      os.path.join(top, "one")] + replica, capture_output=True,
                                     text=True, timeout=30)
            self.assertEqual(refused.returncode, 1, refused.stderr[-2000:])
            self.assertIn("written outside any Raft group", refused.stderr)
            self.assertIn("beside a Raft log", refused.stderr)
            # a replica's log started under another id; then its id file damaged
            shutil.copytree(os.path.join(top, "raft-copy"), os.path.join(top, "other", "raft"))
            other = ["--node-id", "2", "--raft-listen", "127.0.0.1:%d" % raft_port, "--peers",
                     "2=127.0.0.1:%d=%s" % (raft_port, address)]
            for content, message in ((None, "holds the Raft log of node 1, not of --node-id 2"),
                                     ("x\n", "is damaged")):
                if content is not None:
                    with open(os.path.join(top, "other", "raft", "stockd-node-id"), "w") as f:
                        f.write(content)
                refused = subprocess.run([STOCKD, "--listen", address, "--data-dir",
                                          os.path.join(top, "other")] + other,
                                         capture_output=True, text=True, timeout=30)
                self.assertEqual(refused.returncode, 1, refused.stderr[-2000:])
                self.assertIn(message, refused.stderr)
        finally:
            shutil.rmtree(top, ignore_errors=True)

    def test_bad_replication_flags_are_refused_at_start(self):
        cases = [
            (["--peers", "1=127.0.0.1:1=127.0.0.1:2"], "need --node-id"),
            (["--node-id", "1", "--raft-listen", "127.0.0.1:0", "--peers", "1=a=b"],
             "entry 1 is not ID=RAFT_HOST:PORT=GRPC_HOST:PORT"),
            (["--node-id", "4", "--raft-listen", "127.0.0.1:0", "--peers",
              "1=127.0.0.1:1=127.0.0.1:2"], "--node-id 4 is not one of --peers"),
            (["--node-id", "1", "--raft-listen", "127.0.0.1:0", "--peers",
              "1=127.0.0.1:1=127.0.0.1:2,1=127.0.0.1:3=127.0.0.1:4"], "id 1 appears twice"),
            (["--node-id", "1", "--peers", "1=127.0.0.1:1=127.0.0.1:2"], "needs --raft-listen"),
            (["--join"], "--join and --restore-group need --node-id"),
            (["--restore-group"], "--join and --restore-group need --node-id"),
        ]
        usage = [  # out of range: a usage error (exit 2), as every flag's
            (["--snapshot-threshold", "0"], "--snapshot-threshold"),
            (["--snapshot-trailing", "4"], "--snapshot-trailing"),
        ]
        for args, message in cases + usage:
            code, stderr = self.run_stockd(*args)
            self.assertEqual(code, 2 if (args, message) in usage else 1, (args, stderr[-2000:]))
            self.assertIn(message, stderr, args)


if __name__ == "__main__":
    unittest.main(verbosity=2)
