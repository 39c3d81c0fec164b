"""grape_core as a package: ``pip install .`` installs the library with the bundled models and
gene tables as package data, and a prediction works from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "grape_core").rglob("__init__.py")}
    assert listed - {"grape_core.assets"} == found


def test_assets_map_onto_the_package_and_settings_find_them():
    from grape_core.settings import settings

    setup = _pyproject()["tool"]["setuptools"]
    assert setup["package-dir"] == {"grape_core.assets": "assets"}
    assert (settings.bundled_models / "adamson" / "manifest.json").is_file()
    assert (settings.annotation_dir / "manifest.json").is_file()


def test_dependencies_are_pinned_as_in_requirements():
    pins = {line.split("==")[0].lower(): line.strip() for line in
            (ROOT / "requirements.txt").read_text().splitlines() if "==" in line}
    for dep in _pyproject()["project"]["dependencies"]:
        assert "==" in dep and pins[dep.split("==")[0].lower()] == dep, dep


def test_one_settings_object_reads_every_grape_variable():
    """Nothing in the library or the app reads a GRAPE_* variable but grape_core.settings."""
    import re

    from grape_core.settings import VARIABLES

    pattern = re.compile(r"environ(?:\.get)?[\[(]\s*['\"](GRAPE_\w+)")
    for path in [*(ROOT / "grape_core").rglob("*.py"), *(ROOT / "explorer").rglob("*.py")]:
        if path.name == "settings.py":
            continue
        assert not pattern.findall(path.read_text()), path
    documented = re.findall(r"``(GRAPE_\w+)``", (ROOT / "grape_core" / "settings.py").read_text())
    assert set(VARIABLES) <= set(documented)


@pytest.mark.slow
def test_pip_install_then_predict_from_another_folder(tmp_path):
    """A fresh environment that sees the installed dependencies (nothing is downloaded), the
    project installed into it, and ``python -m grape_core predict --model adamson`` run from a
    folder with no project in it: the same table as from the clone."""
    setuptools = pytest.importorskip("setuptools")
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    if (major, minor) < (70, 1):  # builds a wheel by itself from 70.1 on
        pytest.importorskip("wheel", reason="building the package needs setuptools>=70.1 or wheel")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    source = tmp_path / "source"  # a copy: a build writes build/ beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests", "docs"))
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", str(source)], check=True,
                   cwd=tmp_path, env=env, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    argv = ["-m", "grape_core", "predict", "--model", "adamson", "--perturbation", "TARS"]
    installed = subprocess.run([str(python), *argv], cwd=elsewhere, env=env,
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    where = subprocess.run([str(python), "-c", "import grape_core; print(grape_core.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert str(venv) in where.stdout  # the installed copy, not the clone
    clone = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    assert installed.stdout == clone.stdout and "TARS" in installed.stdout
