#!/usr/bin/python3
"""Integration test of `make run` (scripts/run.sh) as a newcomer meets it.

Goal: the banner appears only once stockd and the gateway both listen, and its "try a Wix
order" recipe works as printed on a fresh store (200 {}); when either cannot start (its port is
taken, or the data directory is locked by another stockd) the reason is printed and the exit
status is non-zero; Ctrl-C stops both.
Method: run scripts/run.sh with every address on a free loopback port and every directory in a
temporary one (the STOCKD_* variables it honours), then run the banner's commands.
Usage: test_make_run.py SOURCE-DIR BUILD-DIR
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE, BUILD = sys.argv[1], sys.argv[2]
del sys.argv[1:3]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MakeRun(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="stockd-run-")
        self.grpc, self.http, self.metrics = free_port(), free_port(), free_port()
        self.env = dict(os.environ,
                        STOCKD_LISTEN="127.0.0.1:%d" % self.grpc,
                        STOCKD_DATA_DIR=os.path.join(self.dir, "data"),
                        STOCKD_METRICS_LISTEN="127.0.0.1:%d" % self.metrics,
                        STOCKD_GATEWAY_LISTEN="127.0.0.1:%d" % self.http,
                        STOCKD_GATEWAY_STOCKD="127.0.0.1:%d" % self.grpc,
                        STOCKD_GATEWAY_DEV_DIR=os.path.join(self.dir, "dev"),
                        STOCKD_ADDR="127.0.0.1:%d" % self.grpc,
                        STOCKD_WIX_PRIVATE_KEY=os.path.join(self.dir, "dev", "wix-private.pem"))

    def tearDown(self):
        subprocess.run(["rm", "-rf", self.dir])

    def run_script(self):
        return subprocess.Popen(["bash", os.path.join(SOURCE, "scripts/run.sh"), BUILD],
                                cwd=SOURCE, env=self.env, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)

    def read_until(self, proc, pattern, timeout=30):
        deadline, seen = time.time() + timeout, []
        while time.time() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if pattern in line:
                return "".join(seen)
        self.fail("%r not seen; got:\n%s" % (pattern, "".join(seen)))

    def interrupt(self, proc):
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)

    def test_banner_recipe_works_on_a_fresh_store(self):
        proc = self.run_script()
        try:
            text = self.read_until(proc, "Press Ctrl-C to stop.")
            self.assertIn('"event":"listening"', text)
            self.assertLess(text.rindex('"event":"listening"'), text.index("Try a Wix order"))
            self.assertEqual(text.count('"event":"listening"'), 2, text)
            commands = [line.strip() for line in text.splitlines()
                        if line.strip().startswith((BUILD + "/stockctl", "curl"))]
            self.assertEqual(len(commands), 4, text)
            # the recipe's relative paths are the repository's; its scratch file goes here
            commands = [c.replace(" examples/", " %s/examples/" % SOURCE) for c in commands]
            for command in commands[:-1]:
                subprocess.run(command, shell=True, check=True, cwd=self.dir, env=self.env,
                               stdout=subprocess.DEVNULL)
            out = subprocess.run(commands[-1], shell=True, cwd=self.dir, env=self.env,
                                 capture_output=True, text=True, check=True).stdout
            self.assertIn("HTTP/1.1 200", out)
            self.assertTrue(out.rstrip().endswith("{}"), out)
        finally:
            self.interrupt(proc)
        self.assertIn(proc.returncode, (0, 130))

    def test_port_taken_is_reported(self):
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", self.grpc))
            blocker.listen(1)
            proc = self.run_script()
            _, err = proc.communicate(timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("make run: stockd did not start", err)
        self.assertIn("listen_failed", err)
        self.assertNotIn("Press Ctrl-C", err)

    def test_locked_data_directory_is_reported(self):
        other = subprocess.Popen([os.path.join(BUILD, "stockd"), "--listen", "127.0.0.1:0",
                                  "--data-dir", self.env["STOCKD_DATA_DIR"]],
                                 stderr=subprocess.PIPE, text=True)
        try:
            while '"event":"listening"' not in other.stderr.readline():
                pass
            proc = self.run_script()
            _, err = proc.communicate(timeout=60)
        finally:
            other.terminate()
            other.wait(timeout=30)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("make run: stockd did not start", err)
        self.assertIn("lock", err.lower())
        self.assertNotIn("Press Ctrl-C", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
