"""Every ``GRAPE_*`` environment variable, read in one place: :data:`settings`.

Each property reads the environment when it is asked (a test, the app's settings panel or a
benchmark may change a variable between two calls), checks the value and says in one line
what is wrong with it. Nothing else in the project reads a ``GRAPE_*`` variable.

=========================  ==========================================================
``GRAPE_DATA_DIR``         downloaded datasets (default: the user cache folder)
``GRAPE_CACHE_DIR``        derived caches: gene knowledge, embeddings
``GRAPE_MODELS_DIR``       the user's own model folders (the app lists them)
``GRAPE_GENE_SOURCES``     folder with the GENCODE biotype table and EPD promoters
``GRAPE_TEXT_MODEL``       local folder of a BERT-type text model (default: packaged MiniLM)
``GRAPE_DNA_MODEL``        local folder of a DNA language model (default: none, k-mers)
``GRAPE_REGISTRY``         JSON file overriding or extending the dataset registry
``GRAPE_DOWNLOAD_MAX_GB``  largest download of a dataset without a recorded size (20)
``GRAPE_STREAM_ABOVE_GB``  read X in chunks above this size (a quarter of free memory)
``GRAPE_SCREEN_MEMORY_GB`` memory for a genome-scale model's singles (1)
``GRAPE_SIMULATE_MEMORY_GB`` most memory a simulation may need (80 % of free memory)
``GRAPE_APP_THREADS``      torch threads per computation in the app (1)
``GRAPE_MAX_UPLOAD_MB``    the app's upload limit, below Streamlit's own
=========================  ==========================================================

The bundled models and gene tables are package data: :attr:`Settings.assets_dir` is the
``assets`` folder installed with the package, or, in a source checkout, the repository's
top-level ``assets/`` (the same files; ``pyproject.toml`` maps one onto the other).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import GrapeError

GB = 2**30
"""Bytes in the GB of the ``*_GB`` settings."""

VARIABLES = {
    "GRAPE_DATA_DIR": "downloaded datasets",
    "GRAPE_CACHE_DIR": "derived caches (gene knowledge, embeddings)",
    "GRAPE_MODELS_DIR": "the user's model folders",
    "GRAPE_GENE_SOURCES": "folder with the GENCODE and EPD files",
    "GRAPE_TEXT_MODEL": "local text model folder",
    "GRAPE_DNA_MODEL": "local DNA language-model folder",
    "GRAPE_REGISTRY": "JSON file overriding the dataset registry",
    "GRAPE_DOWNLOAD_MAX_GB": "largest download without a recorded size",
    "GRAPE_STREAM_ABOVE_GB": "read X in chunks above this size",
    "GRAPE_SCREEN_MEMORY_GB": "memory for a genome-scale model's singles",
    "GRAPE_SIMULATE_MEMORY_GB": "most memory a simulation may need",
    "GRAPE_APP_THREADS": "torch threads per computation in the app",
    "GRAPE_MAX_UPLOAD_MB": "the app's upload limit",
}
"""Every variable :data:`settings` reads, and what it sets."""

DOWNLOAD_MAX_DEFAULT_GB = 20
SCREEN_MEMORY_DEFAULT_GB = 1


def _text(name: str) -> str:
    return os.environ.get(name, "").strip()


def _folder(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def gigabytes(name: str, *, example: str) -> float | None:
    """The variable ``name``, a size in GB, in bytes; ``None`` when unset.

    Parameters
    ----------
    name
        A ``GRAPE_*_GB`` variable.
    example
        A value and what it means, for the message when the value is not a size.

    Returns
    -------
    float or None
        Bytes.

    Raises
    ------
    GrapeError
        Not a number >= 0.
    """
    text = _text(name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 <= value < float("inf")):
        raise GrapeError(f"{name}={text[:40]!r} is not a size in GB; give a number such as "
                         f"{example}")
    return value * GB


class Settings:
    """The ``GRAPE_*`` variables as typed, checked values (:data:`settings`)."""

    # ------------------------------------------------------------------ folders
    @property
    def user_cache(self) -> Path:
        """``$XDG_CACHE_HOME/grape`` (default ``~/.cache/grape``): the root of the defaults."""
        base = os.environ.get("XDG_CACHE_HOME")
        return (Path(base) if base else Path.home() / ".cache") / "grape"

    @property
    def data_dir(self) -> Path:
        """``GRAPE_DATA_DIR``: downloaded datasets."""
        return _folder("GRAPE_DATA_DIR", self.user_cache / "data")

    @property
    def cache_dir(self) -> Path:
        """``GRAPE_CACHE_DIR``: gene knowledge and embeddings, named by a hash of their inputs."""
        return _folder("GRAPE_CACHE_DIR", self.user_cache / "cache")

    @property
    def models_dir(self) -> Path:
        """``GRAPE_MODELS_DIR``: the user's model folders."""
        return _folder("GRAPE_MODELS_DIR", self.user_cache / "models")

    @property
    def gene_sources(self) -> str:
        """``GRAPE_GENE_SOURCES``: the GENCODE and EPD files ("" when unset)."""
        return os.environ.get("GRAPE_GENE_SOURCES", "")

    @property
    def text_model(self) -> str:
        """``GRAPE_TEXT_MODEL``: a local text model folder ("": the packaged MiniLM)."""
        return os.environ.get("GRAPE_TEXT_MODEL", "")

    @property
    def dna_model(self) -> str:
        """``GRAPE_DNA_MODEL``: a local DNA language model folder ("": k-mers)."""
        return os.environ.get("GRAPE_DNA_MODEL", "")

    @property
    def registry(self) -> Path | None:
        """``GRAPE_REGISTRY``: a JSON file that overrides or extends the dataset registry."""
        text = _text("GRAPE_REGISTRY")
        return Path(text).expanduser() if text else None

    # ------------------------------------------------------------------ sizes
    @property
    def download_max(self) -> float:
        """``GRAPE_DOWNLOAD_MAX_GB`` in bytes (default 20 GB): the largest download of a
        dataset whose registry entry records no size."""
        found = gigabytes("GRAPE_DOWNLOAD_MAX_GB",
                          example=f"{DOWNLOAD_MAX_DEFAULT_GB} (the most a download of a "
                                  "dataset without a recorded size may be)")
        return found if found is not None else DOWNLOAD_MAX_DEFAULT_GB * GB

    @property
    def stream_above(self) -> float | None:
        """``GRAPE_STREAM_ABOVE_GB`` in bytes; ``None``: unset (a quarter of free memory)."""
        return gigabytes("GRAPE_STREAM_ABOVE_GB",
                         example="4 (0: always read X in chunks from the file)")

    @property
    def screen_memory(self) -> float:
        """``GRAPE_SCREEN_MEMORY_GB`` in bytes (default 1 GB)."""
        found = gigabytes("GRAPE_SCREEN_MEMORY_GB",
                          example="2 (0: compute only the genes each screen reads)")
        return found if found is not None else SCREEN_MEMORY_DEFAULT_GB * GB

    @property
    def simulate_memory(self) -> float | None:
        """``GRAPE_SIMULATE_MEMORY_GB`` in bytes; ``None``: unset (80 % of free memory)."""
        return gigabytes("GRAPE_SIMULATE_MEMORY_GB",
                         example="8 (the most memory a simulation may use)")

    # ------------------------------------------------------------------ the app
    @property
    def app_threads(self) -> int:
        """``GRAPE_APP_THREADS``: torch threads per computation in the app (default 1; a
        value that is not a whole number counts as unset)."""
        try:
            return int(_text("GRAPE_APP_THREADS") or 1)
        except ValueError:
            return 1

    @property
    def max_upload_mb(self) -> float | None:
        """``GRAPE_MAX_UPLOAD_MB``: the app's upload limit in MB (``None``: unset or not a
        number)."""
        text = _text("GRAPE_MAX_UPLOAD_MB")
        try:
            return float(text) if text else None
        except ValueError:
            return None

    # ------------------------------------------------------------------ package data
    @property
    def assets_dir(self) -> Path:
        """The bundled models and gene tables: ``grape_core/assets`` once installed, the
        repository's ``assets/`` in a source checkout."""
        return assets_dir()

    @property
    def bundled_models(self) -> Path:
        """``assets/models``: the models that ship with the package."""
        return assets_dir() / "models"

    @property
    def annotation_dir(self) -> Path:
        """``assets/genes``: the gene annotation tables."""
        return assets_dir() / "genes"

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={os.environ[name]!r}" for name in VARIABLES if name in os.environ)
        return f"Settings({shown})"


def assets_dir() -> Path:
    """The package data folder: installed beside the modules (``grape_core/assets``), or the
    top-level ``assets/`` of a source checkout that runs without an install."""
    here = Path(__file__).resolve().parent
    installed = here / "assets"
    return installed if installed.is_dir() else here.parent / "assets"


settings = Settings()
"""The one object that reads the ``GRAPE_*`` variables."""
