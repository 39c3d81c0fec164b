"""The app in a real browser: Debian's chromium driven by Playwright (never a downloaded
browser). Starts ``streamlit run app.py`` on a free local port with the project's
``.streamlit`` config, opens every page, waits for its plotly charts (and the network
canvas), checks that no exception is shown and that the browser asks nothing of another
server, and saves screenshots.

Skipped when chromium is not installed, unless ``GRAPE_REQUIRE_BROWSER=1`` (CI), which makes
that a failure. Screenshots go to the test's temporary folder, or to
``GRAPE_SCREENSHOT_DIR`` (``docs/screenshots`` for the README).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import copy_model, rename_gene, unperturbed_measured_genes

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("GRAPE_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1440, "height": 1000}
MAX_PNG_BYTES = 400_000

if CHROMIUM is None:
    if REQUIRED:
        pytest.fail("GRAPE_REQUIRE_BROWSER=1 but no chromium on PATH: apt-get install -y chromium",
                    pytrace=False)
    pytest.skip("chromium is not installed (apt-get install -y chromium); set "
                "GRAPE_REQUIRE_BROWSER=1 to make this a failure", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.slow  # a real server and browser: about two minutes in all


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The server's home: its log and its models folder (``home / "models"``)."""
    return tmp_path_factory.mktemp("browser-home")


@pytest.fixture(scope="module")
def server(home):
    """``streamlit run app.py`` on 127.0.0.1:<free port> (:mod:`explorer.server`); yields
    the base URL and fails on any traceback in the server log."""
    from explorer import server as app_server

    env = {"GRAPE_MODELS_DIR": str(home / "models"),
           "GRAPE_CACHE_DIR": os.environ.get("GRAPE_CACHE_DIR", str(home / "cache"))}
    with app_server.running(home, env=env) as running:
        yield running.url
    text = running.tracebacks()
    assert not text, text[-3000:]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("GRAPE_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page(browser, server, tmp_path):
    """A fresh browser tab (own profile) that records every host it talks to."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    tab = context.new_page()
    tab.hosts = set()  # type: ignore[attr-defined]
    tab.on("request", lambda r: tab.hosts.add(urlparse(r.url).hostname or urlparse(r.url).scheme))
    tab.set_default_timeout(90_000)
    yield tab
    context.close()
    outside = {h for h in tab.hosts if h not in {"127.0.0.1", "data", "blob", "about"}}
    assert not outside, f"the app made the browser contact {outside}"


def _settle(tab) -> None:
    """Wait until Streamlit has finished running the page and nothing is spinning."""
    tab.wait_for_selector("[data-testid='stApp']")
    tab.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
        "!document.querySelector('[data-testid=\"stSpinner\"]')", timeout=120_000)
    tab.wait_for_timeout(400)


def _no_exception(tab) -> None:
    assert tab.locator("[data-testid='stException']").count() == 0, tab.inner_text("body")[:2000]
    assert "Traceback" not in tab.inner_text("body")


def _charts(tab, n: int = 1) -> None:
    tab.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n}",
                          timeout=120_000)


def _shot(tab, folder: Path, name: str, *, scroll_to: str | None = None) -> Path:
    if scroll_to:
        tab.locator(scroll_to).first.scroll_into_view_if_needed()
        tab.wait_for_timeout(300)
    path = folder / f"{name}.png"
    tab.screenshot(path=str(path))
    if path.stat().st_size > MAX_PNG_BYTES:
        from PIL import Image

        Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)
    assert path.stat().st_size < MAX_PNG_BYTES, f"{path} is {path.stat().st_size} bytes"
    return path


def test_link_to_a_page_on_a_fresh_server_uses_the_app_navigation(page, server):
    # first visit of this server (keep this test first): before any session ran app.py,
    # Streamlit would run the page from pages/ alone, with that folder's menu
    page.goto(f"{server}/Genes?model=norman")
    page.locator("h1", has_text="Genes").wait_for()
    nav = page.locator("[data-testid='stSidebarNav']")
    nav.get_by_role("link", name="Home").wait_for()
    assert "app" not in nav.inner_text().split("\n")
    assert page.url.endswith("/Genes?model=norman")
    _settle(page)
    _no_exception(page)


def test_home_loads_fast_and_lists_models(page, server, shots):
    start = time.perf_counter()
    page.goto(server)
    page.get_by_text("Model card: norman").wait_for()
    first = time.perf_counter() - start
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stMetricValue\"]').length >= 4")
    _settle(page)
    _no_exception(page)
    assert page.get_by_text("Use my own data").count() == 1
    _shot(page, shots, "home")
    print(f"first page: {first:.2f} s")
    assert first < 30, f"home page took {first:.1f} s"


def test_predict_pair(page, server, shots):
    page.goto(f"{server}/Predict?model=norman&genes=KLF1&genes=MAP2K6")
    _charts(page, 2)
    _settle(page)
    _no_exception(page)
    assert page.get_by_text("Genetic interaction").count() == 1
    _shot(page, shots, "predict", scroll_to="[data-testid='stPlotlyChart']")
    with page.expect_download() as download:  # the report is made when the button is clicked
        page.get_by_role("button", name="Download report (HTML)").click()
    assert download.value.suggested_filename == "grape_norman_KLF1+MAP2K6.html"
    report = Path(download.value.path()).read_text()
    assert "Predicted response to KLF1 + MAP2K6" in report and "How far to trust this" in report
    # warm interaction: choose another gene, wait for its chart
    box = gene_box(page)
    box.fill("FOXO4")
    start = time.perf_counter()
    box.press("Enter")
    page.locator(".gtitle", has_text="FOXO4").first.wait_for()
    print(f"gene -> chart: {time.perf_counter() - start:.2f} s")
    _settle(page)
    _no_exception(page)


def gene_box(tab):
    return tab.get_by_role("textbox", name="Gene or pair to perturb")


def _submit(tab, box, text: str, shown) -> None:
    """Type ``text`` and press Enter until ``shown`` appears: on a loaded machine a page
    that is still starting its run can redraw the box and drop what was typed, which is
    the test's timing, not the app's behaviour (each try is what a user does again)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box.wait_for()
    for attempt in range(3):
        _settle(tab)
        box.fill(text)
        box.press("Enter")
        try:
            shown.wait_for(timeout=40_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def test_enter_predicts_the_gene_typed_and_nothing_else(page, server):
    """As a new user types: KLF1 + Enter predicts KLF1 (not KLF1 and KLF12); KLF2, which
    the model lacks, is one error offering KLF12, and predicts nothing; on Screen, HBG + Enter
    is an error offering HBG1 and HBG2, never a ranking of other genes."""
    page.goto(f"{server}/Predict?model=norman")
    _charts(page, 1)
    _settle(page)
    box = gene_box(page)
    _submit(page, box, "KLF1", page.locator(".gtitle", has_text="perturbing KLF1").first)
    _settle(page)
    body = page.inner_text("body")
    assert "KLF1+ctrl" in body and "KLF12" not in body and "KLF1 + KLF12" not in body
    _submit(page, box, "KLF2", page.get_by_role("button", name="Use KLF12"))
    _settle(page)
    assert "KLF2 is a known human gene but not in model 'norman'" in page.inner_text("body")
    assert page.locator(".js-plotly-plot").count() == 0  # nothing was predicted
    assert gene_box(page).input_value() == "KLF2"  # what was typed stays typed
    _no_exception(page)

    page.goto(f"{server}/Screen?model=norman")
    _settle(page)
    targets = page.get_by_role("textbox", name="Target genes")
    _submit(page, targets, "HBG", page.get_by_role("button", name="Use HBG2"))  # Enter submits the form
    _settle(page)
    assert "unknown gene 'HBG'" in page.inner_text("body")
    assert page.locator(".js-plotly-plot").count() == 0
    page.get_by_role("button", name="Use HBG2").click()  # one click: that gene alone
    _charts(page, 1)
    _settle(page)
    _no_exception(page)
    assert "Targets: HBG2 (up)" in page.inner_text("body")
    assert targets.input_value() == "HBG2"


def test_network_canvas(page, server, shots):
    page.goto(f"{server}/Predict?model=norman&genes=KLF1")
    _charts(page, 1)
    _settle(page)
    page.get_by_test_id("stSidebarNav").get_by_text("Network").click()  # the choice travels
    frame = page.frame_locator("iframe").first
    frame.locator("canvas").first.wait_for()
    _charts(page, 2)
    _settle(page)
    page.wait_for_timeout(2500)  # let the physics settle for the picture
    _no_exception(page)
    assert page.get_by_role("textbox", name="Gene(s) at the centre").input_value() == "KLF1"
    _shot(page, shots, "network", scroll_to="iframe")


def test_network_opens_on_the_example_and_exports(page, server, shots, tmp_path):
    """A first visit to Network: the example drawn, what changed against the prior first,
    why the example moves its most shifted gene, and a GraphML download that networkx reads
    with the edge attributes."""
    import networkx as nx

    import grape_core as gc
    from grape_core.data.conditions import genes_of
    from grape_core.serving.explain import explain, responding_gene
    from grape_core.serving.network import learned_network
    from grape_core.serving.predict import example_condition

    model = gc.load(ROOT / "assets" / "models" / "norman")
    example = genes_of(example_condition(model))
    page.goto(f"{server}/Network?model=norman")
    page.frame_locator("iframe").first.locator("canvas").first.wait_for()
    _settle(page)
    _no_exception(page)
    picked = page.get_by_role("textbox", name="Gene(s) at the centre").input_value()
    assert picked.split("+") == list(example)
    body = page.inner_text("body")
    assert body.index("What changed against the prior") < body.index("Gene(s) at the centre")
    assert learned_network(model).change.sentences()[0][:60] in body.replace("\n", " ")
    gene = responding_gene(gc.predict(model, list(example), baselines=False))
    why = explain(model, list(example), gene)
    page.get_by_text("Why does perturbing").first.wait_for()
    assert why.sentences()[0] in page.inner_text("body")
    with page.expect_download() as download:
        page.get_by_role("button", name="Network as GraphML (Cytoscape, Gephi)").click()
    path = tmp_path / "net.graphml"
    download.value.save_as(path)
    graph = nx.read_graphml(path)
    attrs = next(iter(graph.edges(data=True)))[2]
    assert {"weight", "sign", "status", "in_prior", "sign_agreement", "spread", "relation",
            "source_biotype", "target_biotype"} <= set(attrs)
    assert isinstance(attrs["in_prior"], bool)
    _shot(page, shots, "network_why", scroll_to="text=Why does perturbing")


def test_pair_screen_keeps_its_warnings(page, server, shots):
    """Pairs on: the pairs are scored against pairs and the page shows the same noise
    warning and notes as the library, and the members' agreement column."""
    import grape_core as gc
    from grape_core.serving.trust import ranking_is_noise

    model = gc.load(ROOT / "assets" / "models" / "norman")
    result = gc.screen(model, ["HBG2"], direction="up", pairs=True, top=20)
    page.goto(f"{server}/Screen?model=norman")
    _settle(page)
    page.locator("textarea").first.fill("HBG2 1")
    page.get_by_text("Also try pairs of the best singles").click()
    page.get_by_role("button", name="Run the screen").click()
    _charts(page, 1)
    _settle(page)
    _no_exception(page)
    body = page.inner_text("body").replace("\n", " ")
    noise = ranking_is_noise(result)
    if noise:
        assert noise[:50] in body
    for note in result.notes:
        assert note[:50] in body
    assert "a typical pair" in body and "members agree" in body
    _shot(page, shots, "screen_pairs", scroll_to="[data-testid='stPlotlyChart']")


def test_benchmark(page, server, shots):
    page.goto(f"{server}/Benchmark?model=norman")
    _charts(page, 5)
    _settle(page)
    _no_exception(page)
    assert page.get_by_text("beats").count() >= 1
    # a difference of 0.001 on one pair is a tie, not a win for additive
    assert page.get_by_text("GRAPE and the additive (A + B) baseline tie").count() == 1
    _shot(page, shots, "benchmark")


def test_the_replicate_on_benchmark_and_predict(page, server, home, adamson_model):
    """A model trained now stores the data's replicate: Benchmark draws it as the ceiling
    line and scales every model between the train mean and it; Predict's held-out example
    says how close it came to repeating the experiment."""
    (home / "models").mkdir(exist_ok=True)
    folder = home / "models" / "trained"
    shutil.copytree(adamson_model, folder)
    try:
        page.goto(f"{server}/Benchmark?model=trained")
        _charts(page, 4)
        _settle(page)
        _no_exception(page)
        body = page.inner_text("body")
        assert "How close to repeating the experiment?" in body
        assert "0 = the train mean baseline" in body and "1 = the replicate" in body
        assert page.locator(".js-plotly-plot .annotation-text",
                            has_text="replicate (the data's ceiling)").count() == 1
        assert "cell-eval's metrics" in body
        page.goto(f"{server}/Predict?model=trained")
        _charts(page, 1)
        _settle(page)
        _no_exception(page)
        assert "How close to repeating the experiment" in page.inner_text("body")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_genes(page, server, shots):
    page.goto(f"{server}/Genes?model=norman")
    _charts(page, 1)
    _settle(page)
    _no_exception(page)
    _shot(page, shots, "genes")


def test_screen(page, server, shots):
    page.goto(f"{server}/Screen?model=norman")
    _settle(page)
    page.locator("textarea").first.fill("HBG2 1\nHBE1 1")  # induce the fetal/embryonic globins
    page.get_by_role("button", name="Run the screen").click()
    _charts(page, 1)
    _settle(page)
    _no_exception(page)
    _shot(page, shots, "screen", scroll_to="[data-testid='stPlotlyChart']")


def test_gene_names_never_run_as_code(page):
    """A gene named like HTML must not execute in the network view."""
    import pandas as pd

    from grape_core.viz import network_view

    evil = ["<script>window.__pwned=1</script>", "<img src=x onerror='window.__pwned=2'>", "KLF1"]
    edges = pd.DataFrame({"source": [evil[0], evil[1]], "target": [evil[2], evil[0]],
                          "relation": ["coding->coding"] * 2, "status": ["both", "learned only"],
                          "weight": [0.2, 0.1], "prior_weight": [0.2, None], "learned_weight": [0.2, 0.1]})
    table = pd.DataFrame({"biotype": ["protein_coding"] * 3, "is_coding": [True] * 3,
                          "full_name": ["</title><script>window.__pwned=3</script>", "", ""]},
                         index=evil)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.set_content(network_view.network_html(edges, table, [evil[0]]))
    page.locator("canvas").first.wait_for()
    page.wait_for_timeout(500)
    assert page.evaluate("() => window.__pwned") is None
    assert not dialogs


MD_GENE = "![x](https:evil.example/x.png)"
HTML_GENE = "<b>bold</b>"
MD_FOLDER = "![m](https:evil.example)"  # a folder name cannot hold '/'


def test_markdown_names_are_shown_as_typed_and_fetch_nothing(page, server, home):
    """A gene and a model folder named like Markdown images (and a gene named like HTML):
    every page shows them as typed and the browser asks no other host for anything (the
    ``page`` fixture checks every request)."""
    from urllib.parse import quote


    (home / "models").mkdir(exist_ok=True)
    folder = copy_model(home / "models", MD_FOLDER)
    try:
        free = unperturbed_measured_genes(folder)
        rename_gene(folder, free[0], MD_GENE)
        rename_gene(folder, free[1], HTML_GENE)
        model = quote(MD_FOLDER, safe="")
        page.goto(f"{server}/?model={model}")
        page.get_by_text(f"Model card: {MD_FOLDER}", exact=True).wait_for()
        _settle(page)
        _no_exception(page)
        genes = f"genes={quote(MD_GENE, safe='')}&genes={quote(HTML_GENE, safe='')}"
        page.goto(f"{server}/Predict?model={model}&{genes}")
        _charts(page, 1)
        _settle(page)
        _no_exception(page)
        page.get_by_text(f"Open {MD_GENE} + {HTML_GENE} in Network", exact=True).wait_for()
        page.goto(f"{server}/Network?model={model}&{genes}")
        page.frame_locator("iframe").first.locator("canvas").first.wait_for()
        _settle(page)
        _no_exception(page)
        labels = next(found for frame in page.frames if (found := frame.evaluate(
            "() => typeof nodes === 'undefined' ? null : nodes.get().map(n => n.label)")))
        assert MD_GENE in labels and HTML_GENE in labels  # as typed, not &lt;b&gt;
        assert not any("&lt;" in label or "&amp;" in label for label in labels)
        assert page.locator("img[src*='evil']").count() == 0
        assert "evil.example" not in page.hosts
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_report_works_offline_with_the_network_blocked(browser, shots, tmp_path):
    """The collaborator report, opened from disk in chromium with every non-file request
    aborted: its charts and network draw, it names both genes, and it tried no request (and
    its content-security policy refused none). A gene named like HTML stays text."""
    import dataclasses

    import grape_core as gc
    from grape_core.viz.report_charts import prediction_report_html

    model = gc.load(ROOT / "assets" / "models" / "norman")
    pred = gc.predict(model, "KLF1+MAP2K6")
    report = tmp_path / "report.html"
    report.write_text(prediction_report_html(model, pred))
    evil = ("<script>window.__pwned=1</script>", "<img src=x onerror='window.__pwned=2'>")
    bad = dataclasses.replace(pred, perturbed=evil, genes=(*evil, *pred.genes[2:]), warnings=evil,
                              condition="+".join(evil))
    evil_report = tmp_path / "evil.html"
    evil_report.write_text(prediction_report_html(model, bad))

    context = browser.new_context(viewport={"width": 1280, "height": 1100}, device_scale_factor=1)
    attempted: list[str] = []
    local = ("file:", "data:", "about:", "blob:")

    def block(route):
        if route.request.url.startswith(local):
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort()

    context.route("**/*", block)
    context.add_init_script("window.__csp = []; document.addEventListener("
                            "'securitypolicyviolation', e => window.__csp.push(e.blockedURI));")
    tab = context.new_page()
    requests: list[str] = []
    refused: list[str] = []
    dialogs: list[str] = []
    tab.on("request", lambda r: requests.append(r.url))
    tab.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    tab.set_default_timeout(90_000)
    try:
        tab.goto(report.as_uri())
        _charts(tab, 2)
        tab.frame_locator("iframe").first.locator("canvas").first.wait_for()
        text = tab.inner_text("body")
        assert "KLF1" in text and "MAP2K6" in text and "How far to trust this" in text
        assert tab.evaluate("() => window.__csp") == []
        tab.wait_for_timeout(1500)  # the network's physics settles
        _shot(tab, shots, "report")

        tab.goto(evil_report.as_uri())
        _charts(tab, 2)
        tab.wait_for_timeout(500)
        assert tab.evaluate("() => window.__pwned") is None and not dialogs
        assert evil[0] in tab.inner_text("body")  # shown as text
    finally:
        context.close()
    assert not attempted, f"the report tried to reach {attempted}"
    assert all(u.startswith(local) for u in requests), [u for u in requests if not u.startswith(local)]
    assert not refused, refused
