"""deploy/docker/Dockerfile checked without Docker (none on the test machines): every path it
copies from the context exists and is not left out by .dockerignore; the runtime stage installs
the Debian package of every shared library `ldd kiln` lists; it runs as a non-root user, exposes
the port its command listens on and stops with SIGTERM; and its HEALTHCHECK command, run with
bash as Docker would run it, passes against a live `kiln serve` and fails against a closed port
and against a server whose /health answers 503. Skips (exit 77) without the tiny model."""
import fnmatch
import http.server
import os
import re
import shlex
import subprocess
import json
import threading

import deploy_support as ds

DOCKERFILE = os.path.join(ds.DEPLOY_DIR, "docker", "Dockerfile")


def instructions(text):
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def dockerignored(path, patterns):
    for p in patterns:
        p = p.rstrip("/")
        if fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.split("/")[0], p) or \
                (p.startswith("**/") and fnmatch.fnmatch(os.path.basename(path), p[3:])):
            return True
    return False


def exec_form(args):
    return json.loads(args) if args.startswith("[") else ["/bin/sh", "-c", args]


class Unhealthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_):
        pass


def main():
    ds.require_tiny_model()
    c = ds.Checks()
    with open(DOCKERFILE) as f:
        steps = instructions(f.read())
    with open(os.path.join(ds.SOURCE_DIR, ".dockerignore")) as f:
        ignore = [l.strip() for l in f if l.strip() and not l.startswith("#")]

    froms = [i for i, (w, _) in enumerate(steps) if w == "FROM"]
    c.check(len(froms) == 2, "two stages: build and runtime")
    build_stage, runtime = steps[froms[0]:froms[1]], steps[froms[1]:]
    c.check(steps[froms[0]][1].startswith("debian:12 ") and runtime[0][1].startswith("debian:12-slim"),
            "Debian 12 for the build, Debian 12 slim for the runtime (the same release, so the same sonames)")

    # Paths copied from the context.
    for word, args in build_stage + runtime:
        if word != "COPY" or "--from" in args:
            continue
        *sources, _ = shlex.split(args)
        for src in sources:
            c.check(os.path.exists(os.path.join(ds.SOURCE_DIR, src)), f"COPY {src}: exists in the repository")
            c.check(not dockerignored(src, ignore), f"COPY {src}: not left out by .dockerignore")
    runs = " ".join(a for w, a in build_stage if w == "RUN")
    c.check("scripts/install-deps.sh" in runs, "the build stage installs the dependencies with scripts/install-deps.sh")
    c.check("CMAKE_BUILD_TYPE=Release" in runs and "--target kiln" in runs, "the build stage builds kiln in Release")

    # Shared libraries of the binary -> Debian packages -> installed in the runtime stage.
    runtime_runs = " ".join(a for w, a in runtime if w == "RUN")
    installed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", runtime_runs.split("install", 1)[1].split("&&")[0])) if "install" in runtime_runs else set()
    ldd = subprocess.run(["ldd", ds.KILN_BIN], capture_output=True, text=True).stdout
    libs = re.findall(r"=>\s+(\S+)", ldd)
    c.check(len(libs) >= 4, f"ldd lists the binary's libraries: {libs}")
    for lib in libs:
        real = os.path.realpath(lib)
        owner = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        pkg = owner.stdout.split(":")[0] if owner.returncode == 0 else "?"
        c.check(pkg in installed, f"{os.path.basename(lib)} comes from {pkg}, which the runtime stage installs")

    # Runtime settings.
    last = {}
    for w, a in runtime:
        last[w] = a
    user = last.get("USER", "root").split(":")[0]
    c.check(user not in ("root", "0") and user != "", f"runs as a non-root user ({user})")
    cmd = exec_form(last.get("CMD", "[]"))
    entry = exec_form(last.get("ENTRYPOINT", "[]"))
    c.check(entry == ["/usr/local/bin/kiln"] and cmd[:1] == ["serve"], "ENTRYPOINT kiln, CMD serve ...")
    port = cmd[cmd.index("--port") + 1] if "--port" in cmd else "8080"
    c.check(last.get("EXPOSE") == port, f"EXPOSE {last.get('EXPOSE')} is the --port of CMD ({port})")
    c.check(cmd[cmd.index("--host") + 1] == "0.0.0.0" if "--host" in cmd else False, "CMD binds 0.0.0.0 (reachable through the published port)")
    c.check(last.get("STOPSIGNAL") == "SIGTERM", "STOPSIGNAL SIGTERM (kiln drains on it)")
    volume = json.loads(last.get("VOLUME", "[]"))
    c.check(len(cmd) > 1 and any(cmd[1].startswith(v + "/") for v in volume), f"the model {cmd[1] if len(cmd) > 1 else '?'} is on a VOLUME {volume}")

    # The HEALTHCHECK command, as Docker runs it (exec form: no shell around it).
    health = last.get("HEALTHCHECK", "")
    m = re.search(r"CMD\s+(\[.*\])\s*$", health)
    if not c.check(m is not None, "HEALTHCHECK ... CMD [exec form]"):
        c.finish()
    probe = json.loads(m.group(1))
    c.check(probe[0] == "bash" and "curl" not in m.group(1) and "wget" not in m.group(1), "the probe needs only bash")
    work = ds.temp_dir("kiln-docker-")
    kiln = ds.KilnServer([ds.TINY_MODEL, "--port", "0", "-t", "1", "--api-key", "sk-docker-check-0123456789"],
                         os.path.join(work, "kiln.log"))
    try:
        def run_probe(port):
            env = dict(os.environ, KILN_HEALTH_PORT=str(port))
            return subprocess.run(probe, env=env, capture_output=True, timeout=10).returncode
        c.check(kiln.port > 0 and run_probe(kiln.port) == 0, f"the probe passes against kiln serve on port {kiln.port}")
        c.check(run_probe(ds.free_port()) != 0, "the probe fails against a closed port")
        server = http.server.HTTPServer(("127.0.0.1", 0), Unhealthy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        c.check(run_probe(server.server_address[1]) != 0, "the probe fails when /health answers 503")
        server.shutdown()
    finally:
        kiln.stop()
    c.finish()


if __name__ == "__main__":
    main()
