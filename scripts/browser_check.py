#!/usr/bin/env python3
"""Loads an explore results directory's report.html in headless Chromium and checks it.

Drives Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages
ended by NUL on file descriptors 3 and 4), with nothing but Python's standard library, and
checks that:
  - the page loads with no console message of level error or warning, no uncaught exception,
    no browser log entry of level error or warning (a refused load under the page's
    Content-Security-Policy is one), and no network request besides the page itself;
  - each Pareto plot is an SVG element in the SVG namespace, laid out with a non-zero size,
    with one drawn circle per point plus one per front point, as many points as results.csv
    has rows that did not fail, the front in red, and axis text;
  - the best configuration the page names is report.md's.
It writes a full-page screenshot (PNG) for a person to look at, and prints one line per
finding. Exit status: 0 when every check passed, 1 when one failed, 2 on bad usage or when
Chromium could not be driven.

usage: browser_check.py REPORT_DIR SCREENSHOT.png [--chromium PATH] [--timeout SECONDS]
       browser_check.py --page FILE.html [--chromium PATH]   (console/network checks only)
"""

import argparse
import base64
import csv
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
]

# What the page is asked, once loaded: everything the plot checks need, as one JSON string.
PROBE = r"""
(() => {
  const figs = [...document.querySelectorAll('figure.plot')].map(f => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    const circles = svg ? [...svg.querySelectorAll('circle')] : [];
    const inside = c => {
      const b = c.getBoundingClientRect();
      return b.width > 0 && b.height > 0 && b.left >= box.left - 1 && b.right <= box.right + 1
        && b.top >= box.top - 1 && b.bottom <= box.bottom + 1;
    };
    return {
      id: f.id,
      points: Number(f.dataset.points),
      front: Number(f.dataset.front),
      svg: !!svg,
      namespace: svg ? svg.namespaceURI : null,
      width: box.width,
      height: box.height,
      circles: circles.length,
      drawn: circles.filter(inside).length,
      red: circles.filter(c => c.getAttribute('fill') === '#FF0000').length,
      texts: svg ? [...svg.querySelectorAll('text')].map(t => t.textContent.trim()) : [],
    };
  });
  const firstRow = document.querySelector('table tbody tr');
  return JSON.stringify({
    title: document.title,
    scripts: document.scripts.length,
    tables: document.querySelectorAll('table').length,
    best: firstRow ? [...firstRow.cells].map(c => c.textContent.trim()) : [],
    figs,
  });
})()
"""


class Browser:
    """One headless Chromium, driven over the DevTools pipe."""

    def __init__(self, chromium, timeout):
        self.deadline = time.monotonic() + timeout
        self.profile = tempfile.mkdtemp(prefix="fuseflow-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()

        def wire():  # in the child: the pipe ends become descriptors 3 and 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}/profile", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            preexec_fn=wire,
            pass_fds=(3, 4),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read_message(self):
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.from_chrome], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise ConnectionError("Chromium closed the DevTools pipe (see its log)")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read_message()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method, seconds):
        end = min(self.deadline, time.monotonic() + seconds)
        for m in self.events:
            if m.get("method") == method:
                return m
        while time.monotonic() < end:
            m = self._read_message()
            self.events.append(m)
            if m.get("method") == method:
                return m
        raise TimeoutError(f"no {method} event")

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_chrome)
        os.close(self.from_chrome)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def load(browser, url):
    """Opens `url` in a new tab; returns the tab's session id after the load event."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ["Runtime", "Log", "Page", "Network"]:
        browser.call(f"{domain}.enable", session=session)
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    browser.call("Page.navigate", {"url": url}, session=session)
    browser.wait_event("Page.loadEventFired", 30)
    # A round trip after the load: console messages and log entries the load caused arrive
    # before its answer.
    browser.call("Runtime.evaluate", {"expression": "1"}, session=session)
    return session


def console_problems(events, url):
    """Console errors and warnings, exceptions, error log entries, requests for other URLs."""
    out = []
    for m in events:
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.append(f"console {p['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(f"uncaught exception: {d.get('exception', {}).get('description', d.get('text'))}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            e = p["entry"]
            out.append(f"console {e['level']} ({e.get('source')}): {e.get('text')} {e.get('url', '')}".rstrip())
        elif method == "Network.requestWillBeSent":
            req = p.get("request", {}).get("url", "")
            if req != url and not req.startswith("data:"):
                out.append(f"network request besides the page: {req}")
    return out


def expected(report_dir):
    """Points that did not fail (results.csv) and report.md's best configuration row."""
    with open(report_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    plotted = {
        "pareto-cycles-bytes": sum(1 for r in rows if r["status"] != "failed" and r["cycles"] and r["offchip_bytes"]),
        "pareto-flops-bytes": sum(1 for r in rows if r["status"] != "failed" and r["flops"] and r["offchip_bytes"]),
    }
    md = (report_dir / "report.md").read_text().splitlines()
    head = md.index("## Best configuration")
    best = [c.strip().strip("`") for c in md[head + 4].strip().strip("|").split("|")]
    return plotted, best


def check_report(browser, report_dir, screenshot):
    page = (report_dir / "report.html").resolve()
    url = page.as_uri()
    session = load(browser, url)
    problems = console_problems(browser.events, url)
    probe = json.loads(
        browser.call("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=session)["result"][
            "value"
        ]
    )
    plotted, best = expected(report_dir)
    figs = {f["id"]: f for f in probe["figs"]}
    if probe["scripts"]:
        problems.append(f"the page has {probe['scripts']} script element(s); it should need none")
    for name, n in plotted.items():
        f = figs.get(name)
        if f is None:
            problems.append(f"{name}: no figure in the page")
            continue
        line = (
            f"{name}: svg {f['width']:.0f}x{f['height']:.0f} px, {f['circles']} circles "
            f"({f['drawn']} drawn inside the plot, {f['red']} red), {n} points in results.csv, "
            f"front {f['front']}"
        )
        print(line)
        if not f["svg"] or f["namespace"] != "http://www.w3.org/2000/svg":
            problems.append(f"{name}: no SVG element in the SVG namespace")
        if f["width"] < 100 or f["height"] < 100:
            problems.append(f"{name}: the plot is laid out at {f['width']}x{f['height']} px")
        if f["points"] != n or n == 0:
            problems.append(f"{name}: the figure says {f['points']} points, results.csv has {n}")
        if f["circles"] != n + f["front"] or f["drawn"] != f["circles"]:
            problems.append(f"{name}: {f['circles']} circles, {f['drawn']} drawn; expected {n} + {f['front']}")
        if f["front"] < 1 or f["red"] != f["front"]:
            problems.append(f"{name}: {f['red']} red circles for a front of {f['front']}")
        if not any("off-chip bytes" in t for t in f["texts"]):
            problems.append(f"{name}: no axis label")
    if probe["best"] != best:
        problems.append(f"best configuration: the page says {probe['best']}, report.md {best}")
    print(f"best: {' | '.join(probe['best'])}")
    # A full-page screenshot, for a person to look at.
    size = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
    shot = browser.call(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
        session=session,
    )
    Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
    print(f"screenshot: {screenshot} ({size['width']:.0f}x{size['height']:.0f} px)")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report_dir", nargs="?")
    ap.add_argument("screenshot", nargs="?")
    ap.add_argument("--page", help="only load this page and report console and network problems")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    if not a.page and not (a.report_dir and a.screenshot):
        ap.error("give REPORT_DIR SCREENSHOT.png, or --page FILE")
    try:
        browser = Browser(a.chromium, a.timeout)
    except OSError as e:
        print(f"cannot start {a.chromium}: {e}", file=sys.stderr)
        return 2
    try:
        if a.page:
            url = Path(a.page).resolve().as_uri()
            load(browser, url)
            problems = console_problems(browser.events, url)
        else:
            problems = check_report(browser, Path(a.report_dir), a.screenshot)
    except (TimeoutError, ConnectionError, RuntimeError, KeyError, ValueError) as e:
        print(f"driving Chromium failed: {e}", file=sys.stderr)
        return 2
    finally:
        browser.close()
    for p in problems:
        print(f"FAIL {p}")
    if not problems:
        print("ok: no console errors, no requests, plots rendered")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
