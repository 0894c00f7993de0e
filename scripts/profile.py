#!/usr/bin/python3
"""`make profile`: a deterministic cost meter. Runs stockd under valgrind's callgrind, drives
Health checks and durable 1-3-line decrements with stockbench (1 connection, 8 in flight), and
prints the instructions each call costs the server, with the functions that cost most.
Instruction counts do not depend on the machine's load, so they compare across changes where
timings cannot.

Method: before each phase callgrind's counters are zeroed (callgrind_control -z), after it they
are dumped (-d); the phase's calls are counted from stockd's own /metrics. callgrind acts on a
control command only when the program runs, so each command is sent in the background and
stockd is woken by a metrics request (its cost, a few hundred thousand instructions, is
negligible beside a phase's thousands of calls).
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


class Profiled:
    """stockd under callgrind; its counters zeroed and dumped on demand."""

    def __init__(self, work, args):
        self.out = os.path.join(work, "stockd.cg")
        self.log = os.path.join(work, "stockd.log")
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no",
             "--callgrind-out-file=" + self.out] + args,
            stderr=open(self.log, "w"))
        self.metrics = None

    def calls(self, method):
        """stockd_requests_total of one method (also wakes stockd up)."""
        text = urllib.request.urlopen(self.metrics, timeout=60).read().decode()
        pattern = r'stockd_requests_total\{method="%s",[^}]*\} (\S+)' % re.escape(method)
        return sum(float(v) for v in re.findall(pattern, text))

    def control(self, flag, method):
        """Sends a callgrind command and wakes stockd until it has been acted on."""
        command = subprocess.Popen(["callgrind_control", flag, str(self.proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while command.poll() is None and time.time() < deadline:
            self.calls(method)
            time.sleep(0.2)
        if command.poll() is None:
            command.kill()
            raise RuntimeError("callgrind_control %s did not finish" % flag)

    def phase(self, label, method, load):
        before_dumps = set(glob.glob(self.out + ".*"))
        self.control("-z", method)
        before = self.calls(method)
        load()
        calls = self.calls(method) - before
        self.control("-d", method)
        dump = (set(glob.glob(self.out + ".*")) - before_dumps).pop()
        return {"label": label, "calls": calls, "ir": instructions(dump), "dump": dump}

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)


def instructions(dump_path):
    with open(dump_path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in " + dump_path)


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


def main():
    work = tempfile.mkdtemp(prefix="stockd-profile-")
    stockd = None
    try:
        stockd = Profiled(work, [os.path.join(BUILD, "stockd"), "--listen", "127.0.0.1:0",
                                 "--data-dir", os.path.join(work, "data"),
                                 "--metrics-listen", "127.0.0.1:0"])
        addr = wait_for(stockd.log, r'"event":"listening","address":"(127\.0\.0\.1:\d+)"').group(1)
        port = wait_for(stockd.log, r'"event":"metrics_listening".*"port":(\d+)').group(1)
        stockd.metrics = "http://127.0.0.1:%s/metrics" % port
        load = ["--stockd", addr, "--connections", "1", "--inflight", "8", "--threads", "1",
                "--skus", "10000", "--lines-min", "1", "--lines-max", "3",
                "--duration", SECONDS, "--warmup", "0s", "--seed=false"]
        # every SKU set once, unmeasured (SetStock), so decrements find stock
        bench("--stockd", addr, "--mode", "decrement", "--duration", "1s", "--warmup", "0s",
              "--connections", "1", "--inflight", "1", "--threads", "1")
        results = [
            stockd.phase("Health/Check", "Health.Check",
                         lambda: bench(*load, "--mode", "health")),
            stockd.phase("Decrement, 1-3 lines, durable", "Decrement",
                         lambda: bench(*load, "--mode", "decrement")),
        ]
        report(results)
    finally:
        if stockd is not None:
            stockd.stop()
        if not os.environ.get("PROFILE_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("kept " + work)


def report(results):
    health = results[0]["ir"] / max(results[0]["calls"], 1)
    print("stockd instructions per call (callgrind; stockbench --connections 1 --inflight 8, "
          "%s per phase)" % SECONDS)
    for r in results:
        per_call = r["ir"] / max(r["calls"], 1)
        print("  %-34s %9.0f   %5.2f x Health   (%d calls)" % (
            r["label"], per_call, per_call / health, r["calls"]))
    for r in results:
        print("\ntop functions, %s (instructions per call, self):" % r["label"])
        print("\n".join(top_functions(r["dump"], r["calls"])))


if __name__ == "__main__":
    main()
