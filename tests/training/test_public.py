"""Home's "Get the full Adamson screen", end to end and offline: the registry points (through
``GRAPE_REGISTRY``) at an HTTP server on 127.0.0.1 that serves a small generated screen in
the GEARS layout (``grape_core.simulation``, zipped like the GEARS download). The app
downloads it with a progress bar, checks its SHA-256, trains in the background, survives a
page reload, adds the model to the list; and says clearly when there is no network, the
server refuses, the disk is full or the user cancels."""

from __future__ import annotations

import errno
import hashlib
import json
import threading
import time

import pytest
from servers import Server, zip_of

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from explorer import state  # noqa: E402
from grape_core.data import datasets  # noqa: E402

APP = "../../app.py"
TIMEOUT = 180


@pytest.fixture(scope="module")
def screen_bytes(tmp_path_factory) -> bytes:
    """A small planted-truth screen (60 genes, 12 singles, 4 pairs) as GEARS .h5ad bytes."""
    from grape_core.simulation import SimulationConfig, simulate

    folder = tmp_path_factory.mktemp("simulated") / "screen"
    simulate(SimulationConfig(n_genes=60, n_singles=12, n_pairs=4, cells_per_condition=20,
                              n_control_cells=100), progress=False).write(folder)
    return (folder / "screen.h5ad").read_bytes()


@pytest.fixture
def served(screen_bytes, tmp_path, monkeypatch):
    """The loopback server, a registry override pointing ``adamson`` at it, and private data
    and models folders. Yields ``(server, point)``: ``point(path, sha256=..., size=...)``
    re-points the registry."""
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("GRAPE_MODELS_DIR", str(models))
    monkeypatch.setenv("GRAPE_DATA_DIR", str(tmp_path / "data"))
    override = tmp_path / "registry.json"
    monkeypatch.setenv(datasets.REGISTRY_ENV, str(override))
    with Server() as server:
        server.files["/adamson.zip"] = zip_of(screen_bytes, "adamson/perturb_processed.h5ad")

        def point(path: str, *, url: str | None = None) -> None:
            override.write_text(json.dumps({"adamson": {
                "url": url or server.url(path), "sha256": hashlib.sha256(screen_bytes).hexdigest(),
                "size": len(screen_bytes)}}))

        point("/adamson.zip")
        yield server, point, models
    for job in state.public_jobs():  # never leave a run behind for the next test
        job.stop.set()
    deadline = time.time() + 60
    while any(j.running for j in state.public_jobs()) and time.time() < deadline:
        time.sleep(0.1)
    state.JOBS.clear()


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def sidebar_text(at: AppTest) -> str:
    parts = [e.value for e in at.sidebar.markdown] + [e.value for e in at.sidebar.caption]
    parts += [e.value for kind in ("success", "warning", "error") for e in at.sidebar.get(kind)]
    parts += [e.proto.text for e in at.sidebar.get("progress")]
    return "\n".join(parts).replace("\\", "")


def wait_for(job, seconds: float = 150) -> None:
    deadline = time.time() + seconds
    while job.running and time.time() < deadline:
        time.sleep(0.2)
    assert not job.running, f"still running after {seconds} s: {job.line}"


def start(models, *, ensemble: int = 1, max_steps: int = 100) -> AppTest:
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    ok(at.radio(key="full_dataset").set_value("adamson").run())
    at.slider(key="full_ensemble").set_value(ensemble)
    at.slider(key="full_steps").set_value(max_steps)
    assert at.button(key="full_start").proto.label == "Get the full Adamson screen"
    return ok(at.button(key="full_start").click().run())


def test_full_screen_download_train_reload_and_use(served):
    server, point, models = served
    gate = server.hold["/adamson.zip"] = threading.Event()  # the download waits for the test
    at = start(models)
    job = state.public_job("adamson", str(models))
    assert job is not None and job.running
    shown = sidebar_text(at)
    assert "adamson-full" in shown and "Cancel" in [b.label for b in at.sidebar.button]

    # a page reload is a new session: it finds the running job (kept in the server process)
    reloaded = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    assert "adamson-full" in sidebar_text(reloaded)
    assert any("in the background" in i.value for i in reloaded.info)
    deadline = time.time() + 30
    while "Downloading adamson" not in job.line and time.time() < deadline:
        time.sleep(0.1)
    assert "Downloading adamson" in job.line and 0 < job.fraction < 0.25
    ok(reloaded.run())
    assert "Downloading adamson" in sidebar_text(reloaded)  # the progress bar's text
    # another page shows it too
    ok(reloaded.switch_page("pages/3_Benchmark.py").run())
    assert "adamson-full" in sidebar_text(reloaded)

    gate.set()
    wait_for(job)
    assert job.state == "done", (job.kind, job.message)
    assert (models / "adamson-full" / "manifest.json").exists()
    manifest = json.loads((models / "adamson-full" / "manifest.json").read_text())
    assert manifest["dataset"]["sha256"] == hashlib.sha256(
        datasets.cached_path("adamson").read_bytes()).hexdigest()  # the verified download
    assert manifest["command"].startswith("python -m grape_core train --data adamson")
    assert [r[0] for r in server.requests] == ["/adamson.zip"]  # downloaded once, nowhere else

    ok(reloaded.run())  # still on Benchmark: the outcome shows on every page
    assert "adamson-full is ready" in sidebar_text(reloaded).replace("**", "")
    options = reloaded.sidebar.selectbox(key="model").options
    assert any(o.startswith("adamson-full") for o in options)
    ok(reloaded.sidebar.button(key=f"use-{job.key}").click().run())
    assert reloaded.sidebar.selectbox(key="model").value == "adamson-full"
    ok(reloaded.switch_page("pages/1_Predict.py").run())  # opens on a held-out example
    assert reloaded.get("plotly_chart")
    assert any("An example to start with" in i.value for i in reloaded.info)
    ok(reloaded.sidebar.button(key=f"dismiss-{job.key}").click().run())
    assert not state.public_jobs()


def test_cancel_keeps_the_download_for_the_next_try(served):
    server, point, models = served
    server.hold["/adamson.zip"] = threading.Event()  # never released: only Cancel ends it
    at = start(models)
    job = state.public_job("adamson", str(models))
    deadline = time.time() + 30
    while "Downloading" not in job.line and time.time() < deadline:
        time.sleep(0.1)
    ok(at.sidebar.button(key=f"cancel-{job.key}").click().run())
    wait_for(job, 30)
    assert job.state == "cancelled" and job.kind == "cancelled"
    ok(at.run())
    warned = [w.value.replace("\\", "") for w in at.sidebar.warning]
    assert any(w.startswith("Cancelled: download of adamson cancelled after") and
               "the next try resumes" in w for w in warned), warned
    assert not at.sidebar.error
    part = datasets.cached_path("adamson").parent / "download.part"
    assert part.exists() and part.stat().st_size > 0
    assert not (models / "adamson-full").exists()


@pytest.mark.parametrize("problem, title", [
    ("network", "No network: the download server could not be reached: download of"),
    ("http", "The server refused the download: download of"),
    ("disk", "The disk is full: the disk is full: cannot write to"),
])
def test_failures_are_one_clear_line(served, monkeypatch, problem, title):
    server, point, models = served
    if problem == "network":
        closed = Server()
        url = closed.url("/adamson.zip")
        closed.httpd.server_close()  # nothing listens there now
        point("", url=url)
    elif problem == "http":
        server.refuse["/adamson.zip"] = 403
    else:
        def full(fh, block):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(datasets, "_write_block", full)
    at = start(models)
    job = state.public_job("adamson", str(models))
    wait_for(job, 60)
    assert job.state == "failed" and job.kind == problem
    ok(at.run())
    shown = [e.value.replace("\\", "") for e in at.sidebar.error]
    assert len(shown) == 1 and shown[0].startswith(title), shown
    assert "\n" not in shown[0] and "Traceback" not in shown[0]
    if problem == "http":
        assert "HTTP 403" in shown[0]
    ok(at.sidebar.button(key=f"dismiss-{job.key}").click().run())
    assert not at.sidebar.error and not state.public_jobs()
