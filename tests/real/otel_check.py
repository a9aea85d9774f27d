"""Checks that every log record `otel_emit.py` wrote down is on each region's ordered topic
exactly once, mapped as the gateway's documentation says (README, "OpenTelemetry logs").

Independent of the code under test: records are read with kafka-python (a Kafka client in pure
Python, read_committed so an aborted transaction's copies do not count) and parsed with Python's
json module; what each record should hold comes from the emitter's own notes, and the expected
time is the SDK's own conversion of Python's creation time (int(created * 1e9)).

Usage: otel_check.py --bootstrap HOST:PORT [--bootstrap ...] --expect FILE [--expect ...]
         --service NAME --resource KEY=VALUE ... [--wait SECONDS]
"""

import argparse
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition

SEVERITY = {  # Python level -> (OTel severity text, severity number), per the SDK's mapping
    20: ("INFO", 9),
    30: ("WARN", 13),
    40: ("ERROR", 17),
}


def read_topic(bootstrap, topic, wanted, wait):
    """Counts and keeps the records whose eventId is wanted, until every wanted id was seen and
    the reads reached the end offsets taken after that, or the wait runs out."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
    )
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    if not partitions:
        raise SystemExit(f"{bootstrap}: no topic {topic}")
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    found, copies, unparsable = {}, {}, 0
    # The ordered topic's contract, checked over all of it: event time never goes back within a
    # partition.
    last, disorder = {}, 0
    deadline = time.monotonic() + wait
    ends = None
    while True:
        for message in consumer:
            try:
                value = json.loads(message.value)
            except ValueError:
                unparsable += 1
                continue
            if not isinstance(value, dict):
                unparsable += 1
                continue
            t = value.get("timestamp")
            if isinstance(t, int):
                if t < last.get(message.partition, t):
                    disorder += 1
                last[message.partition] = t
            uid = value.get("eventId")
            if uid in wanted:
                copies[uid] = copies.get(uid, 0) + 1
                found[uid] = value
        if ends is None and len(found) == len(wanted):
            # Everything arrived: read on to where the topic ends now, for any later copy.
            ends = consumer.end_offsets(partitions)
        if ends is not None and all(consumer.position(tp) >= ends[tp] for tp in partitions):
            break
        if time.monotonic() > deadline:
            break
    consumer.close()
    return found, copies, unparsable, disorder


def check(expected, value, service, resource):
    """What differs between a record as the emitter wrote it down and the event on the topic."""
    ns = int(float(expected["created"]) * 1e9)
    text, number = SEVERITY[expected["levelno"]]
    want = {
        "timestamp": ns // 1_000_000,
        "timeUnixNano": str(ns),
        "service": service,
        "scope": expected["logger"],
        "severity": text,
        "severityNumber": number,
        "message": expected["message"],
        "traceId": expected.get("traceId"),
        "spanId": expected.get("spanId"),
    }
    wrong = [f"{k}: {value.get(k)!r}, expected {v!r}" for k, v in want.items() if value.get(k) != v]
    attributes = value.get("attributes") or {}
    for k, v in [
        ("log.record.uid", expected["uid"]),
        ("sequence", expected["sequence"]),
        ("code.function.name", "main"),
    ]:
        if attributes.get(k) != v:
            wrong.append(f"attributes[{k}]: {attributes.get(k)!r}, expected {v!r}")
    got = value.get("resource") or {}
    for k, v in [("service.name", service), *resource.items()]:
        if got.get(k) != v:
            wrong.append(f"resource[{k}]: {got.get(k)!r}, expected {v!r}")
    return wrong


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", action="append", required=True)
    p.add_argument("--expect", action="append", required=True)
    p.add_argument("--topic", default="log-events-ordered")
    p.add_argument("--service", required=True)
    p.add_argument("--resource", action="append", default=[])
    p.add_argument("--wait", type=float, default=120)
    a = p.parse_args()
    resource = dict(kv.split("=", 1) for kv in a.resource)

    expected = {}
    for path in a.expect:
        with open(path) as f:
            for line in f:
                e = json.loads(line)
                expected[e["uid"]] = e
    if not expected:
        raise SystemExit("no records were emitted")
    spans = sum("traceId" in e for e in expected.values())

    ok = True
    for bootstrap in a.bootstrap:
        found, copies, unparsable, disorder = read_topic(bootstrap, a.topic, expected, a.wait)
        missing = len(expected) - len(found)
        extra = sum(n - 1 for n in copies.values())
        wrong = {uid: w for uid, value in found.items() if (w := check(expected[uid], value, a.service, resource))}
        print(
            f"otel {bootstrap} {a.topic}: {len(expected)} records emitted ({spans} in a span), "
            f"{len(found)} found, {missing} missing, {extra} extra copies, {len(wrong)} mapped wrongly, "
            f"{disorder} records behind their partition's event time"
            + (f", {unparsable} records not JSON objects" if unparsable else "")
        )
        for uid, w in list(wrong.items())[:5]:
            print(f"  {uid}: " + "; ".join(w))
        for uid in [u for u in expected if u not in found][:5]:
            print(f"  missing {uid}")
        if missing or extra or wrong or disorder or unparsable:
            ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
