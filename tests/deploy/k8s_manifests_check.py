"""deploy/k8s/ checked for what makes a manifest wrong for kiln rather than for Kubernetes: the
container's arguments are flags `kiln serve --help` lists, and a `kiln serve` started with them
(model, key file, host and port swapped for local ones) answers the probes' paths without the
key and /metrics with the key the ServiceMonitor sends; terminationGracePeriodSeconds exceeds
preStop plus --grace-seconds; the ports, names, selectors, Secret and volume all line up; the
pod runs as the image's non-root user on a read-only root; and the HorizontalPodAutoscaler's
metric is the one the prometheus-adapter rule makes from a metric kiln really exports.
Skips (exit 77) without python3-yaml or the tiny model."""
import os
import re
import subprocess

import deploy_support as ds

K8S = os.path.join(ds.DEPLOY_DIR, "k8s")


def parse_flags(args):
    """kiln serve's arguments -> (positionals, {flag: value or True}) for --flag=value, --flag value."""
    positional, flags, i = [], {}, 0
    while i < len(args):
        a = args[i]
        if a.startswith("-"):
            if "=" in a:
                k, v = a.split("=", 1)
                flags[k] = v
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                flags[a] = args[i + 1]
                i += 1
            else:
                flags[a] = True
        else:
            positional.append(a)
        i += 1
    return positional, flags


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def main():
    ds.require_yaml()
    ds.require_tiny_model()
    c = ds.Checks()

    kustomization = ds.load_yaml(os.path.join(K8S, "kustomization.yaml"))
    docs = []
    for res in kustomization["resources"]:
        path = os.path.join(K8S, res)
        if c.check(os.path.isfile(path), f"kustomization resource {res} exists"):
            docs += ds.load_yaml_all(path)
    kinds = by_kind(docs)
    for kind, api in [("Deployment", "apps/v1"), ("Service", "v1"), ("HorizontalPodAutoscaler", "autoscaling/v2"),
                      ("PodDisruptionBudget", "policy/v1"), ("ServiceMonitor", "monitoring.coreos.com/v1"),
                      ("PersistentVolumeClaim", "v1")]:
        c.check(len(kinds.get(kind, [])) == 1 and kinds[kind][0]["apiVersion"] == api, f"one {kind} ({api})")
    deployment, service = kinds["Deployment"][0], kinds["Service"][0]
    hpa, pdb, monitor, pvc = (kinds[k][0] for k in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor",
                                                    "PersistentVolumeClaim"))
    pod = deployment["spec"]["template"]["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = pod["containers"]
    args = container["args"]
    c.check(args[0] == "serve", "the container runs kiln serve")
    positional, flags = parse_flags(args[1:])

    # Every flag is one kiln serve has.
    help_text = subprocess.run([ds.KILN_BIN, "serve", "--help"], capture_output=True, text=True).stdout
    known = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))
    for f in flags:
        c.check(f in known, f"kiln serve has the flag {f}")

    # Shutdown: the kubelet waits longer than kiln drains.
    grace = float(flags.get("--grace-seconds", 30))
    pre_stop = 0.0
    cmd = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if cmd[:1] == ["sleep"]:
        pre_stop = float(cmd[1])
    period = pod.get("terminationGracePeriodSeconds", 30)
    c.check(period > pre_stop + grace, f"terminationGracePeriodSeconds {period} > preStop {pre_stop} + --grace-seconds {grace}")

    # Ports and names.
    (port,) = container["ports"]
    c.check(str(port["containerPort"]) == str(flags.get("--port")), f"containerPort {port['containerPort']} is --port {flags.get('--port')}")
    c.check(flags.get("--host") == "0.0.0.0", "kiln binds 0.0.0.0 in the pod (127.0.0.1 is unreachable from the Service)")
    (svc_port,) = service["spec"]["ports"]
    c.check(svc_port["targetPort"] in (port["name"], port["containerPort"]), "the Service targets the container's port")
    c.check(all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items()), "the Service selects the pods")
    c.check(all(pod_labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()), "the PDB selects the pods")
    c.check(all(service["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items()),
            "the ServiceMonitor selects the Service")
    (endpoint,) = monitor["spec"]["endpoints"]
    c.check(endpoint["port"] == svc_port["name"] and endpoint.get("path", "/metrics") == "/metrics",
            "the ServiceMonitor scrapes the Service's port at /metrics")
    c.check(service["metadata"]["name"] == "kiln", "the Service is named kiln: the scrape job is named after it, and the alerts select job=\"kiln\"")

    # Probes.
    probes = {name: container.get(name) for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    for name, p in probes.items():
        if c.check(p is not None and "httpGet" in p, f"{name} is an HTTP probe"):
            c.check(p["httpGet"]["port"] in (port["name"], port["containerPort"]), f"{name} probes the container's port")
    c.check(probes["livenessProbe"]["httpGet"]["path"] == "/health", "liveness on /health")
    c.check(probes["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness on /ready")
    startup = probes["startupProbe"]
    c.check(startup["periodSeconds"] * startup["failureThreshold"] >= 300, "the startup probe allows at least 5 minutes for the model to load")

    # Secret, key file and ServiceMonitor credentials.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    key_file = flags.get("--api-key-file", "")
    secret_vols = [v for v in volumes.values() if "secret" in v]
    c.check(len(secret_vols) == 1, "one Secret volume, the API key")
    secret = secret_vols[0]["secret"]["secretName"]
    mount = mounts[secret_vols[0]["name"]]["mountPath"]
    key_name = os.path.relpath(key_file, mount)
    c.check(key_file.startswith(mount + "/") and "/" not in key_name, f"--api-key-file {key_file} is a key of the Secret mounted at {mount}")
    creds = endpoint["authorization"]["credentials"]
    c.check(endpoint["authorization"].get("type", "Bearer") == "Bearer" and creds == {"name": secret, "key": key_name},
            f"the ServiceMonitor sends the same key as a Bearer token ({creds})")

    # The model: on the PVC, read-only.
    model_path = positional[0] if positional else ""
    model_mounts = [m for m in container["volumeMounts"] if model_path.startswith(m["mountPath"] + "/")]
    c.check(len(model_mounts) == 1 and model_mounts[0].get("readOnly"), f"the model {model_path} is on a read-only mount")
    if model_mounts:
        claim = volumes[model_mounts[0]["name"]].get("persistentVolumeClaim", {}).get("claimName")
        c.check(claim == pvc["metadata"]["name"], f"the model volume is the PVC {pvc['metadata']['name']}")

    # Security and resources.
    psc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
    c.check(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0, "the pod runs as a non-root user")
    with open(os.path.join(ds.DEPLOY_DIR, "docker", "Dockerfile")) as f:
        users = re.findall(r"^USER\s+(\d+)", f.read(), re.M)
    c.check(users and int(users[-1].split(":")[0]) == psc.get("runAsUser"), f"runAsUser {psc.get('runAsUser')} is the image's USER {users}")
    c.check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
            and csc.get("capabilities", {}).get("drop") == ["ALL"], "read-only root, no privilege escalation, no capabilities")
    res = container.get("resources", {})
    c.check(all(k in res.get(t, {}) for t in ("requests", "limits") for k in ("cpu", "memory")), "cpu and memory requests and limits")
    threads = flags.get("--threads") or flags.get("-t")
    c.check(threads is not None and int(threads) <= float(res["limits"]["cpu"]), f"--threads {threads} fits the CPU limit (kiln counts the node's cores)")

    # The HPA's metric, from the adapter's rule, from a real kiln metric.
    c.check(hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment" and hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"],
            "the HPA scales the Deployment")
    (metric,) = hpa["spec"]["metrics"]
    c.check(metric["type"] == "Pods", "the HPA's metric is per pod (custom metrics API)")
    hpa_metric = metric["pods"]["metric"]["name"]
    adapter = ds.load_yaml(os.path.join(K8S, "prometheus-adapter-values.yaml"))
    producing = []
    for rule in adapter["rules"]["custom"]:
        series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"]).group(1)
        name = rule.get("name", {})
        produced = re.sub(name.get("matches", "^(.*)$"), name.get("as", r"\1").replace("$", "\\"), series) if name else series
        if produced == hpa_metric:
            producing.append((series, rule))
    if c.check(len(producing) == 1, f"one adapter rule produces {hpa_metric}"):
        series, rule = producing[0]
        c.check(rule["resources"]["overrides"].get("pod", {}).get("resource") == "pod"
                and rule["resources"]["overrides"].get("namespace", {}).get("resource") == "namespace",
                "the rule maps the pod and namespace labels (added by the ServiceMonitor's scrape) to resources")
        c.check(all(t in rule["metricsQuery"] for t in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>")),
                "the rule's metricsQuery selects by the adapter's matchers and groups by its labels")

    # A kiln serve started with the Deployment's arguments.
    work = ds.temp_dir("kiln-k8s-")
    local_key = os.path.join(work, "key")
    with open(local_key, "w") as f:
        f.write("sk-k8s-check-0123456789\n")
    local_args = []
    for a in args[1:]:
        if a == model_path:
            a = ds.TINY_MODEL
        elif a.startswith("--api-key-file"):
            a = f"--api-key-file={local_key}"
        elif a.startswith("--host"):
            a = "--host=127.0.0.1"
        elif a.startswith("--port"):
            a = "--port=0"
        elif a.startswith("--threads"):
            a = "--threads=1"  # this machine's cores are shared
        local_args.append(a)
    kiln = ds.KilnServer(local_args, os.path.join(work, "kiln.log"))
    try:
        if c.check(kiln.port > 0, f"kiln serve starts with the Deployment's arguments: {local_args}"):
            for name, p in probes.items():
                status = ds.request(kiln.port, "GET", p["httpGet"]["path"])[0]
                c.check(status == 200, f"{name} {p['httpGet']['path']}: {status} without the key")
            c.check(ds.request(kiln.port, "GET", "/metrics")[0] == 401, "/metrics needs the key")
            status, page, _ = ds.request(kiln.port, "GET", "/metrics", headers={"Authorization": "Bearer sk-k8s-check-0123456789"})
            c.check(status == 200, "/metrics answers the ServiceMonitor's Bearer key")
            exported = set(re.findall(r"^# TYPE (\S+) ", page, re.M))
            if producing:
                c.check(producing[0][0] in exported, f"the adapter's series {producing[0][0]} is a metric kiln exports")
        else:
            print(kiln.log())
    finally:
        kiln.stop()
    c.finish()


if __name__ == "__main__":
    main()
