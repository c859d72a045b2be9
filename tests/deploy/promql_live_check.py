"""Every PromQL expression of deploy/ against a real Prometheus scraping a real `kiln serve`.

Starts kiln serve on the tiny random Llama 2 (with an API key, a model that fails to load, a
memory budget, one running slot and one queue slot) and Prometheus with deploy/prometheus's
scrape config (its target, interval and key file adapted to this run) and both rule files.
Drives a short known load that leaves a trace in every metric the dashboard and the rules read:
completions and chats, streamed and whole; a burst beyond the queue (429); a stream its client
leaves (cancelled); a request for the broken model (503, a failed load); a foreign Host (403);
an unknown model (404). Then:
  - Prometheus loaded every rule and evaluates each without error;
  - every query of the Grafana dashboard (template variables filled in with the "All" values,
    and again with this instance and model) parses, and with "All" returns a finite value;
  - each query variable's label_values() selector returns series with its label;
  - every recording rule's expression and its recorded series return data;
  - every alert's expression parses, and what it compares (the left side of each comparison,
    the argument of absent()) returns data: the alerts watch metrics that exist.
Skips (exit 77) without Prometheus, python3-yaml or the model."""
import json
import os
import math
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import deploy_support as ds
from promql import alert_operands, dashboard_queries, substitute, variable_selectors

PROMETHEUS = "/usr/bin/prometheus"
KEY = "sk-deploy-test-0123456789abcdef"
MODEL = "llama-2-tiny-random"
GEN = ("/v1/completions", "/v1/chat/completions")


class Prometheus:
    def __init__(self, config_path, work):
        self.port = ds.free_port()
        self.log_path = os.path.join(work, "prometheus.log")
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config_path}", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log_file, stderr=subprocess.STDOUT)

    def api(self, path, params=None):
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            # While it starts, Prometheus answers 503 with a plain-text body: not ready yet.
            body = e.read()
            try:
                return json.loads(body or b"{}")
            except ValueError:
                return {"status": "unavailable", "error": body.decode("utf-8", "replace")[:200]}
        except (urllib.error.URLError, ConnectionError):
            return {"status": "unreachable"}

    def query(self, expr):
        return self.api("/api/v1/query", {"query": expr})

    def value(self, expr):
        r = self.query(expr)
        if r.get("status") != "success" or len(r["data"]["result"]) != 1:
            return math.nan
        return float(r["data"]["result"][0]["value"][1])

    def wait_for(self, expr, ok, seconds):
        until = time.time() + seconds
        while time.time() < until:
            v = self.value(expr)
            if not math.isnan(v) and ok(v):
                return True
            time.sleep(0.25)
        return False

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def auth():
    return {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


def completion(port, max_tokens, stream, prompt="Once upon a time", model=MODEL):
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0,
            "stream": stream}
    return ds.request(port, "POST", "/v1/completions", json.dumps(body), auth())[0]


def chat(port, max_tokens):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}], "max_tokens": max_tokens,
            "ignore_eos": True, "temperature": 0}
    return ds.request(port, "POST", "/v1/chat/completions", json.dumps(body), auth())[0]


def abandoned_stream(port):
    """A stream whose client leaves after its first event: kiln counts it cancelled. 90,000 tokens
    (the server runs with --ctx 100000) take the tiny model far longer than the client stays."""
    body = json.dumps({"model": MODEL, "prompt": "Tell a long story", "max_tokens": 90000, "ignore_eos": True,
                       "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        seen = b""
        while b"data: " not in seen:
            chunk = s.recv(4096)
            if not chunk:
                break
            seen += chunk


def burst(port, n, max_tokens):
    """n streams at once against one running slot and one queue slot: the rest get 429."""
    statuses = []
    lock = threading.Lock()
    gate = threading.Barrier(n)

    def one():
        gate.wait()
        s = completion(port, max_tokens, True)
        with lock:
            statuses.append(s)
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def drive_load(port):
    """The known load; returns the generation requests sent and the statuses seen."""
    statuses = []
    for i in range(4):
        statuses.append(completion(port, 16 * (i + 1), stream=(i % 2 == 0), prompt=f"Request {i} asks"))
    statuses += [chat(port, 8), chat(port, 12)]
    for _ in range(3):  # arrivals race the first request's end: try again if none was refused
        got = burst(port, 6, 400)
        statuses += got
        if 429 in got:
            break
    abandoned_stream(port)
    statuses.append(completion(port, 4, False, model="broken"))
    statuses.append(ds.request(port, "GET", "/v1/models", headers={**auth(), "Host": "evil.example"})[0])
    statuses.append(completion(port, 4, False, model="no-such-model"))
    return statuses


def finite(result_type, result):
    """An instant query's result holds a finite number (not only NaN: a ratio of two zero rates)."""
    if result_type == "scalar":
        return math.isfinite(float(result[1]))
    return any(math.isfinite(float(s["value"][1])) for s in result)


def main():
    ds.require_yaml()
    if not os.access(PROMETHEUS, os.X_OK):
        ds.skip("prometheus is not installed (scripts/install-deps.sh --test installs Debian's prometheus)")
    ds.require_tiny_model()
    c = ds.Checks()
    work = ds.temp_dir("kiln-promql-")
    key_path = os.path.join(work, "kiln.key")
    with open(key_path, "w") as f:
        f.write(KEY + "\n")
    broken_dir = os.path.join(work, "models")
    os.mkdir(broken_dir)
    with open(os.path.join(broken_dir, "broken.gguf"), "wb") as f:
        f.write(b"this is not a GGUF file" * 10)

    kiln = ds.KilnServer([ds.TINY_MODEL, "--port", "0", "-t", "1", "-q", "--api-key-file", key_path,
                          "--models-dir", broken_dir, "--max-running", "1", "--max-queued", "1",
                          "--memory-budget", "1G", "--ctx", "100000"], os.path.join(work, "kiln.log"))
    prom = None
    try:
        if not kiln.port:
            print(kiln.log())
            c.check(False, "kiln serve started")
            c.finish()

        # deploy/prometheus/prometheus.yml, pointed at this server, scraping every second.
        prom_src = os.path.join(ds.DEPLOY_DIR, "prometheus")
        config = ds.load_yaml(os.path.join(prom_src, "prometheus.yml"))
        config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "kiln"]
        job.update({"scrape_interval": "1s", "scrape_timeout": "1s"})
        job["authorization"]["credentials_file"] = key_path
        job["static_configs"] = [{"targets": [f"127.0.0.1:{kiln.port}"]}]
        for rule_file in config["rule_files"]:
            shutil.copy(os.path.join(prom_src, rule_file), work)
        config_path = os.path.join(work, "prometheus.yml")
        with open(config_path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        prom = Prometheus(config_path, work)
        if not c.check(prom.wait_for('up{job="kiln"}', lambda v: v == 1, 30), "Prometheus scrapes kiln with the key"):
            print(prom.log())
            c.finish()

        # The load runs twice. kiln creates a labelled series (a status, a reason) at its first
        # count, so a series born during the load has no earlier sample and rate() sees no
        # increase in it; on a server that has been running, the series exist before the
        # traffic. The first round creates them, the second is what the rates see.
        traces = [
            ('sum(kiln_requests_total{endpoint=~"/v1/(chat/)?completions",status="200"})', "answered generation requests"),
            ("sum(kiln_requests_cancelled_total)", "cancelled requests"),
            ("sum(kiln_requests_rejected_total)", "rejected requests"),
            ('sum(kiln_requests_total{status=~"5.."})', "5xx answers"),
            ("sum(kiln_requests_refused_total)", "refused requests"),
        ]
        for round_ in (1, 2):
            before = {expr: prom.value(expr) for expr, _ in traces}
            t0 = time.time()
            statuses = drive_load(kiln.port)
            print(f"load round {round_}: {len(statuses)} requests in {time.time() - t0:.1f} s, statuses {sorted(statuses)}")
            c.check(statuses.count(200) >= 7, "the load's requests were answered")
            for status in (429, 503, 403, 404):
                c.check(status in statuses, f"the load got a {status}")
            # Prometheus has every trace of the round once it has scraped after it.
            for expr, what in traces:
                was = 0 if math.isnan(before[expr]) else before[expr]
                c.check(prom.wait_for(expr, lambda v, was=was: v > was, 20),
                        f"round {round_}: Prometheus saw more {what}: {expr} = {prom.value(expr)}, was {was}")
            if round_ == 1:
                time.sleep(2.5)  # two more scrapes of the new series before the next round
        time.sleep(3)  # a few rule evaluations over the complete data

        # Every rule loaded and evaluated without error.
        rules = prom.api("/api/v1/rules")
        loaded = [r for g in rules.get("data", {}).get("groups", []) for r in g["rules"]]
        shipped = [r for f in config["rule_files"] for g in ds.load_yaml(os.path.join(prom_src, f))["groups"] for r in g["rules"]]
        c.check(len(loaded) == len(shipped), f"Prometheus loaded {len(loaded)} of {len(shipped)} rules")
        for r in loaded:
            c.check(r.get("health") == "ok", f"rule {r['name']}: health {r.get('health')} {r.get('lastError', '')}")

        def returns_data(expr, what):
            r = prom.query(expr)
            if not c.check(r.get("status") == "success", f"{what}: parses and runs: {expr} ({r.get('error', '')})"):
                return
            result = r["data"]["result"]
            if c.check(finite(r["data"]["resultType"], result), f"{what}: returns a finite value: {expr} (got {result})"):
                print(f"ok   {what}: {expr}")

        # The dashboard.
        with open(os.path.join(ds.DEPLOY_DIR, "grafana", "kiln-dashboard.json")) as f:
            dashboard = json.load(f)
        instance = f"127.0.0.1:{kiln.port}"
        all_values = {"job": "kiln", "instance": ".+", "model": ".*", "__rate_interval": "1m"}
        one_values = {"job": "kiln", "instance": instance.replace(".", "\\\\."), "model": MODEL, "__rate_interval": "1m"}
        queries = dashboard_queries(dashboard)
        c.check(len(queries) >= 40, f"{len(queries)} dashboard queries")
        for title, expr in queries:
            returns_data(substitute(expr, all_values), f"panel '{title}'")
            one = substitute(expr, one_values)
            r = prom.query(one)
            c.check(r.get("status") == "success", f"panel '{title}' for one instance and model: {one} ({r.get('error', '')})")
        for name, selector, label in variable_selectors(dashboard):
            if not c.check(selector is not None, f"variable {name} is label_values(selector, label): {label}"):
                continue
            r = prom.query(substitute(selector, all_values))
            series = r.get("data", {}).get("result", [])
            c.check(any(label in s["metric"] for s in series), f"variable {name}: {selector} has series with {label}")

        # The rules.
        for f in config["rule_files"]:
            for g in ds.load_yaml(os.path.join(prom_src, f))["groups"]:
                for rule in g["rules"]:
                    if "record" in rule:
                        returns_data(rule["expr"], f"recording rule {rule['record']}")
                        returns_data(rule["record"], f"recorded series {rule['record']}")
                    else:
                        r = prom.query(rule["expr"])
                        c.check(r.get("status") == "success", f"alert {rule['alert']}: parses and runs ({r.get('error', '')})")
                        for operand in alert_operands(rule["expr"]):
                            returns_data(operand, f"alert {rule['alert']} operand")

        # The prometheus-adapter rule behind the autoscaler, with the adapter's template filled in
        # as it would for one pod (here the instance stands for the pod and namespace labels,
        # which only a Kubernetes scrape adds).
        adapter = ds.load_yaml(os.path.join(ds.DEPLOY_DIR, "k8s", "prometheus-adapter-values.yaml"))
        for rule in adapter["rules"]["custom"]:
            series = rule["seriesQuery"].split("{")[0].strip().strip("'")
            query = (rule["metricsQuery"].replace("<<.Series>>", series)
                     .replace("<<.LabelMatchers>>", f'job="kiln",instance="{instance}"').replace("<<.GroupBy>>", "instance"))
            returns_data(query, f"prometheus-adapter rule for {series}")
    finally:
        if prom:
            prom.stop()
        kiln.stop()
    if c.failures:
        print(kiln.log()[-3000:])
    shutil.rmtree(work, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
