"""Model folders: round trip, verification, and the prediction API on real data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    MODEL,
    ROOT,
    copy_model,
    edit_tensors,
    predict_error,
    read_manifest,
    rehash,
    run_and_kill,
    write_manifest,
)

from grape_core import BundleError, ConditionError, UnknownGeneError
from grape_core.bundle import FILES, Bundle, list_bundles
from grape_core.cli import main
from grape_core.serving.predict import predict, predict_conditions
from grape_core.serving.resolve import resolve_perturbation


@pytest.fixture
def model_copy(adamson_model, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(adamson_model, folder)
    return folder


def test_round_trip_gives_identical_predictions(adamson_model, tmp_path):
    bundle = Bundle.load(adamson_model)
    again = tmp_path / "again"
    bundle.save(again)
    reloaded = Bundle.load(again)
    conditions = list(bundle.pseudobulk.conditions)
    a, sa = predict_conditions(bundle, conditions)
    b, sb = predict_conditions(reloaded, conditions)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sa, sb)
    assert reloaded.genes == bundle.genes and reloaded.split == bundle.split


def test_manifest_is_readable_and_complete(adamson_model):
    manifest = json.loads((adamson_model / FILES["manifest"]).read_text())
    assert manifest["dataset"]["sha256"] == \
        "3be979d693012f9a42e48659559a75da1d61584e74fede0c161c477b08103c77"
    assert manifest["dataset"]["file"] == "adamson_gears_mini.h5ad"  # a name, not a path
    assert set(manifest["metrics"]["test"]) >= {"grape", "control", "train_mean", "linear"}
    assert manifest["split"]["name"] == "adamson_simulation_1_0.75"
    assert manifest["ensemble"] == 2 and len(manifest["genes"]["nodes"]) == 160
    from grape_core.bundle import OPTIONAL_FILES

    assert set(FILES) - {"manifest"} <= set(manifest["files"]) <= set(FILES) | set(OPTIONAL_FILES)
    assert "singles" in manifest["files"]  # a small model stores every single's prediction
    assert "spearman_std_vs_error" in manifest["uncertainty"]


def test_save_refuses_to_overwrite(adamson_model):
    bundle = Bundle.load(adamson_model)
    with pytest.raises(BundleError, match="already exists"):
        bundle.save(adamson_model)


def test_missing_file_is_named(model_copy):
    (model_copy / FILES["weights"]).unlink()
    with pytest.raises(BundleError, match="missing weights.safetensors"):
        Bundle.load(model_copy)


def test_corrupted_weights_are_refused(model_copy):
    weights = model_copy / FILES["weights"]
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="weights.safetensors is corrupted"):
        Bundle.load(model_copy)


def test_other_format_version_is_refused(model_copy):
    manifest_file = model_copy / FILES["manifest"]
    manifest = json.loads(manifest_file.read_text())
    manifest["format_version"] = 99
    manifest_file.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format 99"):
        Bundle.load(model_copy)


def test_not_a_model_folder(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        Bundle.load(tmp_path / "nothing")
    with pytest.raises(BundleError, match="manifest.json is missing"):
        Bundle.load(tmp_path)


def test_data_with_other_genes_is_refused(adamson_model, norman):
    from grape_core import pseudobulk

    bundle = Bundle.load(adamson_model)
    with pytest.raises(BundleError, match=r"other genes .* 160 genes are missing"):
        bundle.check_genes(pseudobulk(norman).genes)


def test_list_bundles(adamson_model):
    assert list_bundles(adamson_model.parent) == {adamson_model.name: adamson_model}


def test_predict_single(adamson_model):
    bundle = Bundle.load(adamson_model)
    pred = predict(bundle, "hspa5")  # case-insensitive
    assert pred.condition == "HSPA5+ctrl" and pred.part == "train"
    frame = pred.to_frame()
    assert list(frame.columns[:7]) == ["gene", "biotype", "is_coding", "control", "predicted",
                                       "shift", "std"]
    assert len(frame) == 160 and (np.diff(np.abs(frame["shift"])) <= 1e-9).all()
    np.testing.assert_allclose(frame["predicted"] - frame["control"], frame["shift"], atol=1e-6)
    pb = bundle.pseudobulk
    by_gene = frame.set_index("gene")
    np.testing.assert_allclose(by_gene.loc[list(pb.genes), "measured"],
                               pb.means[pb.index("HSPA5+ctrl")], atol=1e-6)
    assert (frame["std"] >= 0).all() and frame["std"].max() > 0


def test_predict_unknown_and_bad_inputs(adamson_model):
    bundle = Bundle.load(adamson_model)
    with pytest.raises(UnknownGeneError, match="did you mean HSPA5"):
        predict(bundle, "HSPA55")
    with pytest.raises(UnknownGeneError, match="known human gene but not in model"):
        predict(bundle, "TP53")
    with pytest.raises(ConditionError, match="3 genes"):
        predict(bundle, "HSPA5+TARS+GBF1")
    with pytest.raises(ConditionError, match="same gene twice"):
        resolve_perturbation(bundle, "HSPA5+hspa5")


def test_unseen_pair_is_flagged(adamson_model):
    bundle = Bundle.load(adamson_model)
    pred = predict(bundle, "TARS+IER3IP1")
    assert len(pred.to_frame(top=5)) == 5
    assert "neither TARS nor IER3IP1 was perturbed in training" in pred.warnings[0]
    assert pred.interaction["predicted"]["gi_type"] in {
        "synergy", "suppressor", "neomorphic", "redundant", "epistasis", "additive"}


def test_predict_measured_pair_reports_measured_interaction(norman_model):
    bundle = Bundle.load(norman_model)
    pred = predict(bundle, "MAP2K6+KLF1")  # measured as KLF1+MAP2K6
    assert pred.condition == "KLF1+MAP2K6"
    assert "measured" in pred.to_frame().columns
    gi = pred.interaction
    assert set(gi) == {"predicted", "measured"}
    assert np.isfinite(gi["measured"]["mag"])


SLOW_BUNDLE = """
import sys, time
sys.path.insert(0, {root!r})
from grape_core.bundle import Bundle
import grape_core.io as io
bundle = Bundle.load({source!r})
original = io.write_table
def slow(path, frame):
    original(path, frame)
    print("writing", flush=True)
    time.sleep(60)
import grape_core.bundle.folder as b
b.write_table = slow
bundle.save({target!r}, overwrite=True)
"""


def test_killed_bundle_save_keeps_the_previous_model(adamson_model, tmp_path):
    import shutil

    from grape_core.bundle import Bundle
    from grape_core.serving.predict import predict_conditions

    target = tmp_path / "model"
    shutil.copytree(adamson_model, target)
    before = predict_conditions(Bundle.load(target), ["HSPA5+ctrl"])[0]
    run_and_kill(SLOW_BUNDLE.format(root=str(ROOT), source=str(adamson_model), target=str(target)))
    after = predict_conditions(Bundle.load(target), ["HSPA5+ctrl"])[0]
    np.testing.assert_array_equal(before, after)
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".model~")]
    assert left and all(p.name.endswith(".tmp") for p in left)  # what kill -9 leaves...
    Bundle.load(target).save(target, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # ...the next save removes


@pytest.mark.parametrize("text, phrase", [
    ("[1, 2, 3]", "must hold a JSON object, not a list"),
    ("null", "must hold a JSON object, not null"),
    ('"text"', "must hold a JSON object, not a string"),
])
def test_manifest_that_is_not_an_object(tmp_path, capsys, text, phrase):
    folder = copy_model(tmp_path)
    (folder / "manifest.json").write_text(text)
    line = predict_error(capsys, folder)
    assert phrase in line and "manifest.json" in line and "restore the model folder" in line


def test_files_list_and_folders_instead_of_files(tmp_path, capsys):
    from grape_core.bundle import verify_bundle
    from grape_core.errors import BundleError

    files_list = copy_model(tmp_path, "files-list")
    manifest = read_manifest(files_list)
    manifest["files"] = []
    write_manifest(files_list, manifest)
    assert "manifest key 'files' must be an object, not []" in predict_error(capsys, files_list)

    manifest_dir = copy_model(tmp_path, "manifest-dir")
    (manifest_dir / "manifest.json").unlink()
    (manifest_dir / "manifest.json").mkdir()
    assert "manifest.json is a folder, not a file" in predict_error(capsys, manifest_dir)

    weights_dir = copy_model(tmp_path, "weights-dir")
    (weights_dir / "weights.safetensors").unlink()
    (weights_dir / "weights.safetensors").mkdir()
    line = predict_error(capsys, weights_dir)
    assert "'weights-dir': weights.safetensors is a folder, not a file" in line
    with pytest.raises(BundleError, match="is a folder"):
        verify_bundle(weights_dir)

    bad_digest = copy_model(tmp_path, "bad-digest")
    manifest = read_manifest(bad_digest)
    manifest["files"]["graph"] = "not a digest"
    write_manifest(bad_digest, manifest)
    assert "'files.graph' must be a SHA-256" in predict_error(capsys, bad_digest)


@pytest.mark.parametrize("path, value, phrase", [
    (("metrics", "test", "grape", "pearson_delta"), "0.99",
     "manifest key 'metrics.test.grape.pearson_delta' must be a number or null, not \"0.99\""),
    (("dataset", "cells"), "many", "manifest key 'dataset.cells' must be an integer, not \"many\""),
    (("uncertainty", "spearman_std_vs_error"), [1], "'uncertainty.spearman_std_vs_error'"),
    (("pseudobulk", "n_control"), "80", "manifest key 'pseudobulk.n_control' must be an integer"),
    (("genes", "n_nodes"), 7, "'genes.n_nodes' is 7 but 'genes.nodes' lists 160 genes"),
    (("calibration", "level"), 1.5, "'calibration.level' must be between 0 and 1 (excluded), not 1.5"),
    (("calibration", "rest", "scale"), -2, "'calibration.rest.scale' must be finite, between 0 and 10000"),
])
def test_manifest_values_of_the_wrong_type(tmp_path, capsys, path, value, phrase):
    folder = copy_model(tmp_path)
    manifest = read_manifest(folder)
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    write_manifest(folder, manifest)
    assert phrase in predict_error(capsys, folder)


def _corrupt_inside_a_tensor(folder: Path) -> None:
    """Overwrite bytes in the middle of the weights (the header stays valid): NaN floats."""
    path = folder / "weights.safetensors"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("files", [None, {}])
def test_no_checksums_is_refused_unless_unverified(tmp_path, capsys, files):
    from grape_core import load
    from grape_core.errors import BundleError

    folder = copy_model(tmp_path)
    manifest = read_manifest(folder)
    if files is None:
        del manifest["files"]
    else:
        manifest["files"] = files
    write_manifest(folder, manifest)
    line = predict_error(capsys, folder)
    assert "has no checksums" in line and "--unverified" in line
    with pytest.raises(BundleError, match="unverified=True"):
        load(folder)
    assert load(folder, unverified=True).name == "adamson"  # intact: loads, every tensor checked
    assert main(["predict", "--model", str(folder), "--perturbation", "HSPA5", "--unverified"]) == 0
    captured = capsys.readouterr()
    assert "loaded with --unverified" in captured.err and "HSPA5+ctrl" in captured.out

    _corrupt_inside_a_tensor(folder)  # the case the checksums were there to catch
    assert "has no checksums" in predict_error(capsys, folder)
    line = predict_error(capsys, folder, "--unverified")
    assert "weights.safetensors" in line and ("non-finite" in line or "cannot be read" in line)
    assert "nan" not in capsys.readouterr().out.lower()


def test_partial_checksums_and_mismatch(tmp_path, capsys):
    folder = copy_model(tmp_path)
    manifest = read_manifest(folder)
    del manifest["files"]["graph"]
    write_manifest(folder, manifest)
    assert "has no checksum for graph.safetensors" in predict_error(capsys, folder)
    _corrupt_inside_a_tensor(folder)  # a checksum that is there is checked, unverified or not
    assert "weights.safetensors is corrupted" in predict_error(capsys, folder, "--unverified")


def _member0(kind: str) -> str:
    """A tensor of member 0, found by kind (not by name: the model class changes)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(ROOT / "assets" / "models" / "adamson" / "weights.safetensors"))
    names = sorted(k for k in tensors if k.startswith("member0."))
    floats = [k for k in names if np.issubdtype(tensors[k].dtype, np.floating)]
    if kind == "matrix":
        return next(k for k in floats if tensors[k].ndim == 2)
    if kind == "float":
        return floats[0]
    return names[0]


def _index_tensor() -> tuple[str, int]:
    """An integer tensor the model class declares (``index_tensors``) and its bound."""
    from grape_core import load

    member = load(ROOT / "assets" / "models" / "adamson").bundle.members[1]
    bounds = member.index_tensors()
    if not bounds:
        pytest.skip("the model class declares no index tensors")
    name, bound = sorted(bounds.items())[0]
    return f"member1.{name}", bound


def _set_max(name_bound):
    def change(t):
        name, bound = name_bound() if callable(name_bound) else name_bound
        values = t[name].copy()
        values.reshape(-1)[0] = bound
        t[name] = values
    return change


def _narrow(name, width=None):
    def change(t):
        key = name() if callable(name) else name
        if key not in t:
            pytest.skip(f"no tensor {key} in this model class")
        t[key] = np.ascontiguousarray(t[key][..., : (width or t[key].shape[-1] - 1)])
    return change


def _shift_indices(name, by):
    def change(t):
        if name not in t:
            pytest.skip(f"no tensor {name} in this model class")
        values = t[name].copy()
        values[values >= 0] += by
        t[name] = values
    return change


def _prior_out_of_range(t):
    index = t["prior_index"].copy()
    index[0, 0] = 999
    t["prior_index"] = index


def _with(kind, fn):
    return lambda t: fn(t, _member0(kind))


M = r"'member\d\.[\w.<>-]+'"


TENSOR_CASES = {
    # the cases (while the model class has these buffers)...
    "known_shift narrowed": ("weights.safetensors", _narrow("member0.known_shift", 100),
                             r"tensor 'member0.known_shift' is \((\d+), 100\) float32; the manifest "
                             r"says \(\1, 160\) float32"),
    "known_row out of range": ("weights.safetensors", _shift_indices("member1.known_row", 100),
                               r"tensor 'member1.known_row' holds index 10\d, outside -1..\d"),
    # ...and the same checks on whatever tensors the model class has
    "a matrix narrowed": ("weights.safetensors", _narrow(lambda: _member0("matrix")),
                          rf"tensor {M} is \(\d+, \d+\) float32; the manifest says \(\d+, \d+\) float32"),
    "an index out of range": ("weights.safetensors", _set_max(_index_tensor),
                              rf"tensor {M} holds index (\d+), outside -1..\d+"),
    "float64 instead of float32": ("weights.safetensors",
                                   _with("float", lambda t, k: t.__setitem__(k, t[k].astype(np.float64))),
                                   rf"tensor {M} is \([\d, ]*\) float64; the manifest says .* float32"),
    "NaN in a tensor": ("weights.safetensors",
                        _with("float", lambda t, k: t[k].reshape(-1).__setitem__(0, np.nan)),
                        rf"tensor {M} holds non-finite values"),
    "extra member": ("weights.safetensors",
                     _with("any", lambda t, k: t.__setitem__("member3." + k.split(".", 1)[1], t[k].copy())),
                     r"holds member 3, but the manifest's ensemble has 3 member\(s\)"),
    "unknown tensor": ("weights.safetensors",
                       _with("float", lambda t, k: t.__setitem__("member0.extra", t[k].copy())),
                       r"holds tensor 'member0.extra', which the manifest's model does not have"),
    "missing tensor": ("weights.safetensors",
                       _with("any", lambda t, k: t.pop(k.replace("member0.", "member1.", 1))),
                       rf"weights.safetensors has no tensor {M}"),
    "prior_index out of range": ("graph.safetensors", _prior_out_of_range,
                                 r"graph.safetensors: tensor 'prior_index' holds index 999, outside 0..159"),
    "text wider": ("graph.safetensors",
                   lambda t: t.__setitem__("text", np.concatenate([t["text"], t["text"][:, :5]], 1)),
                   r"tensor 'text' is \(160, 389\) float32; the manifest says \(160, 384\) float32"),
    "measured out of range": ("graph.safetensors", _shift_indices("measured", 200),
                              r"tensor 'measured' holds index"),
    "fused narrower": ("graph.safetensors", _narrow("fused", 10),
                       r"tensor 'fused' is \(160, 10\) float32; the manifest says \(160, 256\) float32"),
    "control_mean shorter": ("pseudobulk.safetensors", _narrow("control_mean", 150),
                             r"pseudobulk.safetensors: tensor 'control_mean' is \(150,\) float32; the "
                             r"manifest says \(160,\) float32"),
    "means narrower": ("pseudobulk.safetensors", _narrow("means", 150),
                       r"tensor 'means' is \(10, 150\) float32; the manifest says \(10, 160\) float32"),
    "de_idx out of range": ("pseudobulk.safetensors", _shift_indices("de_idx", 500),
                            r"tensor 'de_idx' holds index"),
}


@pytest.mark.parametrize("case", list(TENSOR_CASES))
def test_every_tensor_is_checked_at_load(tmp_path, capsys, case):
    from grape_core.bundle import Bundle
    from grape_core.errors import BundleError

    file, change, phrase = TENSOR_CASES[case]
    folder = copy_model(tmp_path)
    edit_tensors(folder, file, change)  # checksums updated: only the content check can tell
    line = predict_error(capsys, folder)
    assert re.search(phrase, line), line
    assert "restore the model folder or retrain it" in line
    with pytest.raises(BundleError):
        Bundle.load(folder)


def test_nothing_is_resized_and_the_check_follows_the_model_class():
    """The loader compares with a fresh model of the class (no hand-written shape list) and
    never sizes a tensor from the file."""
    import inspect

    from grape_core import load
    from grape_core.bundle import folder, tensors
    from grape_core.nn.grape import GRAPE

    source = inspect.getsource(tensors) + inspect.getsource(folder)
    assert "zeros_like(state" not in source and "known_shift" not in source
    assert "index_tensors" in source and hasattr(GRAPE, "index_tensors")
    model = load(ROOT / "assets" / "models" / "adamson")
    member = model.bundle.members[0]
    bounds = member.index_tensors()
    assert set(bounds) <= set(member.state_dict())
    singles = [c for c in model.bundle.manifest.training.train_conditions if c.endswith("+ctrl")]
    assert bounds["known_row"] == member.known_shift.shape[0] == len(singles)  # training singles


def test_concurrent_saves_to_one_folder(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from grape_core.bundle import Bundle, verify_bundle
    from grape_core.errors import BundleError

    bundle = Bundle.load(ROOT / "assets" / "models" / "adamson")
    target = tmp_path / "model"
    with ThreadPoolExecutor(4) as pool:  # with overwrite: every save succeeds, the last wins
        list(pool.map(lambda _: bundle.save(target, overwrite=True), range(8)))
    verify_bundle(target)
    fresh = tmp_path / "fresh"

    def save_new(_):
        try:
            bundle.save(fresh)
            return "saved"
        except BundleError as exc:
            return str(exc)

    with ThreadPoolExecutor(4) as pool:  # without: one wins, the others say it exists
        outcomes = list(pool.map(save_new, range(4)))
    assert outcomes.count("saved") == 1
    assert all("already exists" in o for o in outcomes if o != "saved")
    verify_bundle(fresh)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_leftovers_of_a_killed_save_are_removed_by_the_next(tmp_path):
    import os

    from grape_core.bundle import Bundle

    bundle = Bundle.load(ROOT / "assets" / "models" / "adamson")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    target = tmp_path / "model"
    left = tmp_path / f".model~{dead.pid}~abcd1234.tmp"
    left.mkdir()
    (left / "weights.safetensors").write_bytes(b"half")
    aside = tmp_path / f".model~{dead.pid}~efgh5678.old"
    aside.mkdir()
    live = tmp_path / f".model~{os.getppid()}~running.tmp"  # a live writer's: kept
    live.mkdir()
    bundle.save(target)
    assert not left.exists() and not aside.exists() and live.exists()


def _edit(folder: Path, path: tuple, value, *, sign: bool = True) -> None:
    from conftest import read_manifest, write_manifest

    manifest = read_manifest(folder)
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    write_manifest(folder, manifest, sign=sign)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """The bundled Adamson model saved by this version (with its own checksum)."""
    from grape_core.bundle import Bundle

    folder = tmp_path_factory.mktemp("v3") / "model"
    Bundle.load(MODEL).save(folder)
    return folder


def _copy(folder: Path, parent: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, parent / "copy"))


@pytest.mark.parametrize("path, value, phrase", [
    (("uncertainty", "within_interval_top"), "x", "'uncertainty.within_interval_top' must be a "
                                                  "number between 0 and 1 (or null)"),
    (("uncertainty", "within_interval_top"), 7.5, "not 7.5"),
    (("uncertainty", "spearman_std_vs_error"), -3, "between -1 and 1"),
    (("training", "seconds"), float("nan"), "'training.seconds' is nan, not a finite number"),
    (("training", "seconds"), -1, "'training.seconds' must be a number >= 0"),
    (("training", "members", 0, "steps"), -5, "'training.members[0].steps' must be a whole"),
    (("training", "members", 0, "best_step"), 10**6, "at most its steps"),
    (("calibration", "rest", "floor"), 1e308, "'calibration.rest.floor' must be finite, "
                                              "between 0 and 10000"),
    (("graph", "prior_sources"), [{"name": "mine.csv", "kind": "file", "unknown_genes": "many"}],
     "'graph.prior_sources[0].unknown_genes' must be a whole number >= 0"),
    (("metrics", "test", "grape", "pearson_delta"), 4.0, "between -1 and 1"),
    (("dataset", "cells"), -10, "'dataset.cells' must be a whole number >= 0"),
])
def test_tampered_manifest_numbers(tmp_path, capsys, path, value, phrase):
    folder = copy_model(tmp_path)  # format 2: no checksum of its own, every number checked
    _edit(folder, path, value)
    assert phrase in predict_error(capsys, folder)


def test_the_manifest_checksum(saved_model, tmp_path, capsys):
    from conftest import read_manifest

    from grape_core.bundle import FORMAT_VERSION, manifest_digest, verify_bundle

    data = read_manifest(saved_model)
    assert data["format_version"] == FORMAT_VERSION == 5
    assert data["manifest_sha256"] == manifest_digest(data)
    verify_bundle(saved_model)
    folder = _copy(saved_model, tmp_path)
    _edit(folder, ("uncertainty", "within_interval_top"), 0.99, sign=False)  # plausible, unsigned
    assert "manifest.json was edited: its SHA-256 does not match" in predict_error(capsys, folder)
    _edit(folder, ("manifest_sha256",), "0" * 64, sign=False)
    assert "was edited" in predict_error(capsys, folder)
    data = read_manifest(folder)
    del data["manifest_sha256"]
    (folder / "manifest.json").write_text(json.dumps(data))
    line = predict_error(capsys, folder)
    assert "has no checksum of its manifest" in line and "--unverified" in line
    assert main(["--quiet", "predict", "--model", str(folder), "--perturbation", "HSPA5",
                 "--unverified"]) == 0
    capsys.readouterr()


def _edit_table(folder: Path, name: str, change) -> None:
    import pandas as pd

    frame = pd.read_parquet(folder / name)
    frame = change(frame)
    frame.to_parquet(folder / name, index=False)
    rehash(folder)  # every checksum updated, the manifest's own too


@pytest.mark.parametrize("name, change, phrase", [
    ("prior_edges.parquet", lambda f: f.assign(weight=f["weight"].where(f.index > 0)),
     "prior_edges.parquet: column 'weight' holds 1 non-finite value(s)"),
    ("prior_edges.parquet", lambda f: f.drop(columns=["source"]),
     "prior_edges.parquet has no 'source' column"),
    ("learned_edges.parquet", lambda f: f.assign(weight=float("nan")),
     "learned_edges.parquet: column 'weight' holds"),
    ("learned_edges.parquet", lambda f: f.assign(target="NOTAGENE"),
     "learned_edges.parquet: target \"NOTAGENE\" (row 0) is not a gene of the model"),
])
def test_tampered_tables_with_their_checksums_updated(saved_model, tmp_path, capsys, name,
                                                         change, phrase):
    folder = _copy(saved_model, tmp_path)
    _edit_table(folder, name, change)
    assert phrase in predict_error(capsys, folder)


@pytest.mark.parametrize("version", [3, 4])
def test_an_older_format_reads_as_what_it_was(saved_model, tmp_path, version):
    """Format 4 sent a perturbed gene's own change to its targets unfloored; format 3 also
    knew no outflow (its targets felt the own change itself). Such a folder (without those
    settings in its config, format 3 without the ``outflow`` tensor) reads as what it was and
    predicts what it did."""
    import torch
    from safetensors.torch import load_file, save_file

    import grape_core as gc

    bundle = Bundle.load(saved_model)
    for member in bundle.members:
        with torch.no_grad():
            member.self_scale.mul_(50.0)  # a knock-down below the floor, where it matters
            if version == 3:
                member.outflow.fill_(1.0)  # what a format-3 member computed
    folder = bundle.save(tmp_path / "current")

    def predicted(floor: bool) -> np.ndarray:
        data = read_manifest(folder)
        data["configs"]["model"]["floored_own_change"] = floor
        write_manifest(folder, data)
        rehash(folder)
        return gc.predict(gc.load(folder), "TARS").shift

    floored, expected = predicted(True), predicted(False)  # False: what older members computed
    assert np.abs(expected - floored).max() > 1e-3  # the floor matters for this knock-down
    data = read_manifest(folder)
    data["format_version"] = version
    del data["configs"]["model"]["floored_own_change"]
    if version == 3:
        weights = {k: v for k, v in load_file(folder / FILES["weights"]).items()
                   if not k.endswith(".outflow")}
        save_file(weights, folder / FILES["weights"])
        del data["configs"]["model"]["free_outflow"]
    write_manifest(folder, data)
    rehash(folder)
    old = gc.load(folder)
    assert old.bundle.manifest.format_version == version
    assert old.bundle.model_config.floored_own_change is False
    assert old.bundle.model_config.free_outflow is (version > 3)
    np.testing.assert_array_equal(gc.predict(old, "TARS").shift, expected)
