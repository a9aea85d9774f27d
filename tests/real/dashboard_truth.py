#!/usr/bin/env python3
"""Checks the Grafana dashboard and the alerts against a real Prometheus.

  dashboard_truth.py panels --since EPOCH_SECONDS [--wait SECONDS] [--flat TITLE]...
      Runs every panel query of grafana/dashboards/tidemark.json (variables set to "all") over
      the range from --since to now, and fails unless each returns series and at least one of
      them changed during that range: a panel stuck at one value shows nothing of the run. A
      panel named by --flat (a title prefix, or "TITLE [REF]" for one query) is one the scenario cannot move (no conflicting
      copies are sent, say); it must still return series.
  dashboard_truth.py alert NAME firing|resolved [--timeout SECONDS]
      Waits until ALERTS{alertname=NAME, alertstate="firing"} exists (firing) or is gone
      (resolved), and fails on timeout.
  dashboard_truth.py recorded --min-split SECONDS
      Prints the largest replication lag and split duration Prometheus recorded in the last
      10 minutes, per direction, and fails unless some direction recorded a split episode and
      a split lasting at least SECONDS.

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


def query_range(expr, start, end):
    step = max(1, int((end - start) / 200))
    url = PROMETHEUS + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step}
    )
    with urllib.request.urlopen(url, timeout=20) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def changed(series):
    """True when some series took more than one value over the range."""
    return any(len({v for _, v in s["values"]}) > 1 for s in series)


def panels(wait, since, flat):
    dash = json.load(open(DASHBOARD))
    targets = [
        (p["title"], t["refId"], substitute(t["expr"]))
        for p in dash["panels"]
        if p.get("type") != "row"
        for t in p.get("targets", [])
    ]
    deadline = time.time() + wait
    failed = []
    for title, ref, expr in targets:
        allowed_flat = any(title.startswith(f) or f == f"{title} [{ref}]" for f in flat)
        while True:
            try:
                series = query_range(expr, since, time.time())
            except Exception as e:  # a bad query is a failure, reported with the panel
                print(f"ERROR  {title} [{ref}]: {e}")
                series = None
                break
            good = bool(series) and (allowed_flat or changed(series))
            if good or time.time() > deadline:
                break
            time.sleep(2)
        if series is None:
            state = "ERROR"
        elif not series:
            state = "EMPTY"
        elif changed(series):
            state = "ok   "
        else:
            state = "flat " if allowed_flat else "FLAT "
        print(f"{state} {len(series or []):3d} series  {title} [{ref}]")
        if state not in ("ok   ", "flat "):
            failed.append(f"{title} [{ref}]: {expr}")
    print(f"{len(targets) - len(failed)}/{len(targets)} panel queries returned data that moved")
    if failed:
        print("no data, or never changed:\n  " + "\n  ".join(failed))
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


def recorded(min_split):
    longest, episodes = 0.0, 0.0
    for label, expr in [
        ("max replication lag (s)", "max by (from, to) (max_over_time(tidemark_replication_lag_seconds[10m]))"),
        ("max split duration (s)", "max by (from, to) (max_over_time(tidemark_split_duration_seconds[10m]))"),
        ("split episodes", "max by (from, to) (tidemark_split_episodes_total)"),
    ]:
        for r in query(expr):
            m = r["metric"]
            value = float(r["value"][1])
            print(f"{label:26s} {m.get('from')} -> {m.get('to')}: {value:.1f}")
            if label.startswith("max split"):
                longest = max(longest, value)
            if label == "split episodes":
                episodes = max(episodes, value)
    if episodes < 1 or longest < min_split:
        print(f"expected a split episode lasting at least {min_split:.0f} s; recorded {episodes:.0f} episodes, longest {longest:.1f} s")
        return 1
    return 0


def main(argv):
    args = argv[1:]
    opt = lambda name, default: float(args[args.index(name) + 1]) if name in args else default
    if args[:1] == ["panels"] and "--since" in args:
        flat = [args[i + 1] for i, a in enumerate(args) if a == "--flat"]
        return panels(opt("--wait", 60), opt("--since", 0), flat)
    if args[:1] == ["alert"] and len(args) >= 3 and args[2] in ("firing", "resolved"):
        return alert(args[1], args[2], opt("--timeout", 60))
    if args[:1] == ["recorded"] and "--min-split" in args:
        return recorded(opt("--min-split", 0))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
