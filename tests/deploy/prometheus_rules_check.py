"""deploy/prometheus/ as Prometheus itself reads it: `promtool check config` on prometheus.yml (as
shipped, beside a key file, since promtool checks that the credentials file exists), `promtool
check rules` on the rule files and `promtool test rules` on their unit tests; then what promtool
does not check: every alert has a severity, a summary, a description and a runbook_url whose
anchor is a heading of docs/operations.md, and every alert is tested both firing and quiet."""
import os
import re
import shutil
import subprocess

from deploy_support import DEPLOY_DIR, SOURCE_DIR, Checks, load_yaml, require_yaml, skip, temp_dir

PROM_DIR = os.path.join(DEPLOY_DIR, "prometheus")


def promtool(*args, cwd):
    r = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def github_anchor(heading):
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def main():
    require_yaml()
    if shutil.which("promtool") is None:
        skip("promtool is not installed (scripts/install-deps.sh --test installs Debian's prometheus)")
    c = Checks()

    # prometheus.yml as shipped: its credentials_file is relative (kiln.key beside it).
    work = temp_dir("kiln-prom-check-")
    for name in os.listdir(PROM_DIR):
        shutil.copy(os.path.join(PROM_DIR, name), work)
    config = load_yaml(os.path.join(PROM_DIR, "prometheus.yml"))
    key_file = config["scrape_configs"][0]["authorization"]["credentials_file"]
    c.check(not os.path.isabs(key_file), f"prometheus.yml: credentials_file {key_file} is relative to the config")
    with open(os.path.join(work, key_file), "w") as f:
        f.write("sk-example\n")
    rc, out = promtool("check", "config", "prometheus.yml", cwd=work)
    print(out.strip())
    c.check(rc == 0, "promtool check config prometheus.yml")

    rule_files = config.get("rule_files", [])
    c.check(sorted(rule_files) == ["kiln-alerts.yml", "kiln-rules.yml"], f"prometheus.yml loads both rule files: {rule_files}")
    rc, out = promtool("check", "rules", *rule_files, cwd=PROM_DIR)
    print(out.strip())
    c.check(rc == 0, "promtool check rules")

    rc, out = promtool("test", "rules", "kiln-alerts.test.yml", cwd=PROM_DIR)
    print(out.strip())
    c.check(rc == 0, "promtool test rules kiln-alerts.test.yml")

    # Alert metadata, and the runbooks they point to.
    with open(os.path.join(SOURCE_DIR, "docs", "operations.md")) as f:
        anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", f.read(), re.M)}
    alerts = [r for g in load_yaml(os.path.join(PROM_DIR, "kiln-alerts.yml"))["groups"] for r in g["rules"] if "alert" in r]
    c.check(len(alerts) >= 8, f"{len(alerts)} alerts")
    for a in alerts:
        name = a["alert"]
        c.check(a.get("labels", {}).get("severity") in ("critical", "warning"), f"{name}: severity critical or warning")
        ann = a.get("annotations", {})
        c.check(bool(ann.get("summary")) and bool(ann.get("description")), f"{name}: summary and description")
        url = ann.get("runbook_url", "")
        m = re.fullmatch(r"docs/operations\.md#([a-z0-9-]+)", url)
        c.check(m is not None and m.group(1) == name.lower(), f"{name}: runbook_url docs/operations.md#{name.lower()} (is {url!r})")
        c.check(m is not None and m.group(1) in anchors, f"{name}: docs/operations.md has a heading for #{m.group(1) if m else '?'}")

    # Each alert is tested firing (a non-empty exp_alerts) and quiet (an empty one).
    tests = load_yaml(os.path.join(PROM_DIR, "kiln-alerts.test.yml"))["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    for a in alerts:
        c.check(a["alert"] in fired, f"{a['alert']}: a unit test where it fires")
        c.check(a["alert"] in quiet, f"{a['alert']}: a unit test where it stays quiet")
    shutil.rmtree(work, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
