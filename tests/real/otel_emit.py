"""Logs through the gateway from a client no one here wrote: the OpenTelemetry Python SDK with its
OTLP/HTTP exporter, unmodified, configured only by the standard OTEL_* variables (endpoint,
headers with the token, CA, gzip).

Python's logging module feeds the SDK's LoggingHandler. A logging filter, which runs before the
handler, writes down what each record will carry (its uid, creation time, level, message, span)
as one JSON line in --expect, which `otel_check.py` then looks for on the ordered topics.

Usage: otel_emit.py --records N --expect FILE [--tag T]
"""

import argparse
import json
import logging
import sys
import uuid

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


class Expectation(logging.Filter):
    """Writes down each record as the SDK will see it."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def filter(self, record):
        span = trace.get_current_span().get_span_context()
        expected = {
            "uid": record.__dict__["log.record.uid"],
            "created": repr(record.created),
            "level": record.levelname,
            "levelno": record.levelno,
            "message": record.getMessage(),
            "logger": record.name,
            "sequence": record.__dict__["sequence"],
        }
        if span.is_valid:
            expected["traceId"] = format(span.trace_id, "032x")
            expected["spanId"] = format(span.span_id, "016x")
        self.out.write(json.dumps(expected) + "\n")
        return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, required=True)
    p.add_argument("--expect", required=True)
    p.add_argument("--tag", default="otel")
    a = p.parse_args()

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read here.
    provider = LoggerProvider(resource=Resource.create())
    set_logger_provider(provider)
    # Every setting of the exporter (endpoint, headers, certificate, compression) comes from
    # OTEL_EXPORTER_OTLP_LOGS_*.
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    tracer = TracerProvider().get_tracer("tidemark.otel-check")

    log = logging.getLogger(f"checkout.{a.tag}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    with open(a.expect, "w") as out:
        log.addFilter(Expectation(out))
        log.addHandler(LoggingHandler(logger_provider=provider))
        levels = [logging.INFO, logging.WARNING, logging.ERROR]
        for i in range(a.records):
            extra = {"log.record.uid": str(uuid.uuid4()), "sequence": i, "tenant": a.tag}
            level = levels[i % len(levels)]
            if i % 2 == 0:
                # Records inside a span carry its trace and span ids.
                with tracer.start_as_current_span(f"order {i}"):
                    log.log(level, "order %d of %s paid", i, a.tag, extra=extra)
            else:
                log.log(level, "order %d of %s shipped", i, a.tag, extra=extra)
    # Exports what the batch processor still holds; the exporter retries 429 and 503 itself.
    provider.shutdown()
    print(f"{a.records} records emitted ({a.tag})", file=sys.stderr)


if __name__ == "__main__":
    main()
