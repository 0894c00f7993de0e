#!/usr/bin/python3
"""make bench-replication: three stockd replicas against one node, and a failover, on this machine.

1. Throughput: `stockbench --preset peers` (64 connections x 1 call in flight, 1-3 of 10,000
   SKUs, restricted, the stockbench check on) against one stockd, then against the leader of
   three replicas on the same machine (all four processes share its cores: the pessimistic case).
   ROUNDS rounds (default 2), alternating; DURATION per run (default 10s).
2. Failover: 8 client threads send restricted 1-unit decrements to the leader, following the
   stockd-leader hint; the leader is SIGKILLed; reported is the time from the kill to the first
   acknowledged write, and every SKU is checked (acknowledged <= taken <= acknowledged + unknown).

Each 3-replica run also reports the snapshots the replicas took (how many, the longest time one
held the replication loop, the longest preparation, the largest size); SNAPSHOT_THRESHOLD=N passes --snapshot-threshold N.
Prints a table and one JSON line per run (also appended to BUILD/bench-replication.jsonl).
usage: bench/replication.py BUILD_DIR
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

BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
sys.path.insert(0, os.path.join(BUILD, "pygen"))
import grpc  # noqa: E402
from stockd.v1 import inventory_pb2 as pb  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "2"))
DURATION = os.environ.get("DURATION", "10s")
OUT = os.path.join(BUILD, "bench-replication.jsonl")
# stockd's --snapshot-threshold for the replicas ("" = its default); a lower one shows what
# taking snapshots costs within a short run
SNAPSHOT_THRESHOLD = os.environ.get("SNAPSHOT_THRESHOLD", "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(address, timeout=30):
    channel = grpc.insecure_channel(address)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=1) == b"\x08\x01":
                channel.close()
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise RuntimeError("%s not serving" % address)


class Group:
    """One stockd (size 1, no replication flags) or a Raft group of `size` replicas."""

    def __init__(self, size, work):
        self.size, self.procs = size, []
        self.ports = [(free_port(), free_port()) for _ in range(size)]
        self.addresses = ["127.0.0.1:%d" % g for _, g in self.ports]
        peers = ",".join("%d=127.0.0.1:%d=127.0.0.1:%d" % (i + 1, r, g)
                         for i, (r, g) in enumerate(self.ports))
        for i, (raft, grpc_port) in enumerate(self.ports):
            args = [os.path.join(BUILD, "stockd"), "--listen", self.addresses[i],
                    "--data-dir", os.path.join(work, "node%d" % (i + 1))]
            if size > 1:
                args += ["--node-id", str(i + 1), "--raft-listen", "127.0.0.1:%d" % raft,
                         "--peers", peers]
                if SNAPSHOT_THRESHOLD:
                    args += ["--snapshot-threshold", SNAPSHOT_THRESHOLD]
            log = open(os.path.join(work, "node%d.log" % (i + 1)), "w")
            self.procs.append(subprocess.Popen(args, stderr=log, stdout=log))
        for address in self.addresses:
            wait_serving(address)

    def leader(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, address in enumerate(self.addresses):
                if self.procs[i].poll() is not None:
                    continue
                channel = grpc.insecure_channel(address)
                try:
                    channel.unary_unary("/stockd.v1.Inventory/GetStock")(
                        pb.GetStockRequest(tenant_id="bench", items=[
                            pb.ItemRef(app_id="a", catalog_item_id="x")]).SerializeToString(),
                        timeout=2)
                    return i
                except grpc.RpcError:
                    pass
                finally:
                    channel.close()
            time.sleep(0.1)
        raise RuntimeError("no leader")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(timeout=60)


def stockbench(address, pids):
    out = subprocess.run([os.path.join(BUILD, "stockbench"), "--stockd", address, "--preset",
                          "peers", "--duration", DURATION, "--server-pids",
                          ",".join(str(p) for p in pids)],
                         capture_output=True, text=True, timeout=600)
    line = [l for l in out.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def snapshot_stats(work, size):
    """What the replicas logged of their snapshots (replication_snapshot_taken events)."""
    taken = []
    for i in range(size):
        with open(os.path.join(work, "node%d.log" % (i + 1))) as log:
            for line in log:
                if '"replication_snapshot_taken"' in line:
                    taken.append(json.loads(line))
    return {"snapshots": len(taken),
            # loop_ms: how long it held the replication loop; ms: the whole preparation
            "snapshot_max_loop_ms": max((t.get("loop_ms", t["ms"]) for t in taken), default=0),
            "snapshot_max_ms": max((t["ms"] for t in taken), default=0),
            "snapshot_max_bytes": max((t["bytes"] for t in taken), default=0)}


def throughput_run(size):
    work = tempfile.mkdtemp(prefix="stockd-bench-repl-")
    group = Group(size, work)
    try:
        leader = group.leader() if size > 1 else 0
        result = stockbench(group.addresses[leader], [p.pid for p in group.procs])
        result.update(run="replication", replicas=size)
        group.stop()
        result.update(snapshot_stats(work, size))
        return result
    finally:
        group.stop()
        shutil.rmtree(work, ignore_errors=True)


def failover_run():
    work = tempfile.mkdtemp(prefix="stockd-bench-failover-")
    group = Group(3, work)
    skus = ["f%d" % i for i in range(16)]
    stop, lock, results = threading.Event(), threading.Lock(), []
    try:
        leader = group.leader()
        channel = grpc.insecure_channel(group.addresses[leader])
        channel.unary_unary("/stockd.v1.Inventory/SetStock")(pb.SetStockRequest(
            tenant_id="bench", lines=[pb.SetLine(item=pb.ItemRef(app_id="a", catalog_item_id=s),
                                                 available=10 ** 9) for s in skus])
            .SerializeToString(), timeout=10)
        channel.close()

        def load(worker):
            index, n = leader, 0
            channels = {}
            while not stop.is_set():
                n += 1
                sku = skus[(worker * 7 + n) % len(skus)]
                address = group.addresses[index]
                ch = channels.setdefault(address, grpc.insecure_channel(address))
                request = pb.DecrementRequest(tenant_id="bench", restrict_inventory=True,
                                              request_id="fo-%d-%d" % (worker, n),
                                              lines=[pb.Line(item=pb.ItemRef(
                                                  app_id="a", catalog_item_id=sku), quantity=1)])
                sent = time.time()
                try:
                    ch.unary_unary("/stockd.v1.Inventory/Decrement")(
                        request.SerializeToString(), timeout=2)
                    code, message, hint = "OK", "", None
                except grpc.RpcError as e:
                    code, message = e.code().name, e.details() or ""
                    hint = dict(e.trailing_metadata() or ()).get("stockd-leader")
                with lock:
                    results.append((sent, sku, code, message, time.time()))
                if code != "OK":
                    index = group.addresses.index(hint) if hint in group.addresses \
                        else (index + 1) % 3
                    time.sleep(0.01)

        threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        time.sleep(3)
        killed_at = time.time()
        group.procs[leader].send_signal(signal.SIGKILL)
        time.sleep(10)
        stop.set()
        for t in threads:
            t.join()
        # a request sent after the kill (an answer that was already on its way does not count)
        after = [r[4] for r in results if r[0] > killed_at and r[2] == "OK"]
        first_ack_s = (min(after) - killed_at) if after else None
        new_leader = group.leader()
        channel = grpc.insecure_channel(group.addresses[new_leader])
        got = pb.GetStockResponse.FromString(channel.unary_unary(
            "/stockd.v1.Inventory/GetStock")(pb.GetStockRequest(
                tenant_id="bench", items=[pb.ItemRef(app_id="a", catalog_item_id=s)
                                          for s in skus]).SerializeToString(), timeout=10))
        channel.close()
        mismatches = 0
        for sku, level in zip(skus, got.levels):
            taken = 10 ** 9 - level.available
            acked = sum(1 for r in results if r[1] == sku and r[2] == "OK")
            unknown = sum(1 for r in results if r[1] == sku and r[2] != "OK"
                          and "not applied" not in r[3])
            mismatches += 0 if acked <= taken <= acked + unknown else 1
        return {"run": "failover", "first_ack_after_kill_s": first_ack_s,
                "acknowledged": sum(1 for r in results if r[2] == "OK"),
                "check_mismatches": mismatches}
    finally:
        group.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    runs = []
    for _ in range(ROUNDS):
        for size in (1, 3):
            result = throughput_run(size)
            runs.append(result)
            print(json.dumps(result), flush=True)
    failover = failover_run()
    print(json.dumps(failover), flush=True)
    with open(OUT, "a") as out:
        for r in runs + [failover]:
            out.write(json.dumps(r) + "\n")
    one = sorted(r["ops_per_s"] for r in runs if r["replicas"] == 1)
    three = sorted(r["ops_per_s"] for r in runs if r["replicas"] == 3)
    print("\n| stockd | calls/s per round | p99 ms | check mismatches |")
    print("|---|---|---|---|")
    for size, label in ((1, "one node"), (3, "leader of 3 replicas")):
        rs = [r for r in runs if r["replicas"] == size]
        print("| %s | %s | %s | %d |" % (
            label, " / ".join("%.0f" % r["ops_per_s"] for r in rs),
            " / ".join("%.1f" % r["p99_ms"] for r in rs),
            sum(r["check_mismatches"] for r in rs)))
    print("\n3 replicas / one node (best rounds): %.2f" % (three[-1] / one[-1]))
    snapshots = [r for r in runs if r["replicas"] == 3]
    print("snapshots per 3-replica run (all replicas): %s; the longest held the loop %.1f ms, "
          "the longest took %.1f ms in all, the largest %.1f MB"
          % (" / ".join(str(r["snapshots"]) for r in snapshots),
             max(r["snapshot_max_loop_ms"] for r in snapshots),
             max(r["snapshot_max_ms"] for r in snapshots),
             max(r["snapshot_max_bytes"] for r in snapshots) / 1e6))
    print("failover: first acknowledged write %.2f s after the leader's SIGKILL; %d checked "
          "mismatches" % (failover["first_ack_after_kill_s"] or -1,
                          failover["check_mismatches"]))
    failed = failover["check_mismatches"] or any(r["check_mismatches"] for r in runs)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
