#!/usr/bin/python3
"""`make profile`: a deterministic cost meter. Runs stockd under valgrind's callgrind, drives
Health checks and durable 1-3-line decrements with stockbench (1 connection, 8 in flight; with
PROFILE_BATCH=N also decrements in Batch calls of N writes), then Wix calls through the gateway
(measured once in stockd, once in the gateway), and prints the instructions each call costs,
with the functions that cost most.
Instruction counts do not depend on the machine's load, so they compare across changes where
timings cannot.

Method: before each phase callgrind's counters are zeroed (callgrind_control -z), after it they
are dumped (-d); the phase's calls are counted from stockd's own /metrics. callgrind acts on a
control command only when the program runs, so each command is sent in the background and
stockd is woken by a metrics request (its cost, a few hundred thousand instructions, is
negligible beside a phase's thousands of calls).
The gateway coalesces concurrent calls into Batch calls, so a Wix call's share of stockd's
work depends on how many calls travel together: under callgrind stockd runs ~50x slower, so
in its phase calls queue and batches are large; that phase shows the coalesced cost.
Usage: profile.py BUILD-DIR [SECONDS-PER-PHASE]
"""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
SECONDS = sys.argv[2] if len(sys.argv) > 2 else "10s"
BATCH = int(os.environ.get("PROFILE_BATCH", "0"))  # writes per Batch call (0: no Batch phase)
TOP = 12


def wait_for(path, pattern, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(path) as f:
            m = re.search(pattern, f.read())
        if m:
            return m
        time.sleep(0.2)
    raise RuntimeError("no %r in %s" % (pattern, path))


def metric_sum(url, pattern):
    """The sum of the samples matching pattern (one group: the value) at a /metrics URL."""
    text = urllib.request.urlopen(url, timeout=60).read().decode()
    return sum(float(v) for v in re.findall(pattern, text))


def stockd_calls(url, method):
    return lambda: metric_sum(
        url, r'stockd_requests_total\{method="%s",[^}]*\} (\S+)' % re.escape(method))


def gateway_calls(url, route="decrement"):
    return lambda: metric_sum(
        url, r'stockd_gateway_requests_total\{route="%s",[^}]*\} (\S+)' % re.escape(route))


class Process:
    """A binary started on 127.0.0.1:0 with its log in work/NAME.log; under callgrind when
    profiled. Its bound address is read from the log."""

    def __init__(self, work, name, args, profiled):
        self.out = os.path.join(work, name + ".cg")
        self.log = os.path.join(work, name + ".log")
        prefix = ["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no",
                  "--callgrind-out-file=" + self.out] if profiled else []
        self.proc = subprocess.Popen(prefix + args, stderr=open(self.log, "w"))
        self.address = wait_for(
            self.log, r'"event":"listening","address":"(127\.0\.0\.1:\d+)"').group(1)

    def control(self, flag, counter):
        """Sends a callgrind command and wakes the process (by reading its metrics) until it
        has been acted on."""
        command = subprocess.Popen(["callgrind_control", flag, str(self.proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while command.poll() is None and time.time() < deadline:
            counter()
            time.sleep(0.2)
        if command.poll() is None:
            command.kill()
            raise RuntimeError("callgrind_control %s did not finish" % flag)

    def phase(self, label, counter, load, per_count=1):
        """Instructions between a zero and a dump around load(); calls = counter's increase x
        per_count (a Batch call carries per_count writes)."""
        before_dumps = set(glob.glob(self.out + ".*"))
        self.control("-z", counter)
        before = counter()
        load()
        calls = (counter() - before) * per_count
        self.control("-d", counter)
        dump = (set(glob.glob(self.out + ".*")) - before_dumps).pop()
        unstable = unstable_instructions(dump)
        return {"label": label, "calls": calls, "ir": instructions(dump) - unstable,
                "unstable": unstable, "dump": dump}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)


def instructions(dump_path):
    with open(dump_path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in " + dump_path)


# One row of libgpr without a symbol (a gRPC thread's entry frame; callgrind charges it with
# code it cannot name) grows with the phase's wall time, not with its calls: 12k to 24k per
# Health check between runs of the same binary, while everything else stayed within 1%. It is
# reported apart so that the per-call figures compare across runs.
UNSTABLE = re.compile(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+\?\?\?:0x000000000000ae30 \[.*libgpr")


def unstable_instructions(dump_path):
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", dump_path],
                          capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        m = UNSTABLE.match(line)
        if m:
            return int(m.group(1).replace(",", ""))
    return 0


def top_functions(dump_path, calls):
    """The functions with the most instructions of their own. After a zero (-z) callgrind
    charges the threads' entry frames (clone, start_thread) with everything below them, so
    those rows are left out."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", dump_path],
                          capture_output=True, text=True, check=True).stdout
    rows = []
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
        if m is None or ":" not in m.group(2) or len(rows) >= TOP:
            continue
        where, name = m.group(2).split(":", 1)
        name = name.split(" [")[0].strip()
        if name.startswith(("clone", "start_thread")) or "PROGRAM TOTALS" in line:
            continue
        library = re.search(r"\[(?:.*/)?([^/\]]+)\]$", m.group(2))
        rows.append("    %9.0f  %s  (%s)" % (int(m.group(1).replace(",", "")) / max(calls, 1),
                                             name[:90], library.group(1) if library else where))
    return rows


def bench(*args):
    result = subprocess.run([os.path.join(BUILD, "stockbench"), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise RuntimeError("stockbench failed: " + result.stderr[-2000:])


def start_stockd(work, name, profiled):
    stockd = Process(work, name, [os.path.join(BUILD, "stockd"), "--listen", "127.0.0.1:0",
                                  "--data-dir", os.path.join(work, name + "-data"),
                                  "--metrics-listen", "127.0.0.1:0"], profiled)
    port = wait_for(stockd.log, r'"event":"metrics_listening".*"port":(\d+)').group(1)
    stockd.metrics = "http://127.0.0.1:%s/metrics" % port
    # every SKU set once, unmeasured (SetStock), so decrements find stock
    bench("--stockd", stockd.address, "--mode", "decrement", "--duration", "1s", "--warmup", "0s",
          "--connections", "1", "--inflight", "1", "--threads", "1")
    return stockd


def start_gateway(work, stockd_address, profiled):
    gateway = Process(work, "gateway", [
        os.path.join(BUILD, "stockd-gateway"), "--listen", "127.0.0.1:0", "--stockd",
        stockd_address, "--dev", "--dev-dir", os.path.join(work, "dev")], profiled)
    gateway.metrics = "http://%s/metrics" % gateway.address
    return gateway


def stockd_phases(work):
    """Health, lone decrements, and decrements in Batch calls, all measured in stockd."""
    stockd = start_stockd(work, "stockd", True)
    try:
        load = ["--stockd", stockd.address, "--connections", "1", "--inflight", "8",
                "--threads", "1", "--skus", "10000", "--lines-min", "1", "--lines-max", "3",
                "--duration", SECONDS, "--warmup", "0s", "--seed=false"]
        results = [
            stockd.phase("Health/Check", stockd_calls(stockd.metrics, "Health.Check"),
                         lambda: bench(*load, "--mode", "health")),
            stockd.phase("Decrement, 1-3 lines, durable", stockd_calls(stockd.metrics, "Decrement"),
                         lambda: bench(*load, "--mode", "decrement")),
        ]
        if BATCH > 0:
            results.append(stockd.phase(
                "Decrement in Batch of %d, per write" % BATCH,
                stockd_calls(stockd.metrics, "Batch"),
                lambda: bench(*load, "--mode", "decrement", "--batch", str(BATCH)), BATCH))
        return results
    finally:
        stockd.stop()


def wix_phases(work):
    """Wix calls (1 line, 8 at once) through the gateway: the instructions they cost stockd,
    then the instructions they cost the gateway (each measured in a run of its own)."""
    results = []
    for profiled in ("stockd", "stockd-gateway"):
        stockd = start_stockd(work, "wix-" + profiled, profiled == "stockd")
        gateway = None
        try:
            gateway = start_gateway(work, stockd.address, profiled == "stockd-gateway")
            counter = gateway_calls(gateway.metrics)
            target = stockd if profiled == "stockd" else gateway
            load = ["--stockd", stockd.address, "--mode", "wix", "--gateway", gateway.address,
                    "--key", os.path.join(work, "dev", "wix-private.pem"), "--connections", "8",
                    "--skus", "10000", "--lines-max", "1", "--duration", SECONDS,
                    "--warmup", "0s", "--seed=false"]
            results.append(target.phase("Wix call via the gateway: in %s" % profiled, counter,
                                        lambda: bench(*load)))
        finally:
            if gateway is not None:
                gateway.stop()
            stockd.stop()
    return results


def main():
    work = tempfile.mkdtemp(prefix="stockd-profile-")
    try:
        report(stockd_phases(work) + wix_phases(work))
    finally:
        if not os.environ.get("PROFILE_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept " + work)


def report(results):
    health = results[0]["ir"] / max(results[0]["calls"], 1)
    print("instructions per call (callgrind; stockbench --connections 1 --inflight 8, Wix: 8 "
          "connections; %s per phase)" % SECONDS)
    for r in results:
        per_call = r["ir"] / max(r["calls"], 1)
        print("  %-44s %9.0f   %5.2f x Health   (%d calls; +%.0f unstable)" % (
            r["label"], per_call, per_call / health, r["calls"],
            r["unstable"] / max(r["calls"], 1)))
    for r in results:
        print("\ntop functions, %s (instructions per call, self):" % r["label"])
        print("\n".join(top_functions(r["dump"], r["calls"])))


if __name__ == "__main__":
    main()
