"""deploy/grafana/ checked for what Grafana would accept silently and show wrongly: the dashboard
takes its data source from a `datasource` variable that every panel and query uses (so it works
whatever the Prometheus data source is called), has job, instance and model variables that the
queries filter on, unique panel ids and panels that do not overlap on the 24-column grid; the
provisioning files point Grafana at a Prometheus data source and at the dashboard's folder.
(tests/deploy/promql_live_check.py runs the queries themselves.)"""
import json
import os

import deploy_support as ds
from promql import dashboard_queries

GRAFANA = os.path.join(ds.DEPLOY_DIR, "grafana")


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def main():
    ds.require_yaml()
    c = ds.Checks()
    with open(os.path.join(GRAFANA, "kiln-dashboard.json")) as f:
        d = json.load(f)
    c.check(d.get("schemaVersion", 0) >= 39, f"schemaVersion {d.get('schemaVersion')} (Grafana 11 or later)")
    c.check(d.get("uid") and d.get("title"), "a uid and a title")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds_var = variables.get("datasource", {})
    c.check(ds_var.get("type") == "datasource" and ds_var.get("query") == "prometheus", "a datasource variable of Prometheus data sources")
    for name in ("job", "instance", "model"):
        v = variables.get(name, {})
        c.check(v.get("type") == "query" and v.get("datasource", {}).get("uid") == "${datasource}", f"variable {name} queries the chosen data source")
    for name in ("instance", "model"):
        c.check(variables.get(name, {}).get("includeAll") and variables[name].get("allValue") in (".*", ".+"),
                f"variable {name} offers All as a regex (the queries match it with =~)")

    panels = list(all_panels(d["panels"]))
    ids = [p["id"] for p in panels]
    c.check(len(ids) == len(set(ids)), "panel ids are unique")
    cells = {}
    for p in panels:
        g = p["gridPos"]
        c.check(0 <= g["x"] and g["x"] + g["w"] <= 24, f"panel '{p['title']}' fits the 24 columns")
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                other = cells.setdefault((x, y), p["title"])
                if other != p["title"]:
                    c.check(False, f"panels '{other}' and '{p['title']}' overlap at ({x}, {y})")
                    break
        if p["type"] == "row":
            continue
        c.check(p.get("datasource", {}).get("uid") == "${datasource}", f"panel '{p['title']}' uses the datasource variable")
        for t in p.get("targets", []):
            c.check(t.get("datasource", {}).get("uid") == "${datasource}", f"panel '{p['title']}' query {t.get('refId')} uses the datasource variable")
        c.check(bool(p.get("description")), f"panel '{p['title']}' says what it shows")
    for title, expr in dashboard_queries(d):
        if "kiln_" in expr or "process_" in expr or "up{" in expr:
            c.check('job="$job"' in expr, f"panel '{title}' filters on the job: {expr}")
        uses_raw = any(m in expr for m in ("kiln_", "process_")) and "job_model:" not in expr
        if uses_raw:
            c.check('instance=~"$instance"' in expr, f"panel '{title}' filters on the instance: {expr}")

    sources = ds.load_yaml(os.path.join(GRAFANA, "provisioning", "datasources", "prometheus.yml"))
    c.check(sources["apiVersion"] == 1 and any(s["type"] == "prometheus" for s in sources["datasources"]),
            "the data source provisioning declares a Prometheus data source")
    providers = ds.load_yaml(os.path.join(GRAFANA, "provisioning", "dashboards", "kiln.yml"))
    c.check(providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
            and providers["providers"][0]["options"]["path"].startswith("/"),
            "the dashboard provisioning reads dashboards from a folder")
    c.finish()


if __name__ == "__main__":
    main()
