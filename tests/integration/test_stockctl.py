#!/usr/bin/python3
"""Integration test of the stockctl command line against the real stockd.

Goal: every stockctl subcommand does its job, prints tables or --json, and exits with the
documented codes (0 done, 1 refused, 2 invalid input, 3 unreachable, 5 get of an item never
set); `list` prints one listing across pages (one table header, one JSON document); `watch`
starts from now unless told to replay, and `seq` shows where now is; `history` shows who and
when; help is there for every command; imports take what spreadsheets write (a UTF-8 BOM, CRLF,
quoted fields, TRUE/FALSE, empty rows); `export` then `import` gives back every id stockd
accepts byte for byte, and ids that could not round-trip (control characters) are refused;
`backup` (on stockd's admin listener) writes a checkpoint that restores to exactly the state it
was taken at, `backup list` shows them ("N of MAX"), `backup remove` deletes one; history and
watch show who made each change (ACTOR, ON BEHALF OF).
Every client speaks docs/api.md §6 (stockctl, stockbench, stockd-gateway): TLS with a CA, a
client certificate, a bearer token (--token, --token-file) sent as `authorization: Bearer`,
and the gateway's `stockd-on-behalf-of: wix-instance:<instanceId>`; bad TLS files and tokens
are refused before anything is sent; UNAUTHENTICATED and PERMISSION_DENIED say what to do.
Method: start stockd on 127.0.0.1:0 in a temporary directory and run the stockctl binary. What
a client sends is checked against a stand-in server (Python grpcio, an independent gRPC
stack) that records each call's metadata and TLS peer; the same clients then talk to the real
stockd serving TLS with a policy file. Certificates are made at test time with openssl.
Usage: test_stockctl.py BUILD-DIR
"""
import hashlib
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
import urllib.error
import urllib.request
from concurrent import futures

import grpc

BUILD = sys.argv[1]
del sys.argv[1:2]
STOCKCTL = os.path.join(BUILD, "stockctl")
STOCKBENCH = os.path.join(BUILD, "stockbench")
GATEWAY = os.path.join(BUILD, "stockd-gateway")
LISTENING = r'"event":"listening","address":"(127\.0\.0\.1:\d+)"'
ADMIN_LISTENING = r'"event":"admin[a-z_]*listening","address":"(127\.0\.0\.1:\d+)"'


def start_stockd(data_dir, *options, admin=False):
    """Starts stockd; returns (process, address), or (process, address, admin address) with
    admin (then options must hold --admin-listen)."""
    proc = subprocess.Popen([os.path.join(BUILD, "stockd"), "--listen", "127.0.0.1:0",
                             "--data-dir", data_dir, *options], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 15
    addr = admin_addr = None
    while time.time() < deadline and (addr is None or (admin and admin_addr is None)):
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(LISTENING, line)
        addr = m.group(1) if m else addr
        m = re.search(ADMIN_LISTENING, line)
        admin_addr = m.group(1) if m else admin_addr
    if addr is None or (admin and admin_addr is None):
        proc.kill()
        raise RuntimeError("stockd did not start (admin listener: %s)" % admin)
    threading.Thread(target=drain, args=(proc,), daemon=True).start()
    return (proc, addr, admin_addr) if admin else (proc, addr)


def drain(proc, log=None):
    """Reads a child's stderr to its end (so a full pipe never blocks it), into log if any."""
    with proc.stderr:
        for line in proc.stderr:
            if log is not None:
                log.write(line)
    if log is not None:
        log.close()


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
        self.assertEqual(self.ctl("--variant", "L", "get", "app", "sku-1")[0], 5, "never set")
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

    def test_reimport_resumes_unless_named_afresh(self):
        """Importing the same file again resumes it (nothing applied twice) and says how to
        apply it again; naming the run (--request-id) applies it afresh, as a new recount."""
        path = os.path.join(self.dir, "recount.csv")
        with open(path, "w") as f:
            f.write("location_id,app_id,catalog_item_id,variant,available,tracked,floor\n"
                    ",app,recount-1,,7,,\n")
        self.assertEqual(self.ctl("--tenant", "re", "import", path)[0], 0)
        self.assertEqual(self.ctl("--tenant", "re", "decrement", "app", "recount-1", "5")[0], 0)
        code, _, err = self.ctl("--tenant", "re", "import", path)
        self.assertEqual(code, 0)
        self.assertIn("--request-id NAME", err)
        level = json.loads(self.ctl("--tenant", "re", "--json", "get", "app", "recount-1")[1])[0]
        self.assertEqual(level["available"], 2)  # resumed: not applied again
        self.assertEqual(self.ctl("--tenant", "re", "--request-id", "recount-2", "import",
                                  path)[0], 0)
        level = json.loads(self.ctl("--tenant", "re", "--json", "get", "app", "recount-1")[1])[0]
        self.assertEqual(level["available"], 7)  # a named run applies the file again

    def test_import_sends_chunks_together_each_standing_alone(self):
        """Chunks travel in Batch calls: a chunk refused by stockd does not stop the chunks
        beside it in the same Batch, and every refused chunk is named."""
        first = os.path.join(self.dir, "batch-a.csv")
        second = os.path.join(self.dir, "batch-b.csv")
        rows = ["location_id,app_id,catalog_item_id,variant,available"]
        with open(first, "w") as f:
            f.write("\n".join(rows + [",app,b%d,,%d" % (i, i) for i in range(4)]) + "\n")
        with open(second, "w") as f:  # rows 1 and 3 differ: their chunk ids were used already
            f.write("\n".join(rows + [",app,b%d,,%d" % (i, i + (i % 2) * 10)
                                      for i in range(4)]) + "\n")
        args = ("--tenant", "bt", "--request-id", "same-run", "--chunk-rows", "1", "import")
        self.assertEqual(self.ctl(*args, first)[0], 0)
        code, _, err = self.ctl(*args, second)
        self.assertNotEqual(code, 0)
        self.assertIn("chunk import:same-run:1:1 failed: ALREADY_EXISTS", err)
        self.assertIn("chunk import:same-run:1:3 failed: ALREADY_EXISTS", err)
        levels = json.loads(self.ctl("--tenant", "bt", "--json", "list")[1])
        self.assertEqual(sorted(l["available"] for l in levels), [0, 1, 2, 3])

    def test_import_of_a_chunk_larger_than_a_batch_sends_it_alone(self):
        """A chunk bigger than a Batch may carry (1 MiB: 8192 rows of long ids) goes as a lone
        SetStock instead of failing for good (review finding)."""
        path = os.path.join(self.dir, "wide.csv")
        with open(path, "w") as f:
            f.write("location_id,app_id,catalog_item_id,variant,available\n")
            for i in range(8192):
                f.write(",app,%s-%05d,,1\n" % ("w" * 150, i))
        code, _, err = self.ctl("--tenant", "wide", "--chunk-rows", "8192", "import", path)
        self.assertEqual(code, 0, err)
        self.assertIn("8192 rows applied in 1 chunks", err)

    def test_list_default_location_only(self):
        self.assertEqual(self.ctl("--tenant", "dl", "set", "app", "here", "1")[0], 0)
        self.assertEqual(self.ctl("--tenant", "dl", "--location", "far", "set", "app", "there",
                                  "1")[0], 0)
        code, out, _ = self.ctl("--tenant", "dl", "--json", "--default-location", "list")
        self.assertEqual(code, 0)
        self.assertEqual([r["catalog_item_id"] for r in json.loads(out)], ["here"])
        code, out, _ = self.ctl("--tenant", "dl", "--json", "list")
        self.assertEqual(sorted(r["catalog_item_id"] for r in json.loads(out)), ["here", "there"])

    def test_list_history_watch(self):
        for sku in ("l1", "l2", "l3"):
            self.assertEqual(self.ctl("--tenant", "lister", "set", "listapp", sku, "4")[0], 0)
        self.assertEqual(self.ctl("--tenant", "lister", "--order-id", "o-9", "decrement",
                                  "listapp", "l2", "1")[0], 0)
        code, out, _ = self.ctl("--tenant", "lister", "--json", "--page-size", "2", "list")
        self.assertEqual(code, 0)
        listed = json.loads(out)  # one document across both pages
        self.assertEqual(sorted(r["catalog_item_id"] for r in listed), ["l1", "l2", "l3"])
        code, out, _ = self.ctl("--tenant", "lister", "--json", "--order-id", "o-9", "history")
        entries = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([(e["op"], e["delta"], e["available_after"]) for e in entries],
                         [("DECREMENT", -1, 3)])
        code, out, _ = self.ctl("--tenant", "lister", "--json", "history", "listapp", "l2")
        self.assertEqual([json.loads(line)["op"] for line in out.splitlines()], ["SET", "DECREMENT"])
        code, out, _ = self.ctl("--tenant", "lister", "--json", "--count", "3", "--from-start",
                                "watch")
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
            rows = json.loads(out)
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
        self.assertEqual([r["catalog_item_id"] for r in json.loads(out)], ["good"])

    # ---- list: one listing across pages ----

    def write_csv(self, name, text, encoding="utf-8"):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding=encoding, newline="") as f:
            f.write(text)
        return path

    def test_list_is_one_listing_across_pages(self):
        """1500 items over 3 pages: one table header with fixed columns, one JSON array; a
        filter that matches nothing is one empty listing."""
        rows = ["location_id,app_id,catalog_item_id,variant,available"]
        rows += [",big,sku-%05d,,%d" % (i, i) for i in range(1500)]
        rows.append(",big,%s,,7" % ("w" * 40))  # wider than the first page's ids: printed whole
        path = self.write_csv("big.csv", "\n".join(rows) + "\n")
        code, _, err = self.ctl("--tenant", "big", "import", path)
        self.assertEqual(code, 0, err)
        code, out, err = self.ctl("--tenant", "big", "--json", "--page-size", "500", "list")
        self.assertEqual(code, 0, err)
        listed = json.loads(out)  # the whole output is one JSON document
        self.assertEqual(len(listed), 1501)
        self.assertEqual(len({r["catalog_item_id"] for r in listed}), 1501)
        self.assertTrue(all(r["exists"] for r in listed))
        code, out, err = self.ctl("--tenant", "big", "--json", "list")  # pages of 1000
        self.assertEqual((code, len(json.loads(out))), (0, 1501), err)
        code, out, err = self.ctl("--tenant", "big", "--page-size", "500", "list")
        self.assertEqual(code, 0, err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 1502)
        self.assertEqual(sum("AVAILABLE" in line for line in lines), 1, "one header")
        self.assertTrue(lines[0].startswith("LOCATION"))
        # the column widths are fixed: every row of regular ids lines up with the header
        end = lines[0].index("AVAILABLE") + len("AVAILABLE")
        regular = [line for line in lines[1:] if "sku-" in line]
        self.assertEqual(len(regular), 1500)
        for line in regular:
            self.assertRegex(line[:end], r" \d+$")
        self.assertIn("w" * 40, out)
        # --count stops inside a page and still closes the document
        code, out, _ = self.ctl("--tenant", "big", "--json", "--page-size", "500", "--count",
                                "501", "list")
        self.assertEqual((code, len(json.loads(out))), (0, 501))
        # nothing matches: one empty listing
        code, out, err = self.ctl("--tenant", "big", "--json", "--app", "no-such-app", "list")
        self.assertEqual((code, json.loads(out)), (0, []), err)
        code, out, _ = self.ctl("--tenant", "big", "--app", "no-such-app", "list")
        self.assertEqual(code, 0)
        self.assertEqual(len(out.splitlines()), 1)
        self.assertTrue(out.startswith("LOCATION"))
        code, out, _ = self.ctl("--tenant", "nobody-here", "--json", "list")
        self.assertEqual((code, json.loads(out)), (0, []))

    # ---- watch from now, seq, get of an item never set ----

    def start_watch(self, tenant, *args):
        proc = subprocess.Popen([STOCKCTL, "--stockd", self.addr, "--tenant", tenant, "--json",
                                 *args, "watch"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        m = re.search(r"watching tenant \S+ after ledger seq (\d+)", line)
        if m is None:
            proc.kill()
            self.fail("watch did not start: %r" % line)
        return proc, int(m.group(1))

    def test_watch_starts_from_now_and_seq_shows_now(self):
        tenant = "watcher"
        code, out, _ = self.ctl("--tenant", tenant, "seq")
        self.assertEqual((code, out), (0, "0\n"), "no ledger yet")
        for sku in ("w1", "w2", "w3"):
            self.assertEqual(self.ctl("--tenant", tenant, "set", "app", sku, "1")[0], 0)
            # another tenant's writes in between: seqs are shared, each tenant sees its own
            self.assertEqual(self.ctl("--tenant", "noise", "set", "app", sku, "1")[0], 0)
        code, out, _ = self.ctl("--tenant", tenant, "--json", "history")
        seqs = [json.loads(line)["seq"] for line in out.splitlines()]
        code, out, _ = self.ctl("--tenant", tenant, "--json", "seq")
        self.assertEqual(json.loads(out), {"tenant_id": tenant, "ledger_seq": seqs[-1]})
        self.assertEqual(self.ctl("--tenant", tenant, "seq")[1], "%d\n" % seqs[-1])
        # by default a watch shows only what happens after it starts
        proc, start = self.start_watch(tenant, "--count", "1")
        self.assertEqual(start, seqs[-1])
        self.assertEqual(self.ctl("--tenant", tenant, "increment", "app", "w4", "2")[0], 0)
        out, _ = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0)
        entries = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([(e["catalog_item_id"], e["delta"]) for e in entries], [("w4", 2)])
        self.assertEqual((entries[0]["actor"], entries[0]["on_behalf_of"]), ("", ""))
        self.assertGreater(entries[0]["seq"], start)
        # replays: --from-start, --from-seq N (N included), --after-seq N (after N)
        code, out, _ = self.ctl("--tenant", tenant, "--json", "--from-start", "--count", "2",
                                "watch")
        self.assertEqual([json.loads(line)["seq"] for line in out.splitlines()], seqs[:2])
        code, out, _ = self.ctl("--tenant", tenant, "--json", "--from-seq", str(seqs[1]),
                                "--count", "1", "watch")
        self.assertEqual(json.loads(out)["seq"], seqs[1])
        code, out, _ = self.ctl("--tenant", tenant, "--json", "--after-seq", str(seqs[1]),
                                "--count", "1", "watch")
        self.assertEqual(json.loads(out)["seq"], seqs[2])
        code, out, _ = self.ctl("--tenant", tenant, "--json", "--from-seq", str(seqs[2]),
                                "history")
        self.assertEqual(json.loads(out.splitlines()[0])["seq"], seqs[2])
        code, out, _ = self.ctl("--json", "--from-start", "--from-seq", "3", "watch")
        self.assertEqual(code, 2)
        self.assertEqual(json.loads(out)["error"]["code"], "INVALID_ARGUMENT")
        self.assertEqual(self.ctl("--from-seq", "x", "history")[0], 2)

    def test_seq_of_a_large_ledger(self):
        """The current seq is found with a handful of History calls, past other tenants."""
        rows = ["location_id,app_id,catalog_item_id,variant,available"]
        rows += [",app,s%d,,1" % i for i in range(3000)]
        path = self.write_csv("seq.csv", "\n".join(rows) + "\n")
        self.assertEqual(self.ctl("--tenant", "seq-big", "--chunk-rows", "7", "import", path)[0], 0)
        self.assertEqual(self.ctl("--tenant", "seq-big", "set", "app", "last", "1")[0], 0)
        self.assertEqual(self.ctl("--tenant", "seq-other", "set", "app", "x", "1")[0], 0)
        code, out, _ = self.ctl("--tenant", "seq-big", "--json", "--from-seq", "0", "history")
        last = json.loads(out.splitlines()[-1])
        self.assertEqual(last["catalog_item_id"], "last")
        self.assertEqual(self.ctl("--tenant", "seq-big", "seq")[1], "%d\n" % last["seq"])

    def test_get_of_an_item_never_set(self):
        code, out, _ = self.ctl("--tenant", "nev", "get", "app", "ghost")
        self.assertEqual(code, 5)
        self.assertIn("(never set)", out)
        code, out, _ = self.ctl("--tenant", "nev", "--json", "get", "app", "ghost")
        self.assertEqual(code, 5)
        level = json.loads(out)[0]
        self.assertEqual((level["exists"], level["version"], level["available"]), (False, 0, 0))
        # a level set to 0 exists
        self.assertEqual(self.ctl("--tenant", "nev", "set", "app", "zero", "0")[0], 0)
        code, out, _ = self.ctl("--tenant", "nev", "--json", "get", "app", "zero")
        self.assertEqual((code, json.loads(out)[0]["exists"]), (0, True))
        code, out, _ = self.ctl("--tenant", "nev", "get", "app", "zero")
        self.assertNotIn("never set", out)

    # ---- help, JSON errors, history for people ----

    COMMANDS = ("health", "get", "set", "decrement", "increment", "list", "history", "watch",
                "seq", "import", "export", "backup", "wix-sign", "help")

    def test_help_for_every_command(self):
        r = subprocess.run([STOCKCTL, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        for command in self.COMMANDS:
            self.assertRegex(r.stdout, r"\n  %s\b" % re.escape(command))
        self.assertIn("exit codes", r.stdout)
        for command in self.COMMANDS:
            pages = []
            for argv in (["help", command], [command, "--help"], ["--json", command, "-h"]):
                r = subprocess.run([STOCKCTL, *argv], capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, (argv, r.stderr))
                pages.append(r.stdout)
            self.assertEqual(len(set(pages)), 1, command)
            page = pages[0]
            self.assertTrue(page.startswith("usage: stockctl [options] %s" % command), page)
            self.assertIn("exit codes:\n  0  ", page)
        for command in ("import", "export"):
            page = subprocess.run([STOCKCTL, "help", command], capture_output=True,
                                  text=True).stdout
            for column in ("location_id", "app_id", "catalog_item_id", "variant", "available",
                           "tracked", "floor"):
                self.assertRegex(page, r"\n  %s +\S" % column)
            self.assertIn("true or false", page)
            self.assertIn("byte order mark", page)
        self.assertIn("  5  ", subprocess.run([STOCKCTL, "help", "get"], capture_output=True,
                                              text=True).stdout)
        r = subprocess.run([STOCKCTL, "help", "no-such"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)

    def test_json_errors_have_one_shape(self):
        cases = [
            (("get", "app"), 2, "INVALID_ARGUMENT"),                # missing argument
            (("decrement", "app", "x", "many"), 2, "INVALID_ARGUMENT"),
            (("no-such-command",), 2, "INVALID_ARGUMENT"),
            (("--tracked", "true", "--floor", "1.5", "set", "app", "x", "1"), 2,
             "INVALID_ARGUMENT"),
            (("set", "app", "x", "9999999999999999"), 2, "OUT_OF_RANGE"),  # refused by stockd
            (("--restrict", "decrement", "app", "nothing-here", "1"), 1, "FAILED_PRECONDITION"),
            (("import", os.path.join(self.dir, "missing.csv")), 2, "INVALID_ARGUMENT"),
        ]
        for args, exit_code, name in cases:
            code, out, _ = self.ctl("--tenant", "jerr", "--json", *args)
            self.assertEqual(code, exit_code, args)
            error = json.loads(out)["error"]
            self.assertEqual(error["code"], name, args)
            self.assertTrue(error["message"], args)
        code, out, _ = self.ctl("--json", "--deadline-ms", "500", "list", addr="127.0.0.1:1")
        self.assertEqual(code, 3)
        self.assertEqual(json.loads(out)["error"]["code"], "UNAVAILABLE")
        # a write whose outcome is unknown carries the request_id to retry with
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            code, out, _ = self.ctl("--json", "--deadline-ms", "500", "--tenant", "jerr",
                                    "increment", "app", "r", "1")
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.assertEqual(code, 3)
        error = json.loads(out)["error"]
        self.assertEqual(error["code"], "DEADLINE_EXCEEDED")
        self.assertRegex(error["request_id"], r"^sc-[0-9a-f]{32}$")

    def test_history_table_says_when_where_and_who(self):
        tenant = "hist"
        self.assertEqual(self.ctl("--tenant", tenant, "--location", "north", "set", "app",
                                  "h1", "5")[0], 0)
        self.assertEqual(self.ctl("--tenant", tenant, "--location", "north", "--order-id",
                                  "order-77", "--request-id", "req-77", "decrement", "app",
                                  "h1", "2")[0], 0)
        code, out, _ = self.ctl("--tenant", tenant, "history")
        self.assertEqual(code, 0)
        lines = out.splitlines()
        self.assertEqual(len(lines), 3)
        for column in ("SEQ", "TIME (UTC)", "OP", "LOCATION", "APP", "ITEM", "DELTA",
                       "AVAILABLE", "REASON", "ORDER", "ACTOR", "REQUEST", "ON BEHALF OF"):
            self.assertIn(column, lines[0])
        self.assertRegex(lines[2], r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
        for text in ("north", "DECREMENT", "-2", "order-77", "req-77", "CORRECTION"):
            self.assertIn(text, lines[2])
        # the columns of every row start where the header's do
        start = lines[0].index("ORDER")
        self.assertEqual(lines[2].index("order-77"), start)
        # a loopback caller without a policy has no identity: ACTOR "-", no ON BEHALF OF
        self.assertEqual(lines[2][lines[0].index("ACTOR"):].split()[:2], ["-", "req-77"])
        self.assertEqual(lines[2], lines[2].rstrip(), "no trailing blanks")
        code, out, _ = self.ctl("--tenant", tenant, "--json", "history")
        entry = json.loads(out.splitlines()[1])
        self.assertEqual((entry["location_id"], entry["order_id"], entry["request_id"]),
                         ("north", "order-77", "req-77"))
        self.assertEqual((entry["actor"], entry["on_behalf_of"]), ("", ""))
        self.assertRegex(entry["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        code, out, _ = self.ctl("--tenant", tenant, "--order-id", "none", "history")
        self.assertEqual((code, len(out.splitlines())), (0, 1), "nothing: the header alone")

    # ---- what spreadsheets write, and set without a CSV ----

    def imported(self, tenant, item, variant=""):
        code, out, _ = self.ctl("--tenant", tenant, "--json", "--variant", variant, "get",
                                "app", item)
        level = json.loads(out)[0]
        return level["available"], level["tracked"], level["floor"]

    def test_import_takes_what_spreadsheets_write(self):
        header = "location_id,app_id,catalog_item_id,variant,available,tracked,floor"
        cases = {
            "bom": "\ufeff" + header + "\n,app,bom-1,,3,,\n",
            "crlf": header + "\r\n,app,crlf-1,,4,false,\r\n,app,crlf-2,,5,,-1\r\n",
            "quoted": '"location_id","app_id","catalog_item_id","variant","available",'
                      '"tracked","floor"\n"","app","q,1","say ""hi""","6","true","2"\n',
            # Excel's "CSV UTF-8": all of it, TRUE/FALSE, and empty rows as commas
            "excel": "\ufeff" + header + "\r\n,app,xl-1,,7,TRUE,1\r\n,,,,,,\r\n"
                     ",app,xl-2,,8,FALSE,\r\n,,,,,,\r\n",
        }
        for name, text in cases.items():
            path = self.write_csv(name + ".csv", text)
            code, out, err = self.ctl("--tenant", "sheet", "--json", "import", path)
            self.assertEqual(code, 0, (name, out, err))
            self.assertEqual(json.loads(out.splitlines()[-1])["bad_rows"], 0, name)
        self.assertEqual(self.imported("sheet", "bom-1"), (3, True, 0))
        self.assertEqual(self.imported("sheet", "crlf-1"), (4, False, 0))
        self.assertEqual(self.imported("sheet", "crlf-2"), (5, True, -1))
        self.assertEqual(self.imported("sheet", "q,1", 'say "hi"'), (6, True, 2))
        self.assertEqual(self.imported("sheet", "xl-1"), (7, True, 1))
        self.assertEqual(self.imported("sheet", "xl-2"), (8, False, 0))
        # a CR inside a line is not a line end: the row is refused, not cut short
        path = self.write_csv("cr.csv", header + "\n,app,cr-1,,9,,5\r7\n")
        code, _, err = self.ctl("--tenant", "sheet", "import", path)
        self.assertEqual(code, 2, err)
        self.assertIn("line 2: floor", err)
        # UTF-16 (Excel's "Unicode text") is named
        path = self.write_csv("utf16.csv", header + "\n", encoding="utf-16")
        code, _, err = self.ctl("--tenant", "sheet", "import", path)
        self.assertEqual(code, 2)
        self.assertIn("UTF-16", err)

    def test_set_tracked_and_floor(self):
        t = ("--tenant", "setflags")
        code, out, _ = self.ctl(*t, "--json", "--tracked", "false", "--floor", "-4", "set",
                                "app", "f1", "2")
        self.assertEqual(code, 0)
        self.assertEqual(self.imported("setflags", "f1"), (2, False, -4))
        # not given: kept
        self.assertEqual(self.ctl(*t, "set", "app", "f1", "3")[0], 0)
        self.assertEqual(self.imported("setflags", "f1"), (3, False, -4))
        self.assertEqual(self.ctl(*t, "--tracked", "true", "--floor", "2", "set", "app", "f1",
                                  "3")[0], 0)
        self.assertEqual(self.imported("setflags", "f1"), (3, True, 2))
        # the floor is the one a restricted decrement respects
        self.assertEqual(self.ctl(*t, "--restrict", "decrement", "app", "f1", "2")[0], 1)
        self.assertEqual(self.ctl(*t, "--restrict", "decrement", "app", "f1", "1")[0], 0)
        self.assertEqual(self.ctl(*t, "--tracked", "maybe", "set", "app", "f1", "1")[0], 2)
        self.assertEqual(self.ctl(*t, "--floor", "low", "set", "app", "f1", "1")[0], 2)
        self.assertEqual(self.imported("setflags", "f1"), (2, True, 2))

# ---- backups: stockd's admin listener ----

class Backups(unittest.TestCase):
    """backup NAME / backup list / backup remove NAME go to --admin (stockd's --admin-listen),
    never to --stockd."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="stockd-ctl-admin-")
        cls.proc, cls.addr, cls.admin = start_stockd(
            os.path.join(cls.dir, "data"), "--admin-listen", "127.0.0.1:0",
            "--checkpoint-interval", "0", admin=True)

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            assert stop(cls.proc) == 0
        shutil.rmtree(cls.dir, ignore_errors=True)

    def ctl(self, *args, admin=None, addr=None, env=None):
        r = subprocess.run([STOCKCTL, "--stockd", addr or self.addr, "--tenant", "ctl",
                            *(["--admin", admin or self.admin] if admin != "" else []), *args],
                           capture_output=True, text=True, timeout=60, env=env)
        return r.returncode, r.stdout, r.stderr

    def test_backup_and_restore(self):
        self.assertEqual(self.ctl("set", "app", "backup-me", "7")[0], 0)
        code, out, err = self.ctl("--json", "backup", "nightly")
        self.assertEqual(code, 0, err)
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

    def listed(self):
        code, out, err = self.ctl("--json", "backup", "list")
        self.assertEqual(code, 0, err)
        listing = json.loads(out)
        self.assertEqual(listing["count"], len(listing["checkpoints"]))
        self.assertGreaterEqual(listing["checkpoints_max"], listing["count"])
        return listing

    def test_backup_list_and_remove(self):
        for name in ("b-one", "b-two"):
            self.assertEqual(self.ctl("backup", name)[0], 0)
        listing = self.listed()
        by_name = {c["name"]: c for c in listing["checkpoints"]}
        for name in ("b-one", "b-two"):
            entry = by_name[name]
            self.assertTrue(entry["path"].endswith("/" + name), entry)
            self.assertEqual(entry["created"], time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(entry["created_unix_seconds"])))
            self.assertLess(abs(entry["created_unix_seconds"] - time.time()), 120)
        # for people: NAME CREATED (UTC) PATH, then "N of MAX checkpoints"
        code, out, _ = self.ctl("backup", "list")
        lines = out.splitlines()
        self.assertEqual(code, 0)
        self.assertEqual(lines[0].split(), ["NAME", "CREATED", "(UTC)", "PATH"])
        row = [line for line in lines if line.startswith("b-one ")][0]
        self.assertEqual(row.split()[1:], [by_name["b-one"]["created"], by_name["b-one"]["path"]])
        self.assertEqual(lines[-1], "%d of %d checkpoints" % (listing["count"],
                                                             listing["checkpoints_max"]))
        # remove: gone from the list and from the disk; a second time: no such checkpoint
        code, out, _ = self.ctl("--json", "backup", "remove", "b-one")
        self.assertEqual((code, json.loads(out)), (0, {"name": "b-one", "removed": True}))
        self.assertFalse(os.path.exists(by_name["b-one"]["path"]))
        self.assertNotIn("b-one", [c["name"] for c in self.listed()["checkpoints"]])
        code, _, err = self.ctl("backup", "remove", "b-one")
        self.assertEqual(code, 1)
        self.assertIn("NOT_FOUND", err)
        code, out, _ = self.ctl("backup", "remove", "b-two")
        self.assertEqual((code, out), (0, "checkpoint b-two removed\n"))

    def test_backup_words_list_and_remove_are_reserved(self):
        for args in (("backup",), ("backup", "list", "x"), ("backup", "remove"),
                     ("backup", "remove", "a", "b"), ("backup", "a", "b")):
            code, out, _ = self.ctl("--json", *args)
            self.assertEqual(code, 2, args)
            self.assertEqual(json.loads(out)["error"]["code"], "INVALID_ARGUMENT", args)
        self.assertNotIn("list", [c["name"] for c in self.listed()["checkpoints"]])
        page = subprocess.run([STOCKCTL, "help", "backup"], capture_output=True, text=True).stdout
        self.assertIn("reserved", page)
        self.assertIn("--admin", page)

    def test_admin_commands_go_to_the_admin_address(self):
        # the main port does not serve Admin
        code, _, err = self.ctl("backup", "list", admin=self.addr)
        self.assertEqual(code, 4)
        self.assertIn("UNIMPLEMENTED", err)
        self.assertIn("--admin-listen", err)
        # nothing listening there: say where it looked and what serves Admin
        code, _, err = self.ctl("--deadline-ms", "500", "backup", "list", admin="127.0.0.1:1")
        self.assertEqual(code, 3)
        self.assertIn("admin listener at 127.0.0.1:1", err)
        self.assertIn("--admin-listen", err)
        code, out, _ = self.ctl("--json", "--deadline-ms", "500", "backup", "list",
                                admin="127.0.0.1:1")
        self.assertEqual((code, json.loads(out)["error"]["code"]), (3, "UNAVAILABLE"))
        # the environment names it too
        env = dict(os.environ, STOCKD_ADMIN_ADDR=self.admin)
        code, out, _ = self.ctl("--json", "backup", "list", admin="", env=env)
        self.assertEqual(code, 0)
        self.assertIn("checkpoints_max", json.loads(out))


# ---- every client speaks docs/api.md §6 ----

def make_pki(directory):
    """A CA, stockd's certificate (for 127.0.0.1 and localhost) and a client certificate (CN and
    DNS name "ops-client") signed by it, and a second CA that signed neither. The keys are made
    here, in the test's temporary directory, and go with it."""
    os.makedirs(directory)

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "1",
                "-subj", "/CN=" + ca)
    for name, cn, san in (("server", "localhost", "IP:127.0.0.1,DNS:localhost"),
                          ("client", "ops-client", "DNS:ops-client")):
        openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn)
        with open(os.path.join(directory, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\n" % san)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "1", "-extfile", name + ".ext")
    return {name: os.path.join(directory, name) for name in
            ("ca.pem", "other-ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def write_secret(path, text):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    return path


class FakeStockd(grpc.GenericRpcHandler):
    """Stands in for stockd where what matters is what a client sends: records each call's
    method, request metadata and TLS peer name, and answers OK with an empty message
    (Health/Check: SERVING; Watch: an empty stream), or with `refuse` = (code, message)."""

    def __init__(self, pki=None, client_auth=False):
        self.calls = []
        self.refuse = None
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((self,))
        if pki is None:
            port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials(
                [(read_bytes(pki["server.key"]), read_bytes(pki["server.pem"]))],
                root_certificates=read_bytes(pki["ca.pem"]) if client_auth else None,
                require_client_auth=client_auth)
            port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.addr = "127.0.0.1:%d" % port
        self.server.start()

    def stop(self):
        self.server.stop(None)

    def record(self, method, context):
        names = context.auth_context().get("x509_common_name", [b""])
        self.calls.append({"method": method, "metadata": dict(context.invocation_metadata()),
                           "peer": names[0].decode()})
        if self.refuse is not None:
            context.abort(*self.refuse)

    def service(self, handler_call_details):
        method = handler_call_details.method
        if method == "/stockd.v1.Inventory/Watch":
            def stream(request, context):
                self.record(method, context)
                return iter(())
            return grpc.unary_stream_rpc_method_handler(stream)

        def unary(request, context):
            self.record(method, context)
            return b"\x08\x01" if method == "/grpc.health.v1.Health/Check" else b""
        return grpc.unary_unary_rpc_method_handler(unary)


def start_gateway(directory, stockd, *options, env=None):
    """stockd-gateway in development mode (its key pair in directory/dev); returns (process,
    address, log path)."""
    log_path = os.path.join(directory, "gateway-%d.log" % time.monotonic_ns())
    log = open(log_path, "w")
    proc = subprocess.Popen([GATEWAY, "--listen", "127.0.0.1:0", "--stockd", stockd, "--dev",
                             "--dev-dir", os.path.join(directory, "dev"), *options],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 15
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log.write(line)
        m = re.search(LISTENING, line)
        if m:
            threading.Thread(target=drain, args=(proc, log), daemon=True).start()
            return proc, m.group(1), log_path
    log.close()
    proc.kill()
    raise RuntimeError("stockd-gateway did not start; see %s" % log_path)


def wix_call(directory, gateway, path, claims_or_request, instance_id=None):
    """Signs a Wix call as Wix would (stockctl wix-sign with the gateway's development key) and
    POSTs it; returns the HTTP status."""
    source = os.path.join(directory, "wix-%d.json" % time.monotonic_ns())
    with open(source, "w") as f:
        json.dump(claims_or_request, f)
    args = ["--instance-id", instance_id] if instance_id else []
    token = subprocess.run([STOCKCTL, "wix-sign", "--key", os.path.join(directory, "dev",
                                                                       "wix-private.pem"),
                            *args, source], capture_output=True, text=True, check=True).stdout
    request = urllib.request.Request("http://%s%s" % (gateway, path), data=token.strip().encode(),
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


WIX_ITEM = {"catalogReference": {"catalogItemId": "283de61d-5a1e-49cc-b137-ae7067bea453",
                                 "appId": "215238eb-22a5-4c36-9e7b-e7c08025e04e"},
            "quantity": 1}


class EveryClientSpeaksIt(unittest.TestCase):
    """What stockctl, stockbench and the gateway send, seen by a stand-in server."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="stockd-ctl-sec-")
        cls.pki = make_pki(os.path.join(cls.dir, "pki"))
        cls.token_file = write_secret(os.path.join(cls.dir, "token"),
                                      "tok-from-file\n# the first line is the token\n")
        cls.fake = FakeStockd()

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        self.fake.calls.clear()
        self.fake.refuse = None

    def ctl(self, *args, addr=None, env=None):
        r = subprocess.run([STOCKCTL, "--stockd", addr or self.fake.addr, "--tenant", "site-1",
                            "--deadline-ms", "5000", *args],
                           capture_output=True, text=True, timeout=60, env=env)
        return r.returncode, r.stdout, r.stderr

    def authorizations(self):
        return [c["metadata"].get("authorization") for c in self.fake.calls]

    def test_stockctl_sends_the_token_with_every_call(self):
        for args in (("health",), ("get", "app", "i"), ("set", "app", "i", "1"),
                     ("decrement", "app", "i", "1"), ("--after-seq", "0", "watch"),
                     ("history",), ("list",)):
            code, _, err = self.ctl("--token", "t0k.en-_~+/=", *args)
            self.assertEqual(code, 0, (args, err))
        self.assertEqual(len(self.fake.calls), 7)
        self.assertEqual(set(self.authorizations()), {"Bearer t0k.en-_~+/="})
        self.assertIn("/stockd.v1.Inventory/Watch", [c["method"] for c in self.fake.calls])
        self.assertFalse(any("stockd-on-behalf-of" in c["metadata"] for c in self.fake.calls))
        # --token-file: its first line; also from the environment
        self.fake.calls.clear()
        self.assertEqual(self.ctl("--token-file", self.token_file, "health")[0], 0)
        env = dict(os.environ, STOCKD_TOKEN_FILE=self.token_file)
        self.assertEqual(self.ctl("health", env=env)[0], 0)
        env = dict(os.environ, STOCKD_TOKEN="from-env")
        self.assertEqual(self.ctl("health", env=env)[0], 0)
        self.assertEqual(self.authorizations(),
                         ["Bearer tok-from-file", "Bearer tok-from-file", "Bearer from-env"])
        # no token: no authorization metadata at all
        self.fake.calls.clear()
        self.assertEqual(self.ctl("health")[0], 0)
        self.assertEqual(self.authorizations(), [None])

    def test_bad_credentials_are_refused_before_anything_is_sent(self):
        pki = self.pki
        cases = [
            (("--token", "two words"), "a space"),
            (("--token", "x", "--token-file", self.token_file), "not both"),
            (("--token-file", os.path.join(self.dir, "missing")), "No such file"),
            (("--token-file", write_secret(os.path.join(self.dir, "empty"), "\n")), "empty"),
            (("--tls-ca", os.path.join(self.dir, "missing.pem")), "TLS CA file"),
            (("--tls-ca", self.token_file), "holds no PEM certificate"),
            (("--tls-cert", pki["client.pem"]), "needs its private key"),
            (("--tls-key", pki["client.key"]), "needs its certificate"),
            (("--tls-ca", pki["ca.pem"], "--tls-cert", pki["client.pem"], "--tls-key",
              pki["server.key"]), "does not match the certificate"),
        ]
        for args, reason in cases:
            code, _, err = self.ctl(*args, "health")
            self.assertEqual(code, 2, args)
            self.assertIn(reason, err, args)
            code, out, _ = self.ctl("--json", *args, "health")
            self.assertEqual((code, json.loads(out)["error"]["code"]), (2, "INVALID_ARGUMENT"))
        self.assertNotIn("two words", self.ctl("--token", "two words", "health")[2])
        for args, _ in cases[:3] + cases[6:7]:  # stockbench: exit 2 at start, nothing run
            r = subprocess.run([STOCKBENCH, "--stockd", self.fake.addr, "--duration", "1",
                                "--warmup", "0", *args], capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
        self.assertEqual(self.fake.calls, [])

    def test_tls_with_a_client_certificate(self):
        pki = self.pki
        secure = FakeStockd(pki, client_auth=True)
        try:
            mtls = ("--tls-ca", pki["ca.pem"], "--tls-cert", pki["client.pem"], "--tls-key",
                    pki["client.key"])
            code, out, err = self.ctl(*mtls, "--token", "t1", "health", addr=secure.addr)
            self.assertEqual((code, out), (0, "SERVING\n"), err)
            self.assertEqual([(c["peer"], c["metadata"].get("authorization"))
                              for c in secure.calls], [("ops-client", "Bearer t1")])
            env = dict(os.environ, STOCKD_TLS_CA=pki["ca.pem"], STOCKD_TLS_CERT=pki["client.pem"],
                       STOCKD_TLS_KEY=pki["client.key"])
            self.assertEqual(self.ctl("health", addr=secure.addr, env=env)[0], 0)
            # a CA that did not sign stockd's certificate: the handshake fails
            code, _, err = self.ctl("--tls-ca", pki["other-ca.pem"], "--tls-cert",
                                    pki["client.pem"], "--tls-key", pki["client.key"], "health",
                                    addr=secure.addr)
            self.assertEqual(code, 3)
            self.assertIn("TLS is on", err)
            self.assertIn("--tls-ca", err)
            # no client certificate where one is required
            code, _, err = self.ctl("--tls-ca", pki["ca.pem"], "health", addr=secure.addr)
            self.assertEqual(code, 3)
            self.assertIn("client certificate", err)
            # plaintext to a TLS server
            code, _, err = self.ctl("health", addr=secure.addr)
            self.assertEqual(code, 3)
            self.assertIn("if stockd serves TLS, give its CA with --tls-ca", err)
            self.assertEqual(len(secure.calls), 2)
        finally:
            secure.stop()

    def test_refusals_say_what_to_do(self):
        self.fake.refuse = (grpc.StatusCode.UNAUTHENTICATED, "no credentials")
        code, _, err = self.ctl("get", "app", "i")
        self.assertEqual(code, 6)
        self.assertIn("UNAUTHENTICATED: no credentials", err)
        self.assertIn("no credentials were sent", err)
        for flag in ("--token-file", "--token", "STOCKD_TOKEN_FILE", "--tls-cert"):
            self.assertIn(flag, err)
        code, _, err = self.ctl("--token", "old", "get", "app", "i")
        self.assertIn("refused the credentials sent", err)
        code, out, err = self.ctl("--json", "--token", "old", "get", "app", "i")
        self.assertEqual((code, json.loads(out)),
                         (6, {"error": {"code": "UNAUTHENTICATED", "message": "no credentials"}}))
        message = 'identity "warehouse" may not call SetStock for tenant "site-1"'
        self.fake.refuse = (grpc.StatusCode.PERMISSION_DENIED, message)
        code, _, err = self.ctl("--token", "t", "set", "app", "i", "1")
        self.assertEqual(code, 6)
        self.assertIn("PERMISSION_DENIED: " + message, err)
        self.assertIn("policy", err)
        code, out, _ = self.ctl("--json", "--token", "t", "set", "app", "i", "1")
        self.assertEqual(json.loads(out)["error"], {"code": "PERMISSION_DENIED",
                                                    "message": message})
        for command in ("health", "get", "backup", "history"):
            page = subprocess.run([STOCKCTL, "help", command], capture_output=True,
                                  text=True).stdout
            self.assertIn("  6  credentials missing or refused", page)
            self.assertIn("--token-file", page)

    def test_stockbench_sends_the_token(self):
        r = subprocess.run([STOCKBENCH, "--stockd", self.fake.addr, "--mode", "decrement",
                            "--skus", "10", "--duration", "1", "--warmup", "0", "--connections",
                            "2", "--inflight", "4", "--threads", "1", "--token-file",
                            self.token_file], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        methods = {c["method"] for c in self.fake.calls}
        self.assertTrue({"/stockd.v1.Inventory/SetStock", "/stockd.v1.Inventory/Decrement",
                         "/stockd.v1.Inventory/GetStock"} <= methods, methods)
        self.assertEqual(set(self.authorizations()), {"Bearer tok-from-file"})

    def test_gateway_sends_token_and_on_behalf_of(self):
        proc, gateway, log_path = start_gateway(self.dir, self.fake.addr, "--token",
                                                "gw-secret-token")
        try:
            request = {"items": [WIX_ITEM], "orderId": "o-1", "reason": "ORDER_PLACED",
                       "restrictInventoryValue": False}
            self.assertEqual(wix_call(self.dir, gateway, "/v1/decrement", request, "site-7"), 200)
            # a call without metadata.instanceId is for the default tenant: no on-behalf-of
            claims = {"data": {"request": request, "metadata": {
                "requestId": "r-%d" % time.monotonic_ns(), "appExtensionType": "ECOM_INVENTORY"}}}
            self.assertEqual(wix_call(self.dir, gateway, "/v1/increment", claims), 200)
        finally:
            self.assertEqual(stop(proc), 0)
        writes = [c for c in self.fake.calls if c["method"] != "/grpc.health.v1.Health/Check"]
        self.assertEqual([(c["method"], c["metadata"].get("stockd-on-behalf-of"))
                          for c in writes],
                         [("/stockd.v1.Inventory/Decrement", "wix-instance:site-7"),
                          ("/stockd.v1.Inventory/Increment", None)])
        self.assertEqual(set(self.authorizations()), {"Bearer gw-secret-token"})
        with open(log_path) as f:
            log = f.read()
        self.assertNotIn("gw-secret-token", log, "the token is never logged")
        self.assertIn('"token":"(set, not logged)"', log)

    def test_gateway_refuses_bad_credentials_at_start(self):
        for options in (("--tls-ca", os.path.join(self.dir, "missing.pem")),
                        ("--tls-cert", self.pki["client.pem"]),
                        ("--token-file", os.path.join(self.dir, "missing")),
                        ("--token", "a b"),
                        ("--token", "x", "--token-file", self.token_file)):
            r = subprocess.run([GATEWAY, "--listen", "127.0.0.1:0", "--stockd", self.fake.addr,
                                "--dev", "--dev-dir", os.path.join(self.dir, "dev"), *options],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, options)
            self.assertIn("stockd_credentials_invalid", r.stderr, options)
        env = dict(os.environ, STOCKD_GATEWAY_TOKEN_FILE=os.path.join(self.dir, "missing"))
        r = subprocess.run([GATEWAY, "--listen", "127.0.0.1:0", "--dev", "--dev-dir",
                            os.path.join(self.dir, "dev")], capture_output=True, text=True,
                           timeout=30, env=env)
        self.assertEqual(r.returncode, 2)
        self.assertIn("token file", r.stderr)


# ---- the same clients and the real stockd serving TLS with a policy ----

class SecuredStockd(unittest.TestCase):
    """stockd with TLS (client certificates requested), a policy file and an admin listener:
    who wrote what shows in the ledger, and refusals name what to fix."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="stockd-ctl-tls-")
        cls.pki = make_pki(os.path.join(cls.dir, "pki"))
        cls.warehouse = write_secret(os.path.join(cls.dir, "warehouse.token"), "wh-token-1\n")
        cls.gateway_token = write_secret(os.path.join(cls.dir, "gateway.token"), "gw-token-1\n")

        def digest(token):
            return hashlib.sha256(token.encode()).hexdigest()
        policy = {"identities": [
            {"name": "warehouse", "token_sha256": digest("wh-token-1"), "tenants": ["site-1"],
             "roles": ["read", "write"]},
            {"name": "stockd-gateway", "token_sha256": digest("gw-token-1"), "tenants": ["*"],
             "roles": ["write"]},
            {"name": "ops", "tls_subject": "ops-client", "tenants": ["*"],
             "roles": ["read", "write", "admin"]}]}
        policy_path = os.path.join(cls.dir, "policy.json")
        with open(policy_path, "w") as f:
            json.dump(policy, f)
        cls.proc, cls.addr, cls.admin = start_stockd(
            os.path.join(cls.dir, "data"), "--tls-cert", cls.pki["server.pem"], "--tls-key",
            cls.pki["server.key"], "--tls-client-ca", cls.pki["ca.pem"], "--auth-policy",
            policy_path, "--admin-listen", "127.0.0.1:0", "--checkpoint-interval", "0",
            admin=True)
        cls.tls = ("--tls-ca", cls.pki["ca.pem"])
        cls.ops = cls.tls + ("--tls-cert", cls.pki["client.pem"], "--tls-key",
                             cls.pki["client.key"])

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            assert stop(cls.proc) == 0
        shutil.rmtree(cls.dir, ignore_errors=True)

    def ctl(self, *args):
        r = subprocess.run([STOCKCTL, "--stockd", self.addr, "--admin", self.admin, *args],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout, r.stderr

    def test_the_ledger_names_who_wrote(self):
        wh = self.tls + ("--token-file", self.warehouse, "--tenant", "site-1")
        self.assertEqual(self.ctl(*wh, "set", "app", "who", "5")[0], 0)
        self.assertEqual(self.ctl(*self.ops, "--tenant", "site-1", "decrement", "app", "who",
                                  "1")[0], 0)
        code, out, err = self.ctl(*wh, "--json", "history", "app", "who")
        self.assertEqual(code, 0, err)
        self.assertEqual([(e["op"], e["actor"], e["on_behalf_of"])
                          for e in map(json.loads, out.splitlines())],
                         [("SET", "warehouse", ""), ("DECREMENT", "ops", "")])
        code, out, _ = self.ctl(*wh, "history", "app", "who")
        lines = out.splitlines()
        column = lines[0].index("ACTOR")
        self.assertEqual([line[column:].split()[0] for line in lines[1:]], ["warehouse", "ops"])

    def test_refusals(self):
        code, out, err = self.ctl(*self.tls, "--tenant", "site-1", "get", "app", "x")
        self.assertEqual(code, 6)
        self.assertIn("UNAUTHENTICATED", err)
        self.assertIn("--token-file", err)
        code, out, err = self.ctl(*self.tls, "--token-file", self.warehouse, "--tenant",
                                  "site-2", "set", "app", "x", "1")
        self.assertEqual(code, 6)
        self.assertIn("PERMISSION_DENIED", err)
        self.assertIn("warehouse", err)
        self.assertIn("policy", err)
        code, _, err = self.ctl("--deadline-ms", "2000", "health")  # plaintext to TLS
        self.assertEqual(code, 3)
        self.assertIn("--tls-ca", err)
        code, _, err = self.ctl("--tls-ca", self.pki["other-ca.pem"], "--deadline-ms", "2000",
                                "health")
        self.assertEqual(code, 3)
        self.assertIn("TLS is on", err)

    def test_backups_need_the_admin_role(self):
        code, _, err = self.ctl(*self.tls, "--token-file", self.warehouse, "backup", "list")
        self.assertEqual(code, 6)
        self.assertIn("PERMISSION_DENIED", err)
        code, out, err = self.ctl(*self.ops, "--json", "backup", "list")
        self.assertEqual(code, 0, err)
        self.assertIn("checkpoints_max", json.loads(out))

    def test_gateway_writes_on_behalf_of_the_site(self):
        self.assertEqual(self.ctl(*self.ops, "--tenant", "site-1", "set",
                                  WIX_ITEM["catalogReference"]["appId"],
                                  WIX_ITEM["catalogReference"]["catalogItemId"], "5")[0], 0)
        env = dict(os.environ, STOCKD_GATEWAY_TLS_CA=self.pki["ca.pem"],
                   STOCKD_GATEWAY_TOKEN_FILE=self.gateway_token)
        proc, gateway, _ = start_gateway(self.dir, self.addr, env=env)
        try:
            request = {"items": [WIX_ITEM], "orderId": "o-77", "reason": "ORDER_PLACED",
                       "restrictInventoryValue": False}
            self.assertEqual(wix_call(self.dir, gateway, "/v1/decrement", request, "site-1"), 200)
        finally:
            self.assertEqual(stop(proc), 0)
        code, out, _ = self.ctl(*self.ops, "--tenant", "site-1", "--json", "--order-id", "o-77",
                                "history")
        self.assertEqual([(e["actor"], e["on_behalf_of"]) for e in map(json.loads,
                                                                        out.splitlines())],
                         [("stockd-gateway", "wix-instance:site-1")])
        code, out, _ = self.ctl(*self.ops, "--tenant", "site-1", "--order-id", "o-77", "history")
        lines = out.splitlines()
        self.assertEqual(lines[1][lines[0].index("ON BEHALF OF"):], "wix-instance:site-1")

    def test_stockbench_over_tls_with_a_token(self):
        r = subprocess.run([STOCKBENCH, "--stockd", self.addr, *self.tls, "--token-file",
                            self.warehouse, "--tenant", "site-1", "--skus", "20", "--duration",
                            "1", "--warmup", "0", "--connections", "2", "--inflight", "4",
                            "--threads", "1"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        result = json.loads(r.stdout.splitlines()[-1])
        self.assertGreater(result["ops"], 0)
        self.assertEqual((result["errors"], result["check_mismatches"]), (0, 0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
