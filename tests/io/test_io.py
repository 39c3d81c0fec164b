"""Writing files and folders: atomic writes a killed run cannot damage, outputs checked
before the work (links, devices, FIFOs, folders of the user's, collisions), the user's umask,
a full disk in one line, and strict JSON."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import ADAMSON, MODEL, ROOT, copy_model, one_error, run_and_kill, tree

from grape_core.cli import main
from grape_core.errors import GrapeError

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


def test_killed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "result.json"
    target.write_text('{"good": true}')
    run_and_kill(SLOW_WRITER.format(root=str(ROOT), target=str(target)))
    assert target.read_text() == '{"good": true}'


def _strict(text: str):
    import json

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_every_json_written_is_strict(adamson_model, tmp_path, capsys):
    from grape_core.bundle import Bundle
    from grape_core.io import to_json

    assert _strict(to_json({"a": float("nan"), "b": [np.float32("inf"), np.array([1.0, np.nan])]})) \
        == {"a": None, "b": [None, [1.0, None]]}
    model = str(ROOT / "assets" / "models" / "adamson")
    written = {
        "screen": ["screen", "--model", model, "--target", "HSPA5", "--json"],
        "predict": ["predict", "--model", model, "--perturbation", "HSPA5+GBF1", "--json"],
        "evaluate": ["evaluate", "--model", model, "--json"],
        "benchmark": ["benchmark", "--data", str(ADAMSON), "--json"],
    }
    for name, argv in written.items():
        out = tmp_path / f"{name}.json"
        assert main([*argv, str(out)]) == 0, name
        _strict(out.read_text())
    screen = _strict((tmp_path / "screen.json").read_text())
    assert any(row["additive_effect"] is None for row in screen["candidates"])  # was NaN
    capsys.readouterr()
    assert main(["describe", str(ADAMSON), "--json"]) == 0
    _strict(capsys.readouterr().out)
    conditions = tmp_path / "conditions.txt"
    conditions.write_text("A+ctrl\nB+ctrl\nA+B\nC+ctrl\n")
    assert main(["split", "--conditions", str(conditions), "--out", str(tmp_path / "s.json")]) == 0
    _strict((tmp_path / "s.json").read_text())
    saved = tmp_path / "saved"
    Bundle.load(adamson_model).save(saved)
    for file in saved.glob("*.json"):
        _strict(file.read_text())
    for file in Path(adamson_model).glob("*.json"):
        _strict(file.read_text())


def test_outputs_refuse_links_fifos_and_folders(tmp_path, capsys):
    target = tmp_path / "thesis.html"
    target.write_text("my thesis")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [("--report", link, "is a symbolic link"), ("--h5ad", fifo, "is a FIFO"),
             ("--json", link, "is a symbolic link"), ("--report", folder, "is a folder"),
             ("--h5ad", folder, "is a folder")]
    for flag, path, phrase in cases:
        line = one_error(capsys, ["predict", "--model", str(MODEL), "--perturbation", "HSPA5",
                                  flag, str(path)])
        assert f"{flag} {path} {phrase}" in line, line
    assert link.is_symlink() and target.read_text() == "my thesis"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and list(folder.iterdir()) == []
    # screen --report was not checked before the work at all
    line = one_error(capsys, ["screen", "--model", str(MODEL), "--target", "HSPA5",
                              "--report", str(link)])
    assert "is a symbolic link" in line and link.is_symlink()


def test_a_device_is_refused_before_anything_is_written():
    from grape_core.io import check_output

    with pytest.raises(GrapeError, match="is a character device, not a regular file"):
        check_output("/dev/null", what="--h5ad")


def test_the_one_writer_refuses_them_too(tmp_path):
    from grape_core.io import write_json, write_text

    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(GrapeError, match="symbolic link"):
        write_json(link, {"a": 1})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(GrapeError, match="FIFO"):
        write_text(fifo, "x")
    assert link.is_symlink() and target.read_text() == "{}"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_library_saves_refuse_too(tmp_path):
    from grape_core.bundle import Bundle
    from grape_core.errors import BundleError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years")
    bundle = Bundle.load(MODEL)
    with pytest.raises(BundleError, match="not a model folder"):
        bundle.save(mine, overwrite=True)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(BundleError, match="is a file, not a folder"):
        bundle.save(a_file, overwrite=True)
    assert (mine / "thesis.txt").read_text() == "four years" and a_file.read_text() == "x"
    bundle.save(tmp_path / "model")
    bundle.save(tmp_path / "model", overwrite=True)  # a model of ours is replaced


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_files_follow_the_umask(tmp_path, umask_027):
    from grape_core.bundle import Bundle
    from grape_core.io import umask, write_text

    assert umask() == 0o027
    write_text(tmp_path / "report.html", "<p>hi</p>")
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o640
    folder = Bundle.load(MODEL).save(tmp_path / "model")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert set(modes.values()) == {0o640}, modes


def test_outputs_that_collide_with_each_other_or_an_input(tmp_path, capsys):
    model = copy_model(tmp_path, "model")
    before = tree(model)
    same = tmp_path / "x.out"
    line = one_error(capsys, ["predict", "--model", str(model), "--perturbation", "HSPA5",
                              "--report", str(same), "--h5ad", str(same)])
    assert f"--h5ad {same} is also --report" in line and not same.exists()
    line = one_error(capsys, ["evaluate", "--model", str(model), "--json",
                              str(model / "manifest.json")])
    assert "lies inside --model" in line and "which this command reads" in line
    line = one_error(capsys, ["screen", "--model", str(model), "--target", "HSPA5", "--json",
                              str(model / "metrics.csv")])
    assert "lies inside --model" in line
    listed = tmp_path / "list.txt"
    listed.write_text("HSPA5\n")
    line = one_error(capsys, ["predict", "--model", str(model), "--perturbations", str(listed),
                              "--json", str(listed)])
    assert "is --perturbations" in line and listed.read_text() == "HSPA5\n"
    assert tree(model) == before  # the model is untouched


def _no_space(*args, **kwargs):
    raise RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                       'message: "No space left on device" })')


def test_a_full_disk_names_the_file_and_the_space(tmp_path, capsys, monkeypatch):
    import errno

    import safetensors.torch

    from grape_core import io
    from grape_core.bundle import Bundle

    bundle = Bundle.load(MODEL)
    monkeypatch.setattr(safetensors.torch, "save_file", _no_space)  # as safetensors says it
    with pytest.raises(GrapeError) as info:
        bundle.save(tmp_path / "model")
    text = str(info.value)
    assert text.startswith(f"the disk is full: cannot write {tmp_path / 'model'} (it needs about")
    assert "MB" in text and "free there" in text and "\n" not in text
    assert list(tmp_path.iterdir()) == []  # no temporary folder left
    monkeypatch.undo()

    old = tmp_path / "r.html"
    old.write_text("the previous report")

    def full(self, data):  # a plain OSError, half-way through
        with open(self, "wb") as fh:
            fh.write(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(GrapeError, match=r"cannot write .*r.html \(it needs about 7 bytes"):
        io.write_text(old, "new one")
    monkeypatch.undo()
    assert old.read_text() == "the previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_a_full_disk_during_simulate(tmp_path, capsys, monkeypatch):
    import errno

    import anndata

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(anndata.AnnData, "write_h5ad", full)
    out = tmp_path / "screen"
    line = one_error(capsys, ["simulate", "--out", str(out), "--genes", "40", "--singles", "5",
                              "--pairs", "2"])
    assert line.startswith(f"error: the disk is full: cannot write {out} (it needs about")
    assert list(tmp_path.iterdir()) == []
