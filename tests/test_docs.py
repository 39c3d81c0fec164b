"""The README is a front page and the documentation pages hold the rest: every link, picture
and file path they name exists, so a move in the code cannot leave the docs pointing at
nothing."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")
PATH = re.compile(r"`((?:grape_core|explorer|tests|benchmarks|scripts|pages|docs)/[\w./-]+\.(?:py|sh|json|md))`")


def _anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings, as GitHub makes them."""
    if page.suffix != ".md":
        return set()
    heads = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", page.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


def test_the_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 300
    for section in ("## Set-up: two commands", "## How well does it work?", "## Read more"):
        assert section in text
    # every documentation page is reachable from the front page
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in text, f"README does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_paths_in_the_docs_exist(page):
    text = page.read_text()
    missing = []
    for target, anchor in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        linked = page.parent / target if target else page
        if not linked.exists():
            missing.append(target)
        elif anchor and anchor not in _anchors(linked):
            missing.append(f"{target}#{anchor}")
    for path in PATH.findall(text):
        if "<" not in path and not (ROOT / path).exists():
            missing.append(path)
    # a test file named alone (`test_app.py`) is one of the suite's
    for name in re.findall(r"`(test_\w+\.py)`", text):
        if not list((ROOT / "tests").rglob(name)):
            missing.append(name)
    assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {missing}"


def test_the_modules_the_docs_name_exist():
    import importlib

    named = {m for page in PAGES for m in re.findall(r"`(grape_core(?:\.\w+)+)`", page.read_text())}
    assert named
    for dotted in sorted(named):
        module, _, attribute = dotted.rpartition(".")
        try:
            importlib.import_module(dotted)
        except ImportError:
            assert hasattr(importlib.import_module(module), attribute), f"the docs name {dotted}"
