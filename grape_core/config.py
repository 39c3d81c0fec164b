"""Typed settings, one frozen dataclass per concern. Defaults are the paper's values.

Every config has ``to_dict()`` / ``from_dict()``; ``from_dict`` rejects unknown keys so a
manifest written by another version fails loudly instead of silently ignoring a setting.
Paths on disk come from :class:`Paths`, overridable by environment variables.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import GrapeError

C = TypeVar("C", bound="Config")


class Config:
    """Mixin: dict round-trip with strict keys."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise GrapeError(
                f"unknown {cls.__name__} setting(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(names))}"
            )
        kwargs = {}
        for key, value in values.items():
            default = names[key].default
            if isinstance(value, list) and isinstance(default, tuple):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class DataConfig(Config):
    """How a Perturb-seq ``.h5ad`` is read. ``None`` means auto-detect."""

    condition_key: str | None = None
    control_label: str | None = None
    gene_name_key: str | None = None
    subset: tuple[str, ...] = ()
    """``("column=value", ...)``: keep only cells matching every entry."""
    n_de: int = 20


@dataclass(frozen=True)
class SplitConfig(Config):
    """Held-out design. ``simulation`` reproduces GEARS; ``grape`` is the paper's 75/25."""

    name: Literal["simulation", "grape"] = "simulation"
    seed: int = 1
    train_gene_set_size: float = 0.75
    combo_seen2_train_frac: float = 0.75
    test_fraction: float = 0.25
    val_fraction: float = 0.1


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else default


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "grape"


@dataclass(frozen=True)
class Paths(Config):
    """Folders and model locations, read from the environment when not given.

    ``GRAPE_DATA_DIR``      downloaded datasets (default: user cache folder)
    ``GRAPE_CACHE_DIR``     derived caches: embeddings, priors (default: user cache folder)
    ``GRAPE_MODELS_DIR``    user-trained model bundles shown by the app
    ``GRAPE_GENE_SOURCES``  folder with the GENCODE biotype table and EPD promoters
    ``GRAPE_TEXT_MODEL``    local folder of a BERT-type text model (default: packaged MiniLM)
    ``GRAPE_DNA_MODEL``     local folder of a DNA language model (default: none, k-mers)
    """

    data_dir: str = ""
    cache_dir: str = ""
    models_dir: str = ""
    gene_sources: str = ""
    text_model: str = ""
    dna_model: str = ""

    @classmethod
    def from_env(cls) -> "Paths":
        cache = _user_cache()
        return cls(
            data_dir=str(_env_path("GRAPE_DATA_DIR", cache / "data")),
            cache_dir=str(_env_path("GRAPE_CACHE_DIR", cache / "cache")),
            models_dir=str(_env_path("GRAPE_MODELS_DIR", cache / "models")),
            gene_sources=os.environ.get("GRAPE_GENE_SOURCES", ""),
            text_model=os.environ.get("GRAPE_TEXT_MODEL", ""),
            dna_model=os.environ.get("GRAPE_DNA_MODEL", ""),
        )


PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS = PROJECT_ROOT / "assets"
BUNDLED_MODELS = ASSETS / "models"
