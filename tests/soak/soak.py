#!/usr/bin/python3
"""Soak test: SIGKILL stockd under load, over and over, and check what a restarted stockd holds.

Goal: no acknowledged write is ever lost, nothing is applied that was refused or never sent,
nothing is applied twice, a request_id is remembered for as long as its record lives (also
across flushes and compactions), and no restricted decrement ever takes a SKU below its floor.

Method: one data directory for the whole run. Each cycle starts stockd (--sync always, a free
port read from its "listening" log line), checks what the previous (killed) run left behind,
then runs 16 client threads of restricted decrements (1-3 distinct SKUs of a small set, so they
contend and get refused), unrestricted decrements and increments, every write with a unique
request_id and order_id, and SIGKILLs the daemon after a random 0.2-1.5 s. Every request ends
up acknowledged (OK), refused (a definite "not applied": FAILED_PRECONDITION, or
RESOURCE_EXHAUSTED from a full queue) or in doubt (UNAVAILABLE, DEADLINE_EXCEEDED, a broken
connection: anything whose outcome the client cannot know). After the restart:
  (a) every acknowledged request is in the ledger, all of its lines (atomic), and the levels
      and ledger_seq it was answered with are the ones the ledger shows;
  (b) every request in the ledger was acknowledged or in doubt (never refused, never unsent),
      and none is there twice;
  (c) every in-doubt request is sent again, byte for byte: it must answer OK with
      replayed=true exactly when it was in the ledger before; otherwise it is applied now
      (replayed=false) or refused. Then it counts as resolved;
  (d) each SKU's level and version equal what the ledger adds up to (initial SetStock plus
      every delta, each entry's available_after consistent with the one before); restricted
      decrements never leave a SKU below its floor, and SKUs that only restricted decrements
      take from are never below it;
  (e) ~50 resolved requests of earlier cycles (the last one, the first ones, any) are sent
      again and must answer replayed=true with their original response: idempotency records
      must survive flushes and compactions (a TTL filter that misread the record's time
      dropped them).
Half of the cycles (odd ones) run with --write-buffer-mb 1, so memtables flush during the load
and compactions (which run the idempotency TTL filter) happen inside the soak; the RocksDB LOG
of every run is read for flush and compaction counts. At the end: a full ledger comparison, a
larger replay sample and a clean SIGTERM stop.

Usage: soak.py PATH-TO-STOCKD PYGEN-DIR [--cycles N] [--seed S] [options]  (--help)
Environment: SOAK_CYCLES (default 100), SOAK_SEED (random choices: which requests, SKUs,
quantities, kill times; thread timing still differs between runs).
Last line: "soak: N passed, M failed"; exit status 0 only when every cycle passed.
"""
import argparse
import array
import collections
import concurrent.futures
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

TENANT = "soak"
APP = "soak-app"

# (location, catalog item, variant, floor). Group A: only restricted decrements and
# increments touch them, so they can never be below their floor. Group B: unrestricted
# decrements too (an edited order may take stock below the floor), so only the restricted
# decrements themselves are checked against the floor there.
SKUS_A = [("", "a0", "", 0), ("", "a1", "", 0), ("", "a2", "", 3), ("", "a3", "", -2),
          ("wh-2", "a4", "", 0), ("wh-2", "a5", "size:m", 5)]
SKUS_B = [("", "b0", "", 0), ("", "b1", "", -5), ("", "b2", "red", 0), ("wh-2", "b3", "", 2),
          ("wh-2", "b4", "", 0), ("", "b5", "", -1)]
SKUS = SKUS_A + SKUS_B
GROUP_A = range(0, len(SKUS_A))
GROUP_B = range(len(SKUS_A), len(SKUS))
INITIAL_ABOVE_FLOOR = 25

INVARIANTS = {
    "a": "(a) acknowledged ⊆ stored",
    "b": "(b) stored ⊆ acknowledged ∪ in-doubt",
    "c": "(c) a re-sent in-doubt request answers replayed exactly when it was stored",
    "d": "(d) level = initial + Σ ledger deltas, never below the floor",
    "e": "(e) resolved requests still answer replayed (idempotency records kept)",
    "atomic": "all lines of a request or none",
    "once": "applied at most once",
    "seq": "ledger seqs contiguous and unchanged",
    "match": "ledger entry / response matches its request",
    "answer": "only expected answers",
    "daemon": "stockd starts and stops cleanly",
}

# Answers that mean "not applied", by contract. RESOURCE_EXHAUSTED: the write queue was full.
REFUSED_CODES = {"FAILED_PRECONDITION", "RESOURCE_EXHAUSTED"}
# Definite answers that this traffic must never get (they would be a bug of stockd or of this
# script): they count as "not applied" and as a violation.
UNEXPECTED_CODES = {"INVALID_ARGUMENT", "ALREADY_EXISTS", "ABORTED", "OUT_OF_RANGE",
                    "NOT_FOUND", "UNIMPLEMENTED", "PERMISSION_DENIED", "UNAUTHENTICATED"}
# Everything else (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN, INTERNAL, DATA_LOSS...)
# leaves the outcome unknown: in doubt.


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stockd", help="path to the stockd binary")
    p.add_argument("pygen", help="directory of the protoc --python_out modules (build/pygen)")
    p.add_argument("--cycles", type=int, default=int(os.environ.get("SOAK_CYCLES", "100")),
                   help="SIGKILL cycles (env SOAK_CYCLES; default 100)")
    seed = os.environ.get("SOAK_SEED")
    p.add_argument("--seed", type=int, default=int(seed) if seed else None,
                   help="seed of the random choices (env SOAK_SEED; default: random, printed)")
    p.add_argument("--clients", type=int, default=16, help="client threads (default 16)")
    p.add_argument("--kill-after", default="0.2-1.5",
                   help="SIGKILL after a random number of seconds in MIN-MAX (default 0.2-1.5)")
    p.add_argument("--write-buffer-mb", default="alternate",
                   help="'alternate' (default): odd cycles --write-buffer-mb 1, even cycles "
                        "stockd's default; 'default'; or a number of MiB for every cycle")
    p.add_argument("--replays", type=int, default=50,
                   help="old resolved requests re-sent per cycle (default 50)")
    p.add_argument("--final-replays", type=int, default=1000,
                   help="old resolved requests re-sent at the end (default 1000)")
    p.add_argument("--full-scan-every", type=int, default=25,
                   help="compare the whole ledger every N cycles (and at the end; 0 = end only)")
    p.add_argument("--stockd-arg", action="append", default=[], metavar="ARG",
                   help="extra stockd argument (repeatable), e.g. --stockd-arg=--batch-max=16")
    p.add_argument("--workdir", help="where the data directory and logs go (default: a new "
                                     "temporary directory, removed when every cycle passed)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--keep-going", action="store_true",
                   help="run the remaining cycles after a failed one (default: stop)")
    p.add_argument("--show", type=int, default=10,
                   help="violations printed per invariant and cycle (default 10)")
    args = p.parse_args()
    low, _, high = args.kill_after.partition("-")
    args.kill_low, args.kill_high = float(low), float(high or low)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    return args


ARGS = parse_args()
sys.path.insert(0, ARGS.pygen)
import grpc  # noqa: E402
from google.protobuf import wrappers_pb2  # noqa: E402
from stockd.v1 import inventory_pb2 as pb  # noqa: E402

METHOD = {"dec": "Decrement", "inc": "Increment", "set": "SetStock"}
RESPONSE = {"dec": pb.DecrementResponse, "inc": pb.IncrementResponse, "set": pb.SetStockResponse}
OP = {"dec": pb.OP_DECREMENT, "inc": pb.OP_INCREMENT, "set": pb.OP_SET}


def item_ref(sku):
    location, catalog, variant, _ = SKUS[sku]
    return pb.ItemRef(location_id=location, app_id=APP, catalog_item_id=catalog, variant=variant)


SKU_OF = {(s[0], APP, s[1], s[2]): i for i, s in enumerate(SKUS)}


def sku_name(sku):
    location, catalog, variant, _ = SKUS[sku]
    return "/".join(x for x in (location, catalog, variant) if x)


class Request:
    """One write and what became of it. Its bytes are rebuilt for each send (protobuf output
    is deterministic), so a re-send is byte for byte the first one without keeping them."""
    __slots__ = ("rid", "kind", "restricted", "lines", "reason", "cycle", "state", "code",
                 "_response", "entries", "confirmed")

    def __init__(self, rid, kind, restricted, lines, reason, cycle):
        self.rid, self.kind, self.restricted, self.lines = rid, kind, restricted, tuple(lines)
        self.reason, self.cycle = reason, cycle
        self.state = "sent"        # sent | ack | refused | indoubt
        self.code = None           # last gRPC code name seen
        self._response = None      # the original response (replayed=false), when known
        self.entries = []          # (seq, sku, delta, available_after, version_after)
        self.confirmed = False     # acknowledgment checked against the ledger

    # kept serialized: hundreds of thousands of them
    @property
    def response(self):
        return RESPONSE[self.kind].FromString(self._response) if self._response else None

    @response.setter
    def response(self, message):
        self._response = message.SerializeToString() if message is not None else None

    def describe(self):
        what = {"dec": "restricted decrement" if self.restricted else "unrestricted decrement",
                "inc": "increment", "set": "set"}[self.kind]
        lines = ", ".join("%s %s%d" % (sku_name(s), "-" if self.kind == "dec" else "+", q)
                          for s, q in self.lines) if self.kind != "set" else "initial levels"
        return "request_id=%s (cycle %d, %s: %s)" % (self.rid, self.cycle, what, lines)


    def payload(self):
        if self.kind == "set":
            return pb.SetStockRequest(
                tenant_id=TENANT, request_id=self.rid, reason=self.reason, lines=[
                    pb.SetLine(item=item_ref(s), available=available,
                               floor=wrappers_pb2.Int64Value(value=SKUS[s][3]),
                               tracked=wrappers_pb2.BoolValue(value=True))
                    for s, available in self.lines]).SerializeToString()
        fields = dict(tenant_id=TENANT, request_id=self.rid, order_id=order_id_of(self.rid),
                      reason=self.reason, reason_text=reason_text_of(self.rid),
                      lines=[pb.Line(item=item_ref(s), quantity=q) for s, q in self.lines])
        if self.kind == "dec":
            return pb.DecrementRequest(restrict_inventory=self.restricted,
                                       **fields).SerializeToString()
        return pb.IncrementRequest(**fields).SerializeToString()


def new_request_id(rng, cycle, thread, n):
    # like Wix's ("wix:" + a UUID): random first, so every flushed file spans the whole key
    # range and compactions rewrite (and filter) records instead of moving files; long, so
    # the idempotency memtable fills (and flushes) within a cycle at --write-buffer-mb 1
    return "soak:%096x:c%d-t%d-%d" % (rng.getrandbits(384), cycle, thread, n)


def order_id_of(rid):
    return "order-" + rid.rsplit(":", 1)[-1]


def reason_text_of(rid):
    # long, so the ledger memtable fills (and flushes) within a cycle at --write-buffer-mb 1
    return "soak " + rid.rsplit(":", 1)[-1] + " " + "." * 96


def build_request(rid, kind, restricted, lines, reason, cycle):
    return Request(rid, kind, restricted, lines, reason, cycle)


def random_request(rng, rid, cycle):
    roll = rng.random()
    if roll < 0.50:    # restricted decrement: checkout, 1-3 distinct SKUs of all of them
        skus = rng.sample(range(len(SKUS)), rng.choice((1, 1, 2, 3)))
        return build_request(rid, "dec", True, [(s, rng.randint(1, 3)) for s in skus],
                             pb.REASON_ORDER_PLACED, cycle)
    if roll < 0.62:    # unrestricted decrement: an edited order, group B only
        skus = rng.sample(GROUP_B, rng.choice((1, 1, 2)))
        return build_request(rid, "dec", False, [(s, rng.randint(1, 3)) for s in skus],
                             pb.REASON_ORDER_EDITED, cycle)
    # increment: cancellation / refund / received, 1-3 SKUs, more often group B
    pool = GROUP_B if rng.random() < 0.6 else GROUP_A
    skus = rng.sample(pool, rng.choice((1, 1, 2, 3)))
    return build_request(rid, "inc", False, [(s, rng.randint(1, 4)) for s in skus],
                         rng.choice((pb.REASON_ORDER_CANCELED, pb.REASON_ORDER_REFUNDED,
                                     pb.REASON_RECEIVED)), cycle)


class Daemon:
    def __init__(self, data_dir, log_path, extra):
        self.log = open(log_path, "w")
        self.address = None
        self.ready = threading.Event()
        command = [ARGS.stockd, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                   "--sync", "always", *extra, *ARGS.stockd_arg]
        self.log.write("# " + " ".join(command) + "\n")
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.drain = threading.Thread(target=self._drain, daemon=True)
        self.drain.start()
        self.ready.wait(timeout=30)
        if self.address is None:
            self.proc.kill()
            self.proc.wait()
            self.drain.join(timeout=5)
            self.log.close()
            raise RuntimeError("stockd did not start (exit %s); log: %s"
                               % (self.proc.returncode, log_path))
        self.channel = grpc.insecure_channel(self.address)
        # raw bytes in and out: a re-send is the very same bytes
        self.stubs = {kind: self.channel.unary_unary("/stockd.v1.Inventory/" + method)
                      for kind, method in METHOD.items()}

    def _drain(self):
        # keep reading its log so a full pipe never blocks the daemon
        for line in self.proc.stderr:
            self.log.write(line)
            if self.address is None:
                m = re.search(r'"event":"listening","address":"(127\.0\.0\.1:\d+)"', line)
                if m:
                    self.address = m.group(1)
                    self.ready.set()
        self.ready.set()

    def call(self, method, request, response_type, timeout=10):
        stub = self.channel.unary_unary("/stockd.v1.Inventory/" + method,
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=response_type.FromString)
        return stub(request, timeout=timeout)

    def send(self, request, timeout):
        """Sends a write; returns (code name, parsed response or None)."""
        try:
            raw = self.stubs[request.kind](request.payload(), timeout=timeout)
        except grpc.RpcError as error:
            code = error.code()
            return (code.name if code is not None else "UNKNOWN"), None
        return "OK", RESPONSE[request.kind].FromString(raw)

    def close(self):
        self.channel.close()
        self.drain.join(timeout=10)
        self.log.close()

    def sigterm(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.drain.join(timeout=10)
        self.log.close()
        return code


def rocksdb_log_stats(data_dir):
    """Flushes and compactions of the run that wrote data_dir/LOG, per column family."""
    stats = collections.Counter()
    try:
        with open(os.path.join(data_dir, "LOG"), errors="replace") as f:
            text = f.read()
    except OSError:
        return stats
    for cf in re.findall(r"\[([\w.-]+)\] \[JOB \d+\] Level-0 flush table #\d+: started", text):
        stats["flush", cf] += 1
    for cf in re.findall(r"\[([\w.-]+)\] \[WriteLevel0TableForRecovery\] Level-0 table #\d+: "
                         r"started", text):
        stats["recovery_flush", cf] += 1
    for cf, records_in, dropped in re.findall(
            r"\[([\w.-]+)\] compacted to: .*?records in: (\d+), records dropped: (\d+)", text):
        stats["compaction", cf] += 1
        stats["compaction_in", cf] += int(records_in)
        stats["compaction_dropped", cf] += int(dropped)
    return stats


class Soak:
    def __init__(self):
        self.rng = random.Random(ARGS.seed)
        if ARGS.workdir:
            os.makedirs(ARGS.workdir, exist_ok=True)
            self.workdir = tempfile.mkdtemp(prefix="soak-", dir=ARGS.workdir)
        else:
            self.workdir = tempfile.mkdtemp(prefix="stockd-soak-")
        self.data_dir = os.path.join(self.workdir, "data")
        self.requests = {}                  # rid -> Request, every one ever sent
        self.ledger = array.array("q")      # hash of (seq, rid, sku, delta, after) by seq-1
        self.last_seq = 0
        self.level = [None] * len(SKUS)     # from the ledger
        self.version = [0] * len(SKUS)
        self.resolved = []                  # acknowledged rids, in the order they became so
        self.resolved_cycle_start = [0]     # index into resolved where each cycle starts
        self.indoubt = []                   # rids in doubt, to resolve after the next restart
        self.to_confirm = []                # acknowledged rids not yet checked in the ledger
        self.violations = []                # (key, text) of the current cycle
        self.shown = collections.Counter()
        self.totals = collections.Counter()
        self.rocks = collections.Counter()
        self.run_number = 0

    # ---- bookkeeping ----

    def violate(self, key, text):
        self.violations.append((key, text))
        self.shown[key] += 1
        if self.shown[key] <= ARGS.show:
            print("  VIOLATION %s: %s" % (INVARIANTS[key], text), flush=True)
        elif self.shown[key] == ARGS.show + 1:
            print("  ... more violations of %s (not shown)" % INVARIANTS[key], flush=True)

    def start(self, cycle):
        self.run_number += 1
        extra = []
        mode = ARGS.write_buffer_mb
        # RocksDB's LOG (flush and compaction counts, read below) is off by default in stockd
        small = mode == "alternate" and cycle % 2 == 1
        if small:
            extra = ["--write-buffer-mb", "1"]
        elif mode not in ("alternate", "default"):
            extra = ["--write-buffer-mb", mode]
        log = os.path.join(self.workdir, "stockd-%03d.log" % self.run_number)
        label = " ".join(extra[1:]) + "MiB" if extra else "dflt"
        return Daemon(self.data_dir, log, extra + ["--rocksdb-info-log"]), label

    def collect_rocksdb_stats(self):
        stats = rocksdb_log_stats(self.data_dir)
        self.rocks.update(stats)
        return stats

    # ---- the ledger ----

    def history(self, daemon, after_seq):
        """The tenant's ledger after after_seq, page by page."""
        while True:
            r = daemon.call("History", pb.HistoryRequest(tenant_id=TENANT, after_seq=after_seq,
                                                         page_size=1000), pb.HistoryResponse,
                            timeout=30)
            yield from r.entries
            if not r.next_after_seq:
                return
            after_seq = r.next_after_seq

    def ingest(self, daemon):
        """Reads the ledger past what is known and checks each new entry (b, d, once, seq)."""
        touched = []
        for e in self.history(daemon, self.last_seq):
            if e.seq != self.last_seq + 1:
                self.violate("seq", "after seq %d the ledger continues at %d"
                             % (self.last_seq, e.seq))
            self.last_seq = e.seq
            sku = SKU_OF.get((e.item.location_id, e.item.app_id, e.item.catalog_item_id,
                              e.item.variant))
            request = self.requests.get(e.request_id)
            self.ledger.append(hash((e.seq, e.request_id, sku, e.delta, e.available_after)))
            if request is None:
                self.violate("b", "seq %d: request_id=%r was never sent" % (e.seq, e.request_id))
            elif request.state in ("refused", "sent"):
                self.violate("b", "seq %d: %s was %s (%s) but is in the ledger"
                             % (e.seq, request.describe(), "refused" if request.state ==
                                "refused" else "never answered", request.code))
            if sku is None:
                self.violate("match", "seq %d: unknown item %s" % (e.seq, e.item))
                continue
            # the level as the ledger tells it
            if e.op == pb.OP_SET:
                self.level[sku] = e.available_after
            else:
                base = self.level[sku] if self.level[sku] is not None else 0
                if base + e.delta != e.available_after:
                    self.violate("d", "seq %d (%s): %s was %d, delta %d, but available_after %d"
                                 % (e.seq, e.request_id, sku_name(sku), base, e.delta,
                                    e.available_after))
                self.level[sku] = e.available_after
            self.version[sku] += 1
            if request is None:
                continue
            floor = SKUS[sku][3]
            if request.kind == "dec" and request.restricted and e.available_after < floor:
                self.violate("d", "seq %d: restricted %s left %s at %d, below its floor %d"
                             % (e.seq, request.describe(), sku_name(sku), e.available_after,
                                floor))
            if sku in GROUP_A and request.kind != "set" and e.available_after < floor:
                self.violate("d", "seq %d: %s (only restricted decrements take from it) is at "
                             "%d, below its floor %d" % (e.seq, sku_name(sku), e.available_after,
                                                         floor))
            # the entry is the request's
            index = len(request.entries)
            if index < len(request.lines):
                want_sku, quantity = request.lines[index]
                want_delta = {"dec": -quantity, "inc": quantity}.get(request.kind)
                if (e.op != OP[request.kind] or sku != want_sku or
                        (want_delta is not None and e.delta != want_delta) or
                        (request.kind != "set" and (e.order_id != order_id_of(request.rid) or
                                                    e.reason_text != reason_text_of(request.rid)))):
                    self.violate("match", "seq %d: %s %s delta %d order %r does not match line "
                                 "%d of %s" % (e.seq, pb.Op.Name(e.op), sku_name(sku), e.delta,
                                               e.order_id, index, request.describe()))
            elif index == len(request.lines):
                self.violate("once", "seq %d: %s is in the ledger again (first at seq %d)"
                             % (e.seq, request.describe(), request.entries[0][0]))
            request.entries.append((e.seq, sku, e.delta, e.available_after, self.version[sku]))
            touched.append(request)
        for request in touched:
            n = len(request.entries)
            if n % len(request.lines) != 0:
                self.violate("atomic", "%s: %d of its %d lines are in the ledger"
                             % (request.describe(), n, len(request.lines)))
            else:
                seqs = [entry[0] for entry in request.entries[:len(request.lines)]]
                if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
                    self.violate("atomic", "%s: its lines are at seqs %s, not one write"
                                 % (request.describe(), seqs))

    def check_response(self, request, response, key):
        """An answer (original or replayed) must be what the ledger shows."""
        stored = request.entries[:len(request.lines)]
        problems = []
        if response.ledger_seq != stored[-1][0]:
            problems.append("ledger_seq %d but its last entry is seq %d"
                            % (response.ledger_seq, stored[-1][0]))
        if len(response.levels) != len(stored):
            problems.append("%d levels for %d lines" % (len(response.levels), len(stored)))
        else:
            for level, (seq, sku, _, after, version) in zip(response.levels, stored):
                if (level.available, level.version) != (after, version):
                    problems.append("%s answered available %d version %d, ledger seq %d says "
                                    "%d version %d" % (sku_name(sku), level.available,
                                                       level.version, seq, after, version))
        if problems:
            self.violate(key, "%s: %s" % (request.describe(), "; ".join(problems)))

    def confirm_acknowledged(self):
        """(a): every acknowledged request is in the ledger, as it was answered."""
        for rid in self.to_confirm:
            request = self.requests[rid]
            if not request.entries:
                self.violate("a", "%s was acknowledged (ledger_seq %d) but is not in the ledger"
                             % (request.describe(), request.response.ledger_seq))
            elif len(request.entries) >= len(request.lines):
                self.check_response(request, request.response, "match")
            request.confirmed = True
        self.to_confirm = []

    def full_scan(self, daemon):
        """The whole ledger, again, must be exactly what was read before (nothing lost)."""
        count, differ = 0, []
        for e in self.history(daemon, 0):
            sku = SKU_OF.get((e.item.location_id, e.item.app_id, e.item.catalog_item_id,
                              e.item.variant))
            if (e.seq != count + 1 or count >= len(self.ledger) or self.ledger[count] !=
                    hash((e.seq, e.request_id, sku, e.delta, e.available_after))):
                differ.append("seq %d (%s) at position %d" % (e.seq, e.request_id, count + 1))
            count += 1
        if differ or count != len(self.ledger):
            self.violate("seq", "the whole ledger read again (%d entries) is not what was read "
                         "before (%d entries): %d differ, first: %s"
                         % (count, len(self.ledger), len(differ), "; ".join(differ[:3])))
        return count

    def check_levels(self, daemon):
        """(d): GetStock agrees with the ledger; group A never below its floor."""
        got = daemon.call("GetStock", pb.GetStockRequest(
            tenant_id=TENANT, items=[item_ref(s) for s in range(len(SKUS))]),
            pb.GetStockResponse)
        for sku, level in enumerate(got.levels):
            floor = SKUS[sku][3]
            want = (self.level[sku], self.version[sku], floor)
            if (level.available, level.version, level.floor) != want:
                self.violate("d", "%s: GetStock says available %d version %d floor %d, the "
                             "ledger adds up to %d version %d floor %d"
                             % (sku_name(sku), level.available, level.version, level.floor,
                                *want))
            if sku in GROUP_A and level.available < floor:
                self.violate("d", "%s is at %d, below its floor %d"
                             % (sku_name(sku), level.available, floor))
        return [level.available for level in got.levels]

    # ---- re-sends ----

    def resend_all(self, daemon, requests):
        with concurrent.futures.ThreadPoolExecutor(max_workers=ARGS.clients) as pool:
            return list(pool.map(lambda r: daemon.send(r, timeout=10), requests))

    def resolve_indoubt(self, daemon, cycle_stats):
        """(c): re-send every in-doubt request; replayed exactly when it was stored."""
        pending = [self.requests[rid] for rid in self.indoubt]
        stored_before = {r.rid: bool(r.entries) for r in pending}
        self.indoubt = []
        for request, (code, response) in zip(pending, self.resend_all(daemon, pending)):
            was_stored = stored_before[request.rid]
            cycle_stats["indoubt_stored" if was_stored else "indoubt_not_stored"] += 1
            request.code = code
            if code == "OK" and response.replayed:
                if not was_stored:
                    self.violate("c", "%s answered replayed=true but was not in the ledger"
                                 % request.describe())
                elif len(request.entries) >= len(request.lines):
                    self.check_response(request, response, "c")
                response.replayed = False
                request.response, request.state, request.confirmed = response, "ack", True
                self.resolved.append(request.rid)
            elif code == "OK":
                if was_stored:
                    self.violate("c", "%s was in the ledger (seq %d) but was applied again "
                                 "(replayed=false): its idempotency record is gone"
                                 % (request.describe(), request.entries[0][0]))
                request.response, request.state = response, "ack"
                self.to_confirm.append(request.rid)
                self.resolved.append(request.rid)
                cycle_stats["indoubt_applied_now"] += 1
            elif code in REFUSED_CODES or code in UNEXPECTED_CODES:
                if was_stored:
                    self.violate("c", "%s was in the ledger (seq %d) but the re-send was "
                                 "answered %s: its idempotency record is gone"
                                 % (request.describe(), request.entries[0][0], code))
                elif code in UNEXPECTED_CODES:
                    self.violate("answer", "%s re-sent: %s" % (request.describe(), code))
                request.state = "refused"
                cycle_stats["indoubt_refused_now"] += 1
            else:
                self.indoubt.append(request.rid)   # still unknown: again after the next restart
                cycle_stats["indoubt_still"] += 1

    def sample_resolved(self, count, cycle):
        """~count acknowledged requests: from the last cycle, the first cycles, and any."""
        if not self.resolved or count <= 0:
            return []
        starts = self.resolved_cycle_start
        last = self.resolved[starts[-1]:] or self.resolved
        early = self.resolved[:starts[min(len(starts) - 1, max(2, cycle // 10))]] or self.resolved
        chosen = set()
        for pool, n in ((last, count * 2 // 5), (early, count // 5), (self.resolved, count)):
            for _ in range(n):
                if len(chosen) >= count:
                    break
                chosen.add(self.rng.choice(pool))
        return [self.requests[rid] for rid in sorted(chosen)]

    def replay_resolved(self, daemon, requests, key="e"):
        """(e): resolved requests answer replayed=true with their original response."""
        failures = 0
        for request, (code, response) in zip(requests, self.resend_all(daemon, requests)):
            original = request.response
            if code == "OK" and response.replayed:
                response.replayed = False
                if response != original:
                    failures += 1
                    self.violate(key, "%s replayed a different response: ledger_seq %d vs %d"
                                 % (request.describe(), response.ledger_seq,
                                    original.ledger_seq))
                continue
            failures += 1
            if code == "OK":
                self.violate(key, "%s, acknowledged in cycle %d at seq %d, was APPLIED AGAIN "
                             "(replayed=false, new ledger_seq %d): its idempotency record is "
                             "gone" % (request.describe(), request.cycle, original.ledger_seq,
                                       response.ledger_seq))
            elif code in REFUSED_CODES:
                self.violate(key, "%s, acknowledged in cycle %d at seq %d, was answered %s "
                             "instead of its replay: its idempotency record is gone"
                             % (request.describe(), request.cycle, original.ledger_seq, code))
            else:
                self.violate(key, "%s re-sent: %s" % (request.describe(), code))
        return failures

    # ---- load ----

    def load(self, daemon, cycle, kill_after, cycle_stats):
        stop = threading.Event()
        lock = threading.Lock()
        outcomes = []

        def client(index):
            rng = random.Random("%d-%d-%d" % (ARGS.seed, cycle, index))
            mine = []
            n = 0
            while not stop.is_set():
                n += 1
                request = random_request(rng, new_request_id(rng, cycle, index, n), cycle)
                with lock:
                    self.requests[request.rid] = request
                code, response = daemon.send(request, timeout=3)
                mine.append((request, code, response, time.monotonic()))
            with lock:
                outcomes.extend(mine)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(ARGS.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(kill_after)
        killed_at = time.monotonic()
        daemon.proc.kill()      # under load: the clients are mid-call
        stop.set()
        daemon.proc.wait()
        for t in threads:
            t.join(timeout=30)
        daemon.close()
        for request, code, response, at in outcomes:
            request.code = code
            cycle_stats["sent"] += 1
            if code == "OK":
                request.state, request.response = "ack", response
                cycle_stats["ack"] += 1
                if response.replayed:
                    self.violate("answer", "%s answered replayed=true on its first send"
                                 % request.describe())
                self.to_confirm.append(request.rid)
                self.resolved.append(request.rid)
            elif code in REFUSED_CODES or code in UNEXPECTED_CODES:
                request.state = "refused"
                cycle_stats["refused"] += 1
                cycle_stats["refused_" + code] += 1
                if code in UNEXPECTED_CODES or (code == "FAILED_PRECONDITION" and not (
                        request.kind == "dec" and request.restricted)):
                    self.violate("answer", "%s answered %s" % (request.describe(), code))
            else:
                request.state = "indoubt"
                self.indoubt.append(request.rid)
                cycle_stats["indoubt"] += 1
                cycle_stats["indoubt_" + code] += 1
                if at < killed_at:
                    cycle_stats["indoubt_before_kill"] += 1
        return killed_at - started

    # ---- a run ----

    def initial_levels(self, daemon):
        request = build_request("init", "set", False,
                                [(s, SKUS[s][3] + INITIAL_ABOVE_FLOOR) for s in range(len(SKUS))],
                                pb.REASON_RECOUNT, 0)
        self.requests[request.rid] = request
        code, response = daemon.send(request, timeout=10)
        if code != "OK":
            raise RuntimeError("initial SetStock failed: %s" % code)
        request.state, request.response = "ack", response
        self.to_confirm.append(request.rid)
        self.resolved.append(request.rid)

    def verify_after_restart(self, daemon, cycle, cycle_stats):
        """Everything (a)-(e) on a freshly restarted daemon. Returns levels read."""
        self.ingest(daemon)                     # what survived the kill: (b), (d), once, seq
        self.confirm_acknowledged()             # (a)
        self.resolve_indoubt(daemon, cycle_stats)   # (c)
        sample = self.sample_resolved(ARGS.replays, cycle)
        cycle_stats["replays"] = len(sample)
        cycle_stats["replay_failures"] = self.replay_resolved(daemon, sample)   # (e)
        self.ingest(daemon)                     # what the re-sends added (and nothing twice)
        self.confirm_acknowledged()             # (a) for those applied by the re-sends
        return self.check_levels(daemon)        # (d)

    def run(self):
        print("soak: %d cycles, seed %d (SOAK_SEED=%d repeats the random choices), %d clients, "
              "SIGKILL after %.1f-%.1f s, write buffer: %s; work dir %s"
              % (ARGS.cycles, ARGS.seed, ARGS.seed, ARGS.clients, ARGS.kill_low, ARGS.kill_high,
                 {"alternate": "1 MiB on odd cycles, default on even ones",
                  "default": "stockd's default"}.get(ARGS.write_buffer_mb,
                                                     ARGS.write_buffer_mb + " MiB"),
                 self.workdir), flush=True)
        print("each cycle: requests sent before the SIGKILL and their outcome (in doubt: how many "
              "the restarted stockd had stored); old requests re-sent that replayed; last ledger "
              "seq; RocksDB in the killed run: flushes (during the load + at recovery) and "
              "compactions (of the idempotency column family, and the records they dropped)",
              flush=True)
        passed = failed = 0
        began = time.monotonic()
        daemon, buffer = self.start(1)
        self.initial_levels(daemon)
        cycle = 0
        for cycle in range(1, ARGS.cycles + 1):
            cycle_began = time.monotonic()
            self.violations = []
            self.shown.clear()
            stats = collections.Counter()
            kill_after = self.rng.uniform(ARGS.kill_low, ARGS.kill_high)
            self.resolved_cycle_start.append(len(self.resolved))
            loaded = self.load(daemon, cycle, kill_after, stats)
            rocks = self.collect_rocksdb_stats()
            try:
                daemon, next_buffer = self.start(cycle + 1)
            except RuntimeError as error:
                self.violate("daemon", str(error))
                failed += 1
                daemon = None
                break
            levels = self.verify_after_restart(daemon, cycle, stats)
            if ARGS.full_scan_every and cycle % ARGS.full_scan_every == 0:
                stats["full_scan"] = self.full_scan(daemon)
            self.totals.update(stats)
            ok = not self.violations
            passed += ok
            failed += not ok
            indoubt_note = ""
            if stats["indoubt"]:
                indoubt_note = " (%d were in the ledger)" % stats["indoubt_stored"]
            print("cycle %3d/%d %s wb=%-4s kill@%.2fs sent %4d: ok %4d refused %4d in-doubt %2d%s"
                  " | replays %d/%d | seq %d | flush %d+%d compact %d (idem %d, dropped %d) | %.1fs"
                  % (cycle, ARGS.cycles, "PASS" if ok else "FAIL", buffer, loaded, stats["sent"],
                     stats["ack"], stats["refused"], stats["indoubt"], indoubt_note,
                     stats["replays"] - stats["replay_failures"], stats["replays"],
                     self.last_seq, sum(v for (k, _), v in rocks.items() if k == "flush"),
                     sum(v for (k, _), v in rocks.items() if k == "recovery_flush"),
                     sum(v for (k, _), v in rocks.items() if k == "compaction"),
                     rocks["compaction", "idempotency"],
                     rocks["compaction_dropped", "idempotency"],
                     time.monotonic() - cycle_began), flush=True)
            if not ok:
                for key, count in collections.Counter(k for k, _ in self.violations).items():
                    print("  cycle %d: %d violation(s) of %s" % (cycle, count, INVARIANTS[key]))
                now = rocksdb_log_stats(self.data_dir)
                print("  RocksDB since this restart: idempotency column family %d flushes + %d "
                      "at recovery, %d compactions, %d of %d records dropped by them"
                      % (now["flush", "idempotency"], now["recovery_flush", "idempotency"],
                         now["compaction", "idempotency"],
                         now["compaction_dropped", "idempotency"],
                         now["compaction_in", "idempotency"]))
                if not ARGS.keep_going:
                    break
            buffer = next_buffer
        # the end: the whole ledger once more, a large replay sample, a clean stop
        final_ok = True
        if daemon is not None and failed and not ARGS.keep_going:
            daemon.sigterm()        # stopped at a failure: the final checks would only add noise
            self.collect_rocksdb_stats()
        elif daemon is not None:
            self.violations = []
            self.shown.clear()
            entries = self.full_scan(daemon)
            sample = self.sample_resolved(ARGS.final_replays, cycle)
            final_failures = self.replay_resolved(daemon, sample)
            self.ingest(daemon)
            self.confirm_acknowledged()
            levels = self.check_levels(daemon)
            code = daemon.sigterm()
            self.collect_rocksdb_stats()
            if code != 0:
                self.violate("daemon", "SIGTERM: stockd exited with %s, not 0" % code)
            final_ok = not self.violations
            print("final %s: whole ledger read again (%d entries)%s; %d/%d old requests replayed; "
                  "levels %s; SIGTERM exit %s"
                  % ("PASS" if final_ok else "FAIL", entries,
                     "" if "seq" in dict(self.violations) else ", as each cycle had read it",
                     len(sample) - final_failures, len(sample),
                     " ".join("%s=%d" % (SKUS[s][1], v) for s, v in enumerate(levels)), code))
            if not final_ok:
                for key, count in collections.Counter(k for k, _ in self.violations).items():
                    print("  final: %d violation(s) of %s" % (count, INVARIANTS[key]))
        self.summary(passed, failed, final_ok, time.monotonic() - began)
        return passed, failed, final_ok

    def summary(self, passed, failed, final_ok, elapsed):
        t = self.totals
        states = collections.Counter(r.state for r in self.requests.values())
        print("summary: %d requests sent in %d cycles: %d acknowledged, %d refused "
              "(FAILED_PRECONDITION %d, RESOURCE_EXHAUSTED %d), %d in doubt (%s; %d of them "
              "answered before the kill)"
              % (t["sent"], passed + failed, t["ack"], t["refused"],
                 t["refused_FAILED_PRECONDITION"], t["refused_RESOURCE_EXHAUSTED"], t["indoubt"],
                 ", ".join("%s %d" % (k[len("indoubt_"):], v) for k, v in sorted(t.items())
                           if k.startswith("indoubt_") and k[len("indoubt_"):].isupper()) or "-",
                 t["indoubt_before_kill"]))
        print("summary: in-doubt re-sent: %d had been stored (all must replay), %d had not "
              "(applied now %d, refused now %d, still unknown %d); %d old requests replayed "
              "in cycles, %d failed"
              % (t["indoubt_stored"], t["indoubt_not_stored"], t["indoubt_applied_now"],
                 t["indoubt_refused_now"], t["indoubt_still"], t["replays"],
                 t["replay_failures"]))
        print("summary: final request states: %s; ledger %d entries"
              % (", ".join("%s %d" % kv for kv in sorted(states.items())), self.last_seq))
        cfs = sorted({cf for (_, cf) in self.rocks})
        print("summary: RocksDB (from each run's LOG): " + "; ".join(
            "%s: %d flushes + %d at recovery, %d compactions (%d records in, %d dropped)"
            % (cf, self.rocks["flush", cf], self.rocks["recovery_flush", cf],
               self.rocks["compaction", cf], self.rocks["compaction_in", cf],
               self.rocks["compaction_dropped", cf]) for cf in cfs))
        if self.rocks["compaction", "idempotency"] == 0:
            print("summary: WARNING: no compaction of the idempotency column family happened; "
                  "(e) did not exercise the TTL filter")
        print("summary: soak.py peak memory %d MiB"
              % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024))
        print("summary: %.0f s in all, %.1f s per cycle; logs and data in %s (removed when "
              "every cycle passed, unless --keep)"
              % (elapsed, elapsed / max(1, passed + failed), self.workdir))
        not_run = ARGS.cycles - passed - failed
        if not_run:
            print("summary: %d cycle(s) not run: stopped at the first failed cycle "
                  "(--keep-going runs them all)" % not_run)
        if not final_ok:
            print("summary: the final checks failed")


def main():
    soak = Soak()
    try:
        passed, failed, final_ok = soak.run()
    except Exception:
        print("soak: aborted; logs and data in %s" % soak.workdir)
        raise
    if not final_ok and failed == 0 and passed > 0:
        # the final checks verify the last cycle too: it did not pass
        passed, failed = passed - 1, failed + 1
    ok = failed == 0 and final_ok and passed == ARGS.cycles
    if ok and not ARGS.keep:
        shutil.rmtree(soak.workdir, ignore_errors=True)
    print("soak: %d passed, %d failed" % (passed, failed))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
