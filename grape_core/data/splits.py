"""Seeded train / val / test splits of perturbation conditions, saved as JSON.

``simulation`` behaves exactly like GEARS ``DataSplitter(split_type="simulation")``: the
same conditions, seed and ``train_gene_set_size`` give the same lists as GEARS, so figures
are comparable with published ones. ``grape`` is the paper's seeded 75/25 random split.
Test and validation conditions are grouped as GEARS does: ``unseen_single`` and
``combo_seen0/1/2`` (how many genes of a pair were perturbed in training).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import keys
from .conditions import canonical, genes_of
from ..config import SplitConfig
from ..errors import SplitError


@dataclass(frozen=True)
class Split:
    """Condition lists of one split. ``ctrl``, when present, is in ``train`` (as in GEARS)."""

    name: str
    seed: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    subgroups: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The split as JSON (what :meth:`save` writes).

        Returns
        -------
        dict
            ``name``, ``seed``, ``params``, ``train``, ``val``, ``test``, ``subgroups``.
        """
        return {
            "name": self.name,
            "seed": self.seed,
            "params": dict(self.params),
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
            "subgroups": {k: {g: list(v) for g, v in d.items()} for k, d in self.subgroups.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, name: str = "file", seed: int = -1) -> "Split":
        """Our JSON layout, or GEARS' ``{train, val, test}`` (subgroups are then recomputed)."""
        try:
            parts = {k: [canonical(c, trusted=True) for c in data.get(k, [])]
                     for k in ("train", "val", "test")}
        except Exception as exc:
            raise SplitError(f"split lists cannot be parsed: {exc}") from exc
        if not parts["train"] and not parts["test"]:
            raise SplitError("a split needs at least 'train' and 'test' lists of conditions")
        subgroups = data.get("subgroups") or {}
        if not subgroups:
            if "test_subgroup" in data or "val_subgroup" in data:
                subgroups = {"test": data.get("test_subgroup", {}), "val": data.get("val_subgroup", {})}
            else:
                train_genes = _perturbed_genes(parts["train"])
                subgroups = {k: _subgroups(parts[k], train_genes) for k in ("test", "val")}
        subgroups = {k: {g: [canonical(c, trusted=True) for c in v] for g, v in d.items()}
                     for k, d in subgroups.items()}
        return cls(
            name=str(data.get("name", name)),
            seed=int(data.get("seed", seed)),
            train=tuple(parts["train"]),
            val=tuple(parts["val"]),
            test=tuple(parts["test"]),
            subgroups=subgroups,
            params=dict(data.get("params", {})),
        )

    def save(self, path: str | Path) -> None:
        """Write the split as JSON (atomically).

        Parameters
        ----------
        path
            The ``split.json`` file.
        """
        from ..io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        path = Path(path)
        text = _read(path, "split file", "give a split JSON (ours or GEARS')")
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise SplitError(f"split file {path} is not valid JSON ({exc})") from exc
        if isinstance(data, dict) and "split" in data and isinstance(data["split"], dict):
            data = data["split"]
        return cls.from_dict(data, name=path.stem)

    def subgroup_of(self, condition: str) -> str | None:
        """GEARS' subgroup of a held-out condition.

        Parameters
        ----------
        condition
            A canonical condition.

        Returns
        -------
        str or None
            ``unseen_single``, ``combo_seen0``, ``combo_seen1`` or ``combo_seen2``; ``None`` for
            a condition with no subgroup.
        """
        for part in ("test", "val"):
            for group, members in self.subgroups.get(part, {}).items():
                if condition in members:
                    return group
        return None

    def part_of(self, condition: str) -> str | None:
        """The part of the split that holds ``condition``.

        Parameters
        ----------
        condition
            A canonical condition.

        Returns
        -------
        str or None
            ``train``, ``val`` or ``test``; ``None`` when in none.
        """
        for part in ("train", "val", "test"):
            if condition in getattr(self, part):
                return part
        return None

    def restrict(self, conditions: Iterable[str]) -> "Split":
        """Keep only the given conditions (a published split applied to a data slice).

        Raises
        ------
        SplitError
            A condition of the data is in no list of the split.

        Parameters
        ----------
        conditions
            The data's conditions.

        Returns
        -------
        Split
            Every list cut to ``conditions``.
        """
        present = set(conditions)
        listed = set(self.train) | set(self.val) | set(self.test)
        missing = sorted(present - listed - {keys.CTRL})
        if missing:
            raise SplitError(
                f"{len(missing)} condition(s) of the data are not in split {self.name!r} "
                f"(e.g. {', '.join(missing[:5])}); use a split made for this data "
                "(--split simulation or --split grape)"
            )
        keep = lambda xs: tuple(c for c in xs if c in present)  # noqa: E731
        subgroups = {
            part: {g: [c for c in v if c in present] for g, v in d.items()}
            for part, d in self.subgroups.items()
        }
        return Split(self.name, self.seed, keep(self.train), keep(self.val), keep(self.test),
                     subgroups, {**self.params, "restricted_to": len(present - {keys.CTRL})})


# ----------------------------------------------------------------------------------------
# GEARS "simulation"
# ----------------------------------------------------------------------------------------
def _is_single(p: str) -> bool:
    return len(genes_of(p)) == 1


def _perturbed_genes(perts: Iterable[str]) -> np.ndarray:
    return np.unique([g for p in np.unique(list(perts)) for g in genes_of(p)]) if perts else np.array([], dtype=str)


def _perts_from_genes(genes: np.ndarray, perts: Sequence[str], kind: str) -> list[str]:
    wanted = set(genes.tolist())
    pool = [p for p in perts if (len(genes_of(p)) == 1) == (kind == "single")]
    return [p for p in pool if any(g in wanted for g in genes_of(p))]


def _n_seen(pert: str, train_genes: np.ndarray) -> int:
    seen = set(train_genes.tolist())
    return sum(g in seen for g in genes_of(pert))


def _subgroups(perts: Sequence[str], train_genes: np.ndarray) -> dict[str, list[str]]:
    """GEARS subgroups: a held-out single is ``unseen_single``; a pair is ``combo_seen{k}``
    with ``k`` its genes among the training genes."""
    out: dict[str, list[str]] = {g: [] for g in keys.SUBGROUPS}
    for p in perts:
        if p == keys.CTRL:
            continue
        group = "unseen_single" if _is_single(p) else f"combo_seen{_n_seen(p, train_genes)}"
        out[group].append(p)
    return out


def _gears_simulation(
    perts: Sequence[str], train_gene_set_size: float, combo_seen2_train_frac: float, seed: int
) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """GEARS ``DataSplitter.get_simulation_split``, same random draws."""
    unique_genes = _perturbed_genes(perts)
    rng = np.random.RandomState(seed)
    train_genes = rng.choice(unique_genes, int(len(unique_genes) * train_gene_set_size), replace=False)
    ood_genes = np.setdiff1d(unique_genes, train_genes)

    single_train = _perts_from_genes(train_genes, perts, "single")
    combos = _perts_from_genes(train_genes, perts, "combo")
    seen1 = [p for p in combos if _n_seen(p, train_genes) == 1]
    rest = np.setdiff1d(combos, seen1)
    rng = np.random.RandomState(seed)
    combo_train = rng.choice(rest, int(len(rest) * combo_seen2_train_frac), replace=False) if len(rest) else np.array([], dtype=str)
    seen2 = np.setdiff1d(rest, combo_train).tolist()
    unseen_single = _perts_from_genes(ood_genes, perts, "single")
    seen0 = [p for p in _perts_from_genes(ood_genes, perts, "combo") if _n_seen(p, train_genes) == 0]

    train = single_train + [str(p) for p in combo_train]
    test = seen1 + seen2 + unseen_single + seen0
    groups = {"combo_seen0": seen0, "combo_seen1": seen1, "combo_seen2": seen2,
              "unseen_single": unseen_single}
    return train, test, groups


def simulation_split(
    conditions: Iterable[str],
    *,
    seed: int = 1,
    train_gene_set_size: float = 0.75,
    combo_seen2_train_frac: float = 0.75,
) -> Split:
    """GEARS' ``simulation`` split.

    A fraction ``train_gene_set_size`` of the perturbed genes is drawn as training genes;
    singles of the other genes are test (``unseen_single``), pairs with one unseen gene are
    test (``combo_seen1``), pairs of two unseen genes are test (``combo_seen0``) and a
    fraction ``1 - combo_seen2_train_frac`` of pairs of two training genes is test
    (``combo_seen2``). Validation is carved from training the same way (0.9, 0.9).

    Parameters
    ----------
    conditions
        Canonical conditions (``A+ctrl``, ``A+B``; ``ctrl`` is ignored, then added to train).

    Returns
    -------
    Split
        ``train``, ``val``, ``test`` and each held-out condition's subgroup.
    """
    conditions = [canonical(c, trusted=True) for c in conditions]
    perts = sorted(set(c for c in conditions if c != keys.CTRL))
    if not perts:
        raise SplitError("no perturbation conditions to split")
    train, test, test_groups = _gears_simulation(perts, train_gene_set_size, combo_seen2_train_frac, seed)
    train, val, val_groups = _gears_simulation(train, 0.9, 0.9, seed)
    if keys.CTRL in conditions:
        train.append(keys.CTRL)
    return Split(
        name="simulation",
        seed=seed,
        train=tuple(sorted(train)),
        val=tuple(sorted(val)),
        test=tuple(sorted(test)),
        subgroups={"test": _sorted(test_groups), "val": _sorted(val_groups)},
        params={"train_gene_set_size": train_gene_set_size,
                "combo_seen2_train_frac": combo_seen2_train_frac},
    )


def grape_split(
    conditions: Iterable[str], *, seed: int = 1, test_fraction: float = 0.25, val_fraction: float = 0.1
) -> Split:
    """The paper's split: a seeded random ``test_fraction`` of the single perturbations is
    test; pairs, when present, are split the same way on their own; validation is a
    ``val_fraction`` of what remains.

    Parameters
    ----------
    conditions
        Canonical conditions (``A+ctrl``, ``A+B``; ``ctrl`` goes to train).
    seed
        The draw's seed.
    test_fraction, val_fraction
        Shares held out for test, then for validation.

    Returns
    -------
    Split
    """
    conditions = [canonical(c, trusted=True) for c in conditions]
    perts = sorted(set(c for c in conditions if c != keys.CTRL))
    if not perts:
        raise SplitError("no perturbation conditions to split")
    train: list[str] = []
    val: list[str] = []
    test: list[str] = []
    for offset, pool in enumerate(([p for p in perts if _is_single(p)], [p for p in perts if not _is_single(p)])):
        if not pool:
            continue
        order = np.random.RandomState(seed + offset).permutation(len(pool))
        shuffled = [pool[i] for i in order]
        n_test = max(1, int(np.floor(len(pool) * test_fraction + 0.5))) if len(pool) > 1 else 0
        rest = shuffled[n_test:]
        n_val = int(np.floor(len(rest) * val_fraction + 0.5)) if len(rest) > 2 else 0
        test += shuffled[:n_test]
        val += rest[:n_val]
        train += rest[n_val:]
    train_genes = _perturbed_genes([p for p in train if _is_single(p)])
    if keys.CTRL in conditions:
        train.append(keys.CTRL)
    return Split(
        name="grape",
        seed=seed,
        train=tuple(sorted(train)),
        val=tuple(sorted(val)),
        test=tuple(sorted(test)),
        subgroups={"test": _subgroups(sorted(test), train_genes), "val": _subgroups(sorted(val), train_genes)},
        params={"test_fraction": test_fraction, "val_fraction": val_fraction},
    )


def _sorted(groups: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: sorted(v) for k, v in groups.items()}


def make_split(conditions: Iterable[str], config: SplitConfig | None = None) -> Split:
    """A split of ``conditions``: GEARS' simulation split (default) or the paper's 75/25.

    Parameters
    ----------
    conditions
        Canonical conditions (``A+ctrl``, ``A+B``).
    config
        ``config.name`` chooses :func:`simulation_split` or :func:`grape_split`, with its seed
        and fractions (default: :class:`~grape_core.config.SplitConfig` ()).

    Returns
    -------
    Split
    """
    config = config or SplitConfig()
    if config.name == "simulation":
        return simulation_split(conditions, seed=config.seed,
                                train_gene_set_size=config.train_gene_set_size,
                                combo_seen2_train_frac=config.combo_seen2_train_frac)
    if config.name == "grape":
        return grape_split(conditions, seed=config.seed, test_fraction=config.test_fraction,
                           val_fraction=config.val_fraction)
    raise SplitError(f"unknown split {config.name!r}; choose 'simulation' or 'grape'")


def _read(path: Path, what: str, fix: str) -> str:
    """A text file the user gives (:func:`grape_core.io.read_text_file`: a FIFO, a device,
    a binary file or a huge file is one line), as a :class:`SplitError`."""
    from ..errors import GrapeError
    from ..io import read_text_file

    try:
        return read_text_file(path, what=what, fix=fix)
    except GrapeError as exc:
        raise SplitError(str(exc)) from exc


def read_conditions(path: str | Path) -> list[str]:
    """Conditions from a file: one per line, or a JSON list (or a GEARS split dict)."""
    path = Path(path)
    text = _read(path, "conditions file", "give one condition per line, or a JSON list")
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise SplitError(f"{path} starts like JSON but cannot be parsed ({exc})") from exc
        if isinstance(data, dict):
            data = [c for k in ("train", "val", "test") for c in (data.get(k) or [])
                    if isinstance(data.get(k), list)]
        if not isinstance(data, list) or not all(isinstance(c, str) for c in data):
            raise SplitError(f"{path} must hold a JSON list of conditions (strings) or a GEARS "
                             "split object")
        return data
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
