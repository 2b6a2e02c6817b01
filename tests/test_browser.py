"""Every kind of report, opened in a real headless browser (Debian's chromium).

Each report kind is one entry of ``REPORTS``: a function that writes the
report's pages into a folder (running a short experiment through the
``fleetsim`` command line, or rendering committed results) and returns them
with the panels each must show. The test opens every page in chromium and
checks that

- the browser saw no error: no exception, no ``console.error``, no log entry
  of level error, no resource that failed to load (a missing
  ``plotly.min.js`` included);
- every plot rendered: each plotly div holds plotly's ``svg.main-svg``, so
  the number of rendered plots equals the number of plot divs, and a page
  that should have plots has some;
- the panels the kind is about are on the page (``#tls``, ``#rate-limit``, ...).

Screenshots of every page are kept under ``results/browser/<kind>/``
(gitignored); the path is printed. Adding a report kind is one more entry in
``REPORTS``.

Chromium is driven over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: file descriptors 3 and 4, messages ended by a
NUL byte), so no port is opened and no package beyond the standard library is
needed. Each test gets its own profile folder (safe under pytest-xdist), and
its browser is closed through the protocol, then killed by its own pid if it
lingers. ``make test`` installs chromium (apt-get) where it is missing; the
test skips only where chromium is absent and cannot be installed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sim.cli import main as fleetsim
from sim.files import atomic_write_bytes

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "results" / "browser"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: How long a page may take to load and draw its plots (plotly draws asynchronously).
PAGE_TIMEOUT_S = 60.0
VIEWPORT = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}


# --------------------------------------------------------------------------- finding chromium


def find_chromium() -> str | None:
    """The chromium to use: ``$FLEETSIM_CHROMIUM``, else the first of ``CHROMIUM_NAMES`` on the PATH."""
    given = os.environ.get("FLEETSIM_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def can_install_chromium() -> bool:
    """Whether this machine could install Debian's chromium (apt-get, as root or with sudo)."""
    if not shutil.which("apt-get"):
        return False
    if os.geteuid() == 0:
        return True
    return bool(shutil.which("sudo")) and subprocess.run(
        ["sudo", "-n", "true"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path:
        return path
    if can_install_chromium():
        pytest.fail("chromium is not installed but this machine can install it: `make setup` (or "
                    "`apt-get install -y chromium`) does; the browser test must run here")
    pytest.skip("no chromium (looked for $FLEETSIM_CHROMIUM and " + ", ".join(CHROMIUM_NAMES)
                + ") and no way to install it here (needs apt-get as root or passwordless sudo)")


# --------------------------------------------------------------------------- the DevTools protocol on a pipe


#: Run as ``python -c WIRE_FDS R W PROGRAM ARGS...``: fd R becomes 3, fd W becomes 4, then exec.
WIRE_FDS = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
            "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")


class Browser:
    """A headless chromium driven over ``--remote-debugging-pipe``."""

    def __init__(self, executable: str, profile: Path, log: Path):
        cmd_r, self._w = self._pipe()  # we write commands; chromium reads them on its fd 3
        self._r, res_w = self._pipe()  # chromium writes its fd 4; we read
        args = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--hide-scrollbars",
                "--mute-audio", "about:blank"]
        # A small launcher puts the two ends at 3 and 4, where chromium looks, and execs it (same
        # pid; no preexec_fn, which is unsafe in a process with threads).
        with open(log, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", WIRE_FDS, str(cmd_r), str(res_w), *args],
                                         stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         pass_fds=(cmd_r, res_w))
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    @staticmethod
    def _pipe() -> tuple[int, int]:
        """A pipe whose ends are numbered 10 or above, clear of 3 and 4 (which the launcher fills)."""
        ends = []
        for fd in os.pipe():
            ends.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10))
            os.close(fd)
        return ends[0], ends[1]

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = PAGE_TIMEOUT_S) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        reply = self.wait_for(lambda m, i=self._id: m.get("id") == i, timeout, f"the reply to {method}")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_for(self, pred: Callable[[dict], bool], timeout: float, what: str) -> dict:
        end = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                line, _, self._buf = self._buf.partition(b"\0")
                msg = json.loads(line)
                if pred(msg):
                    return msg
                if "method" in msg:
                    self.events.append(msg)
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium: no {what} within {timeout:.0f} s")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise EOFError(f"chromium closed the pipe while waiting for {what} "
                                   f"(exit status {self.proc.poll()})")
                self._buf += chunk

    def drain(self, seconds: float) -> None:
        """Collect the events of the next ``seconds``."""
        try:
            self.wait_for(lambda m: False, seconds, "event")
        except TimeoutError:
            pass

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close", timeout=10)
                self.proc.wait(timeout=10)
        except (OSError, RuntimeError, TimeoutError, EOFError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()  # our own chromium, by its pid
                self.proc.wait(timeout=10)
            os.close(self._w)
            os.close(self._r)


@dataclass
class PageCheck:
    """What the browser saw of one page."""

    errors: list[str]
    plot_divs: int
    plots_rendered: int
    missing_panels: list[str]
    title: str


#: Counted in the page: plot divs, and those holding the svg plotly draws.
PLOTS_JS = """(() => {
  const divs = Array.from(document.querySelectorAll('div.plotly-graph-div'));
  return [divs.length, divs.filter(d => d.querySelector('svg.main-svg')).length];
})()"""


def _errors(events: list[dict]) -> list[str]:
    """Every error the page produced: exceptions, console errors, error log entries, failed loads."""
    found = []
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            found.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')} "
                         f"({d.get('url', '')}:{d.get('lineNumber')})")
        elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            found.append("console." + p["type"] + ": "
                         + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif e["method"] == "Log.entryAdded" and p["entry"].get("level") == "error":
            found.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        elif e["method"] == "Network.loadingFailed" and not p.get("canceled"):
            found.append(f"failed load: {p.get('type')} {p.get('errorText')}")
    return found


def check_page(browser: Browser, page: Path, panels: tuple[str, ...], screenshot: Path,
               plot_wait_s: float = PAGE_TIMEOUT_S) -> PageCheck:
    """Open ``page``, wait for its plots, take a full-page screenshot and report what it saw."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Network", "Page"):
        browser.send(f"{domain}.enable", session=session)
    browser.send("Emulation.setDeviceMetricsOverride", VIEWPORT, session=session)
    browser.events.clear()
    browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    browser.wait_for(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session,
                     PAGE_TIMEOUT_S, f"load event of {page}")

    def evaluate(expr: str):
        return browser.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                            session=session)["result"]["value"]

    # plotly draws after the load event (Plotly.newPlot resolves a promise): wait until every
    # plot div holds its svg, or the timeout passes (the assertion then shows how many did not).
    end = time.monotonic() + plot_wait_s
    divs, rendered = evaluate(PLOTS_JS)
    while rendered < divs and time.monotonic() < end:
        browser.drain(0.2)
        divs, rendered = evaluate(PLOTS_JS)
    browser.drain(0.3)  # late console messages
    missing = [p for p in panels if not evaluate(f"document.getElementById({json.dumps(p)}) !== null")]
    title = evaluate("document.title")

    size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip},
                        session=session)
    atomic_write_bytes(screenshot, base64.b64decode(shot["data"]))
    errors = _errors([e for e in browser.events if e.get("sessionId") == session])
    browser.send("Target.closeTarget", {"targetId": target})
    return PageCheck(errors, divs, rendered, missing, title)


# --------------------------------------------------------------------------- the report kinds


@dataclass(frozen=True)
class Page:
    """One page to open: its file, the panel anchors it must show, whether it must have plots."""

    path: Path
    panels: tuple[str, ...] = ()
    plots: bool = True


@dataclass(frozen=True)
class ReportKind:
    """A kind of report: ``build(folder)`` writes its pages into ``folder`` and returns them."""

    name: str
    build: Callable[[Path], list[Page]]


def run_cli(out: Path, experiment: str, *sets: str, replications: int | None = 1) -> Path:
    """``fleetsim run`` a repository experiment, shortened by ``--set``; the run folder."""
    argv = ["run", str(ROOT / "experiments" / experiment), "--out", str(out), "--jobs", "1", "--quiet"]
    for s in sets:
        argv += ["--set", s]
    if replications is not None:
        argv += ["--replications", str(replications)]
    run_dirs_before = set(out.glob("*/*"))
    assert fleetsim(argv) == 0, f"fleetsim {' '.join(argv)} failed"
    (run_dir,) = set(out.glob("*/*")) - run_dirs_before
    return run_dir


def single_run(folder: Path) -> list[Page]:
    run = run_cli(folder, "quickstart.yaml", "duration_s=12", "warmup_s=2")
    return [Page(run / "report.html", ("geo",))]


def variant_comparison(folder: Path) -> list[Page]:
    # Variant pages share the comparison folder's plotly.min.js: a broken relative path
    # shows as a failed load.
    run = run_cli(folder, "cross_zone.yaml", "duration_s=8", "warmup_s=2")
    pages = [Page(run / "report.html", ("summary", "goodput", "variants"))]
    pages += [Page(p) for p in sorted(run.glob("variants/*/report.html"))]
    assert len(pages) == 3, "cross_zone.yaml has two variants"
    return pages


def tls(folder: Path) -> list[Page]:
    run = run_cli(folder, "tls_resumption.yaml", "variants={}", "duration_s=35", "warmup_s=5",
                  "faults=[{kind: rolling_restart, at_s: 8, for_s: 18, drain_s: 0.5, restart_s: 0.5}]")
    return [Page(run / "report.html", ("tls",))]


def rate_limit(folder: Path) -> list[Page]:
    run = run_cli(folder, "rate_limit.yaml", "variants={}", "duration_s=20", "warmup_s=2",
                  "faults=[{kind: redis_down, at_s: 5, for_s: 3}]")
    return [Page(run / "report.html", ("rate-limit",))]


def geo_cost(folder: Path) -> list[Page]:
    # Two regions behind a GSLB, one region's gateways failing: the geography panel's map,
    # the failover and the dollars.
    run = run_cli(folder, "region_failover.yaml", "variants={}", "duration_s=60", "topology.gslb.ttl_s=10",
                  "faults=[{kind: instance_crash, at_s: 10, for_s: 50, target: {region: us-east-1}}]")
    return [Page(run / "report.html", ("geo",))]


def control_plane(folder: Path) -> list[Page]:
    run = run_cli(folder, "thundering_herd.yaml", "variants={}", "duration_s=70", "control_plane.gateways=200",
                  "control_plane.events=[{event: replica_restart, at_s: 10, down_s: 5}, "
                  "{event: endpoint_churn, at_s: 30, services: 100, over_s: 10}]")
    return [Page(run / "report.html", ("control-plane",))]


def validation(folder: Path) -> list[Page]:
    # The committed validation results, rendered as `fleetsim validate` renders them.
    from reference_gateway.report import write_validation_html
    from reference_gateway.scenarios import SCENARIOS

    src = ROOT / "results" / "validation"
    rows = json.loads((src / "validation.json").read_text())
    manifest = json.loads((src / "manifest.json").read_text())
    keys = list(dict.fromkeys(r["scenario"].split(":")[0] for r in rows))
    page = write_validation_html(folder, rows, manifest, {k: SCENARIOS[k] for k in keys if k in SCENARIOS})
    return [Page(page)]


def decision_matrix(folder: Path) -> list[Page]:
    # One preset of the decision matrix (the page is the same for five), shortened as in test_matrix.
    from tests.test_matrix import SHORT

    matrix = folder / "matrix.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    matrix.write_text(f"name: matrix\nexperiment: {ROOT / 'experiments' / 'decision_matrix.yaml'}\n"
                      f"presets:\n  alb_waf:\n    label: ALB <&> WAF\n"
                      f"    topology: {ROOT / 'topologies' / 'presets' / 'alb_waf.yaml'}\n"
                      "    extra_costs: [{item: WAF, per_million_calls_usd: 0.6}]\n")
    argv = ["matrix", str(matrix), "--out", str(folder), "--jobs", "1", "--quiet"]
    assert fleetsim(argv + [a for s in SHORT for a in ("--set", s)]) == 0
    (run,) = folder.glob("matrix/*")
    return [Page(run / "report.html", ("matrix", "extra-costs", "presets"), plots=False),
            Page(run / "presets" / "alb_waf" / "report.html", ("summary",))]


def sweep(folder: Path) -> list[Page]:
    # experiments/load_knee.yaml at three loads, two replications, shortened: the KPI-against-load
    # bands, the knee chart and the ranking.
    argv = ["sweep", str(ROOT / "experiments" / "load_knee.yaml"), "--out", str(folder / "sweep"), "--jobs", "1",
            "--quiet", "--replications", "2", "--set", "duration_s=6", "--set", "warmup_s=1",
            "--set", "sweep.grid={workload.rate_schedule.0.rate_per_s: [1575, 2519, 2992]}"]
    assert fleetsim(argv) == 0, f"fleetsim {' '.join(argv)} failed"
    return [Page(folder / "sweep" / "report.html")]


def compare(folder: Path) -> list[Page]:
    # `fleetsim compare` of two quickstart runs at different loads.
    a = run_cli(folder / "a", "quickstart.yaml", "duration_s=8", "warmup_s=2", replications=2)
    b = run_cli(folder / "b", "quickstart.yaml", "duration_s=8", "warmup_s=2",
                "workload.rate_schedule.0.rate_per_s=2500", replications=2)
    assert fleetsim(["compare", str(a), str(b), "--out", str(folder / "compare")]) == 0
    return [Page(folder / "compare" / "report.html")]


#: Every kind of report. A new kind is one entry.
REPORTS = [
    ReportKind("run", single_run),
    ReportKind("variants", variant_comparison),
    ReportKind("tls", tls),
    ReportKind("rate_limit", rate_limit),
    ReportKind("geo_cost", geo_cost),
    ReportKind("control_plane", control_plane),
    ReportKind("validation", validation),
    ReportKind("decision_matrix", decision_matrix),
    ReportKind("sweep", sweep),
    ReportKind("compare", compare),
]


@pytest.mark.parametrize("kind", REPORTS, ids=[k.name for k in REPORTS])
def test_report_renders_in_chromium(kind: ReportKind, chromium: str, tmp_path: Path) -> None:
    pages = kind.build(tmp_path / "out")
    assert pages, f"{kind.name}: no pages"
    shots = SCREENSHOTS / kind.name
    shutil.rmtree(shots, ignore_errors=True)  # only this run's screenshots
    (tmp_path / "profile").mkdir()
    browser = Browser(chromium, tmp_path / "profile", tmp_path / "chromium.log")
    problems = []
    try:
        for page in pages:
            parts = page.path.relative_to(tmp_path / "out").with_suffix("").parts
            name = "_".join(parts[2:] if len(parts) > 2 else parts)  # less <experiment>/<run-id>/
            seen = check_page(browser, page.path, page.panels, shots / f"{name}.png")
            where = f"{kind.name}: {page.path} (screenshot {shots / (name + '.png')})"
            if seen.errors:
                problems.append(f"{where}: the browser reported errors: {seen.errors}")
            if seen.plots_rendered != seen.plot_divs:
                problems.append(f"{where}: {seen.plots_rendered} of {seen.plot_divs} plots rendered")
            if page.plots and seen.plot_divs == 0:
                problems.append(f"{where}: no plots at all")
            if seen.missing_panels:
                problems.append(f"{where}: panels missing: {seen.missing_panels}")
            if not seen.title:
                problems.append(f"{where}: the page has no title")
    finally:
        browser.close()
    print(f"screenshots: {shots}")
    assert not problems, "\n".join(problems)


def test_the_checks_see_errors_and_unrendered_plots(chromium: str, tmp_path: Path) -> None:
    """The checks above can fail: a page with each fault is reported with each fault."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><head><title>bad</title></head><body>"
        '<script>console.error("an error");</script>'
        '<script src="missing-plotly.min.js"></script>'
        "<script>notDefined();</script>"
        '<div class="plotly-graph-div"></div>'
        "</body></html>")
    (tmp_path / "profile").mkdir()
    browser = Browser(chromium, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        seen = check_page(browser, bad, ("no-such-panel",), tmp_path / "bad.png", plot_wait_s=2.0)
    finally:
        browser.close()
    text = "\n".join(seen.errors)
    assert "console.error: an error" in text
    assert "notDefined" in text
    assert "missing-plotly.min.js" in text or "ERR_FILE_NOT_FOUND" in text
    assert (seen.plot_divs, seen.plots_rendered) == (1, 0)
    assert seen.missing_panels == ["no-such-panel"]
    assert (tmp_path / "bad.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
