#!/usr/bin/env python3
"""Writes docs/BENCHMARKS.md from bench/run-all's results.

results.tsv rows: scenario, system, run, events/s, verified (yes/no). The engine section is
`tidemark bench`'s own output, quoted as printed.
"""
import argparse
import os
import platform
import statistics
import subprocess


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, {platform.system()} {platform.release()}"


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--engine", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--smoke", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()

    runs = {}
    failed = {}
    with open(a.results) as f:
        for line in f:
            scenario, system, _run, rate, ok = line.rstrip("\n").split("\t")
            key = (scenario, system)
            if ok == "yes" and rate:
                runs.setdefault(key, []).append(float(rate))
            else:
                failed[key] = failed.get(key, 0) + 1
    with open(a.engine) as f:
        engine = f.read().rstrip()

    def cell(key):
        v = runs.get(key, [])
        if not v:
            return "no valid run", None
        med = statistics.median(v)
        return f"{med:,.0f} ({min(v):,.0f}–{max(v):,.0f}, {len(v)} runs)", med

    s0, floor = cell(("S0", "floor"))
    s2, tidemark = cell(("S2", "tidemark"))
    share = f"{tidemark / floor:.0%}" if floor and tidemark else "n/a"
    bad = ", ".join(f"{s} {sys}: {n}" for (s, sys), n in failed.items()) or "none"

    doc = f"""# Benchmarks

Written by `bench/run-all`{" --smoke (tiny inputs, one run: a check that the harness works, not a measurement)" if a.smoke else ""}.
Machine: {machine()}. {version(["rustc", "--version"])}; Apache Kafka 4.1.1 (KRaft, one broker
per region, on this same machine).

**Not yet measured: Kafka Streams and Flink.** Their jobs are not written yet, so there are no
ratios against them; the tables below hold tidemark and the floor only.

## S0 floor and S2 Kafka → Kafka, one region

{a.events:,} unique events of about 300 bytes pre-produced into region-a's `log-events` (4
partitions), 1 s of event-time disorder. S0 copies the bytes unparsed on 2 threads (one
consumer and one producer each, the pipeline's client settings); S2 runs
`bench/s2-tidemark.toml` (2 s bounded disorder, dedup, event-time order, late topic) with
`--bounded` and 2 workers, timed by the pipeline from its first read to its last durable write.
Every S2 run's output is checked with `tidemark verify` (every event once, ordered, late means
late); runs that fail it do not count. Runs that failed: {bad}.

| scenario | system | events/s, median (min–max) |
|---|---|---|
| S0 floor | rdkafka consume → produce, 2 threads | {s0} |
| S2 | tidemark | {s2} |

tidemark reaches **{share} of the floor** on S2.

## S1 engine only

```
{engine}
```

## Commands

```sh
bench/run-all            # the full suite ({a.events:,} events, 5 runs each)
bench/run-all --smoke    # tiny inputs, one run each (.ci/run)
```
"""
    with open(a.out, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
