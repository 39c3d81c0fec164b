"""Every tensor of a model folder checked against what the manifest and the model class say
it must be (:class:`TensorChecker`), and the members rebuilt from the manifest alone
(:func:`fresh_member`), older formats' completed (:func:`legacy_state`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data.pseudobulk import PseudoBulk
from ..errors import BundleError
from ..typed import shown
from .manifest import Manifest
from .schema import FILES, GRAPH_KEYS, OPTIONAL_FILES

if TYPE_CHECKING:  # torch and the model are imported where used
    from ..nn.grape import GRAPE, GraphInputs


def load_torch(file: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(file))


class TensorChecker:
    """Every tensor of a model folder against what the manifest and the model class say it
    must be; one :class:`BundleError` line naming the file, the tensor, the expected and the
    found shape (or range)."""

    FIX = "restore the model folder or retrain it"

    def __init__(self, model: str) -> None:
        self.model = model

    def fail(self, text: str) -> None:
        raise BundleError(f"model {self.model!r}: {text}; {self.FIX}")

    @staticmethod
    def dtype_name(dtype: Any) -> str:
        text = str(dtype)
        return text.removeprefix("torch.") if text.startswith("torch.") else str(np.dtype(dtype))

    def describe(self, shape: tuple, dtype: Any) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in shape)
        return f"({dims}{',' if len(shape) == 1 else ''}) {self.dtype_name(dtype)}"

    def tensors(self, file: str, found: dict[str, Any], expected: dict[str, tuple[tuple, Any]],
                *, prefix: str = "") -> None:
        """Shapes (``None``: any size) and dtypes; floating tensors must be finite."""
        for name, (shape, dtype) in expected.items():
            if name not in found:
                self.fail(f"{file} has no tensor {prefix + name!r}")
            t = found[name]
            got_shape = tuple(t.shape)
            fits = len(got_shape) == len(shape) and all(
                e is None or e == g for e, g in zip(shape, got_shape))
            if not fits or self.dtype_name(t.dtype) != self.dtype_name(dtype):
                found_as = self.describe(got_shape, t.dtype)
                self.fail(f"{file}: tensor {prefix + name!r} is {found_as}; the manifest says "
                          f"{self.describe(shape, dtype)}")
            if _is_float(t) and not bool(_finite(t)):
                self.fail(f"{file}: tensor {prefix + name!r} holds non-finite values (NaN or "
                          "infinite)")

    def indices(self, file: str, values: Any, name: str, bound: int, *, low: int = 0,
                prefix: str = "") -> None:
        """Integer values in ``low .. bound - 1``."""
        if (values.size if isinstance(values, np.ndarray) else values.numel()) == 0:
            return
        lo, hi = int(values.min()), int(values.max())
        if lo < low or hi >= bound:
            bad = lo if lo < low else hi
            self.fail(f"{file}: tensor {prefix + name!r} holds index {bad}, outside "
                      f"{low}..{bound - 1}")

    # -------------------------------------------------------------- tables
    def edges(self, frame: pd.DataFrame, file: str, genes: set[str], *,
              extra: dict[str, str] | None = None) -> pd.DataFrame:
        """An edge table: ``source``, ``target`` (genes of the model), a finite numeric
        ``weight``, a ``relation`` (and ``extra`` columns of the given kind)."""
        columns = {"source": "gene", "target": "gene", "weight": "number",
                   "relation": "text", **(extra or {})}
        for name, kind in columns.items():
            if name not in frame.columns:
                self.fail(f"{file} has no {name!r} column")
            values = frame[name]
            if kind == "gene":
                unknown = ~values.isin(genes)
                if unknown.any():
                    self.fail(f"{file}: {name} {shown(values[unknown].iloc[0])} (row "
                              f"{int(np.flatnonzero(unknown.to_numpy())[0])}) is not a gene of "
                              "the model")
            elif kind == "number":
                if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
                    self.fail(f"{file}: column {name!r} is not numeric ({values.dtype})")
                bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
                if bad.any():
                    self.fail(f"{file}: column {name!r} holds {int(bad.sum())} non-finite "
                              "value(s) (NaN or infinite)")
            elif kind == "bool":
                if not pd.api.types.is_bool_dtype(values):
                    self.fail(f"{file}: column {name!r} is not true/false ({values.dtype})")
            elif not all(isinstance(v, str) for v in values.tolist()):
                self.fail(f"{file}: column {name!r} holds values that are not text")
        return frame

    def numbers(self, frame: pd.DataFrame, file: str) -> pd.DataFrame:
        """A table of results: its numeric columns hold no infinity (NaN: undefined)."""
        for name in frame.columns:
            values = frame[name]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                if np.isinf(values.to_numpy(dtype=np.float64)).any():
                    self.fail(f"{file}: column {name!r} holds an infinite value")
        return frame

    # -------------------------------------------------------------- the three tensor files
    def pseudobulk(self, arrays: dict[str, np.ndarray], manifest: Manifest) -> PseudoBulk:
        meta = manifest.pseudobulk
        n_genes, n_conds = len(meta["genes"]), len(meta["conditions"])
        file = FILES["pseudobulk"]
        de = arrays.get("de_idx")
        self.tensors(file, arrays, {
            "means": ((n_conds, n_genes), np.float32),
            "control_mean": ((n_genes,), np.float32),
            "n_cells": ((n_conds,), np.int64),
            "de_idx": ((n_conds, None), np.int64),
        })
        self.indices(file, de, "de_idx", n_genes)
        return PseudoBulk.from_arrays(arrays, meta)

    def graph(self, tensors: dict[str, Any], manifest: Manifest) -> dict[str, Any]:
        import torch

        assert manifest.genes is not None
        n_nodes, n_measured = manifest.genes.n_nodes, manifest.genes.n_measured
        enc = manifest.encoder_args
        width = {k: enc.get(k) if isinstance(enc.get(k), int) else None
                 for k in ("text_dim", "dna_dim", "out_dim")}
        index = tensors.get("prior_index")
        n_edges = int(index.shape[1]) if index is not None and index.dim() == 2 else None
        expected = {
            "text": ((n_nodes, width["text_dim"]), torch.float32),
            "dna": ((n_nodes, width["dna_dim"]), torch.float32),
            "dna_missing": ((n_nodes,), torch.bool),
            "is_coding": ((n_nodes,), torch.bool),
            "prior_index": ((2, None), torch.int64),
            "prior_weight": ((n_edges,), torch.float32),
            "measured": ((n_measured,), torch.int64),
            "fused": ((n_nodes, width["out_dim"]), torch.float32),
        }
        file = FILES["graph"]
        for key in GRAPH_KEYS:
            if key not in tensors:
                self.fail(f"{file} has no tensor {key!r}")
        self.tensors(file, tensors, expected)
        self.indices(file, tensors["prior_index"], "prior_index", n_nodes)
        measured = tensors["measured"]
        self.indices(file, measured, "measured", n_nodes)
        if torch.unique(measured).numel() != measured.numel():
            self.fail(f"{file}: tensor 'measured' lists a node twice")
        return tensors

    def singles(self, arrays: dict[str, np.ndarray], manifest: Manifest) -> np.ndarray:
        """The stored single predictions: ``(ensemble, n_nodes, n_measured)``, float16 or
        float32, finite."""
        assert manifest.genes is not None
        file = OPTIONAL_FILES["singles"]
        shape = (manifest.ensemble, manifest.genes.n_nodes, manifest.genes.n_measured)
        shift = arrays.get("shift")
        if shift is None:
            self.fail(f"{file} has no tensor 'shift'")
        dtype = np.float16 if shift.dtype == np.float16 else np.float32
        self.tensors(file, arrays, {"shift": (shape, dtype)})
        return shift

    def members(self, weights: dict[str, Any], manifest: Manifest, graph: GraphInputs,
                pb: PseudoBulk) -> list[GRAPE]:
        """One model per ensemble member, each a fresh model built from the manifest (and
        prepared as training prepares it) whose every tensor the stored one must match."""
        file = FILES["weights"]
        n = manifest.ensemble
        if n < 1:
            self.fail(f"the manifest's ensemble is {n}, not a number of members")
        states: dict[int, dict[str, Any]] = {}
        for key, value in weights.items():
            head, dot, rest = key.partition(".")
            number = head.removeprefix("member")
            if not head.startswith("member") or not number.isdigit() or not dot:
                self.fail(f"{file} holds tensor {key!r}, not one of a member (member<i>.<name>)")
            states.setdefault(int(number), {})[rest] = value
        extra = sorted(set(states) - set(range(n)))
        if extra:
            self.fail(f"{file} holds member {extra[0]}, but the manifest's ensemble has {n} "
                      f"member(s)")
        members = []
        for i in range(n):
            model = fresh_member(self, manifest, graph, pb)
            state = states.get(i, {})
            expected = model.state_dict()
            if manifest.format_version < 4:
                state = legacy_state(state, expected, manifest.format_version)
            unknown = sorted(set(state) - set(expected))
            if unknown:
                self.fail(f"{file} holds tensor 'member{i}.{unknown[0]}', which the manifest's "
                          "model does not have")
            self.tensors(file, state, {k: (tuple(v.shape), v.dtype) for k, v in expected.items()},
                         prefix=f"member{i}.")
            for name, bound in model.index_tensors().items():
                self.indices(file, state[name], name, bound, low=-1, prefix=f"member{i}.")
            model.load_state_dict(state, strict=True)
            model.eval()
            members.append(model)
        return members


def legacy_state(state: dict[str, Any], expected: dict[str, Any], version: int) -> dict[str, Any]:
    """An older format's member tensors, with those added since set to what the member
    computed. Format 3 (and 2): the perturbed gene's targets feel its own change
    (``outflow`` 1). Format 2: its own self-effect whatever its sign (``self_known``,
    ``self_scale`` 1), and a pair as the sum of its measured singles plus the predicted
    interaction (``pair_mix`` 1, 1, 1, 0; every measured single holding one single's dose of
    the shared response). Shapes come from the fresh model (``expected``), never from the
    file."""
    import torch

    if "shared_amplitude" not in state:
        return state  # the checks that follow name what is missing
    state = dict(state)
    fill: dict[str, float] = {"outflow": 1.0}
    if version == 2:
        dose = float(torch.as_tensor(state["shared_amplitude"]).reshape(-1)[0])
        fill |= {"self_scale": 1.0, "self_known": True, "known_dose": dose, "pair_fitted": False}
    for name, value in fill.items():
        if name not in state and name in expected:
            state[name] = torch.full_like(expected[name], value)
    if version == 2 and "pair_mix" not in state and "pair_mix" in expected:
        state["pair_mix"] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    return state


def _is_float(t: Any) -> bool:
    return t.is_floating_point() if hasattr(t, "is_floating_point") else \
        np.issubdtype(np.asarray(t).dtype, np.floating)


def _finite(t: Any) -> bool:
    if hasattr(t, "is_floating_point"):
        import torch

        return bool(torch.isfinite(t).all())
    return bool(np.isfinite(t).all())


def fresh_member(check: TensorChecker, manifest: Manifest, graph: GraphInputs, pb: PseudoBulk) -> GRAPE:
    """A new, untrained member built from the manifest's config and sizes: the tensors a
    stored member must match exactly. The sizes must agree with the genes and the graph."""
    from ..nn.grape import GRAPE, ModelSizes

    assert manifest.genes is not None
    try:
        sizes = ModelSizes(**manifest.model_sizes)
    except TypeError as exc:
        check.fail(f"manifest key 'model_sizes' is not a set of model sizes ({exc})")
    expected = {"n_nodes": manifest.genes.n_nodes, "n_measured": manifest.genes.n_measured,
                "n_prior_edges": int(graph.prior_index.shape[1])}
    for key, value in expected.items():
        if getattr(sizes, key) != value:
            check.fail(f"manifest key 'model_sizes.{key}' is {getattr(sizes, key)}, but the model "
                       f"has {value}")
    if not 0 <= sizes.n_known <= len(manifest.training.train_conditions):
        check.fail(f"manifest key 'model_sizes.n_known' is {sizes.n_known}, more than the "
                   "training conditions")
    try:
        return GRAPE(manifest.configs.model_config, sizes, encoder_args=manifest.encoder_args)
    except Exception as exc:  # noqa: BLE001 - a config this version cannot build
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        check.fail(f"the manifest's 'configs.model' and 'encoder_args' do not describe a model "
                   f"this grape_core can build ({reason})")


