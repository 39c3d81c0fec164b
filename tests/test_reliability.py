"""Reliability: every bad input gets one clear line, nothing half-written survives an
interrupted run, nothing is unpickled, nothing talks to the network unasked."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ADAMSON, ROOT, make_adata

from grape_core.cli import main


# ----------------------------------------------------------------------------------------
# bad input -> one line on the command line
# ----------------------------------------------------------------------------------------
def _write(adata, path):
    adata.write_h5ad(path)
    return path


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    base = dict(ctrl=20, **{"G1+ctrl": 10, "G2+ctrl": 10})
    cases: dict[str, tuple[Path, str]] = {}
    cases["missing file"] = (tmp / "nope.h5ad", "file not found")
    csv = tmp / "table.h5ad"
    csv.write_text("cell,gene,value\nc1,G1,0.5\n")
    cases["csv renamed"] = (csv, "not an AnnData .h5ad file (it looks like a text/CSV file)")
    noise = tmp / "noise.h5ad"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    cases["random bytes"] = (noise, "is not an AnnData .h5ad file")
    good = _write(make_adata(base), tmp / "good.h5ad")
    cut = tmp / "cut.h5ad"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated"] = (cut, "truncated or corrupted")
    a = make_adata(base)
    a.obs = a.obs.rename(columns={"condition": "guide"})
    cases["no condition column"] = (_write(a, tmp / "nocond.h5ad"), "no condition column")
    a = make_adata({"G1+ctrl": 10, "G2+ctrl": 10})
    cases["no control cells"] = (_write(a, tmp / "noctrl.h5ad"), "no control cells")
    cases["only control"] = (_write(make_adata({"ctrl": 10}), tmp / "onlyctrl.h5ad"),
                             "holds only control cells")
    cases["unknown separator"] = (_write(make_adata({"ctrl": 10, "G1,G2": 5}), tmp / "sep.h5ad"),
                                  "unexpected ',' in 'G1,G2'")
    cases["triple"] = (_write(make_adata({"ctrl": 10, "G1+G2+G3": 5}), tmp / "triple.h5ad"),
                       "perturbs 3 genes")
    a = make_adata(base)
    a.var["gene_name"] = ["G0", "G0", "G2", "G3", "G4", "G5"]
    cases["duplicated genes"] = (_write(a, tmp / "dup.h5ad"), "duplicated gene name")
    a = make_adata(base, sparse=False)
    a.X[3, 2] = np.nan
    cases["nan"] = (_write(a, tmp / "nan.h5ad"), "non-finite value")
    a = make_adata(base, sparse=False)
    a.X = np.round(a.X * 30)
    cases["raw counts"] = (_write(a, tmp / "counts.h5ad"), "looks like raw counts")
    return cases


def test_bad_inputs_give_one_line_and_exit_1(tmp_path, capsys):
    for name, (path, phrase) in _bad_files(tmp_path).items():
        code = main(["describe", str(path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1, name
        assert len(err) == 1 and err[0].startswith("error: ") and phrase in err[0], (name, err)
        assert "Traceback" not in err[0]


def test_debug_shows_the_traceback(tmp_path):
    from grape_core import DataFormatError

    with pytest.raises(DataFormatError):
        main(["--debug", "describe", str(tmp_path / "nope.h5ad")])


def test_empty_after_subsetting(tmp_path, capsys):
    a = make_adata(dict(ctrl=20, **{"G1+ctrl": 10}))
    a.obs["batch"] = ["b1"] * 20 + ["b2"] * 10
    a.obs["donor"] = ["d1"] * 20 + ["d2"] * 10
    path = _write(a, tmp_path / "batches.h5ad")
    assert main(["describe", str(path), "--subset", "batch=b1", "--subset", "donor=d2"]) == 1
    assert "no cells left" in capsys.readouterr().err


def test_condition_spaces_and_lower_case_are_read(tmp_path, capsys):
    a = make_adata({"ctrl": 10, " G1 + ctrl": 5, "g2+G3": 5, "CONTROL": 4})
    assert main(["describe", str(_write(a, tmp_path / "quirks.h5ad")), "--json"]) == 0
    info = __import__("json").loads(capsys.readouterr().out)
    assert info["control_cells"] == 14 and info["singles"] == 1 and info["pairs"] == 1
    assert set(info["cells_by_condition"]) == {"ctrl", "G1+ctrl", "g2+G3"}


# ----------------------------------------------------------------------------------------
# nothing lost: an interrupted run leaves the previous good file
# ----------------------------------------------------------------------------------------
SLOW_WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from grape_core.io import atomic_path
with atomic_path({target!r}) as tmp:
    with open(tmp, "w") as fh:
        fh.write("half of the new ")
        fh.flush()
        print("writing", flush=True)
        time.sleep(60)
        fh.write("content")
"""

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
import grape_core.bundle as b
b.write_table = slow
bundle.save({target!r}, overwrite=True)
"""


def _run_and_kill(code: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_killed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "result.json"
    target.write_text('{"good": true}')
    _run_and_kill(SLOW_WRITER.format(root=str(ROOT), target=str(target)))
    assert target.read_text() == '{"good": true}'


def test_killed_bundle_save_keeps_the_previous_model(adamson_model, tmp_path):
    from grape_core.bundle import Bundle
    from grape_core.predict import predict_conditions

    import shutil

    target = tmp_path / "model"
    shutil.copytree(adamson_model, target)
    before = predict_conditions(Bundle.load(target), ["HSPA5+ctrl"])[0]
    _run_and_kill(SLOW_BUNDLE.format(root=str(ROOT), source=str(adamson_model), target=str(target)))
    after = predict_conditions(Bundle.load(target), ["HSPA5+ctrl"])[0]
    np.testing.assert_array_equal(before, after)


# ----------------------------------------------------------------------------------------
# security: no pickle, no network unless a download is asked for
# ----------------------------------------------------------------------------------------
def _sources() -> list[Path]:
    files = list((ROOT / "grape_core").rglob("*.py")) + [ROOT / "app.py"]
    files += list((ROOT / "pages").glob("*.py")) + list((ROOT / "scripts").glob("*.py"))
    return [f for f in files if f.exists()]


# numpy's opt-in to unpickling object arrays, in any spacing (spelt in two parts so that
# this test file does not itself match)
NUMPY_PICKLE = r"allow_" r"pickle\s*=\s*True"


def test_no_pickle_anywhere():
    for file in _sources():
        text = file.read_text()
        assert not re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M), file
        assert not re.search(NUMPY_PICKLE, text), file
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (file, call)
        assert "trust_remote_code=True" not in text, file


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every connection that leaves the machine."""
    real_connect = socket.socket.connect
    attempts = []

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") and "/" not in host:
            attempts.append(address)
            raise OSError(f"network blocked in test: {address}")
        return real_connect(self, address)

    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host not in (None, "127.0.0.1", "::1", "localhost"):
            attempts.append(host)
            raise socket.gaierror(f"network blocked in test: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return attempts


def test_cli_works_offline(no_network, adamson_model, tmp_path, capsys):
    assert main(["describe", str(ADAMSON)]) == 0
    assert main(["benchmark", "--data", str(ADAMSON), "--json", str(tmp_path / "b.json")]) == 0
    assert main(["predict", "--model", str(adamson_model), "--perturbation", "HSPA5+TARS"]) == 0
    assert main(["screen", "--model", str(adamson_model), "--target", "DDIT4"]) == 0
    assert no_network == []


def test_only_an_explicit_download_uses_the_network(no_network, tmp_path, capsys):
    assert main(["describe", "norman"]) == 1  # registry name: a download, refused here
    err = capsys.readouterr().err
    assert err.startswith("error: download of https://dataverse.harvard.edu") and "resume" not in err
    assert no_network == ["dataverse.harvard.edu"]
