"""The Streamlit app driven by ``AppTest``: every page, its charts against grape_core's own
numbers, and every bad input turned into one clear ``st.error``.

Paths given to ``AppTest.from_file`` are relative to this file. The bundled models in
``assets/models`` are used read-only; user models live in a temporary ``GRAPE_MODELS_DIR``.
"""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("streamlit.testing.v1")
from conftest import (
    ADAMSON,
    copy_model,
    edit_tensors,
    make_adata,
    read_manifest,
    rename_gene,
    unperturbed_measured_genes,
    write_manifest,
)
from streamlit.testing.v1 import AppTest  # noqa: E402

from grape_core.settings import settings  # noqa: E402

BUNDLED_MODELS = settings.bundled_models
from grape_core.viz.charts import array, chart_values  # noqa: E402

APP = "../../app.py"
PAGES = {"predict": "pages/1_Predict.py", "network": "pages/2_Network.py",
         "benchmark": "pages/3_Benchmark.py", "genes": "pages/4_Genes.py", "screen": "pages/5_Screen.py"}
TIMEOUT = 180

pytestmark = pytest.mark.skipif(not (BUNDLED_MODELS / "norman" / "manifest.json").exists(),
                                reason="the bundled models (assets/models) are missing")


# ----------------------------------------------------------------------------- helpers
def plain(text: str) -> str:
    """Markdown as the user reads it (the app escapes gene and file names)."""
    return re.sub(r"\\(.)", r"\1", text.replace("**", ""))


def errors(at: AppTest) -> list[str]:
    return [plain(e.value) for e in at.error]


def warnings(at: AppTest) -> list[str]:
    return [plain(w.value) for w in at.warning]


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [s.value for s in at.subheader] + [w.value for w in at.warning] + [s.value for s in at.success]
    return plain("\n".join(parts))


def chart(at: AppTest, key: str) -> dict:
    """The plotly figure (JSON) of the chart drawn with ``key``."""
    for element in at.get("plotly_chart"):
        if element.proto.id.endswith(f"-{key}"):
            return json.loads(element.proto.spec)
    raise AssertionError(f"no plotly chart {key!r}; keys: {[e.proto.id for e in at.get('plotly_chart')]}")


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("GRAPE_MODELS_DIR", str(folder))
    monkeypatch.delenv("GRAPE_MAX_UPLOAD_MB", raising=False)
    return folder


@pytest.fixture
def app(models_dir):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    return ok(at.run())


def page(at: AppTest, name: str, **widgets) -> AppTest:
    ok(at.switch_page(PAGES[name]).run())
    for key, value in widgets.items():
        ok(at.text_input(key=key).set_value("+".join(value)).run())
    return at


def genes_box(at: AppTest) -> list[str]:
    """The genes in the gene box (a text box: ``KLF1+MAP2K6``)."""
    return [g for g in at.text_input(key="genes").value.split("+") if g]


def app_bundle(name: str):
    """The app's own cached model (a read-only bundle): its caches are shared."""
    from explorer.loaders import load_model, model_entries

    entry = next(e for e in model_entries(str(BUNDLED_MODELS)) if e.name == name)
    return load_model(entry.folder, entry.stamp)


@pytest.fixture(scope="module")
def norman():
    return app_bundle("norman")


# ----------------------------------------------------------------------------- Home
def test_home_lists_models_and_shows_the_card(app):
    options = app.sidebar.selectbox(key="model").options
    assert any(o.startswith("norman") for o in options) and any(o.startswith("adamson") for o in options)
    assert app.sidebar.selectbox(key="model").value == "norman"
    assert "Model card: norman" in texts(app)
    assert [m.label for m in app.metric][:4] == ["cells seen", "measured genes", "perturbations",
                                                 "training time"]
    assert not errors(app)
    ok(app.sidebar.selectbox(key="model").set_value("adamson").run())
    assert "Model card: adamson" in texts(app)


# ----------------------------------------------------------------------------- Predict
def test_predict_chart_is_grape_core_prediction(app, norman):
    from grape_core.evaluation.metrics import pearson
    from grape_core.serving.predict import predict

    page(app, "predict", genes=["KLF1"])
    expected = predict(norman, "KLF1").to_frame(top=20)
    fig = chart(app, "shift_chart")
    shown = chart_values(fig, "predicted")
    assert list(shown) == list(expected["gene"]) or set(shown) == set(expected["gene"])
    np.testing.assert_allclose([shown[g] for g in expected["gene"]], expected["shift"], rtol=1e-5, atol=1e-6)
    measured = chart_values(fig, "measured")
    np.testing.assert_allclose([measured[g] for g in expected["gene"]], expected["measured_shift"], atol=1e-6)
    error_bars = chart_values(fig, "predicted", field="error_y")  # the calibrated interval
    np.testing.assert_allclose([error_bars[g] for g in expected["gene"]], expected["interval"], atol=1e-6)
    assert "Error bars are 90 % intervals: ranges meant to hold the measured shift" in texts(app)
    calibration = norman.bundle.manifest.calibration
    assert calibration.method == "cross"  # a small screen: cross-fitted, each held out once
    assert (f"set on {calibration.conditions} perturbations each predicted by a model trained "
            "without its genes") in texts(app)
    assert any("the model has little to say that is specific to KLF1" in w for w in warnings(app))
    assert any(t.get("meta") == "baseline:train_mean" for t in fig["data"])
    full = predict(norman, "KLF1").to_frame()
    r = pearson(full["shift"].to_numpy(), full["measured_shift"].to_numpy())
    assert f"Pearson r = {r:.2f}" in chart(app, "scatter")["layout"]["title"]["text"]
    assert "held out" in texts(app)
    assert any("KLF1 was not perturbed in training" in w for w in warnings(app))
    table = app.dataframe[0].value
    assert len(table) == len(norman.measured)
    assert {"gene", "biotype", "shift", "ensemble_sd", "interval_90_half_width"} <= set(table)
    assert app.get("download_button")


@pytest.mark.slow
def test_predict_says_why_the_perturbation_moves_a_gene(app, norman):
    from grape_core.serving.explain import explain, responding_gene
    from grape_core.serving.predict import predict

    page(app, "predict", genes=["KLF1", "MAP2K6"])
    assert app.selectbox(key="why_gene").value == responding_gene(predict(norman, "KLF1+MAP2K6"))
    ok(app.selectbox(key="why_gene").set_value("HBG2").run())
    why = explain(norman, "KLF1+MAP2K6", "HBG2")
    assert "Why does perturbing KLF1 + MAP2K6 move a gene?" in texts(app)
    parts = frame_with(app, "part", "share of the prediction")
    assert parts["shift"].sum() == pytest.approx(why.shift, abs=1e-9)
    assert parts["shift"].sum() == pytest.approx(
        float(predict(norman, "KLF1+MAP2K6").to_frame().set_index("gene").loc["HBG2", "shift"]), abs=2e-5)
    paths = frame_with(app, "path", "members with this sign")
    assert list(paths["path"]) == list(why.paths["path"])
    assert all(p.startswith(("KLF1", "MAP2K6")) and p.endswith("HBG2") for p in paths["path"])


def test_predict_a_pasted_list_of_perturbations(app, norman):
    from grape_core.serving.predict import predict

    page(app, "predict")
    app.text_area(key="many_text").set_value("KLF1\nKLFF1\n")  # a form: sent on submit
    ok(app.button(key="FormSubmitter:many-Predict the list").click().run())
    assert any(e.startswith("line 2: unknown gene 'KLFF1'") for e in errors(app)), errors(app)
    app.text_area(key="many_text").set_value("# candidates\nKLF1\nMAPK1+TGFBR2\n")
    ok(app.button(key="FormSubmitter:many-Predict the list").click().run())
    assert not errors(app)
    shown = app.dataframe[-1].value  # below the example's prediction
    assert list(shown["perturbation"].unique()) == ["KLF1+ctrl", "MAPK1+TGFBR2"]
    expected = predict(norman, "MAPK1+TGFBR2").to_frame(top=5)
    rows = shown[shown["perturbation"] == "MAPK1+TGFBR2"]
    assert list(rows["gene"]) == list(expected["gene"])
    np.testing.assert_allclose(rows["shift"], expected["shift"], atol=1e-6)
    labels = {b.proto.label for b in app.get("download_button")}
    assert {"Download the shifts (CSV)", "Download all (AnnData .h5ad, for scanpy)"} <= labels
    from explorer.loaders import model_entries, predictions_file

    entry = next(e for e in model_entries(str(BUNDLED_MODELS)) if e.name == "norman")
    listed = (("KLF1", "MAPK1+TGFBR2"), ("line 2", "line 3"))
    matrix = pd.read_csv(io.BytesIO(predictions_file(entry.folder, entry.stamp, *listed,
                                                     kind="csv")), index_col="perturbation")
    assert list(matrix.index) == ["KLF1+ctrl", "MAPK1+TGFBR2"] and matrix.shape[1] == len(norman.measured)
    np.testing.assert_allclose(matrix.loc["MAPK1+TGFBR2", expected["gene"]], expected["shift"],
                               atol=1e-5)  # float32 in the file
    assert predictions_file(entry.folder, entry.stamp, *listed, kind="h5ad")[:8] == b"\x89HDF\r\n\x1a\n"


def test_predict_pair_shows_interaction_and_additive(app, norman):
    from grape_core.serving.predict import predict

    page(app, "predict", genes=["MAPK1", "TGFBR2"])  # both perturbed in training, pair held out
    pred = predict(norman, "MAPK1+TGFBR2")
    expected = pred.to_frame()
    assert "Genetic interaction" in texts(app)
    assert pred.interaction["predicted"]["explanation"] in texts(app)
    fig = chart(app, "shift_chart")
    assert any(t.get("meta") == "baseline:additive" for t in fig["data"])
    shown = chart_values(fig, "predicted")
    np.testing.assert_allclose([shown[g] for g in expected["gene"][:20]], expected["shift"][:20], atol=1e-6)


def test_predict_opens_on_a_held_out_example(app, norman):
    from grape_core.data.conditions import genes_of
    from grape_core.serving.predict import example_condition

    ok(app.switch_page(PAGES["predict"]).run())
    condition = example_condition(norman)
    assert condition in norman.bundle.split.test and condition in norman.bundle.pseudobulk
    assert genes_box(app) == list(genes_of(condition))
    line = [plain(i.value) for i in app.info if "An example to start with" in i.value]
    assert line and "held out" in line[0] and "median accuracy" in line[0]
    assert chart(app, "shift_chart") and chart(app, "scatter")  # measured: the comparison shows
    ok(app.sidebar.selectbox(key="model").set_value("adamson").run())  # the example follows the model
    assert genes_box(app) == list(genes_of(example_condition(app_bundle("adamson"))))
    ok(app.text_input(key="genes").set_value("").run())  # cleared by the user: stays empty
    assert not app.get("plotly_chart") and not any("An example" in i.value for i in app.info)
    ok(app.sidebar.selectbox(key="model").set_value("norman").run())
    assert genes_box(app) == []


def test_pair_of_unseen_genes_warns_but_predicts(app):
    page(app, "predict", genes=["FOXO4", "PERM1"])
    assert any("extrapolation" in w for w in warnings(app))
    assert chart_values(chart(app, "shift_chart"), "predicted")
    assert not errors(app)


def test_bad_gene_inputs_give_one_clear_error(app):
    page(app, "predict", genes=["KLF"])
    assert any("unknown gene 'KLF'" in e and "did you mean KLF1" in e for e in errors(app))
    assert not app.get("plotly_chart")
    ok(app.button(key="suggest-genes-KLF1").click().run())  # one click fixes it
    assert genes_box(app) == ["KLF1"]
    assert chart(app, "shift_chart") and not errors(app)

    ok(app.text_input(key="genes").set_value("KLF1+MAPK1+CBL").run())
    assert any("perturbs 3 genes" in e for e in errors(app))
    ok(app.text_input(key="genes").set_value("TP53").run())
    assert any("known human gene but not in model 'norman'" in e for e in errors(app))
    ok(app.text_input(key="genes").set_value("<script>alert(1)</script>").run())
    assert any("'<script>alert(1)</script>'" in e for e in errors(app))
    assert all("<script>" not in e.value for e in app.error)  # escaped, never markup


def test_gene_from_the_url_opens_on_predict(models_dir):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["model"] = "norman"
    at.query_params["genes"] = ["CBL", "CNN1"]
    at.switch_page(PAGES["predict"])
    ok(at.run())
    assert genes_box(at) == ["CBL", "CNN1"]
    assert "Genetic interaction" in texts(at)


# ----------------------------------------------------------------------------- Network
def frame_with(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first dataframe on the page that has ``columns``."""
    for element in at.dataframe:
        if set(columns) <= set(element.value.columns):
            return element.value
    raise AssertionError(f"no table with {columns}")


def test_network_page_draws_a_self_contained_graph(app, norman):
    from grape_core.serving.network import learned_network

    page(app, "network", genes=["KLF1"])
    frames = app.get("iframe")
    assert len(frames) == 1
    html_page = frames[0].proto.srcdoc
    assert "new vis.Network" in html_page and "KLF1" in html_page
    assert "members with this sign" in html_page  # the agreement in each edge's tooltip
    assert not re.search(r"<(?:link|script)\b[^>]*(?:href|src)\s*=\s*[\"']?(?:https?:)?//", html_page)
    assert "bootstrap" not in html_page
    labels = [b.proto.label for b in app.get("download_button")]
    assert {"Network as GraphML (Cytoscape, Gephi)", "Network as CSV",
            "Network as CX2 (Cytoscape Web, NDEx)"} <= set(labels)
    changes = frame_with(app, "relation", "added by learning", "removed by learning")
    assert int(changes["learned edges"].sum()) == len(norman.bundle.learned_edges.drop_duplicates(["source", "target"]))
    assert chart(app, "changes") and chart(app, "degrees")
    # the page leads with what changed against the prior, in the library's words
    net = learned_network(norman)
    assert [h.value for h in app.subheader][0] == "What changed against the prior"
    assert plain(net.change.sentences()[0]) in texts(app)
    changed = frame_with(app, "beyond the prior", "prior rescaled")
    assert changed["beyond the prior"].abs().is_monotonic_decreasing
    strongest = frame_with(app, "strength", "also in prior")
    assert strongest["weight"].iloc[0] == pytest.approx(float(norman.bundle.learned_edges["weight"].max()))
    row = net.edges.set_index(["source", "target"]).loc[(strongest["source"].iloc[0], strongest["target"].iloc[0])]
    assert strongest["members with this sign"].iloc[0] == f"{int(row['members_same_sign'])} of {net.n_members}"
    ok(app.slider(key="hops").set_value(2).run())
    ok(app.toggle(key="new_only").set_value(True).run())
    assert not frame_with(app, "strength", "also in prior")["also in prior"].any()


def test_network_page_opens_on_the_example_and_explains_it(app, norman):
    """Like Predict, the page opens on the model's held-out example, and says why it moves
    its most shifted gene: parts that add up to the prediction, paths with agreement."""
    from grape_core.data.conditions import genes_of
    from grape_core.serving.explain import explain, responding_gene
    from grape_core.serving.predict import example_condition, predict

    ok(app.switch_page(PAGES["network"]).run())
    example = list(genes_of(example_condition(norman)))
    assert genes_box(app) == example
    assert "An example to start with" in " ".join(i.value for i in app.info)
    gene = app.selectbox(key="net_why_gene").value
    assert gene == responding_gene(predict(norman, example))
    why = explain(norman, example, gene)
    parts = frame_with(app, "part", "share of the prediction")
    assert parts["shift"].sum() == pytest.approx(why.shift, abs=1e-9)
    paths = frame_with(app, "path", "contribution")
    assert list(paths["path"]) == list(why.paths["path"])
    assert f"Perturbing {plain(why.sentences()[0])[len('Perturbing '):]}" in texts(app)
    ok(app.selectbox(key="net_why_gene").set_value(example[0] if example[0] in norman.measured
                                                  else sorted(norman.measured)[0]).run())


def test_network_html_escapes_gene_names():
    import pandas as pd

    from grape_core.viz import network_view

    evil = "<script>alert('x')</script>"
    edges = pd.DataFrame({"source": [evil], "target": ["KLF1"], "relation": ["coding->coding"],
                          "status": ["learned only"], "weight": [0.3], "prior_weight": [np.nan],
                          "learned_weight": [0.3]})
    table = pd.DataFrame({"biotype": ["lncRNA", "protein_coding"], "is_coding": [False, True],
                          "full_name": ['"><img src=x onerror=alert(1)>', ""]}, index=[evil, "KLF1"])
    page_html = network_view.network_html(edges, table, [evil])
    assert evil not in page_html and "<img src=x" not in page_html
    assert "&lt;script&gt;" in page_html or "\\u003cscript" in page_html
    assert not re.search(r"(?:href|src)\s*=\s*[\"']?https?://", page_html)


# ----------------------------------------------------------------------------- Benchmark
def test_benchmark_page(app, norman):
    from grape_core.serving.evaluate import screen_check

    page(app, "benchmark")
    assert len(app.get("plotly_chart")) >= 5
    bars = chart(app, "metric_bars")["data"][0]
    test = norman.bundle.manifest.metrics.test
    # the replicate is the data's ceiling, drawn as a line across the bars, not as a bar
    np.testing.assert_allclose(array(bars["y"]), [test[m]["pearson_delta"] for m in test if m != "replicate"])
    ceiling = [a["text"] for a in chart(app, "metric_bars")["layout"]["annotations"]]
    assert any(f"{test['replicate']['pearson_delta']:.3f}" in t and "replicate" in t for t in ceiling)
    assert "beat" in texts(app)  # an honest sentence either way
    # how often the error bars held, from the manifest
    unc = norman.bundle.manifest.uncertainty
    held = {m.label: m.value for m in app.metric}
    assert held["shown genes (top 20)"] == f"{100 * unc['within_interval_top']:.0f} %"
    assert held["genes that moved most"] == f"{100 * unc['within_interval_de']:.0f} %"
    check = screen_check(norman)
    np.testing.assert_allclose(array(chart(app, "screen_check")["data"][0]["y"]), check["spearman"])
    ok(app.selectbox(key="metric").set_value("mse").run())
    assert "MSE" in chart(app, "metric_bars")["layout"]["title"]["text"]
    # the planted-truth benchmark, from the results the benchmark script wrote
    from explorer.loaders import PROJECT_ROOT
    from grape_core.evaluation.planted import RESULTS, PlantedBenchmark

    planted = PlantedBenchmark.read(PROJECT_ROOT / RESULTS)
    assert planted is not None and "Planted truth" in texts(app)
    grids = [t.value for t in app.dataframe if "checks passed" in t.value.columns]
    assert len(grids) == 1
    expected = planted.grid("mse", "all")  # the metric chosen above
    np.testing.assert_allclose(grids[0]["grape"].to_numpy(), expected["grape"].to_numpy())
    ok(app.radio(key="planted_group").set_value("combo_seen2").run())
    grid = next(t.value for t in app.dataframe if "checks passed" in t.value.columns)
    np.testing.assert_allclose(grid["grape"].to_numpy(), planted.grid("mse", "combo_seen2")["grape"].to_numpy())
    if not planted.ablations().empty:
        bars = chart(app, "planted_ablations")["data"]
        np.testing.assert_allclose(array(bars[0]["y"]), planted.ablations().iloc[:, 0].to_numpy())
    # what drives the predictions: the decomposition of the held-out ones
    assert "What drives the predictions" in texts(app)


def test_benchmark_calls_a_one_pair_difference_a_tie(app, norman):
    """The bundled Norman model: additive and GRAPE differ by less than 0.001 on their one
    common pair. That is a tie in the sentence, and additive's bar (one perturbation of 16)
    is hatched and says so."""
    page(app, "benchmark")
    shown = texts(app)
    assert "GRAPE and the additive (A + B) baseline tie" in shown
    assert "additive (A + B) baseline beats" not in shown
    bars = chart(app, "metric_bars")["data"][0]
    labels = list(array(bars["x"]))
    additive = labels.index("additive (A + B)")
    assert bars["marker"]["pattern"]["shape"][additive] == "/" and "of 16" in bars["text"][additive]
    assert "does not store the screen's replicate" not in plain(" ".join(i.value for i in app.info))


def test_benchmark_and_predict_show_the_replicate(models_dir, adamson_model):
    """A model trained now stores the replicate: the Benchmark page shows it (a line on the
    chart, a row in the table) and each model scaled between the train mean and it; Predict
    says how close a held-out perturbation's prediction came to repeating the experiment."""
    import grape_core as gc
    from grape_core.evaluation.replicate import condition_scaled, scaled_from_metrics
    from grape_core.serving.predict import example_condition

    shutil.copytree(adamson_model, models_dir / "trained")
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    ok(at.sidebar.selectbox(key="model").set_value("trained").run())
    page(at, "benchmark")
    model = gc.load(adamson_model)
    fig = chart(at, "metric_bars")
    line = [s for s in fig["layout"]["shapes"] if s.get("line", {}).get("dash") == "dash"]
    replicate = model.bundle.manifest.metrics.test["replicate"]["pearson_delta"]
    assert line and line[0]["y0"] == pytest.approx(replicate)
    assert "replicate (half the cells vs the other half)" in at.dataframe[0].value.index
    scaled = at.dataframe[1].value
    expected = scaled_from_metrics(model.bundle.metrics, "pearson_delta")
    grape = scaled.loc["GRAPE", "scaled (0 = train mean, 1 = replicate)"]
    assert (np.isnan(grape) and np.isnan(expected.loc["grape", "scaled"])) or \
        grape == pytest.approx(expected.loc["grape", "scaled"])
    assert "cell-eval's metrics" in texts(at)
    ok(at.switch_page(PAGES["predict"]).run())  # opens on a held-out example
    condition = example_condition(model)
    found = condition_scaled(model.bundle.metrics, condition)
    notes = [plain(i.value) for i in at.info if "repeating the experiment" in i.value]
    assert notes and (f"{found.value:.2f}" in notes[0] if np.isfinite(found.value)
                      else "not defined" in notes[0])


def test_the_gene_box_predicts_what_was_typed(app):
    """Enter on a symbol predicts that symbol; a symbol the model lacks, or part of one, is
    one error with suggestions, never another gene."""
    page(app, "predict", genes=["KLF1"])  # KLF12 starts with it: still KLF1 alone
    assert "KLF1+ctrl" in texts(app) and "KLF12" not in texts(app) and not errors(app)
    for typed_text, suggested in (("KLF2", "KLF12"), ("KLF", "KLF1"), ("klf", "KLF12")):
        ok(app.text_input(key="genes").set_value(typed_text).run())
        assert any(typed_text in e and ("unknown gene" in e or "not in model 'norman'" in e)
                   for e in errors(app)), (typed_text, errors(app))
        assert not app.get("plotly_chart")  # nothing predicted
        assert f"Use {suggested}" in [b.label for b in app.button]
    ok(app.text_input(key="genes").set_value("klf1 + map2k6").run())  # any case, spaces
    assert "KLF1+MAP2K6" in texts(app) and not errors(app)


def test_the_screen_target_box_takes_what_was_typed(app):
    ok(app.sidebar.selectbox(key="model").set_value("adamson").run())
    page(app, "screen")
    app.text_input(key="targets").set_value("HSPA")  # part of HSPA5 (and of HSPA8...)
    ok(app.button(key="FormSubmitter:screen-Run the screen").click().run())
    assert any("unknown gene 'HSPA'" in e for e in errors(app)) and not app.dataframe
    ok(app.button(key="suggest-targets-HSPA5").click().run())  # one click: that gene alone
    assert app.text_input(key="targets").value == "HSPA5" and not errors(app)
    assert "Targets: HSPA5 (up)" in texts(app)


# ----------------------------------------------------------------------------- Genes
def test_genes_page_and_links(app, norman):
    page(app, "genes")
    table = app.dataframe[0].value
    assert len(table) == len(norman.genes)
    assert {"biotype", "coding", "GO (most specific)", "prior degree", "learned degree"} <= set(table)
    assert set(table.loc[~table["coding"], "gene"]) == set(norman.bundle.table.index[~norman.bundle.table["is_coding"].astype(bool)])
    fig = chart(app, "gene_map")
    assert sum(len(array(t["x"])) for t in fig["data"]) == len(norman.genes)
    ok(app.selectbox(key="gene_pick").set_value("KLF1").run())
    links = app.get("page_link")
    assert {link.proto.label for link in links} >= {"Open KLF1 in Predict", "Open KLF1 in Network"}
    ok(app.text_input(key="gene_search").set_value("LINC").run())
    assert app.dataframe[0].value["gene"].str.contains("LINC").all()


# ----------------------------------------------------------------------------- Screen
def test_screen_page_ranks_like_grape_core(app):
    from grape_core.serving.screen import screen

    ok(app.sidebar.selectbox(key="model").set_value("adamson").run())  # 160 genes: quick
    page(app, "screen")
    app.text_input(key="targets").set_value("HSPA5, SEC61A1")  # a form: sent on submit
    app.radio(key="direction").set_value("down")
    ok(app.button(key="FormSubmitter:screen-Run the screen").click().run())
    bundle = app_bundle("adamson")
    expected = screen(bundle, ["HSPA5", "SEC61A1"], direction="down", top=20).table
    shown = app.dataframe[0].value
    assert list(shown["perturbation"]) == list(expected["perturbation"])
    np.testing.assert_allclose(shown["effect"], expected["effect"], atol=1e-6)
    fig = chart(app, "screen_chart")
    assert sum(len(array(t["x"])) for t in fig["data"]) == len(expected)
    # the chart's height is what the table ranks by: the best candidate is the highest point
    heights = {h: y for t in fig["data"] for h, y in zip(array(t["hovertext"]), array(t["y"]))}
    np.testing.assert_allclose([heights[g] for g in expected["genes"]], expected["vs_typical"], atol=1e-6)
    assert max(heights, key=heights.get) == expected["genes"].iloc[0]
    assert app.get("download_button")
    # a ranking that is noise says so on the page, and columns with nothing in them are left out
    from grape_core.serving.trust import ranking_is_noise

    noise = ranking_is_noise(screen(bundle, ["HSPA5", "SEC61A1"], direction="down", top=20))
    assert (noise is not None) == any("The order is mostly noise" in w for w in warnings(app))
    assert "additive_effect" not in shown  # singles only
    app.text_input(key="targets").set_value("")
    app.text_area(key="signature").set_value("HSPA5 one\n")
    ok(app.button(key="FormSubmitter:screen-Run the screen").click().run())
    assert any("weight 'one' is not a number" in e and "pasted signature" in e for e in errors(app))


def test_screen_page_on_a_model_that_stores_no_singles(models_dir, monkeypatch):
    """A genome-scale model stores no singles: the page predicts them once (in a thread,
    with a progress bar) and ranks as grape_core does; what goes wrong in that thread is one
    error on the page."""
    from dataclasses import replace

    from explorer.loaders import load_model, model_entries
    from grape_core.serving.model import Model
    from grape_core.serving.screen import screen

    folder = copy_model(models_dir, "no-singles")
    (folder / "singles.safetensors").unlink()
    manifest = read_manifest(folder)
    del manifest["files"]["singles"]
    write_manifest(folder, manifest)
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    ok(at.sidebar.selectbox(key="model").set_value("no-singles").run())
    page(at, "screen")
    at.text_input(key="targets").set_value("HSPA5")
    monkeypatch.setenv("GRAPE_SCREEN_MEMORY_GB", "lots")
    ok(at.button(key="FormSubmitter:screen-Run the screen").click().run())
    assert errors(at) == ["GRAPE_SCREEN_MEMORY_GB='lots' is not a size in GB; give a number such "
                          "as 2 (0: compute only the genes each screen reads)"]
    monkeypatch.delenv("GRAPE_SCREEN_MEMORY_GB")
    ok(at.button(key="FormSubmitter:screen-Run the screen").click().run())
    assert not errors(at)
    entry = next(e for e in model_entries(str(models_dir)) if e.name == "no-singles")
    model = load_model(entry.folder, entry.stamp)
    assert model.bundle.singles is None and model.singles is not None  # predicted by the page
    stored = app_bundle("adamson").bundle  # the same singles, as float16
    expected = screen(Model(replace(stored, singles=stored.singles.astype(np.float16))),
                      ["HSPA5"], top=20).table
    shown = at.dataframe[0].value
    assert list(shown["perturbation"]) == list(expected["perturbation"])
    np.testing.assert_allclose(shown["effect"], expected["effect"], atol=1e-6)


# ----------------------------------------------------------------------------- models on disk
def test_broken_and_user_models(models_dir):
    src = BUNDLED_MODELS / "adamson"
    shutil.copytree(src, models_dir / "my-model")
    shutil.copytree(src, models_dir / "no-weights")
    (models_dir / "no-weights" / "weights.safetensors").unlink()
    shutil.copytree(src, models_dir / "corrupt")
    with open(models_dir / "corrupt" / "weights.safetensors", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00garbage\x00")
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    options = at.sidebar.selectbox(key="model").options
    assert any(o.startswith("my-model") and "yours" in o for o in options)
    assert not any(o.startswith(("no-weights", "corrupt")) for o in options)
    shown = errors(at)
    assert any("no-weights is unusable" in e and "is missing weights.safetensors" in e for e in shown)
    assert any("corrupt is unusable" in e and "weights.safetensors is corrupted" in e for e in shown)
    status = at.dataframe[0].value.set_index("model")["status"]
    assert status["no-weights"].startswith("unusable") and status["my-model"] == "ready"
    page(at, "predict", genes=["KLF1"])  # the app keeps working
    assert chart(at, "shift_chart")
    ok(at.sidebar.selectbox(key="model").set_value("my-model").run())
    ok(at.text_input(key="genes").set_value("HSPA5").run())
    assert chart(at, "shift_chart")


@pytest.mark.parametrize("name", list(PAGES))
def test_each_page_runs_on_its_own(models_dir, name):
    at = ok(AppTest.from_file(f"../../{PAGES[name]}", default_timeout=TIMEOUT).run())
    assert at.sidebar.selectbox(key="model").value == "norman"
    assert at.title


# ----------------------------------------------------------------------------- your data
def _h5ad(tmp_path, adata, name):
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


def test_own_data_bad_inputs(app, tmp_path, monkeypatch):
    def path_error(path) -> list[str]:
        ok(app.text_input(key="data_path").set_value(str(path)).run())
        return errors(app)

    assert any("file not found" in e for e in path_error(tmp_path / "missing.h5ad"))
    text = tmp_path / "table.h5ad"
    text.write_text("gene,weight\nKLF1,1\n")
    assert any("is not an AnnData .h5ad file" in e for e in path_error(text))
    truncated = tmp_path / "truncated.h5ad"
    truncated.write_bytes(ADAMSON.read_bytes()[:60_000])
    assert any("truncated" in e for e in path_error(truncated))
    conditions = {"ctrl": 30, "G1+ctrl": 20, "G2+ctrl": 20}
    no_column = _h5ad(tmp_path, make_adata(conditions, condition_key="treatment"), "nocol.h5ad")
    assert any("no condition column" in e for e in path_error(no_column))
    no_ctrl = _h5ad(tmp_path, make_adata({"G1+ctrl": 20, "G2+ctrl": 20}), "noctrl.h5ad")
    assert any("no control cells" in e for e in path_error(no_ctrl))
    ok(app.text_input(key="data_path").set_value("").run())

    ok(app.file_uploader(key="upload").set_value(("notes.h5ad", b"just text\n", "application/octet-stream")).run())
    shown = errors(app)
    assert any(e.startswith("notes.h5ad is not an AnnData .h5ad file") for e in shown), shown
    assert not any("grape-upload-" in e for e in shown)  # the temp path is not shown
    folder = Path(app.session_state["_upload_dir"])
    first = list(folder.glob("upload-*.h5ad"))
    ok(app.file_uploader(key="upload").set_value(("other.h5ad", b"more text\n", "application/octet-stream")).run())
    second = list(folder.glob("upload-*.h5ad"))
    assert len(first) == len(second) == 1 and first != second  # a session keeps its latest upload
    monkeypatch.setenv("GRAPE_MAX_UPLOAD_MB", "0.001")
    ok(app.file_uploader(key="upload").set_value(("big.h5ad", b"x" * 5000, "application/octet-stream")).run())
    assert any("over the upload limit" in e for e in errors(app))


@pytest.mark.slow
def test_own_data_evaluate_and_train(app, models_dir):
    ok(app.text_input(key="data_path").set_value(str(ADAMSON)).run())
    assert [m.label for m in app.metric][-4:] == ["cells", "measured genes", "perturbations", "control cells"]
    ok(app.button(key="evaluate").click().run())  # norman: other genes
    assert any("was trained on other genes than the data" in e for e in errors(app))
    ok(app.sidebar.selectbox(key="model").set_value("adamson").run())
    ok(app.button(key="evaluate").click().run())
    metrics = app.dataframe[-1].value
    assert "grape" in metrics.index and "train_mean" in metrics.index
    app.text_input(key="train_name").set_value("tiny")  # a form: sent on submit
    app.slider(key="train_ensemble").set_value(1)
    app.slider(key="train_steps").set_value(100)
    ok(app.button(key="FormSubmitter:train-Train").click().run())
    assert (models_dir / "tiny" / "manifest.json").exists(), errors(app)
    assert any("choose tiny in the sidebar" in s.value.replace("*", "").replace("\\", "") for s in app.success)
    ok(app.run())
    assert any(o.startswith("tiny") for o in app.sidebar.selectbox(key="model").options)


# ----------------------------------------------------------------------------- issue 14
def _broken_models(models_dir: Path) -> dict[str, str]:
    """Damaged copies of the adamson model in the models folder: name -> phrase of its reason."""
    reasons = {}

    def manifest_text(name, text, phrase):
        folder = copy_model(models_dir, name)
        (folder / "manifest.json").write_text(text)
        reasons[name] = phrase

    manifest_text("list-manifest", "[1, 2, 3]", "must hold a JSON object, not a list")
    manifest_text("null-manifest", "null", "must hold a JSON object, not null")
    folder = copy_model(models_dir, "files-list")
    data = read_manifest(folder)
    data["files"] = []
    write_manifest(folder, data)
    reasons["files-list"] = "manifest key 'files' must be an object"
    folder = copy_model(models_dir, "manifest-dir")
    (folder / "manifest.json").unlink()
    (folder / "manifest.json").mkdir()
    reasons["manifest-dir"] = "manifest.json is a folder, not a file"
    folder = copy_model(models_dir, "weights-dir")
    (folder / "weights.safetensors").unlink()
    (folder / "weights.safetensors").mkdir()
    reasons["weights-dir"] = "weights.safetensors is a folder, not a file"
    folder = copy_model(models_dir, "text-metric")
    data = read_manifest(folder)
    data["metrics"]["test"]["grape"]["pearson_delta"] = "0.99"
    data["dataset"]["cells"] = "many"
    write_manifest(folder, data)
    reasons["text-metric"] = "must be"
    folder = copy_model(models_dir, "no-checksums")
    data = read_manifest(folder)
    del data["files"]
    write_manifest(folder, data)
    reasons["no-checksums"] = "has no checksums"
    return reasons


def test_broken_model_folders_are_listed_and_never_break_a_page(models_dir):
    reasons = _broken_models(models_dir)
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    options = at.sidebar.selectbox(key="model").options
    assert not any(o.startswith(tuple(reasons)) for o in options)
    shown = errors(at)
    for name, phrase in reasons.items():
        assert any(f"{name} is unusable" in e and phrase in e for e in shown), (name, shown)
    status = at.dataframe[0].value.set_index("model")["status"]
    assert all(status[name].startswith("unusable") for name in reasons)
    for name in PAGES:  # every page still works with the usable models
        ok(at.switch_page(PAGES[name]).run())
        assert at.title and not at.exception


def test_a_model_whose_tensors_do_not_fit_is_one_error_on_every_page(models_dir):
    folder = copy_model(models_dir, "narrow-tensor")  # checksums updated: found when loaded
    edit_tensors(folder, "pseudobulk.safetensors",
                 lambda t: t.__setitem__("control_mean", t["control_mean"][:150].copy()))
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    ok(at.sidebar.selectbox(key="model").set_value("narrow-tensor").run())
    for name in PAGES:
        ok(at.switch_page(PAGES[name]).run())
        shown = errors(at)
        assert any("tensor 'control_mean' is (150,) float32; the manifest says (160,) float32"
                   in e for e in shown), (name, shown)


def test_a_model_with_undefined_metrics_shows_na(models_dir):
    folder = copy_model(models_dir, "undefined")
    data = read_manifest(folder)
    data["metrics"]["test"]["grape"]["pearson_delta"] = None  # written for NaN (strict JSON)
    data["uncertainty"]["spearman_std_vs_error"] = None
    data["uncertainty"]["within_interval_top"] = None  # how often the error bars held
    write_manifest(folder, data)
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    ok(at.sidebar.selectbox(key="model").set_value("undefined").run())
    assert "Pearson of shifts n/a" in plain("\n".join(c.value for c in at.sidebar.caption))
    page(at, "benchmark")
    assert "fell inside for n/a of the 20 genes a chart shows" in plain(texts(at))
    assert "nan" not in texts(at).lower().replace("nano", "")


MD_GENE = "![x](https:evil.example/x.png)"
HTML_GENE = "<b>bold</b>&amp"
MD_FOLDER = "**bold**_[link](https:evil.example)"


def _markup(text: str) -> str:
    """What Markdown would still read as syntax once escapes are taken out."""
    bare = re.sub(r"\\.", "", text)
    return "".join(m for m in ("](", "![", "**bold**", "<b>", "<a") if m in bare)


def _all_markdown(at: AppTest) -> list[str]:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [s.value for s in at.subheader] + [e.value for e in at.error]
    parts += [w.value for w in at.warning] + [i.value for i in at.info]
    parts += [link.proto.label for link in at.get("page_link")]
    parts += [b.label for b in at.button]
    return parts


def no_markup(at: AppTest) -> AppTest:
    for text in _all_markdown(at):
        assert not _markup(text), text
    return at


def test_names_from_data_are_shown_as_typed_never_as_markup(models_dir):
    folder = copy_model(models_dir, MD_FOLDER)
    free = unperturbed_measured_genes(folder)
    rename_gene(folder, free[0], MD_GENE)
    rename_gene(folder, free[1], HTML_GENE)
    rename_gene(folder, free[2], "Y_RNA")
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    ok(at.sidebar.selectbox(key="model").set_value(MD_FOLDER).run())
    assert f"Model card: {MD_FOLDER}" in [plain(s.value) for s in at.subheader]
    no_markup(at)
    no_markup(page(at, "predict", genes=[MD_GENE, HTML_GENE]))
    assert not errors(at)
    links = [plain(link.proto.label) for link in at.get("page_link")]
    assert f"Open {MD_GENE} + {HTML_GENE} in Network" in links
    fig = chart(at, "shift_chart")
    assert all("<" not in str(x) for t in fig["data"] for x in array(t.get("x", [])))
    from grape_core import load, predict
    from grape_core.viz.charts import shift_chart

    everything = shift_chart(predict(load(folder), [MD_GENE, HTML_GENE]), top=200).to_plotly_json()
    assert "&lt;b&gt;bold&lt;/b&gt;&amp;amp" in {x for t in everything["data"] for x in t["x"]}
    assert {MD_GENE, HTML_GENE} <= set(chart_values(everything, "predicted"))  # as typed
    at.text_area(key="many_text").set_value(f"{MD_GENE}\n**nope**<b>x</b>\n")  # a pasted list
    no_markup(ok(at.button(key="FormSubmitter:many-Predict the list").click().run()))
    assert any(e.startswith("line 2: condition '**nope**<b>x</b>'") for e in errors(at)), errors(at)
    at.text_area(key="many_text").set_value(f"{MD_GENE}\n{HTML_GENE}\n")
    no_markup(ok(at.button(key="FormSubmitter:many-Predict the list").click().run()))
    assert not errors(at) and set(at.dataframe[-1].value["perturbation"]) == \
        {f"{MD_GENE}+ctrl", f"{HTML_GENE}+ctrl"}
    no_markup(page(at, "network", genes=[MD_GENE]))
    frame = at.get("iframe")[0].proto.srcdoc
    assert "&lt;b&gt;" not in frame.split("new vis.DataSet")[1][:20000]  # nodes: the names
    page(at, "genes")
    no_markup(ok(at.selectbox(key="gene_pick").set_value(MD_GENE).run()))
    assert f"Open {MD_GENE} in Predict" in [plain(x.proto.label) for x in at.get("page_link")]
    page(at, "screen")
    at.text_input(key="targets").set_value(f"Y_RNA, {MD_GENE}")
    ok(at.button(key="FormSubmitter:screen-Run the screen").click().run())
    assert not errors(at) and len(at.dataframe[0].value)
    no_markup(at)


def test_case_clash_and_bad_signatures_in_the_app(models_dir):
    folder = copy_model(models_dir, "clash")
    rename_gene(folder, unperturbed_measured_genes(folder)[0], "hspa5")
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    ok(at.sidebar.selectbox(key="model").set_value("clash").run())
    page(at, "predict", genes=["Hspa5"])
    assert any("'Hspa5' is ambiguous" in e and "HSPA5 and hspa5" in e for e in errors(at))
    ok(at.button(key="suggest-genes-hspa5").click().run())  # one click picks the exact gene
    assert genes_box(at) == ["hspa5"] and not errors(at)
    page(at, "screen")
    for text, phrase in (("HSPA5 nan", "is not a finite number"),
                         ("HSPA5 1\nhspa5 -1", "give each gene once"),
                         ("HSPA5 1e400", "is not a finite number")):
        at.text_area(key="signature").set_value(text)
        ok(at.button(key="FormSubmitter:screen-Run the screen").click().run())
        assert any(phrase in e and "pasted signature" in e for e in errors(at)), (text, errors(at))


def test_read_only_models_folder_is_named_before_training(models_dir, monkeypatch):
    import os

    import grape_core.training.recipe

    monkeypatch.setattr(grape_core.training.recipe, "train_bundle",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("training started")))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: False if Path(p) == models_dir
                        and mode & os.W_OK else real(p, mode, *a, **k))
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    ok(at.text_input(key="data_path").set_value(str(ADAMSON)).run())
    at.text_input(key="train_name").set_value("tiny")
    ok(at.button(key="FormSubmitter:train-Train").click().run())
    shown = errors(at)
    assert any(f"the folder {models_dir} is read-only" in e and "Folder with your own models" in e
               for e in shown), shown
    assert not any(ADAMSON.name in e for e in shown)  # not the data file
    assert not (models_dir / "tiny").exists()
