"""The house rules of the layout: the library imports no UI toolkit, no import cycle between
the project's modules, thin pages, a public API in ``__all__``, typed manifests."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_manifest

ROOT = Path(__file__).resolve().parent.parent
UI = ("streamlit", "plotly", "pyvis")
PROJECT = ("grape_core", "explorer")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every project module ``path`` imports (at any depth of the file: lazy imports count)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def _project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PROJECT for p in (ROOT / pkg).rglob("*.py")}


def test_no_import_cycle_between_project_modules():
    modules = _project_modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imports(path):
            # "a.b.c" may name module a.b.c or attribute c of module a.b
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets
    # a package's __init__ re-exporting its own modules is not a walk back up
    for name in graph:
        graph[name] = {t for t in graph[name] if not (modules[t].name == "__init__.py"
                                                      and name.startswith(t + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


LAYERS = [
    ("foundation", ("grape_core._version", "grape_core.errors", "grape_core.keys",
                    "grape_core.settings", "grape_core.typed", "grape_core.config", "grape_core.io",
                    "grape_core.devices")),
    ("data", ("grape_core.data",)),
    ("knowledge", ("grape_core.knowledge",)),
    ("simulation", ("grape_core.simulation",)),
    ("model", ("grape_core.nn", "grape_core.bundle", "grape_core.evaluation")),
    ("training", ("grape_core.training",)),
    ("serving", ("grape_core.serving",)),
    ("viz", ("grape_core.viz",)),
    ("interface", ("grape_core.cli", "grape_core.__main__", "grape_core")),
    ("app", ("explorer", "app", "pages")),
]
"""The floors of the house, lowest first: a module imports only its own floor and those
below (``grape_core`` itself, the public API, is the library's top)."""


def _layer(module: str) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert found is not None, f"{module} is on no floor of LAYERS"
    return found


def test_no_layer_imports_a_higher_one():
    modules = _project_modules()
    modules |= {_module_name(p): p for p in [ROOT / "app.py", *(ROOT / "pages").glob("*.py")]}
    climbs = []
    for name, path in sorted(modules.items()):
        for imported in _imports(path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if name.startswith(imported + "."):  # a parent package (``from .. import keys``)
                continue
            if imported and _layer(imported) > _layer(name):
                climbs.append(f"{name} ({LAYERS[_layer(name)][0]}) imports {imported} "
                              f"({LAYERS[_layer(imported)][0]})")
    assert not climbs, "\n".join(climbs)


def test_only_the_app_imports_streamlit_and_only_viz_draws():
    for path in (ROOT / "grape_core").rglob("*.py"):
        roots = {m.split(".")[0] for m in _imports(path)}
        where = path.relative_to(ROOT).as_posix()
        assert "streamlit" not in roots and "explorer" not in roots, f"{where} imports {roots}"
        if not where.startswith("grape_core/viz/"):
            assert not roots & {"plotly", "pyvis"}, f"{where} draws: {roots & {'plotly', 'pyvis'}}"
    code = "import sys, grape_core.viz.report_charts; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_import_grape_core_loads_no_ui_toolkit_and_no_torch():
    # the app's first page also names the full screens' models and reads the registry
    code = ("import sys, grape_core, grape_core.training.public, grape_core.data.datasets; "
            f"print(sorted(m for m in {UI + ('torch',)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_pages_are_thin_and_import_only_the_app_package():
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        lines = path.read_text().splitlines()
        assert len(lines) < 100, f"{path.name} has {len(lines)} lines"
        roots = {m.split(".")[0] for m in _imports(path)}
        assert roots <= {"streamlit", "explorer"}, f"{path.name} imports {roots}"
        assert 'split("+")' not in path.read_text() and "split(\" + \")" not in path.read_text()


def test_public_api_lists_loader_predict_and_screen():
    import grape_core as gc

    assert {"load", "predict", "screen", "fit", "read", "split", "evaluate", "knowledge"} <= set(gc.__all__)
    for name in gc.__all__:
        assert hasattr(gc, name), name
        assert not name.startswith("_") or name == "__version__"
    assert callable(gc.predict) and callable(gc.screen) and callable(gc.load)


def test_python_api_example_of_the_readme():
    import grape_core as gc

    model = gc.load(ROOT / "assets" / "models" / "norman")
    pred = gc.predict(model, "KLF1+MAP2K6")
    assert pred.condition == "KLF1+MAP2K6" and pred.is_pair and pred.interaction
    assert pred.shift.shape == pred.std.shape == (len(model.measured),)
    hits = gc.screen(model, targets=["HBG2"], direction="up")
    assert hits.targets == ("HBG2",) and len(hits) == 20


# ----------------------------------------------------------------------------- manifest
@pytest.mark.parametrize("name", ["adamson", "norman"])
def test_bundled_manifests_read_typed_and_write_back_unchanged(name):
    from grape_core.bundle import Manifest

    folder = ROOT / "assets" / "models" / name
    manifest = Manifest.read(folder)
    assert manifest.to_dict() == json.loads((folder / "manifest.json").read_text())
    assert manifest.ensemble == len(manifest.training.members) == 3
    assert all(m.best_step >= 0 and m.steps >= m.best_step for m in manifest.training.members)
    assert manifest.configs.model_config.prior == ("union",)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["training"].update(seconds="fast"), "'training.seconds' must be a number"),
    (lambda m: m.pop("ensemble"), "'ensemble' is missing"),
    (lambda m: m["dataset"].update(subset="dataset=norman19"), "'dataset.subset' must be a list"),
    (lambda m: m["training"].update(members=[{"seed": 1}]), "'training.members[0].best_step' is missing"),
])
def test_a_bad_manifest_is_one_line_naming_key_and_file(tmp_path, change, message):
    from grape_core.bundle import Manifest
    from grape_core.errors import BundleError

    data = json.loads((ROOT / "assets" / "models" / "adamson" / "manifest.json").read_text())
    change(data)
    path = tmp_path / "manifest.json"
    write_manifest(tmp_path, data)  # with its own checksum updated, as a deliberate edit would
    with pytest.raises(BundleError) as info:
        Manifest.read(path)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_a_loaded_bundle_is_read_only():
    import dataclasses

    import grape_core as gc

    model = gc.load(ROOT / "assets" / "models" / "adamson")
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.bundle.metrics = None  # type: ignore[misc]
    gc.screen(model, ["HSPA5"])
    model.baselines()
    assert model._baselines is not None and not hasattr(model.bundle, "_cache")


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




def _undocumented(obj, name: str) -> list[str]:
    """``name`` when ``obj`` (a function) takes parameters its docstring does not list
    under Parameters, or returns something its docstring does not describe under Returns."""
    import inspect

    doc = inspect.getdoc(obj) or ""
    sig = inspect.signature(obj)
    params = [p for p in sig.parameters if p not in ("self", "cls")]
    missing = []
    if params and "Parameters" not in doc:
        missing.append(f"{name}: Parameters")
    if sig.return_annotation not in (None, "None") and "Returns" not in doc and \
            (sig.return_annotation is not inspect.Signature.empty or inspect.isfunction(obj)):
        missing.append(f"{name}: Returns")
    return missing


def test_the_public_api_documents_parameters_and_returns():
    """Numpydoc Parameters and Returns on every public function of ``grape_core.__all__``
    and on the public methods of its classes."""
    import inspect

    import grape_core as gc

    missing = []
    for name in gc.__all__:
        obj = getattr(gc, name)
        if inspect.isfunction(obj):
            missing += _undocumented(obj, name)
        elif inspect.isclass(obj) and not issubclass(obj, Exception):
            for attr, member in inspect.getmembers(obj, inspect.isfunction):
                if not attr.startswith("_") and member.__module__.startswith("grape_core"):
                    missing += _undocumented(member, f"{name}.{attr}")
    assert not missing, "\n".join(missing)


def test_no_public_name_hides_a_package():
    """``grape_core.<name>`` is the package ``<name>`` for every subpackage and module, so
    ``import grape_core.simulation.config as config`` works: the API's functions (``simulate``,
    ``screen``, ``evaluate``...) never share a name with a module of ``grape_core``. One
    exception, as in scanpy (``sc.settings``): ``gc.settings`` is the settings object, and its
    module's names are imported with ``from grape_core.settings import ...``. In a fresh
    interpreter, as importing every module here would change what others test."""
    import subprocess
    import sys

    code = """
import importlib, pkgutil, types
import grape_core as gc
for info in pkgutil.iter_modules(gc.__path__):
    if info.name.startswith("_") or info.name == "settings":
        continue
    module = importlib.import_module("grape_core." + info.name)
    found = getattr(gc, info.name)
    if found is not module:
        print("grape_core." + info.name, "is", repr(found), "not the module")
import grape_core.simulation.config as config
assert "linear" in config.FAMILY
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr
