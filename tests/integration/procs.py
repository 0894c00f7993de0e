"""Starting and stopping the real binaries for the Python integration tests."""
import re
import signal
import subprocess
import threading
import time

LISTENING = re.compile(r'"event":"listening","address":"(127\.0\.0\.1:\d+)"')


def start(args, log_path, env=None):
    """Starts a binary listening on port 0 and returns (process, bound address). Its log goes
    to log_path, drained by a thread so a full pipe can never block it."""
    log = open(log_path, "w")
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 15
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log.write(line)
        m = LISTENING.search(line)
        if m:
            def drain():
                for rest in proc.stderr:
                    log.write(rest)
                log.close()
            threading.Thread(target=drain, daemon=True).start()
            return proc, m.group(1)
    raise RuntimeError("%s did not start; see %s" % (args[0], log_path))


def stop(proc):
    """SIGTERM, and the exit status of a clean shutdown."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)
