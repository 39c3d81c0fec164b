"""Predictions for scanpy (AnnData) and the collaborator report (one offline HTML file), on the
bundled Norman model; the report in a real browser is in ``test_browser.py``."""

from __future__ import annotations

import dataclasses
import html
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL, copy_model, rename_gene, unperturbed_measured_genes

import grape_core as gc
from grape_core.cli import main
from grape_core.settings import settings

BUNDLED_MODELS = settings.bundled_models
from grape_core.errors import GrapeError

NORMAN = BUNDLED_MODELS / "norman"
ROOT = Path(__file__).resolve().parents[2]
EVIL = ("<script>window.__pwned=1</script>", "<img src=x onerror='window.__pwned=2'>")
OUTSIDE = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//",
                     re.IGNORECASE)

pytestmark = pytest.mark.skipif(not (NORMAN / "manifest.json").exists(),
                                reason="the bundled models (assets/models) are missing")


@pytest.fixture(scope="module")
def model():
    return gc.load(NORMAN)


@pytest.fixture(scope="module")
def pair(model):
    return gc.predict(model, "KLF1+MAP2K6")


def evil_prediction(pred):
    """The same numbers under gene names that are HTML."""
    genes = (EVIL[0], EVIL[1], *pred.genes[2:])
    interaction = {k: {**v, "gi_type": EVIL[1], "explanation": EVIL[0]} for k, v in pred.interaction.items()}
    return dataclasses.replace(pred, genes=genes, perturbed=EVIL, condition=f"{EVIL[0]}+{EVIL[1]}",
                               warnings=(EVIL[1],), interaction=interaction,
                               biotype=np.array([EVIL[0], *pred.biotype[1:]], dtype=object))


# ----------------------------------------------------------------------------- AnnData
def test_prediction_to_anndata_for_scanpy(model, pair, tmp_path):
    import anndata

    single = gc.predict(model, "FOXO4")
    unmeasured = gc.predict(model, "FOXO4+PERM1")  # neither measured nor seen
    adata = gc.to_anndata([pair, single, unmeasured])
    assert adata.shape == (4, len(model.measured))  # and the control row, last
    assert list(adata.obs_names) == ["KLF1+MAP2K6", "FOXO4+ctrl", "FOXO4+PERM1", "ctrl"]
    assert list(adata.var_names) == list(model.measured)
    obs = adata.obs
    # pertpy's layout: obs['perturbation'] with a 'control' label; the GEARS label beside it
    assert obs["perturbation"].tolist() == ["KLF1+MAP2K6", "FOXO4", "FOXO4+PERM1", "control"]
    assert obs["condition"].tolist() == list(adata.obs_names) and adata.uns["log1p"] == {"base": None}
    assert obs.loc["KLF1+MAP2K6", ["gene_a", "gene_b"]].tolist() == ["KLF1", "MAP2K6"]
    assert obs.loc["FOXO4+ctrl", "gene_b"] == "" and obs["n_perturbed"].tolist() == [2, 1, 2, 0]
    assert obs["measured"].tolist() == [True, True, False, True]
    np.testing.assert_allclose(adata.X[3], pair.control, atol=1e-6)  # the control mean, no shift
    assert not adata.layers["shift"][3].any() and obs.loc["ctrl", "part"] == "control"
    assert obs.loc["KLF1+MAP2K6", "part"] == "test" and obs.loc["FOXO4+PERM1", "part"] == "unmeasured"
    assert obs.loc["KLF1+MAP2K6", "gi_type"] == pair.interaction["predicted"]["gi_type"]
    np.testing.assert_allclose(adata.X[0], pair.predicted, atol=1e-5)
    np.testing.assert_allclose(adata.layers["shift"][1], single.shift, atol=1e-6)
    np.testing.assert_allclose(adata.layers["ensemble_std"][0], pair.std, atol=1e-6)
    np.testing.assert_allclose(adata.layers["measured_shift"][0], pair.measured_shift, atol=1e-6)
    assert not adata.layers["measured"][2].any()  # unmeasured row: 0, and obs says so
    assert all(not np.isnan(v).any() for v in (adata.X, *adata.layers.values()))
    assert set(adata.var["biotype"]) >= {"protein_coding", "lncRNA"}
    assert "measured" in adata.uns["grape"]["layers"]

    path = tmp_path / "p.h5ad"
    from grape_core.serving.export import write_h5ad

    write_h5ad(adata, path)
    back = anndata.read_h5ad(path)
    assert back.shape == adata.shape and list(back.var["biotype"]) == list(adata.var["biotype"])
    assert list(back.obs["perturbation"]) == list(obs["perturbation"])
    assert back.obs["measured"].dtype == bool and set(back.layers) == set(adata.layers)

    alone = unmeasured.to_anndata()  # nothing measured: no measured layers at all
    assert set(alone.layers) == {"shift", "ensemble_std", "interval"}


def test_to_anndata_refuses_mixed_input(model, pair):
    other = gc.predict(gc.load(BUNDLED_MODELS / "adamson"), "TARS")
    with pytest.raises(GrapeError, match="different models"):
        gc.to_anndata([pair, other])
    with pytest.raises(GrapeError, match="given twice"):
        gc.to_anndata([pair, pair])
    with pytest.raises(GrapeError, match="no prediction"):
        gc.to_anndata([])


# ----------------------------------------------------------------------------- report
@pytest.mark.slow
def test_the_done_when_command(tmp_path, capsys):
    """predict --h5ad --report on the bundled Norman model: an AnnData file that opens with
    a biotype column, and a self-contained report naming both genes."""
    import anndata

    h5ad, report = tmp_path / "p.h5ad", tmp_path / "r.html"
    assert main(["predict", "--model", str(NORMAN), "--perturbation", "KLF1+MAP2K6",
                 "--h5ad", str(h5ad), "--report", str(report)]) == 0
    err = capsys.readouterr().err
    assert f"wrote {h5ad}" in err and f"wrote {report}" in err
    adata = anndata.read_h5ad(h5ad)
    assert "biotype" in adata.var and adata.obs_names.tolist() == ["KLF1+MAP2K6", "ctrl"]
    page = report.read_text()
    for needed in ("KLF1", "MAP2K6", "How far to trust this", "Genetic interaction",
                   "Network neighbourhood", "Model card", "new vis.Network", "Plotly.newPlot",
                   "Why does perturbing KLF1 + MAP2K6 move", "strongest of",
                   "members with the majority sign"):
        assert needed in page, needed
    assert not OUTSIDE.search(page)  # no CDN, no outside script, style, image or frame
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    printed = re.search(r"Reproduce: <code>([^<]*)</code>", page).group(1)
    assert printed == ("python -m grape_core predict --model assets/models/norman --perturbation "
                       "KLF1+MAP2K6 --h5ad p.h5ad --report r.html")
    assert str(tmp_path) not in page  # no machine paths in a file that is sent around
    assert_runs_as_printed(printed, tmp_path / "again", made=("p.h5ad", "r.html"))


def assert_runs_as_printed(printed: str, folder: Path, *, made: tuple[str, ...]) -> None:
    """Run a report's "Reproduce" line as printed, from a folder laid out as the project
    (``assets`` beside it): it must succeed and write what it says."""
    import shlex
    import subprocess
    import sys

    folder.mkdir()
    (folder / "assets").symlink_to(ROOT / "assets")
    words = shlex.split(html.unescape(printed))
    assert words[:3] == ["python", "-m", "grape_core"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *words[1:]], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name in made:
        assert (folder / name).is_file(), name


@pytest.mark.slow
def test_report_sections_and_trust(model, pair, tmp_path):
    from grape_core.serving.trust import prediction_trust
    from grape_core.viz.report_charts import prediction_report_html

    page = prediction_report_html(model, pair)
    # the app's report: its "Reproduce" line finds the bundled model and runs as printed
    printed = re.search(r"Reproduce: <code>([^<]*)</code>", page).group(1)
    assert printed == ("python -m grape_core predict --model assets/models/norman "
                       "--perturbation KLF1+MAP2K6 --report report.html")
    assert_runs_as_printed(printed, tmp_path / "again", made=("report.html",))
    trust = prediction_trust(model, pair)
    assert f"trust: {trust.level}" in page
    score = model.bundle.manifest.metrics.test["grape"]["pearson_delta"]
    assert f"{score:.2f}" in trust.text and ("propagation" in trust.text or "linear" in trust.text)
    assert "spread" in trust.text and "held out" in trust.text
    assert page.count("Plotly.newPlot") == 2  # shift chart and predicted vs measured
    held = model.bundle.manifest.metrics.test["grape"]["n_conditions"]
    assert f"tested on {held} perturbations" in page
    # a single that was not measured: no scatter, trust says it is a pure prediction
    single = gc.predict(model, "PERM1")
    page = prediction_report_html(model, single)
    assert page.count("Plotly.newPlot") == 1 and "not measured" in page
    assert "Genetic interaction" not in page


def test_report_says_why_with_parts_that_add_up(model, pair):
    """The report explains the gene chosen (default: the most shifted one) with the
    library's own decomposition: its sentences, parts and paths."""
    from grape_core.serving.explain import explain, responding_gene
    from grape_core.viz.report_charts import prediction_report_html

    gene = responding_gene(pair)
    why = explain(model, pair.condition, gene)
    page = prediction_report_html(model, pair)
    assert f"move {gene}?</h2>" in page
    assert html.escape(why.sentences()[0]) in page
    assert html.escape(why.paths["path"].iloc[0]) in page
    other = sorted(g for g in model.measured if g != gene)[0]
    assert f"move {other}?</h2>" in prediction_report_html(model, pair, why_gene=other)


def test_report_escapes_every_data_string(model, pair):
    from grape_core.viz.report_charts import prediction_report_html

    page = prediction_report_html(model, evil_prediction(pair))
    assert EVIL[0] not in page and EVIL[1] not in page
    assert "<img src=x" not in page and "<script>window" not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page  # shown as text


@pytest.mark.slow
def test_screen_report(tmp_path, capsys):
    """On the small Adamson model (a Norman-size screen takes a minute on a busy laptop)."""
    import pandas as pd

    from grape_core.viz.report_charts import screen_report_html

    adamson = gc.load(BUNDLED_MODELS / "adamson")
    result = gc.screen(adamson, ["HSPA5", "SEC61A1"], direction="down", top=5)
    check = pd.DataFrame({"spearman": [0.31, 0.0], "n_targets": [20, 20], "n_conditions": [16, 16]},
                         index=["grape", "train_mean"])
    page = screen_report_html(adamson, result, check=check)
    assert "what would lower HSPA5, SEC61A1" in page
    printed = re.search(r"Reproduce: <code>([^<]*)</code>", page).group(1)
    assert printed == ("python -m grape_core screen --model assets/models/adamson --target "
                       "HSPA5,SEC61A1 --direction down --report report.html")
    assert_runs_as_printed(printed, tmp_path / "again", made=("report.html",))
    assert "Screen check" in page and "Spearman 0.31 (best baseline 0.00)" in page
    assert page.count("Plotly.newPlot") == 1 and not OUTSIDE.search(page)
    for gene in result.table["genes"]:
        assert gene in page
    out = tmp_path / "screen.html"  # the command line
    assert main(["screen", "--model", str(BUNDLED_MODELS / "adamson"), "--target", "HSPA5",
                 "--top", "5", "--report", str(out)]) == 0
    text = out.read_text()
    assert "what would raise HSPA5" in text and "Screen check" not in text  # 2 held out: no check
    assert f"wrote {out}" in capsys.readouterr().err


def test_trust_levels_follow_the_evidence(model, pair):
    from grape_core.serving.trust import prediction_trust

    adamson = gc.load(BUNDLED_MODELS / "adamson")
    low = prediction_trust(adamson, gc.predict(adamson, "TARS"))
    # 2 held-out perturbations: whatever the scores, the verdict stays low
    assert low.level == "low" and "anecdotes" in low.text
    seen = prediction_trust(model, gc.predict(model, "MAPK1+TGFBR2"))  # combo_seen2
    assert "both genes perturbed in training" in seen.text
    # a baseline that does as well or better on both metrics caps the verdict at low
    beaten = "do as well or better" in seen.text
    assert seen.level == ("low" if beaten else "moderate")
    assert prediction_trust(model, pair).level == "low"  # combo_seen0: the furthest extrapolation


def test_app_pages_offer_the_report(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("GRAPE_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file("../../pages/1_Predict.py", default_timeout=180).run()
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download report (HTML)" in labels and "Download the prediction (CSV)" in labels


def test_the_documentation_shows_the_report():
    root = Path(__file__).resolve().parents[2]
    assert "](screenshots/report.png)" in (root / "docs" / "cli.md").read_text()
    assert (root / "docs" / "screenshots" / "report.png").stat().st_size > 10_000


def test_plotly_text_and_network_nodes_show_names_as_typed():
    import pandas as pd

    from grape_core.viz import charts, network_view

    evil = "<a href='https://evil.example'>x</a> & ![x](https:evil.example/x.png)"
    escaped = charts.esc(evil)
    assert "<" not in escaped and ">" not in escaped and charts.unesc(escaped) == evil
    edges = pd.DataFrame({"source": [evil], "target": ["KLF1"], "relation": ["coding->coding"],
                          "status": ["learned only"], "weight": [0.3], "prior_weight": [np.nan],
                          "learned_weight": [0.3]})
    table = pd.DataFrame({"biotype": ["lncRNA", "protein_coding"], "is_coding": [False, True],
                          "full_name": ["", ""]}, index=[evil, "KLF1"])
    page = network_view.network_html(edges, table, [evil])
    assert "&lt;a href" not in page.split("<script")[-1]  # nodes hold the name, not entities
    assert "\\u003ca href=\\u0027https://evil.example\\u0027\\u003ex\\u003c/a\\u003e" in page


def test_report_charts_escape_once(tmp_path, capsys):

    from grape_core import load, predict
    from grape_core.viz import charts

    pred = predict(load(MODEL), "HSPA5", baselines=False)
    top = pred.to_frame(top=20)["gene"].tolist()
    gene = next(g for g in top if g in set(unperturbed_measured_genes(MODEL)))
    folder = copy_model(tmp_path)
    odd = "A<B>&C"
    rename_gene(folder, gene, odd)
    twice = charts.esc(charts.esc(odd))
    for perturbation in ("HSPA5", odd):  # the gene in the chart's bars, then in its title
        report = tmp_path / "r.html"
        assert main(["--quiet", "predict", "--model", str(folder), "--perturbation",
                     perturbation, "--report", str(report)]) == 0
        capsys.readouterr()
        # the network view is a page of its own in the frame's srcdoc (escaped once more as
        # an attribute, as it must be): the charts are the rest
        page = re.sub(r'srcdoc="[^"]*"', "", report.read_text())
        assert charts.esc(odd) in page  # plotly shows it as typed
        assert twice not in page and twice.replace("&", "\\u0026") not in page
    assert "Top 20 predicted shifts: A&lt;B&gt;&amp;C" in page


def test_safe_figure_is_idempotent():
    import plotly.graph_objects as go

    from grape_core.viz import charts
    from grape_core.viz.report_charts import safe_figure

    fig = go.Figure(go.Bar(x=charts.esc(["A<B", "raw<b>"]), y=[1, 2]))
    fig.update_xaxes(categoryorder="array", categoryarray=charts.esc(["A<B", "raw<b>"]))
    out = safe_figure(safe_figure(fig))
    assert list(out.data[0].x) == ["A&lt;B", "raw&lt;b&gt;"]
    assert list(out.layout.xaxis.categoryarray) == ["A&lt;B", "raw&lt;b&gt;"]
    raw = safe_figure(go.Figure(go.Bar(x=["<i>x</i>"], y=[1])))  # unescaped input: escaped once
    assert list(raw.data[0].x) == ["&lt;i&gt;x&lt;/i&gt;"]
