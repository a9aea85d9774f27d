#!/usr/bin/env python3
"""Opens a pipeline's status page in headless Chromium (Debian's `chromium`) during a run.

  status_page.py URL SCREENSHOT

Loads the page twice, a few seconds apart, letting its script poll /status.json, and checks
that the numbers rendered (no placeholder left in the watermark, totals, dedup and replication
cards) and that the events-in total is the server's live count: each load shows at least what
/status.json said just before it and at most what it said just after. (Whether the count moves
between the loads depends on when Chromium gets to run on a busy machine, so that is not the
check.) Saves a screenshot. Standard library only.
"""

import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # Virtual time runs the page's timers (one poll a second) without waiting in real time;
    # rates come computed from the server, which samples its counters every second.
    "--virtual-time-budget=5000",
    "--window-size=1280,1000",
]


class Texts(html.parser.HTMLParser):
    """Text content of every element with an id."""

    def __init__(self):
        super().__init__()
        self.stack, self.texts = [], {}

    def handle_starttag(self, tag, attrs):
        self.stack.append(dict(attrs).get("id"))

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for i in self.stack:
            if i:
                self.texts[i] = self.texts.get(i, "") + data


def chromium(*args):
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            ["chromium", *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
    return out.stdout


def dom(url):
    p = Texts()
    p.feed(chromium("--dump-dom", url))
    return p.texts, p


def served(url):
    """The events-in count the server reports at this moment."""
    with urllib.request.urlopen(url.rstrip("/") + "/status.json", timeout=10) as r:
        return float(json.load(r)["events_in"])


def number(text):
    digits = re.sub(r"[^0-9.]", "", text or "")
    return float(digits) if digits else None


def main(url, screenshot):
    if not shutil.which("chromium"):
        print("chromium is not installed (apt-get install chromium)")
        return 1
    before_first = served(url)
    first, _ = dom(url)
    after_first = served(url)
    time.sleep(3)
    before_second = served(url)
    second, _ = dom(url)
    after_second = served(url)
    failures = []
    for key in ["watermark", "wm-lag", "in-total", "out-total", "in-rate", "hit-rate", "late", "invalid"]:
        value = second.get(key, "").strip()
        print(f"{key:10s} {value}")
        if value in ("", "–"):
            failures.append(f"{key} did not render")
    links = [v for k, v in second.items() if k == "links"]
    if not links or "→" not in links[0]:
        failures.append("no replication link card rendered")
    else:
        print("links     ", " ".join(links[0].split())[:160])
    a, b = number(first.get("in-total")), number(second.get("in-total"))
    print(f"events in: {a} (served {before_first:.0f}..{after_first:.0f}) then {b} "
          f"(served {before_second:.0f}..{after_second:.0f})")
    for shown, lo, hi in ((a, before_first, after_first), (b, before_second, after_second)):
        if shown is None or not lo <= shown <= hi:
            failures.append(f"the events-in total {shown} is not the server's live count ({lo:.0f}..{hi:.0f})")
    os.makedirs(os.path.dirname(os.path.abspath(screenshot)), exist_ok=True)
    chromium(f"--screenshot={os.path.abspath(screenshot)}", url)
    if not os.path.exists(screenshot) or os.path.getsize(screenshot) < 1000:
        failures.append("no screenshot was written")
    else:
        print(f"screenshot: {screenshot} ({os.path.getsize(screenshot)} bytes)")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
