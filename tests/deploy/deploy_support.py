"""What the checks of deploy/ share: where things are, skipping visibly, a `kiln serve` child
process and plain HTTP to it. Run by Debian's /usr/bin/python3 (python3-yaml)."""
import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

SKIP = 77  # ctest's SKIP_RETURN_CODE for these tests

SOURCE_DIR = os.environ.get("KILN_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY_DIR = os.path.join(SOURCE_DIR, "deploy")
DATA_DIR = os.environ.get("KILN_DATA_DIR") or os.path.join(SOURCE_DIR, "..", "shared", "data")
KILN_BIN = os.environ.get("KILN_BIN") or os.path.join(SOURCE_DIR, "build", "kiln")
TINY_MODEL = os.path.join(DATA_DIR, "llama-2-tiny-random.gguf")


def skip(reason):
    print(f"SKIPPED: {reason}")
    sys.exit(SKIP)


def require_yaml():
    try:
        import yaml  # noqa: F401
    except ImportError:
        skip("python3-yaml is not installed (scripts/install-deps.sh --test installs it)")


def require_tiny_model():
    if not os.path.isfile(TINY_MODEL):
        skip(f"shared data file llama-2-tiny-random.gguf not found in {DATA_DIR} (set KILN_DATA_DIR)")
    if not os.access(KILN_BIN, os.X_OK):
        skip(f"no kiln binary at {KILN_BIN} (set KILN_BIN)")


def load_yaml(path):
    import yaml
    with open(path) as f:
        return yaml.safe_load(f)


def load_yaml_all(path):
    import yaml
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


class Checks:
    """Collects failures so that one run reports every problem, then exits 1 if there was any."""

    def __init__(self):
        self.failures = []
        self.passed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)
            print(f"FAIL: {what}", flush=True)
        return ok

    def finish(self):
        print(f"{self.passed} passed, {len(self.failures)} failed")
        sys.exit(1 if self.failures else 0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KilnServer:
    """`kiln serve` as a child process; stopped (SIGKILL if need be) by stop()."""

    def __init__(self, args, log_path):
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.proc = subprocess.Popen([KILN_BIN, "serve", *args], stdout=self.log_file, stderr=subprocess.STDOUT)
        self.port = 0
        deadline = time.time() + 30
        while time.time() < deadline and self.proc.poll() is None:
            text = self.log()
            m = re.search(r"listening on http://127\.0\.0\.1:([0-9]+)", text)
            # The startup lines come as text or, off a terminal, as JSON lines (docs/operations.md).
            if m and (re.search(r"^kiln serve: ready", text, re.M) or '"event.action":"server-ready"' in text):
                self.port = int(m.group(1))
                break
            time.sleep(0.02)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()


def request(port, method, path, body=None, headers=None, timeout=30):
    """(status, body text, headers) of one request on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace"), dict(r.getheaders())
    finally:
        conn.close()


def temp_dir(prefix):
    return tempfile.mkdtemp(prefix=prefix)
