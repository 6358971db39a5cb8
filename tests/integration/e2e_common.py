"""What the end-to-end scripts of tests/integration share: checks that are
counted, free loopback ports, bounded waits, child processes stopped at the
end, `salvo sink` started on a port of its own choosing, and the end of a run
(logs of a failed run, the temporary folder removed, the exit code).

Each script is run as `python3 tests/integration/X.py build/bin/salvo ...`,
so this folder is on sys.path and `import e2e_common` finds this file.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, seconds=30, step=0.1):
    """pred()'s first true value within `seconds`, else None."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


class Procs:
    """Child processes, each with its stdout and stderr in tmp/<name>.out and
    .err (appended: a name started again keeps the earlier lines)."""

    def __init__(self, tmp, cwd=None):
        self.tmp, self.cwd, self.all, self.by_name = tmp, cwd, [], {}

    def start(self, args, name, env=None):
        p = subprocess.Popen(args, stdout=open(self.tmp / f"{name}.out", "ab"),
                             stderr=open(self.tmp / f"{name}.err", "ab"), stdin=subprocess.DEVNULL,
                             env=env, cwd=self.cwd)
        p.name = name
        self.all.append(p)
        self.by_name[name] = p
        return p

    def stop_all(self, seconds=20):
        """SIGTERM to every one still running, newest first; SIGKILL after `seconds`."""
        for p in reversed(self.all):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(seconds)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


def start_sink(procs, salvo, tmp, name, *extra):
    """`salvo sink` on 127.0.0.1 port 0, saving copies to tmp/<name>-saved:
    (port, stats file, save folder) once its stats file names the port."""
    stats = tmp / f"{name}.json"
    save = tmp / f"{name}-saved"
    save.mkdir()
    procs.start([salvo, "sink", "--listen", "127.0.0.1:0", "--stats-file", str(stats),
                 "--save-dir", str(save), *extra], name)
    for _ in range(500):
        try:
            port = int(json.loads(stats.read_text())["listen"][0].rsplit(":", 1)[1])
            return port, stats, save
        except (FileNotFoundError, ValueError, KeyError, IndexError):
            time.sleep(0.01)
    raise AssertionError("the sink did not start")


def clean_up(tmp, procs, tails=None, tail_bytes=4000):
    """For a script's `finally`: every child stopped; after a failed check the
    tail of each .err file (or of those named in `tails`); tmp removed unless
    SALVO_KEEP_TEST_DIRS is set."""
    procs.stop_all()
    if failures:
        names = tails if tails is not None else sorted(f.name for f in tmp.glob("*.err"))
        for f in names:
            if (tmp / f).exists():
                print(f"--- {f} (tail)\n" + (tmp / f).read_text(errors="replace")[-tail_bytes:])
    if os.environ.get("SALVO_KEEP_TEST_DIRS"):
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def report(label):
    """After the run (reached only if it raised nothing): exit 1 if a check failed."""
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print(f"{label}: all checks passed")
