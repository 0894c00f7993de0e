#!/usr/bin/python3
"""Integration test of the stockctl command line against the real stockd.

Goal: every stockctl subcommand does its job, prints tables or --json, and exits with the
documented codes (0 done, 1 refused, 2 invalid input, 3 unreachable); `export` then `import`
gives back every id stockd accepts byte for byte, and ids that could not round-trip (control
characters) are refused; `backup` writes a checkpoint that restores to exactly the state it
was taken at.
Method: start stockd on 127.0.0.1:0 in a temporary directory and run the stockctl binary.
Usage: test_stockctl.py BUILD-DIR
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BUILD = sys.argv[1]
del sys.argv[1:2]
STOCKCTL = os.path.join(BUILD, "stockctl")


def start_stockd(data_dir):
    proc = subprocess.Popen([os.path.join(BUILD, "stockd"), "--listen", "127.0.0.1:0",
                             "--data-dir", data_dir], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 15
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r'"event":"listening","address":"(127\.0\.0\.1:\d+)"', line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1)
    raise RuntimeError("stockd did not start")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


class Stockctl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="stockd-ctl-")
        cls.data = os.path.join(cls.dir, "data")
        cls.proc, cls.addr = start_stockd(cls.data)

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            assert stop(cls.proc) == 0
        shutil.rmtree(cls.dir, ignore_errors=True)

    def ctl(self, *args, addr=None):
        r = subprocess.run([STOCKCTL, "--stockd", addr or self.addr, "--tenant", "ctl", *args],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout, r.stderr

    def test_set_get_move_with_exit_codes(self):
        code, out, _ = self.ctl("set", "app", "sku-1", "5")
        self.assertEqual(code, 0)
        self.assertIn("AVAILABLE", out)
        code, out, _ = self.ctl("--json", "get", "app", "sku-1")
        self.assertEqual(code, 0)
        level = json.loads(out)[0]
        self.assertEqual((level["available"], level["version"], level["tracked"]), (5, 1, True))
        self.assertEqual(self.ctl("--restrict", "decrement", "app", "sku-1", "3")[0], 0)
        code, _, err = self.ctl("--restrict", "decrement", "app", "sku-1", "3")
        self.assertEqual(code, 1, "refused: insufficient stock")
        self.assertIn("FAILED_PRECONDITION", err)
        code, out, _ = self.ctl("--json", "--restrict", "decrement", "app", "sku-1", "3")
        self.assertEqual(json.loads(out)["error"]["code"], "FAILED_PRECONDITION")
        self.assertEqual(self.ctl("increment", "app", "sku-1", "10")[0], 0)
        self.assertEqual(json.loads(self.ctl("--json", "get", "app", "sku-1")[1])[0]["available"], 12)
        self.assertEqual(self.ctl("decrement", "app", "sku-1", "0")[0], 2, "invalid quantity")
        self.assertEqual(self.ctl("decrement", "app", "sku-1", "x")[0], 2, "not a number")
        self.assertEqual(self.ctl("get", "app")[0], 2, "missing argument")
        self.assertEqual(self.ctl("no-such-command")[0], 2)
        self.assertEqual(self.ctl("--variant", "L", "get", "app", "sku-1")[0], 0)
        # request ids make repeats safe
        self.assertEqual(self.ctl("--request-id", "r1", "decrement", "app", "sku-1", "1")[0], 0)
        self.assertEqual(self.ctl("--request-id", "r1", "decrement", "app", "sku-1", "1")[0], 0)
        self.assertEqual(json.loads(self.ctl("--json", "get", "app", "sku-1")[1])[0]["available"], 11)
        self.assertEqual(self.ctl("--request-id", "r1", "decrement", "app", "sku-1", "2")[0], 1)

    def test_health_and_unreachable(self):
        code, out, _ = self.ctl("health")
        self.assertEqual((code, out.strip()), (0, "SERVING"))
        code, _, err = self.ctl("--deadline-ms", "500", "health", addr="127.0.0.1:1")
        self.assertEqual(code, 3)
        self.assertIn("cannot reach stockd at 127.0.0.1:1: is it running?", err)

    def test_every_write_carries_a_request_id(self):
        """A write without --request-id gets a generated one (so a retry is safe), and when
        the outcome is unknown stockctl prints it with the retry to run."""
        self.assertEqual(self.ctl("--tenant", "rid", "--order-id", "o-rid", "increment", "app",
                                  "r", "2")[0], 0)
        code, out, _ = self.ctl("--tenant", "rid", "--json", "--order-id", "o-rid", "history")
        request_id = json.loads(out.splitlines()[0])["request_id"]
        self.assertRegex(request_id, r"^sc-[0-9a-f]{32}$")
        # unreachable: never sent, so no retry hint; a paused stockd: the outcome is unknown
        code, _, err = self.ctl("--deadline-ms", "500", "decrement", "app", "r", "1",
                                addr="127.0.0.1:1")
        self.assertEqual(code, 3)
        self.assertNotIn("may or may not", err)
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            code, _, err = self.ctl("--deadline-ms", "500", "--tenant", "rid", "decrement", "app",
                                    "r", "1")
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.assertEqual(code, 3)
        self.assertIn("DEADLINE_EXCEEDED", err)
        self.assertIn("may or may not have been applied", err)
        self.assertRegex(err, r"--request-id sc-[0-9a-f]{32}")

    def test_list_history_watch(self):
        for sku in ("l1", "l2", "l3"):
            self.assertEqual(self.ctl("--tenant", "lister", "set", "listapp", sku, "4")[0], 0)
        self.assertEqual(self.ctl("--tenant", "lister", "--order-id", "o-9", "decrement",
                                  "listapp", "l2", "1")[0], 0)
        code, out, _ = self.ctl("--tenant", "lister", "--json", "--page-size", "2", "list")
        self.assertEqual(code, 0)
        listed = [row for line in out.splitlines() for row in json.loads(line)]
        self.assertEqual(sorted(r["catalog_item_id"] for r in listed), ["l1", "l2", "l3"])
        code, out, _ = self.ctl("--tenant", "lister", "--json", "--order-id", "o-9", "history")
        entries = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([(e["op"], e["delta"], e["available_after"]) for e in entries],
                         [("DECREMENT", -1, 3)])
        code, out, _ = self.ctl("--tenant", "lister", "--json", "history", "listapp", "l2")
        self.assertEqual([json.loads(line)["op"] for line in out.splitlines()], ["SET", "DECREMENT"])
        code, out, _ = self.ctl("--tenant", "lister", "--json", "--count", "3", "watch")
        self.assertEqual(code, 0)
        seqs = [json.loads(line)["seq"] for line in out.splitlines()]
        self.assertEqual(len(seqs), 3)
        self.assertEqual(seqs, sorted(seqs))
        code, out, _ = self.ctl("--tenant", "lister", "list")
        self.assertIn("l3", out)

    def test_import_export_with_bad_rows_and_resume(self):
        csv_path = os.path.join(self.dir, "in.csv")
        with open(csv_path, "w") as f:
            f.write("location_id,app_id,catalog_item_id,variant,available,tracked,floor\n")
            for i in range(7):
                f.write(",imp,sku-%d,,%d,,\n" % (i, i * 10))
            f.write("north,imp,\"with,comma\",\"say \"\"hi\"\"\",5,false,-2\n")  # line 9
            f.write(",imp,,,5,,\n")                 # line 10: empty catalog_item_id
            f.write(",imp,sku-x,,many,,\n")         # line 11: not a number
            f.write(",imp,sku-1,,99,,\n")           # line 12: repeats line 3
            f.write(",imp,sku-y,,1\n")              # line 13: wrong column count
        code, out, err = self.ctl("--tenant", "imp", "--chunk-rows", "3", "import", csv_path)
        self.assertEqual(code, 2, err)
        for line in (10, 11, 12, 13):
            self.assertIn("line %d:" % line, err)
        self.assertIn("repeats the item of line 3", err)
        self.assertIn("8 rows applied in 3 chunks", err)
        level = json.loads(self.ctl("--tenant", "imp", "--json", "get", "imp", "sku-6")[1])[0]
        self.assertEqual(level["available"], 60)
        special = json.loads(self.ctl("--tenant", "imp", "--json", "--location", "north",
                                      "--variant", 'say "hi"', "get", "imp", "with,comma")[1])[0]
        self.assertEqual((special["available"], special["tracked"], special["floor"]), (5, False, -2))
        # running it again resumes: every chunk is recognised, nothing is applied twice
        self.assertEqual(self.ctl("--tenant", "imp", "set", "imp", "sku-0", "1000")[0], 0)
        code, out, err = self.ctl("--tenant", "imp", "--json", "--chunk-rows", "3", "import", csv_path)
        summary = json.loads(out.splitlines()[-1])
        self.assertEqual((summary["rows_applied"], summary["chunks_already_applied"]), (0, 3))
        level = json.loads(self.ctl("--tenant", "imp", "--json", "get", "imp", "sku-0")[1])[0]
        self.assertEqual(level["available"], 1000)
        # export writes the same format, and it imports back
        out_path = os.path.join(self.dir, "out.csv")
        self.assertEqual(self.ctl("--tenant", "imp", "export", out_path)[0], 0)
        with open(out_path) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "location_id,app_id,catalog_item_id,variant,available,tracked,floor")
        self.assertEqual(len(lines), 9)
        self.assertIn('north,imp,"with,comma","say ""hi""",5,false,-2', lines)
        code, _, err = self.ctl("--tenant", "copy", "import", out_path)
        self.assertEqual(code, 0, err)
        level = json.loads(self.ctl("--tenant", "copy", "--json", "get", "imp", "sku-0")[1])[0]
        self.assertEqual(level["available"], 1000)
        bad_header = os.path.join(self.dir, "bad.csv")
        with open(bad_header, "w") as f:
            f.write("sku,qty\n")
        self.assertEqual(self.ctl("import", bad_header)[0], 2)

    def test_export_import_round_trip_is_byte_exact(self):
        # ids with commas, quotes, spaces, non-ASCII and spreadsheet formula prefixes
        items = [
            ("", "app", "plain", ""),
            ("north,1", "app", 'say "hi", twice', 'opt="a,b"'),
            (" lead space", "app \u00e9\u20ac", "\U0001F4E6 box \u00fc", "trail "),
            ("=SUM(A1:A9)", "=app", "=1+1", "=x"),
            ("+41 22", "@app", "-sku", "@variant"),
            ('"', "app", '""', ","),
        ]
        source = os.path.join(self.dir, "ids.csv")
        with open(source, "w", encoding="utf-8", newline="") as f:
            f.write("location_id,app_id,catalog_item_id,variant,available,tracked,floor\n")
            for n, item in enumerate(items):
                quoted = ['"%s"' % p.replace('"', '""') for p in item]
                f.write("%s,%d,true,%d\n" % (",".join(quoted), n + 1, -n))
        code, _, err = self.ctl("--tenant", "rt1", "import", source)
        self.assertEqual(code, 0, err)

        def listed(tenant):
            code, out, err = self.ctl("--tenant", tenant, "--json", "list")
            self.assertEqual(code, 0, err)
            rows = [row for line in out.splitlines() for row in json.loads(line)]
            return sorted((r.get("location_id", ""), r.get("app_id", ""),
                           r.get("catalog_item_id", ""), r.get("variant", ""),
                           r["available"]) for r in rows)

        want = sorted(item + (n + 1,) for n, item in enumerate(items))
        self.assertEqual(listed("rt1"), want)
        # export rt1, import into rt2, export rt2: the same ids, and the same bytes
        first, second = (os.path.join(self.dir, name) for name in ("rt1.csv", "rt2.csv"))
        self.assertEqual(self.ctl("--tenant", "rt1", "export", first)[0], 0)
        code, _, err = self.ctl("--tenant", "rt2", "import", first)
        self.assertEqual(code, 0, err)
        self.assertEqual(listed("rt2"), want)
        self.assertEqual(self.ctl("--tenant", "rt2", "export", second)[0], 0)
        with open(first, "rb") as a, open(second, "rb") as b:
            exported = a.read()
            self.assertEqual(exported, b.read())
        self.assertEqual(exported.count(b"\n"), len(items) + 1, "one line per record")
        self.assertIn('"say ""hi"", twice"'.encode(), exported)
        self.assertIn("=SUM(A1:A9),=app,=1+1,=x,".encode(), exported, "written as stored")

    def test_control_characters_in_ids_are_refused(self):
        code, _, err = self.ctl("--tenant", "ctrl", "set", "app", "a\nb", "1")
        self.assertEqual(code, 2, err)
        self.assertIn("INVALID_ARGUMENT", err)
        self.assertIn("lines[0].item.catalog_item_id", err)
        for flag, field in (("--location", "location_id"), ("--variant", "variant")):
            code, _, err = self.ctl("--tenant", "ctrl", flag, "x\ty", "set", "app", "sku", "1")
            self.assertEqual(code, 2, err)
            self.assertIn("lines[0].item." + field, err)
        code, _, err = self.ctl("--tenant", "ctrl", "set", "app\x7f", "sku", "1")
        self.assertEqual(code, 2, err)
        self.assertIn("lines[0].item.app_id", err)
        # import reports them as bad rows by line and applies the rest
        path = os.path.join(self.dir, "ctrl.csv")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("location_id,app_id,catalog_item_id,variant,available\n")
            f.write(",app,good,,1\n")
            f.write(",app,tab\there,,1\n")        # line 3
            f.write(',app,"new\nline",,1\n')      # lines 4 and 5: a record is one line
        code, _, err = self.ctl("--tenant", "ctrl", "import", path)
        self.assertEqual(code, 2, err)
        for line in (3, 4, 5):
            self.assertIn("line %d:" % line, err)
        self.assertIn("1 rows applied", err)
        code, out, _ = self.ctl("--tenant", "ctrl", "--json", "list")
        self.assertEqual([r["catalog_item_id"] for line in out.splitlines()
                          for r in json.loads(line)], ["good"])

    def test_backup_and_restore(self):
        self.assertEqual(self.ctl("set", "app", "backup-me", "7")[0], 0)
        code, out, _ = self.ctl("--json", "backup", "nightly")
        self.assertEqual(code, 0, out)
        checkpoint = json.loads(out)["path"]
        self.assertTrue(os.path.isdir(checkpoint))
        self.assertEqual(self.ctl("backup", "nightly")[0], 1, "exists already")
        self.assertEqual(self.ctl("backup", "../escape")[0], 2)
        self.assertEqual(self.ctl("set", "app", "backup-me", "99")[0], 0)  # after the backup
        restored = os.path.join(self.dir, "restored")
        shutil.copytree(checkpoint, restored)
        proc, addr = start_stockd(restored)
        try:
            level = json.loads(self.ctl("--json", "get", "app", "backup-me", addr=addr)[1])[0]
            self.assertEqual(level["available"], 7)
        finally:
            self.assertEqual(stop(proc), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
