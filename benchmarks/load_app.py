"""Load test of the app: N concurrent browser sessions through Predict and Network.

Starts ``streamlit run app.py`` on a free 127.0.0.1 port with :mod:`explorer.server`
(the helper the browser test uses: headless, no usage statistics, the project's
``.streamlit`` config), then drives one Debian chromium (Playwright, async API; never a downloaded browser)
with N isolated browser contexts, all at once. Each session:

1. opens ``/Predict?model=norman&genes=A[&genes=B]`` with its OWN gene or pair (a
   different measured condition of the bundled ``norman`` model per session), waits for
   the shift chart and records the time to chart;
2. checks that the chart title names its own perturbation and nothing else (sessions share
   the cached model objects; no session may see another's choice);
3. clicks Network in the sidebar (the choice travels in the session), waits for the network
   canvas inside its iframe, records the time to network and checks that the gene picker
   and the URL still hold its own genes.

Errors: step timeouts, exception boxes, error messages, Streamlit's "Page not found" dialog,
a wrong gene shown (in the drawn chart, in the chart data the server sent over the
websocket, in the Network gene picker or URL), requests to another host, and tracebacks in
the server log. A warm-up session runs first (not counted) so that importing torch and
loading the model are not charged to the timed sessions; its time to chart is reported as
the cold first chart. The server's RSS (with its children) is sampled every 0.5 s, and the
CPU seconds of the server and of the browser during the timed sessions are recorded.

Time to chart runs from opening the URL to the drawn chart; it is split into the page
heading shown, the chart data received from the server (websocket message) and the drawing.

The data are the bundled real-data demo models (``assets/models``); the timings depend on
the machine and on what else runs on it (the JSON records the CPU count and load average).
On a 2-core machine the server and the browser rendering all sessions share the same two
cores, so the times measure the whole stack under load, not the server alone.

Usage (from the repository root)::

    python benchmarks/load_app.py                  # 20 sessions, writes results/load.json
    python benchmarks/load_app.py --sessions 5 --timeout 300 --out smaller.json

Exit status 1 when any session had an error (slowness alone is not an error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from explorer import server  # noqa: E402 - after the path set-up above
from load_metrics import (MemorySampler, _fmt, chromium_version,  # noqa: E402
                          server_tracebacks, summary)
from grape_core.bundle import Manifest  # noqa: E402
from grape_core.data import conditions  # noqa: E402

MODEL = "norman"
MODEL_DIR = ROOT / "assets" / "models" / MODEL
DATA_LABEL = "bundled real-data demo models (assets/models)"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1440, "height": 1000}
LOCAL_HOSTS = {"127.0.0.1", "data", "blob", "about"}
TITLE_PREFIX = "predicted shifts after perturbing"
POLL_MS = 250
"""How often page conditions are checked (Playwright's default, every animation frame in
each of the N pages, costs CPU that the server then lacks)."""
REDUCED_MOTION = "reduce"
"""The pages' CSS animations (spinners, skeletons) in N software-rendered pages on the same
cores as the server would slow it down; real users each have their own machine."""
_GENE_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_SETTLED = ("() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
            "!document.querySelector('[data-testid=\"stSpinner\"]')")
_ERRORS_JS = """() => ({
  exceptions: document.querySelectorAll('[data-testid="stException"]').length,
  error_alerts: document.querySelectorAll('[data-testid="stAlertContentError"]').length,
  traceback: document.body.innerText.includes('Traceback')})"""


# ----------------------------------------------------------------------------------------
# the sessions' perturbations
# ----------------------------------------------------------------------------------------
def conditions_of_model(folder: Path = MODEL_DIR) -> list[str]:
    """Measured conditions of the model (its split, file order), then single genes of its
    graph: distinct perturbations, so every session has its own."""
    split = json.loads((folder / "split.json").read_text())
    manifest = Manifest.read(folder)
    out: list[str] = []
    for part in ("test", "train", "val"):
        for condition in split.get(part, []):
            if condition not in out and condition != "ctrl":
                out.append(condition)
    perturbed = {g for c in out for g in conditions.genes_of(c)}
    for gene in manifest.genes.nodes:
        single = conditions.format_condition((gene,))
        if gene not in perturbed and single not in out:
            out.append(single)
    return out


def genes_of(condition: str) -> list[str]:
    return list(conditions.genes_of(condition))


def label_of(condition: str) -> str:
    """What the Predict chart title names: ``A`` or ``A+B``."""
    return conditions.short_label(condition)


# ----------------------------------------------------------------------------------------
# the server and its memory
# ----------------------------------------------------------------------------------------
def start_server(home: Path) -> tuple[subprocess.Popen, str, Path]:
    """``streamlit run app.py`` on 127.0.0.1:<free port> (the shared helper of the browser test)."""
    return server.start(home, env={"GRAPE_MODELS_DIR": str(home / "models"),
                                   "GRAPE_CACHE_DIR": os.environ.get("GRAPE_CACHE_DIR",
                                                                     str(home / "cache"))})


wait_healthy = server.wait_healthy
stop_server = server.stop




# ----------------------------------------------------------------------------------------
# one browser session
# ----------------------------------------------------------------------------------------
@dataclass
class SessionResult:
    index: int
    condition: str
    page_s: float | None = None
    chart_data_s: float | None = None
    chart_data_title: str = ""
    chart_s: float | None = None
    network_s: float | None = None
    total_s: float | None = None
    title: str = ""
    errors: list[str] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)

    def as_dict(self) -> dict:
        r = lambda v: None if v is None else round(v, 3)  # noqa: E731
        return {"session": self.index, "condition": self.condition, "page_s": r(self.page_s),
                "chart_data_s": r(self.chart_data_s), "chart_s": r(self.chart_s),
                "network_s": r(self.network_s), "total_s": r(self.total_s),
                "chart_title": self.title, "errors": self.errors}


def _chart_frame(payload: str | bytes, res: SessionResult, start: float) -> None:
    """The first websocket message carrying the shift chart: when the server delivered it
    (the browser has yet to draw it) and the perturbation named in its title."""
    if res.chart_data_s is not None:
        return
    data = payload if isinstance(payload, bytes) else payload.encode()
    at = data.find(TITLE_PREFIX.encode())
    if at < 0:
        return
    res.chart_data_s = time.perf_counter() - start
    tail = data[at + len(TITLE_PREFIX):at + len(TITLE_PREFIX) + 200]
    res.chart_data_title = tail.split(b'"')[0].decode(errors="replace").strip()


async def _page_errors(page, where: str, res: SessionResult) -> None:
    found = await page.evaluate(_ERRORS_JS)
    if found["exceptions"]:
        text = await page.locator("[data-testid='stException']").first.inner_text()
        res.errors.append(f"{where}: exception shown: {text[:300]!r}")
    if found["error_alerts"]:
        text = await page.locator("[data-testid='stAlertContentError']").first.inner_text()
        res.errors.append(f"{where}: error message shown: {text[:300]!r}")
    if found["traceback"] and not found["exceptions"]:
        res.errors.append(f"{where}: 'Traceback' in the page")


async def _page_not_found(page, where: str, res: SessionResult) -> None:
    """Streamlit's "Page not found" dialog: an error (it covers the page and makes the rest
    inert); dismissed so that the session can go on."""
    dialog = page.get_by_role("dialog").filter(has_text="Page not found")
    if await dialog.count() == 0:
        return
    res.errors.append(f"{where}: 'Page not found' dialog shown over the page")
    await page.keyboard.press("Escape")
    try:
        await dialog.first.wait_for(state="hidden", timeout=5000)
    except Exception:  # noqa: BLE001 - try the close button
        await dialog.first.get_by_role("button").first.click()
        await dialog.first.wait_for(state="hidden", timeout=5000)


async def _settle(page, timeout_ms: float) -> None:
    """Wait until Streamlit has finished the run: no status widget and no spinner, twice
    with a pause between (the status widget shows up with a delay)."""
    await page.wait_for_selector("[data-testid='stApp']", timeout=timeout_ms)
    for _ in range(2):
        await page.wait_for_function(_SETTLED, timeout=timeout_ms, polling=POLL_MS)
        await page.wait_for_timeout(500)


def _shown_genes(text: str, every_gene: set[str]) -> set[str]:
    return {t for t in _GENE_TOKEN.findall(text) if t in every_gene}


async def run_session(browser, url: str, index: int, condition: str, every_gene: set[str],
                      step_timeout: float) -> SessionResult:
    """Predict then Network for one perturbation in a fresh, isolated browser context."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    res = SessionResult(index, condition)
    own = genes_of(condition)
    expected = label_of(condition)
    timeout_ms = step_timeout * 1000
    context = await browser.new_context(viewport=VIEWPORT, device_scale_factor=1,
                                        reduced_motion=REDUCED_MOTION)
    step = "open"
    start = time.perf_counter()
    try:
        page = await context.new_page()
        page.set_default_timeout(timeout_ms)
        page.on("request", lambda r: res.hosts.add(urlparse(r.url).hostname or urlparse(r.url).scheme))
        page.on("websocket", lambda ws: ws.on("framereceived",
                                              lambda payload: _chart_frame(payload, res, start)))
        query = urlencode([("model", MODEL), *[("genes", g) for g in own]])
        step = "predict: chart"
        await page.goto(f"{url}/Predict?{query}", wait_until="commit")
        await page.get_by_role("heading", name="Predict").first.wait_for(state="visible")
        res.page_s = time.perf_counter() - start
        title = page.locator(".gtitle", has_text=TITLE_PREFIX).first
        await title.wait_for(state="visible")
        res.chart_s = time.perf_counter() - start
        res.title = " ".join((await title.text_content() or "").split())
        shown = res.title.split(TITLE_PREFIX, 1)[-1].strip()
        if shown != expected:
            res.errors.append(f"predict: chart shows {shown!r}, this session chose {expected!r}")
        if res.chart_data_s is not None and res.chart_data_title != expected:
            res.errors.append(f"predict: the server sent a chart of {res.chart_data_title!r}, "
                              f"this session chose {expected!r}")
        step = "predict: settle"
        await _settle(page, timeout_ms)
        await _page_not_found(page, "predict", res)
        await _page_errors(page, "predict", res)

        step = "network: canvas"
        t1 = time.perf_counter()
        await page.get_by_test_id("stSidebarNav").get_by_text("Network", exact=True).click()
        await page.frame_locator("iframe").first.locator("canvas").first.wait_for(state="attached")
        res.network_s = time.perf_counter() - t1
        step = "network: settle"
        await page.wait_for_function(
            "() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", polling=POLL_MS)
        await _settle(page, timeout_ms)
        await _page_not_found(page, "network", res)
        await _page_errors(page, "network", res)
        picker = await page.locator("[data-testid='stMultiSelect']").first.inner_text()
        shown_genes = _shown_genes(picker, every_gene)
        if shown_genes != set(own):
            res.errors.append(f"network: gene picker shows {sorted(shown_genes)}, this session "
                              f"chose {own}")
        url_genes = parse_qs(urlparse(page.url).query).get("genes", [])
        if sorted(url_genes) != sorted(own):
            res.errors.append(f"network: URL carries genes={url_genes}, this session chose {own}")
        res.total_s = time.perf_counter() - start
    except PlaywrightTimeout:
        res.errors.append(f"{step}: timed out after {step_timeout:.0f} s")
    except asyncio.CancelledError:
        res.errors.append(f"{step}: stopped by the global timeout")
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is an error of this session
        res.errors.append(f"{step}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    finally:
        outside = {h for h in res.hosts if h not in LOCAL_HOSTS}
        if outside:
            res.errors.append(f"the browser contacted {sorted(outside)}")
        try:
            await asyncio.shield(context.close())
        except Exception:  # noqa: BLE001 - the browser may be closing already
            pass
    return res


async def drive(url: str, conditions: list[str], warm_condition: str, every_gene: set[str], *,
                chromium: str, step_timeout: float, timeout: float, sampler: MemorySampler
                ) -> tuple[SessionResult | None, list[SessionResult], float]:
    """The warm-up session (none when ``warm_condition`` is empty), then all ``conditions``
    at once; returns their results and the wall time of the concurrent part."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, headless=True,
                                          args=CHROMIUM_ARGS)
        try:
            sampler.mark("warm_start")
            warm = (await run_session(browser, url, -1, warm_condition, every_gene, step_timeout)
                    if warm_condition else None)
            sampler.mark("load_start")
            start = time.perf_counter()
            tasks = [asyncio.create_task(run_session(browser, url, i, c, every_gene, step_timeout))
                     for i, c in enumerate(conditions)]
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            wall = time.perf_counter() - start
            sampler.mark("load_end")
            results = []
            for i, (task, condition) in enumerate(zip(tasks, conditions)):
                if task in done and task.exception() is None:
                    results.append(task.result())
                else:
                    res = SessionResult(i, condition)
                    res.errors.append(f"did not finish within the global timeout of {timeout:.0f} s"
                                      if task not in done else f"crashed: {task.exception()!r}")
                    results.append(res)
        finally:
            await browser.close()
    return warm, results, wall












# ----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent sessions (default 20)")
    parser.add_argument("--timeout", type=float, default=600,
                        help="global limit in seconds for all timed sessions (default 600)")
    parser.add_argument("--step-timeout", type=float, default=420,
                        help="limit in seconds for each step of a session (default 420)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "load.json"))
    parser.add_argument("--no-warm-up", action="store_true",
                        help="start the sessions on a cold server (model loaded under load)")
    parser.add_argument("--keep-log", default="", help="copy the server log to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= 200:
        parser.error("--sessions must be between 1 and 200")
    if args.timeout <= 0 or args.step_timeout <= 0:
        parser.error("--timeout and --step-timeout must be positive")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    try:
        import playwright  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as exc:
        print(f"{exc.name} is needed: pip install playwright psutil (never `playwright install`; "
              "the system chromium is used)", file=sys.stderr)
        return 2

    pool = conditions_of_model()
    if args.sessions + 1 > len(pool):
        parser.error(f"model {MODEL} offers {len(pool)} distinct perturbations; use fewer sessions")
    conditions = pool[:args.sessions]
    # warm-up: a pair no timed session uses (imports the interaction code too)
    warm_condition = "" if args.no_warm_up else next(
        (c for c in pool[args.sessions:] if len(genes_of(c)) == 2), pool[-1])
    every_gene = {g for c in pool for g in genes_of(c)}
    load_start = os.getloadavg()[0]
    script_start = time.perf_counter()

    with tempfile.TemporaryDirectory(prefix="grape-load-") as tmp:
        home = Path(tmp)
        proc, url, log_path = start_server(home)
        sampler = None
        try:
            health_s = wait_healthy(url, proc)
            sampler = MemorySampler(proc.pid)
            idle_mb, _ = sampler.sample()
            sampler.start()
            warm, results, wall = asyncio.run(drive(
                url, conditions, warm_condition, every_gene, chromium=chromium,
                step_timeout=args.step_timeout, timeout=args.timeout, sampler=sampler))
            sampler.stop()
            final_mb = sampler.samples[-1][1]
        finally:
            if sampler is not None and sampler.is_alive():
                sampler.stop()
            stop_server(proc)
        tracebacks, traceback_text = server_tracebacks(log_path)
        if args.keep_log:
            shutil.copyfile(log_path, args.keep_log)

    total_wall = time.perf_counter() - script_start
    charts = [r.chart_s for r in results if r.chart_s is not None]
    networks = [r.network_s for r in results if r.network_s is not None]
    failed = [r for r in results if r.errors]
    n_errors = sum(len(r.errors) for r in results) + tracebacks
    peak_mb = sampler.peak("load_start", "load_end")
    peak_all_mb = sampler.peak()
    browser_peak_mb = sampler.peak("load_start", "load_end", column=2)
    cpus = os.cpu_count()
    chart_sum, net_sum = summary(charts), summary(networks)
    page_sum = summary([r.page_s for r in results if r.page_s is not None])
    sent_sum = summary([r.chart_data_s for r in results if r.chart_data_s is not None])
    server_cpu, browser_cpu = sampler.cpu_between("load_start", "load_end")

    print(f"GRAPE Explorer load test: {args.sessions} concurrent browser sessions, Predict then "
          f"Network, model {MODEL} ({DATA_LABEL})")
    print(f"  {cpus} CPU cores shared by the server and chromium; load average {load_start:.2f} "
          f"at start; server healthy after {health_s:.1f} s")
    if warm is None:
        print("  no warm-up: the sessions started on a cold server")
    else:
        print(f"  warm-up (not counted, {label_of(warm_condition)}): cold first chart "
              f"{_fmt(warm.chart_s)}, network {_fmt(warm.network_s)}"
              + (f"; ERRORS: {warm.errors}" if warm.errors else ""))
    print()
    rows = [
        ("sessions", f"{len(results)}"),
        ("sessions with errors", f"{len(failed)}"),
        ("errors (incl. server tracebacks)", f"{n_errors}"),
        ("time to chart  median / p95 / max",
         f"{_fmt(chart_sum['median'])} / {_fmt(chart_sum['p95'])} / {_fmt(chart_sum['max'])}"),
        ("time to network median / p95 / max",
         f"{_fmt(net_sum['median'])} / {_fmt(net_sum['p95'])} / {_fmt(net_sum['max'])}"),
        ("  of which: page heading shown, median / p95",
         f"{_fmt(page_sum['median'])} / {_fmt(page_sum['p95'])}"),
        ("  of which: chart data received over the websocket, median / p95",
         f"{_fmt(sent_sum['median'])} / {_fmt(sent_sum['p95'])}"),
        ("cold first chart (warm-up)", _fmt(warm.chart_s if warm else None)),
        ("server RSS idle / peak under load / final",
         f"{idle_mb:.0f} / {peak_mb:.0f} / {final_mb:.0f} MiB"),
        ("chromium + driver peak RSS (sum, counts shared pages twice)", f"{browser_peak_mb:.0f} MiB"),
        ("wall time of the timed sessions", _fmt(wall)),
        ("CPU seconds in that time: server / browser", f"{server_cpu:.0f} / {browser_cpu:.0f}"),
        ("load average at start", f"{load_start:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    print()
    for r in sorted(results, key=lambda r: r.index):
        print(f"  #{r.index:<3} {label_of(r.condition):<16} chart {_fmt(r.chart_s):>9}  "
              f"network {_fmt(r.network_s):>9}" + (f"  ERRORS: {'; '.join(r.errors)}" if r.errors else ""))
    if tracebacks:
        print(f"\n  server log: {tracebacks} traceback(s)\n{traceback_text}")

    out = {
        "benchmark": "load_app",
        "data": DATA_LABEL,
        "note": (f"{args.sessions} concurrent Playwright sessions (isolated contexts of one headless "
                 f"Debian chromium), each Predict then Network for its own perturbation of the "
                 f"bundled '{MODEL}' demo model (real Norman et al. 2019 cells, small slice). "
                 f"Machine: {cpus} CPU cores shared by the Streamlit server and the browser, so "
                 "times are of the whole stack under load."),
        "settings": {"sessions": args.sessions, "timeout_s": args.timeout,
                     "step_timeout_s": args.step_timeout, "model": MODEL,
                     "warm_up": not args.no_warm_up, "poll_ms": POLL_MS,
                     "reduced_motion": REDUCED_MOTION,
                     "app_threads_env": os.environ.get("GRAPE_APP_THREADS", "")},
        "errors": n_errors,
        "sessions_with_errors": len(failed),
        "server_tracebacks": tracebacks,
        "time_to_chart_s": chart_sum,
        "time_to_network_s": net_sum,
        "time_to_page_heading_s": page_sum,
        "time_to_chart_data_received_s": sent_sum,
        "cold_first_chart_s": None if warm is None or warm.chart_s is None else round(warm.chart_s, 2),
        "warm_up": warm.as_dict() if warm else None,
        "wall_s": round(wall, 2),
        "cpu_s_during_load": {"server": round(server_cpu, 1), "browser": round(browser_cpu, 1)},
        "script_wall_s": round(total_wall, 2),
        "server_health_s": round(health_s, 2),
        "server_rss_mb": {"idle": round(idle_mb, 1), "peak_under_load": round(peak_mb, 1),
                          "peak_overall": round(peak_all_mb, 1), "final": round(final_mb, 1)},
        "browser_rss_peak_mb": round(browser_peak_mb, 1),
        "rss_timeline_mb": {"columns": ["t_s", "server", "browser"], "marks_s":
                            {k: round(v, 1) for k, v in sampler.marks.items()},
                            "rows": sampler.timeline()},
        "sessions": [r.as_dict() for r in sorted(results, key=lambda r: r.index)],
        "machine": {"cpu_count": cpus, "load_average_1min_at_start": round(load_start, 2),
                    "python": platform.python_version(), "platform": platform.platform(),
                    "streamlit": _version("streamlit"), "playwright": _version("playwright"),
                    "torch": _version("torch"), "chromium": chromium_version(chromium)},
    }
    if traceback_text:  # no paths of this machine in the results file
        out["server_traceback_excerpt"] = (traceback_text.replace(str(ROOT), "<repo>")
                                           .replace(sys.prefix, "<python>"))
    from grape_core.io import write_json

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, out)
    print(f"\n  wrote {args.out}")
    return 1 if n_errors else 0


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
