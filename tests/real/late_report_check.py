#!/usr/bin/env python3
"""Checks `tidemark late-report --format json` of both regions after a replication pause.

    late_report_check.py --pause-start MS --pause-end MS REPORT_A REPORT_B

In each region's late topic, the other region's replicated events must show up as a burst
whose event times start at the pause (within the slack) and run past its end, matched to a
split-brain episode from Prometheus. Prints `ADVISED_HOLD=<seconds>s`: the advisor's 99.9 %
max_split_hold, the larger of the two regions'. Exits 1 on any failure.
"""
import argparse
import json
import sys

SLACK_MS = 5000


def check(path, pause_start, pause_end):
    with open(path) as f:
        report = json.load(f)
    problems = []
    if report["events"] == 0:
        return ["no late events at all"], None
    unreadable = sum(report["unreadable"].values())
    if unreadable:
        problems.append(f"{unreadable} unreadable records: {report['unreadable']}")
    found = None
    for region, bursts in report["bursts"].items():
        episodes = report["burst_episodes"].get(region, [])
        for burst, episode in zip(bursts, episodes):
            starts_at_pause = abs(burst["event_start_ms"] - pause_start) <= SLACK_MS
            covers_pause = burst["event_end_ms"] >= pause_end
            arrived_after = burst["start_ms"] >= pause_start
            if starts_at_pause and covers_pause and arrived_after:
                found = (region, burst, episode)
    if found is None:
        problems.append(
            f"no burst with event times from the pause start ({pause_start}, ±{SLACK_MS} ms) "
            f"past its end ({pause_end}): {json.dumps(report['bursts'])}"
        )
    else:
        region, burst, episode = found
        share = burst["count"] / report["events"]
        print(
            f"{path}: burst of {burst['count']} late {region} events "
            f"({share:.0%} of the late topic), event times "
            f"{(burst['event_start_ms'] - pause_start) / 1000:+.1f} s to "
            f"{(burst['event_end_ms'] - pause_end) / 1000:+.1f} s around the pause, "
            f"arrived {(burst['start_ms'] - pause_end) / 1000:+.1f} s after it; "
            f"split-brain episode: {episode}"
        )
        if episode is None:
            problems.append("the burst matched no split-brain episode in Prometheus")
    advice = {a["keep"]: a for a in report["advice"]}
    hold = advice["99.9%"]["max_split_hold_ms"]
    if hold is None:
        problems.append("the advisor has no max_split_hold for replicated events")
    return problems, hold


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pause-start", type=int, required=True)
    p.add_argument("--pause-end", type=int, required=True)
    p.add_argument("reports", nargs="+")
    a = p.parse_args()
    failed = False
    holds = []
    for path in a.reports:
        problems, hold = check(path, a.pause_start, a.pause_end)
        for problem in problems:
            print(f"{path}: {problem}")
            failed = True
        if hold is not None:
            holds.append(hold)
    if holds:
        print(f"ADVISED_HOLD={max(holds) // 1000}s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
