#!/usr/bin/env python3
"""Writes docs/BENCHMARKS.md from bench/run-all's results.

results.tsv rows: scenario, system, run, events/s, verified (yes/no). The engine section is
`tidemark bench`'s own output, quoted as printed. The plots need matplotlib (bench/run-all
installs it into a virtual environment).
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
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        # `java -version` writes to stderr; the first line is enough.
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[0]
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


SYSTEMS = [
    ("tidemark", "tidemark", "`tidemark run bench/sN-tidemark.toml --bounded --workers 2`"),
    ("kstreams", "Kafka Streams 4.1.1", "`KStreamsJob`, 2 stream threads, RocksDB stores with changelogs"),
    ("flink", "Flink 2.2.0", "`FlinkJob`, local, parallelism 2, heap state, checkpoints every 1 s"),
]


def bars(path, title, rows, floor):
    """Median events/s per system with min-max whiskers, and the floor as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r[0] for r in rows]
    med = [statistics.median(r[1]) if r[1] else 0 for r in rows]
    lo = [m - min(r[1]) if r[1] else 0 for m, r in zip(med, rows)]
    hi = [max(r[1]) - m if r[1] else 0 for m, r in zip(med, rows)]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    ax.bar(names, med, yerr=[lo, hi], capsize=6, color=["#2b6cb0", "#9c4221", "#6b46c1"][: len(rows)])
    for i, m in enumerate(med):
        ax.text(i, m, f"{m:,.0f}", ha="center", va="bottom", fontsize=9)
    if floor:
        ax.axhline(floor, color="#444", linestyle="--", linewidth=1)
        ax.text(len(rows) - 0.5, floor, f"S0 floor {floor:,.0f}", ha="right", va="bottom", fontsize=8)
    ax.set_ylabel("events/s (median, min-max)")
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--engine", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--smoke", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--figures", required=True)
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
        return f"{med:,.0f} ({min(v):,.0f}–{max(v):,.0f}, {len(v)} run{'s' if len(v) > 1 else ''})", med

    def ratio(a, b):
        return f"{a / b:.1f}×" if a and b else "n/a"

    s0, floor = cell(("S0", "floor"))
    bad = ", ".join(f"{s} {sys}: {n}" for (s, sys), n in failed.items()) or "none"
    os.makedirs(a.figures, exist_ok=True)
    rel = os.path.relpath(a.figures, os.path.dirname(os.path.abspath(a.out)))

    def scenario(name, title):
        """The table rows and the headline row of one scenario, and its plot."""
        got = {key: cell((name, key)) for key, _, _ in SYSTEMS}
        tm = got["tidemark"][1]
        rows = "\n".join(
            f"| {name} | {label} | {how} | {got[key][0]} | "
            + ("1.0×" if key == "tidemark" else ratio(tm, got[key][1]))
            + f" | {f'{got[key][1] / floor:.0%}' if floor and got[key][1] else 'n/a'} |"
            for key, label, how in SYSTEMS
        )
        share = f"{tm / floor:.0%}" if floor and tm else "n/a"
        head = (
            f"| {name} {title} | **{ratio(tm, got['kstreams'][1])}** | "
            f"**{ratio(tm, got['flink'][1])}** | {share} |"
        )
        bars(
            os.path.join(a.figures, f"{name.lower()}-throughput.png"),
            f"{name} {title}, {a.events:,} events",
            [(label, runs.get((name, key), [])) for key, label, _ in SYSTEMS],
            floor,
        )
        return rows, head

    s2_rows, s2_head = scenario("S2", "Kafka → Kafka, one region")
    s3_rows, s3_head = scenario("S3", "two regions")

    doc = f"""# Benchmarks

Written by `bench/run-all`{" --smoke (tiny inputs, one run: a check that the harness works, not a measurement)" if a.smoke else ""}.
Machine: {machine()}. {version(["rustc", "--version"])}; {version(["java", "-version"]) or "Java"}.
Apache Kafka 4.1.1 (KRaft, one broker per region) runs on this same machine, so every system
shares the two cores with the broker.

## Headline

Throughput ratios, medians over the runs that passed `tidemark verify`:

| | tidemark / Kafka Streams | tidemark / Flink | tidemark / S0 floor |
|---|---|---|---|
{s2_head}
{s3_head}

## S0 floor and S2 Kafka → Kafka, one region

{a.events:,} unique events of about 300 bytes pre-produced into region-a's `log-events` (4
partitions), 1 s of event-time disorder, 0.2% invalid records. The job, in each system: 2 s
bounded disorder with 5 s idleness, dedup by `eventId` within 10 min, event-time order per
output partition, late events to a late topic and invalid records to an invalid topic, each
with tidemark's `tidemark-*` headers; output acks=all, idempotent. All three read up to the end
offsets taken at start and finish when everything is written. S0 copies the bytes unparsed on
2 threads (one consumer and one producer each, the pipeline's client settings).

How each is timed: tidemark from its first read to its last durable write (its own summary);
Kafka Streams from its first record processed to the return of `close()` (producer flushed,
offsets committed), so its group join is not counted; Flink by the job's net runtime, which
includes scheduling the job on the local MiniCluster (about a second).

Every S2 run's output is checked with `tidemark verify` (every event once, ordered per
partition, late means late, invalid records all there with a reason); runs that fail it do not
count. Runs that failed: {bad}.

| scenario | system | how it runs | events/s, median (min–max) | tidemark / it | of S0 |
|---|---|---|---|---|---|
| S0 | floor | rdkafka consume → produce, 2 threads | {s0} | | 100% |
{s2_rows}

![S2 throughput]({rel}/s2-throughput.png)

Where the peers cannot do what tidemark does, they do what their framework allows:

- **Kafka Streams** has no frontier across tasks: a task's watermark is its own stream time
  minus the bound. It cannot repartition in memory, so the job relies on the input being keyed
  by `eventId` (every copy of an event in the same partition) rather than pay a repartition
  topic; each ordered partition is owned by the task of the input partition with its number.
  Dedup is a persistent window store with retention (the Confluent pattern); the order buffer
  is a persistent key-value store sorted by (time, id), emitted when the watermark moves.
- **Flink** expires dedup state by processing-time TTL (state TTL has no event-time mode), and
  routes late events through a ProcessFunction side output (the job has no windows for
  `sideOutputLateData`). Ordering uses event-time timers keyed by output partition, so each
  ordered partition has one writer.

## S3 two regions

{a.events:,} unique events written into both regions' `log-events` (half homed in each), 8% of
them failover copies sent to both regions, event times 0–2 s behind the wall clock, 0.5%
stragglers 30 s behind (late in every system once its watermark has moved), 0.2% invalid
records. MM2 copies both topics before the systems run, then is paused. tidemark
(`bench/s3-tidemark.toml`, `pipelines/global.toml`'s shape) and Flink (one KafkaSource per
cluster, unioned) read both clusters directly; Kafka Streams can read only one cluster, so it
reads region-a's `log-events` and MM2's `region-b.log-events` there: the same records.
Outputs go to region-a; the "of S0" column compares with the one-region floor.

| scenario | system | how it runs | events/s, median (min–max) | tidemark / it | of S0 |
|---|---|---|---|---|---|
{s3_rows}

![S3 throughput]({rel}/s3-throughput.png)

## S1 engine only

![S1 engine]({rel}/s1-engine.png)

```
{engine}
```

## Not yet measured

S5 (dedup state at 1M/10M/50M ids against Flink) and S6
(latency under open-loop load) are not in the suite yet.

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
