#!/usr/bin/env python3
"""Checks the Grafana dashboard and the alerts against a real Prometheus.

  dashboard_truth.py panels [--wait SECONDS]
      Runs every panel query of grafana/dashboards/tidemark.json (variables set to "all") and
      fails if any returns no series.
  dashboard_truth.py alert NAME firing|resolved [--timeout SECONDS]
      Waits until ALERTS{alertname=NAME, alertstate="firing"} exists (firing) or is gone
      (resolved), and fails on timeout.
  dashboard_truth.py recorded
      Prints the largest replication lag and split duration Prometheus recorded in the last
      10 minutes, per direction.

Standard library only; Prometheus at $PROMETHEUS (default http://127.0.0.1:9090).
"""

import json
import os
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMETHEUS = os.environ.get("PROMETHEUS", "http://127.0.0.1:9090")
DASHBOARD = os.path.join(ROOT, "grafana", "dashboards", "tidemark.json")


def query(expr):
    url = PROMETHEUS + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def substitute(expr):
    # "All" for every multi-value variable, as Grafana sends it with allValue ".*".
    return (
        expr.replace("$pipeline", ".*")
        .replace("$region", ".*")
        .replace("$__rate_interval", "1m")
    )


def panels(wait):
    dash = json.load(open(DASHBOARD))
    targets = [
        (p["title"], t["refId"], substitute(t["expr"]))
        for p in dash["panels"]
        if p.get("type") != "row"
        for t in p.get("targets", [])
    ]
    deadline = time.time() + wait
    empty = []
    for title, ref, expr in targets:
        while True:
            try:
                n = len(query(expr))
            except Exception as e:  # a bad query is a failure, reported with the panel
                print(f"ERROR  {title} [{ref}]: {e}")
                n = -1
                break
            if n > 0 or time.time() > deadline:
                break
            time.sleep(2)
        print(f"{'ok   ' if n > 0 else 'EMPTY'} {n:3d} series  {title} [{ref}]")
        if n <= 0:
            empty.append(f"{title} [{ref}]: {expr}")
    print(f"{len(targets) - len(empty)}/{len(targets)} panel queries returned data")
    if empty:
        print("no data:\n  " + "\n  ".join(empty))
        return 1
    return 0


def alert(name, state, timeout):
    start = time.time()
    expr = f'ALERTS{{alertname="{name}",alertstate="firing"}}'
    while time.time() - start < timeout:
        firing = query(expr)
        if (state == "firing") == bool(firing):
            labels = [
                {k: v for k, v in f["metric"].items() if k in ("from", "to")} for f in firing
            ]
            print(f"{name} {state} after {time.time() - start:.0f} s {labels if firing else ''}")
            return 0
        time.sleep(1)
    print(f"{name} not {state} within {timeout} s")
    return 1


def recorded():
    for label, expr in [
        ("max replication lag (s)", "max by (from, to) (max_over_time(tidemark_replication_lag_seconds[10m]))"),
        ("max split duration (s)", "max by (from, to) (max_over_time(tidemark_split_duration_seconds[10m]))"),
        ("split episodes", "max by (from, to) (tidemark_split_episodes_total)"),
    ]:
        for r in query(expr):
            m = r["metric"]
            print(f"{label:26s} {m.get('from')} -> {m.get('to')}: {float(r['value'][1]):.1f}")
    return 0


def main(argv):
    args = argv[1:]
    opt = lambda name, default: float(args[args.index(name) + 1]) if name in args else default
    if args[:1] == ["panels"]:
        return panels(opt("--wait", 60))
    if args[:1] == ["alert"] and len(args) >= 3 and args[2] in ("firing", "resolved"):
        return alert(args[1], args[2], opt("--timeout", 60))
    if args[:1] == ["recorded"]:
        return recorded()
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
