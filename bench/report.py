#!/usr/bin/env python3
"""Writes docs/BENCHMARKS.md from bench/run-all's results.

results.tsv rows: scenario, system, run, events/s, verified (yes/no). state.tsv rows (S5): S5,
system, live|baseline, events, seconds, ids, state bytes, RSS bytes, peak RSS bytes, run. The
engine section is
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
    ("tidemark", "tidemark exactly-once", "`tidemark run bench/sN-tidemark.toml --bounded --workers 2`, exactly-once (transactions every 1 s)"),
    ("tidemark-alo", "tidemark at-least-once", "the same with `delivery = \"at_least_once\"`: its ratio is the price of exactly-once"),
    ("kstreams", "Kafka Streams 4.1.1 in memory", "`KStreamsJob --stores memory`, 2 stream threads, in-memory stores without changelogs, at least once, commits every 30 s"),
    ("kstreams-eos", "Kafka Streams 4.1.1 exactly-once", "`KStreamsJob --stores durable`, RocksDB stores with changelogs and caching, `exactly_once_v2`, commits every 1 s"),
    ("flink", "Flink 2.2.0 in memory", "`FlinkJob --checkpoint-interval 0`, local, parallelism 2, heap state, no checkpoints, at-least-once sinks"),
    ("flink-eos", "Flink 2.2.0 exactly-once", "`FlinkJob --delivery exactly-once`, checkpoints every 1 s, transactional sinks committed at each"),
]
# What each system is compared with: like with like. tidemark at least once is compared with
# tidemark exactly-once, which gives the price of exactly-once.
LIKE = {
    "tidemark": "tidemark",
    "tidemark-alo": "tidemark",
    "kstreams": "tidemark-alo",
    "kstreams-eos": "tidemark",
    "flink": "tidemark-alo",
    "flink-eos": "tidemark",
}

# The client settings all systems use (bench/jvm/common's ClientSettings, tidemark's src/kafka.rs).
CLIENT_SETTINGS = """| setting | tidemark (librdkafka) | Kafka Streams and Flink (Java client) | the Java default, for comparison |
|---|---|---|---|
| acks | `all` | `all` | `all` |
| idempotence | `enable.idempotence=true` | `enable.idempotence=true` | `true` |
| batch size | `batch.size=1000000` (librdkafka's default) | `batch.size=1000000` | 16,384 |
| linger | `linger.ms=5` | `linger.ms=5` | 5 (Kafka Streams: 100) |
| compression | `compression.type=lz4` | `compression.type=lz4` | none |
| delivery bound | `message.timeout.ms=120000` | `delivery.timeout.ms=120000` | 120,000 |
| consumer isolation | `isolation.level=read_committed` | `isolation.level=read_committed` (Kafka Streams at least once: its own default, `read_uncommitted`; the input has no transactions) | `read_uncommitted` |
| fetch wait | `fetch.wait.max.ms=50` | `fetch.max.wait.ms=50` | 500 |
| prefetch | `queued.max.messages.kbytes=16384` | no equivalent: the Java defaults (`fetch.max.bytes` 50 MB, `max.partition.fetch.bytes` 1 MB, as librdkafka's) | |
"""


def previous_sections(path):
    """The sections (by `## ` heading) and headline rows of an earlier report, to carry over
    what this work folder did not run."""
    sections, rows, current = {}, {}, None
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return sections, rows, ""
    for line in text.splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
            if current == "Headline" and line.startswith("| S"):
                rows[line.split()[1]] = line
    # Every code block of its Commands but the usage one: its own runs, and any it carried.
    blocks = "\n".join(sections.get("Commands", [])).split("```")[1::2]
    invocations = "\n".join(b.strip("\n") for b in blocks if not b.startswith("sh"))
    # A section it had itself carried is carried again as it was, not marked twice.
    bodies = {k: "\n".join(v).strip("\n").removeprefix(CARRIED).strip("\n") for k, v in sections.items()}
    return bodies, rows, invocations


CARRIED = ("*Not run in this report's work folder: carried over as it was from the previous "
           "report, whose runs are listed under Commands.*")


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
    ax.bar(names, med, yerr=[lo, hi], capsize=6, color=["#2b6cb0", "#63b3ed", "#9c4221", "#6b46c1", "#b794f4"][: len(rows)])
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


def state_plot(path, rows):
    """Bytes per live id (RSS delta) per system and size, on a log axis: the two differ tenfold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({n for _, n, _ in rows})
    systems = [s for s in ("tidemark", "flink") if any(r[0] == s for r in rows)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        values = [next((v for s, n, v in rows if s == system and n == size), 0) for size in sizes]
        xs = [j + i * width for j in range(len(sizes))]
        ax.bar(xs, values, width, label=system)
        for x, v in zip(xs, values):
            ax.text(x, v * 1.05, f"{v:,.0f}", ha="center", va="bottom", fontsize=9)
    ax.axhline(48, color="grey", linestyle="--", linewidth=1, label="target: 48 B/id")
    ax.set_yscale("log")
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(sizes))])
    ax.set_xticklabels([f"{n / 1e6:g}M ids" for n in sizes])
    ax.set_ylabel("resident bytes per live id")
    ax.set_title("S5 dedup state: RSS delta per live id (live - baseline)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def state_section(path, figures):
    """The S5 table and plot from state.tsv; medians over runs, per system, kind and size."""
    got = {}
    try:
        with open(path) as f:
            for line in f:
                _, system, kind, events, secs, ids, state, rss, peak, _run = line.rstrip("\n").split("\t")
                got.setdefault((system, int(events)), {}).setdefault(kind, []).append(
                    (int(events) / float(secs), int(ids), int(state), int(rss), int(peak)))
    except (OSError, ValueError):
        pass
    if not got:
        return "S5 was not run in this work folder.", None
    med = lambda runs, i: statistics.median(r[i] for r in runs)  # noqa: E731
    lines = []
    plotted = []
    for (system, n), kinds in sorted(got.items(), key=lambda kv: (kv[0][1], kv[0][0] != "tidemark")):
        live, base = kinds.get("live", []), kinds.get("baseline", [])
        if not live or not base:
            continue
        ids = med(live, 1)
        rate, base_rate = med(live, 0), med(base, 0)
        rates = [r[0] for r in live]
        own = med(live, 2) / ids if system == "tidemark" else (med(live, 2) - med(base, 2)) / ids
        rss = (med(live, 3) - med(base, 3)) / ids
        peak = (med(live, 4) - med(base, 4)) / ids
        plotted.append((system, n, rss))
        lines.append(
            f"| {n:,} | {system} | {rate:,.0f} ({min(rates):,.0f}–{max(rates):,.0f}, {len(live)} run{'s' if len(live) > 1 else ''}) "
            f"| {base_rate:,.0f} | {1 - rate / base_rate:.0%} | {own:,.1f} | **{rss:,.1f}** | {peak:,.1f} |")
    if plotted:
        state_plot(os.path.join(figures, "s5-bytes-per-id.png"), plotted)
    table = (
        "| live ids | system | events/s, all ids live (min–max) | events/s, baseline | drop "
        "| state bytes/id | RSS Δ bytes/id | peak RSS Δ bytes/id |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(lines))
    return table, plotted


def restore_section(path):
    """The S7 table from restore.tsv (design, ids, run, seconds): medians over runs."""
    got = {}
    try:
        with open(path) as f:
            for line in f:
                design, ids, _run, secs = line.rstrip("\n").split("\t")
                got.setdefault((int(ids), design), []).append(float(secs))
    except (OSError, ValueError):
        pass
    if not got:
        return None
    names = {"rebuild": "rebuild from the committed output (what tidemark does)",
             "state-topic": "compact state topic (24 bytes an id, 10,000 to a record)"}
    lines = []
    for (ids, design), secs in sorted(got.items()):
        med = statistics.median(secs)
        lines.append(
            f"| {ids:,} | {names.get(design, design)} | **{med:.2f}** ({min(secs):.2f}–{max(secs):.2f}, "
            f"{len(secs)} run{'s' if len(secs) > 1 else ''}) | {ids / med:,.0f} |")
    return ("| live ids | design | seconds, median (min–max) | ids/s |\n|---|---|---|---|\n"
            + "\n".join(lines))


def throttled_section(path):
    """How long tidemark's flow control held its sources back in each S2 run."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                scenario, system, run, held, elapsed = line.rstrip("\n").split("\t")
                if scenario == "S2":
                    rows.append((system, int(run), float(held), float(elapsed)))
    except OSError:
        return ""
    if not rows:
        return ""
    body = "\n".join(
        f"| {system} | {run} | {held:.3f} | {elapsed:.3f} | {held / (2 * elapsed):.1%} |"
        for system, run, held, elapsed in sorted(rows))
    return (
        "Flow control in S2: the time tidemark's sources were held back because their records in "
        "flight had reached `max_in_flight_records` or `max_in_flight_bytes` (the run summary's "
        "`throttled`, summed over the 2 workers; the share is of 2 × the run's time).\n\n"
        "| system | run | throttled, worker-s | run, s | share |\n|---|---|---|---|---|\n" + body)


def cdf_plot(path, curves):
    """One CDF line per (label, [(overhead ms, fraction)], line style, colour), on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    for label, points, style, colour in curves:
        if points:
            xs = [max(v, 0.5) for v, _ in points]
            ax.plot(xs, [f for _, f in points], style, color=colour, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("overhead beyond the 2 s watermark delay, ms (log)")
    ax.set_ylabel("fraction of events")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", linewidth=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("S6 latency CDF", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def read_cdf(path):
    try:
        with open(path) as f:
            next(f)
            return [(float(v), float(q)) for v, q in (line.split("\t") for line in f)]
    except (OSError, StopIteration, ValueError):
        return []


def subtasks_section(path):
    """Flink's reorder subtasks: how many events each handled, per run."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.rstrip("\n").split("\t")
                if len(fields) == 4:
                    rows.append(fields)
    except OSError:
        return ""
    if not rows:
        return ""
    body = "\n".join(
        f"| {sc} | {sy} | {run} | {' / '.join(f'{int(n):,}' for n in counts.split())} |"
        for sc, sy, run, counts in rows)
    return (
        "Flink's reorder, events per subtask (keyed so that output partition p goes to subtask "
        "p mod 2; keyed by the partition number itself, all four partitions hashed to subtask 1):\n\n"
        "| scenario | system | run | events per subtask |\n|---|---|---|---|\n" + body)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--engine", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--smoke", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--figures", required=True)
    p.add_argument("--latency", required=True)
    p.add_argument("--cdf-dir", required=True)
    p.add_argument("--load-seconds", type=int, required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--invocations", required=True)
    p.add_argument("--restore", default="")
    p.add_argument("--throttled", default="")
    p.add_argument("--subtasks", default="", help="scenario, system, run and Flink's reorder subtask counts")
    p.add_argument("--own", default="", help="scenario, system, run and the rate by the system's own clock")
    p.add_argument("--previous", help="an earlier report: sections not run here are carried from it")
    a = p.parse_args()
    old_sections, old_heads, old_invocations = previous_sections(a.previous) if a.previous else ({}, {}, "")
    carried = []

    def carry(title, fresh, have):
        """The section as this folder measured it, or the earlier report's when it was not run."""
        if have or title not in old_sections:
            return fresh
        carried.append(title)
        return CARRIED + "\n\n" + old_sections[title]

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
    try:
        with open(a.engine) as f:
            engine = f.read().rstrip()
    except OSError:
        engine = None
    with open(a.invocations) as f:
        invocations = f.read().rstrip()

    own = {}
    if a.own:
        try:
            with open(a.own) as f:
                for line in f:
                    fields = line.rstrip("\n").split("\t")
                    if len(fields) == 4 and fields[3]:
                        own.setdefault((fields[0], fields[1]), []).append(float(fields[3]))
        except OSError:
            pass

    def own_cell(key):
        v = own.get(key, [])
        return f"{statistics.median(v):,.0f}" if v else "n/a"

    def cell(key):
        v = runs.get(key, [])
        if not v:
            return "no valid run", None
        med = statistics.median(v)
        return f"{med:,.0f} ({min(v):,.0f}–{max(v):,.0f}, {len(v)} run{'s' if len(v) > 1 else ''})", med

    def ratio(a, b):
        return f"{a / b:.1f}×" if a and b else "n/a"

    s0, floor = cell(("S0", "floor"))
    js0, jfloor = cell(("S0", "java-floor"))
    subtasks = subtasks_section(a.subtasks) if a.subtasks else ""
    throttled = throttled_section(a.throttled) if a.throttled else ""
    bad = ", ".join(f"{s} {sys}: {n}" for (s, sys), n in failed.items()) or "none"
    os.makedirs(a.figures, exist_ok=True)
    rel = os.path.relpath(a.figures, os.path.dirname(os.path.abspath(a.out)))
    s5_table, s5_plotted = state_section(a.state, a.figures)
    s7_table = restore_section(a.restore) if a.restore else None
    s5_plot = f"![S5 bytes per id]({rel}/s5-bytes-per-id.png)" if s5_plotted else ""

    def scenario(name, title):
        """The table rows and the headline row of one scenario, and its plot."""
        got = {key: cell((name, key)) for key, _, _ in SYSTEMS}
        tm = got["tidemark"][1]
        alo = got["tidemark-alo"][1]
        rows = "\n".join(
            f"| {name} | {label} | {how} | {got[key][0]} | {own_cell((name, key))} | "
            + ("1.0×" if key == "tidemark" else ratio(got[LIKE[key]][1], got[key][1]))
            + f" | {f'{got[key][1] / floor:.0%}' if floor and got[key][1] else 'n/a'} |"
            for key, label, how in SYSTEMS
            # A system this scenario does not run has no row ("no valid run" is for runs that
            # failed their check).
            if (name, key) in runs or (name, key) in failed
        )
        share = f"{tm / floor:.0%}" if floor and tm else "n/a"
        head = (
            f"| {name} {title} | **{ratio(alo, got['kstreams'][1])}** | **{ratio(alo, got['flink'][1])}** | "
            f"**{ratio(tm, got['kstreams-eos'][1])}** | **{ratio(tm, got['flink-eos'][1])}** | {share} |"
        )
        if not tm and name in old_heads:
            cells = old_heads[name].strip().strip("|").split("|")
            if len(cells) != 6:  # from a harness before the two comparisons: not comparable
                cells = [cells[0], " n/a ", " n/a ", " n/a ", " n/a ", cells[-1]]
            if "(carried over)" not in cells[0]:
                cells[0] = cells[0].rstrip() + " (carried over) "
            head = "|" + "|".join(cells) + "|"
        # A scenario not run here keeps the previous report's plot with its section.
        if tm:
            bars(
                os.path.join(a.figures, f"{name.lower()}-throughput.png"),
                f"{name} {title}, {a.events:,} events",
                [(label, runs.get((name, key), [])) for key, label, _ in SYSTEMS if runs.get((name, key))],
                floor,
            )
        return rows, head

    # Per system and load, the run with the median p99 stands for the point; the p99s of all
    # runs give its range.
    by_point = {}
    with open(a.latency) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 9:  # written before the points were repeated: one run
                fields.insert(2, "")
            system, load, run, target, achieved, p50, p99, p999, mx, n = fields
            by_point.setdefault((system, int(load)), []).append(
                (int(p99), run, int(target), int(float(achieved)), p50, p99, p999, mx, n))
    lat, median_run, p99_range = {}, {}, {}
    for key, rs in by_point.items():
        rs.sort()
        mid = rs[len(rs) // 2]
        lat[key] = mid[2:]
        median_run[key] = mid[1]
        p99_range[key] = f"{rs[0][0]}–{rs[-1][0]} ({len(rs)} run{'s' if len(rs) > 1 else ''})"
    loads = sorted({load for _, load in lat})
    s6_rows = "\n".join(
        f"| {load}% | {label} | {lat[(key, load)][0]:,} | {lat[(key, load)][1]:,} | "
        + " | ".join(lat[(key, load)][2:6])
        + f" | {p99_range[(key, load)]} | {int(lat[(key, load)][6]):,} |"
        for load in loads
        for key, label, _ in SYSTEMS
        if (key, load) in lat
    )

    def cdf_file(key, load):
        run = median_run[(key, load)]
        return os.path.join(a.cdf_dir, f"cdf-{key}-{load}{'-' + run if run else ''}.tsv")

    styles = {"tidemark": "-", "tidemark-alo": "-.", "flink": "--", "flink-eos": ":"}
    colours = {10: "#9ae6b4", 50: "#4299e1", 80: "#2b6cb0", 95: "#1a202c"}
    if lat:
        cdf_plot(
            os.path.join(a.figures, "s6-latency-cdf.png"),
            [
                (f"{label} {load}%", read_cdf(cdf_file(key, load)),
                 styles.get(key, ":"), colours.get(load, "#718096"))
                for load in loads
                for key, label, _ in SYSTEMS
                if (key, load) in lat
            ],
        )
    p99_80 = {key: lat.get((key, 80), (None,) * 7)[3] for key, _, _ in SYSTEMS}

    s2_rows, s2_head = scenario("S2", "Kafka → Kafka, one region")
    s3_rows, s3_head = scenario("S3", "two regions")

    doc = f"""# Benchmarks

Written by `bench/run-all`{" --smoke (tiny inputs, one run: a check that the harness works, not a measurement)" if a.smoke else ""}.
Machine: {machine()}. {version(["rustc", "--version"])}; {version(["java", "-version"]) or "Java"}.
Apache Kafka 4.1.1 (KRaft, one broker per region) runs on this same machine, so every system
shares the two cores with the broker.

## Headline

Throughput ratios, medians over the runs that passed `tidemark verify`, in two comparisons of
like with like: **in memory** (no system makes its state durable: tidemark at least once, Kafka
Streams with in-memory stores and no changelogs, Flink without checkpoints) and **durable,
exactly-once** (tidemark exactly-once, Kafka Streams `exactly_once_v2` on RocksDB with
changelogs, Flink with transactional sinks and checkpoints, all committing every 1 s). Every
system uses the same Kafka client settings (below).

| | in memory: tidemark / Kafka Streams | in memory: tidemark / Flink | durable: tidemark / Kafka Streams | durable: tidemark / Flink | tidemark exactly-once / S0 floor |
|---|---|---|---|---|---|
{s2_head}
{s3_head}

## Client settings

The same producer and consumer settings in all three systems (bench/jvm/common's
`ClientSettings`, tidemark's own `src/kafka.rs`):

{CLIENT_SETTINGS}
## S0 floor and S2 Kafka → Kafka, one region

{a.events:,} unique events of about 300 bytes pre-produced into region-a's `log-events` (4
partitions), 1 s of event-time disorder, 0.2% invalid records. The job, in each system: 2 s
bounded disorder with 5 s idleness, dedup by `eventId` within 10 min, event-time order per
output partition, late events to a late topic and invalid records to an invalid topic, each
with tidemark's `tidemark-*` headers; output acks=all, idempotent. All three read up to the end
offsets taken at start and finish when everything is written. S0 copies the bytes unparsed on
2 threads (one consumer and one producer each, the pipeline's client settings).

How each is timed: by one clock for every system, the broker's. The output topics are created
with `message.timestamp.type=LogAppendTime`, so each record carries the time the broker
appended it, and `tidemark bench-span` takes the span from the first append to the last over a
run's three outputs: the rate is the input's records over that span. It starts a few
milliseconds after the job's first read (the first invalid records are written at once) and
ends with its last record written, and it leaves out each system's start-up (Flink's
scheduling on its MiniCluster, Kafka Streams' group join, tidemark's planning) alike. A
transaction's commit marker is not a record a reader sees, so the exactly-once systems' last
commit (at most their 1 s interval) falls outside the span, for all three alike. Each system's figure by
its own clock is beside it: tidemark's summary (first read to last durable write), Kafka
Streams from its first record to the return of `close()`, Flink's job net runtime.

Every S2 run's output is checked with `tidemark verify` (every event once, ordered per
partition, late means late, invalid records all there with a reason); runs that fail it do not
count. Runs that failed: {bad}.

`like / it` is the rate of the tidemark run each system is compared with over its own: tidemark
at least once for the in-memory systems, tidemark exactly-once for the durable ones. On the
row of tidemark at least once it is exactly-once over at-least-once, the price of exactly-once.

| scenario | system | how it runs | events/s, median (min–max) | by its own clock | like / it | of S0 |
|---|---|---|---|---|---|---|
| S0 | floor | rdkafka consume → produce, 2 threads | {s0} | {own_cell(("S0", "floor"))} | | 100% |
| S0 | Java-client floor | `JavaFloor`: Java client consume → produce, 2 threads, the same settings | {js0} | {own_cell(("S0", "java-floor"))} | | {f"{jfloor / floor:.0%}" if floor and jfloor else "n/a"} |
{s2_rows}

![S2 throughput]({rel}/s2-throughput.png)

{throttled}

{subtasks}

Where the peers cannot do what tidemark does, they do what their framework allows:

- **Kafka Streams** has no frontier across tasks: a task's watermark is its own stream time
  minus the bound. It cannot repartition in memory, so the job relies on the input being keyed
  by `eventId` (every copy of an event in the same partition) rather than pay a repartition
  topic; each ordered partition is owned by the task of the input partition with its number.
  Dedup is a `get` of the id in a key-value store, whose ids older than the horizon are purged
  once per horizon of stream time; the order buffer is a key-value store sorted by (time, id),
  read with `range()` from the last key emitted when the watermark moves. Both stores are
  in memory without changelogs in the in-memory comparison, and RocksDB with changelogs and
  the record cache in the durable one.
- **Flink** expires dedup state by processing-time TTL (state TTL has no event-time mode), and
  routes late events through a ProcessFunction side output (the job has no windows for
  `sideOutputLateData`). Ordering uses event-time timers keyed by output partition, so each
  ordered partition has one writer; the keys are chosen so that the partitions spread over the
  subtasks (the table above shows what each subtask handled). It runs with object reuse on and
  `pipeline.generic-types: false` (no Kryo anywhere), and checkpoints at least once when its
  sinks are at least once.

## S3 two regions

{a.events:,} unique events written into both regions' `log-events` (half homed in each), 8% of
them failover copies sent to both regions, event times 0–2 s behind the wall clock, 0.5%
stragglers 30 s behind (late in every system once its watermark has moved), 0.2% invalid
records. MM2 copies both topics before the systems run, then is paused. tidemark
(`bench/s3-tidemark.toml`, `pipelines/global.toml`'s shape) and Flink (one KafkaSource per
cluster, unioned) read both clusters directly; Kafka Streams can read only one cluster, so it
reads region-a's `log-events` and MM2's `region-b.log-events` there: the same records.
Outputs go to region-a; the "of S0" column compares with the one-region floor.

| scenario | system | how it runs | events/s, median (min–max) | by its own clock | like / it | of S0 |
|---|---|---|---|---|---|---|
{s3_rows}

![S3 throughput]({rel}/s3-throughput.png)

## S6 latency under load

An open-loop producer (`tidemark loadgen --rate`) writes ~300-byte events into a fresh topic of
region-a for {a.load_seconds} s at 10, 50, 80 and 95% of tidemark's S2 median rate, while the
job runs unbounded, and `tidemark latency --follow` reads the ordered output `read_committed`
as it is written. Event times are the send times (`--jitter 0s`), so the watermark could pass
each event 2 s after it was sent, and any delay beyond that is the producer's, the broker's or
the system's, not the input's disorder. Per event it takes the record's arrival at that reader
minus the event time minus the 2 s watermark delay: what a consumer of the output waits beyond
the bound the system was asked to wait for. An exactly-once output becomes visible only when its
transaction commits, so the wait for the next checkpoint (`commit_interval` 1 s for tidemark,
the 1 s checkpoint interval for Flink's transactional sink) is part of its figure; tidemark at
least once (`tidemark-alo`) shows the same job without it. The reader fetches with a 5 ms wait,
so it adds little. The first and last seconds of event time are left out (warm-up, and the tail
that idleness releases). Distributions are HdrHistograms at 3 significant digits. The producer, the broker
and the job share the two cores, so at the top loads the producer itself takes CPU from the
job; the achieved rate is shown next to the target. A system that cannot keep up builds a
backlog, and its overhead grows for as long as the load lasts; events still queued when it is
stopped are not measured at all, so its percentiles understate (compare the events measured).
`bench/run-all` runs each point as often as the other scenarios (the column before last says
how often the figures below ran); the run with the median p99 stands for the point (its
percentiles and its curve), and the p99s of all runs give the range, so a run that a busy
minute of the machine slows down shows in the range rather than as the figure.

At 80% load the p99 overhead is **{p99_80["tidemark"] or "n/a"} ms for tidemark exactly-once**
(target: ≤ `commit_interval` + 50 ms = 1,050 ms), {p99_80["tidemark-alo"] or "n/a"} ms for
tidemark at least once (target: ≤ 50 ms), {p99_80["flink"] or "n/a"} ms for Flink without
checkpoints, and {p99_80["flink-eos"] or "n/a"} ms for Flink exactly-once.

| load | system | target events/s | achieved events/s | p50 ms | p99 ms | p99.9 ms | max ms | p99 of every run, ms | events measured |
|---|---|---|---|---|---|---|---|---|---|
{s6_rows}

![S6 latency CDF]({rel}/s6-latency-cdf.png)

## S5 dedup state

How much memory each live id costs, and how much rate a large state takes, in tidemark and in
Flink, without Kafka: the engine chain with a generator of ~300-byte JSON events with random
128-bit ids (the shape tidemark's generator writes), parsed and checked, bounded-disorder
watermarks, and the dedup, into a sink that discards; 2 workers / parallelism 2, all events
unique. Each size runs twice per run: **live**, where every id stays in the dedup state to the
end (tidemark: horizon 1 day of event time; Flink: state TTL 1 day), and **baseline**, where
ids leave at once (tidemark: the 2 s horizon the watermark bound allows; Flink: TTL 1 ms, with
the heap backend's incremental cleanup). Memory is taken while the state is held: tidemark
samples its resident memory every 5 ms with the number of ids its tables hold; Flink's job
holds its last event back until it has run a full GC and read its heap and resident memory.

- **drop**: 1 − live events/s ÷ baseline events/s.
- **state bytes/id**: tidemark's dedup tables (24-byte slots, grown by half at 3/4 full, so
  32–48 bytes per id); for Flink the heap in use after a full GC, live minus baseline.
- **RSS Δ bytes/id**: resident memory, live minus baseline, per live id: what the machine
  pays. A JVM's resident memory follows the heap it has grown to (G1, `-Xmx16g`), not
  only what is live in it.
- **peak RSS Δ bytes/id**: the highest resident memory of the process, live minus baseline.
  tidemark's tables grow without a stop-the-world rehash, so for a while both the old and the
  new array are resident; the peak counts that.

Flink runs on its default heap state backend (objects on the Java heap: RocksDB would trade
the memory for disk and serialisation on every access) without checkpoints, as tidemark does
not snapshot its dedup set. Target for tidemark: ≤ 48 bytes per retained id.

{s5_table}

{s5_plot}

## S7 restore after a restart

What an exactly-once pipeline reads before it starts (`tidemark bench-restore --compact`): N
live ids written to a 4-partition topic as the ordered sink writes them (key = id, a
`tidemark-event-time` header, ~300-byte payloads, committed transactions), then read back
`read_committed` as a restart does: the floor from the partition ends, then every record in
the horizon, its id hash and payload fingerprint kept. Beside it the design measured against
it: the same ids in a compact state topic, written and read back. The broker shares the two
cores. Target: 10M live ids restored in at most 10 s.

{s7_table or "S7 was not run in this work folder."}

## S1 engine only

![S1 engine]({rel}/s1-engine.png)

```
{engine or ""}
```

## Commands

The runs behind this report (UTC):

```
{invocations}
```

```sh
bench/run-all            # the full suite ({a.events:,} events, 5 runs each)
bench/run-all --smoke    # tiny inputs, one run each (.ci/run)
bench/run-all --scenarios "S3 S6" --work DIR   # run some again in an earlier run's folder
```
"""
    # Sections this folder has no figures for keep the previous report's, marked as such.
    have = {
        "S0 floor and S2 Kafka → Kafka, one region": ("S2", "tidemark") in runs,
        "S3 two regions": ("S3", "tidemark") in runs,
        "S6 latency under load": bool(lat),
        "S5 dedup state": bool(s5_plotted),
        "S1 engine only": engine is not None,
        "S7 restore after a restart": s7_table is not None,
    }
    parts = doc.split("\n## ")
    for i, part in enumerate(parts[1:], 1):
        title, _, body = part.partition("\n")
        if title in have:
            parts[i] = title + "\n\n" + carry(title, body.strip("\n"), have[title]) + "\n"
    doc = "\n## ".join(parts)
    # Runs of this folder that the earlier report already listed are listed once.
    old_invocations = "\n".join(
        line for line in old_invocations.splitlines() if line not in invocations.splitlines())
    if carried and old_invocations:
        doc = doc.replace(
            "```sh\nbench/run-all ",
            "Carried over (" + ", ".join(t.split()[0] for t in carried) + ") from the previous "
            "report, whose runs were:\n\n```\n" + old_invocations + "\n```\n\n```sh\nbench/run-all ",
            1)
    with open(a.out, "w") as f:
        f.write(doc)


if __name__ == "__main__":
    main()
