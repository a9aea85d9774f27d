#!/usr/bin/env python3
"""Checks `tidemark late-report --format json` of both regions after a replication pause.

    late_report_check.py --pause-start MS --pause-end MS REPORT_A REPORT_B

MirrorMaker 2 is stopped at the pause start and started again 5 s later; it takes a while more
to replicate again, and `infra/regions resume-replication` returns (the pause end) only once
heartbeats flow again. In each region's late topic, the other region's replicated events must
show up as a burst whose event times begin at the pause start (within the slack), which
arrived after MM2 was started again and before the pause end, whose events are all older than
its arrival, and which a split-brain episode in Prometheus covers. Prints
`ADVISED_HOLD=<seconds>s`: the advisor's 99.9 % max_split_hold, the larger of the two regions'.
Exits 1 on any failure.
"""
import argparse
import json
import sys

SLACK_MS = 5000
PAUSED_MS = 5000


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
            arrived_on_return = pause_start + PAUSED_MS <= burst["start_ms"] <= pause_end + SLACK_MS
            held_back = burst["event_end_ms"] <= burst["start_ms"] + SLACK_MS
            if starts_at_pause and arrived_on_return and held_back:
                found = (region, burst, episode)
    if found is None:
        problems.append(
            f"no burst with event times from the pause start ({pause_start}, ±{SLACK_MS} ms), "
            f"arriving between MM2's restart and the pause end ({pause_end}): "
            f"{json.dumps(report['bursts'])}"
        )
    else:
        region, burst, episode = found
        share = burst["count"] / report["events"]
        print(
            f"{path}: burst of {burst['count']} late {region} events "
            f"({share:.0%} of the late topic), event times "
            f"from {(burst['event_start_ms'] - pause_start) / 1000:+.1f} s to "
            f"{(burst['event_end_ms'] - pause_start) / 1000:+.1f} s after the pause began, "
            f"arrived {(burst['start_ms'] - pause_start) / 1000:+.1f} s after it began; "
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
