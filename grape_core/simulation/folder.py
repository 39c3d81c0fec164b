"""A planted screen and its truth (:class:`PlantedScreen`), its folder on disk and its summary."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import GrapeError
from .._version import __version__
from ..io import FolderKind, json_marker, write_folder
from .config import ADDITIVE, SimulationConfig

log = logging.getLogger(__name__)

FORMAT = "grape-planted-screen"
FORMAT_VERSION = 1
FILES = ("screen.h5ad", "true_edges.csv", "prior_informative.csv", "prior_random.csv",
         "genes.csv", "interactions.csv", "truth.safetensors")
"""Files of a screen folder besides ``simulation.json`` (which holds their SHA-256)."""
SCREEN_FOLDER = FolderKind(name="planted-screen folder", marker="simulation.json",
                           entries=frozenset({*FILES, "simulation.json"}),
                           is_ours=json_marker("format", FORMAT))
"""What ``--overwrite`` may replace: a previous screen holding nothing else, or an empty
folder (:func:`grape_core.io.check_output_folder`)."""



@dataclass(frozen=True)
class PlantedScreen:
    """A simulated screen and its truth (read-only).

    Attributes
    ----------
    config
        The settings that made it.
    adata
        AnnData ``(n_cells, n_genes)`` in the GEARS layout: ``X`` float32 (CSR when more than
        half the values are 0), ``obs['condition']`` (``ctrl``, ``A+ctrl``, ``A+B``),
        ``obs['cell_type']``, ``var['gene_name']`` (index = symbols).
    genes
        ``(n_genes, 9)``: gene, biotype (``protein_coding`` / ``lncRNA``), is_coding,
        has_go, regulator, perturbed, efficiency (NaN when not perturbed), control_mean,
        shared_response (r).
    edges
        True network ``(n_edges, 4)``: source, target, weight (= ``W[target, source]``),
        relation (see :data:`RELATIONS`).
    W
        CSR ``(n_genes, n_genes)`` float64, ``W[target, source]``, rows and columns in gene
        order.
    priors
        ``{"informative": ..., "random": ...}``, each ``(n_prior_edges, 3)``: source, target,
        weight (1.0).
    interactions
        One row per pair ``(n_pairs, 6)``: pair, type (``additive`` or one of
        :data:`INTERACTION_TYPES`), strength (NaN for additive), dominant (epistasis: the
        gene whose effect wins), genes and signs (neomorphic: the extra genes and the sign
        of their change, ``;``-joined).
    conditions
        Perturbed conditions, ``(n_conditions,)``: singles then pairs, row order of the truth.
    shifts
        Noiseless mean shift from control per condition, ``(n_conditions, n_genes)`` float32.
    network_shifts
        The same without the shared response, ``(n_conditions, n_genes)`` float32.
    shared_scale
        a_P per condition, ``(n_conditions,)``.
    summary
        Counts written to ``simulation.json`` (by relation, interaction, prior...).
    """

    config: SimulationConfig
    adata: Any
    genes: pd.DataFrame
    edges: pd.DataFrame
    W: sp.csr_matrix
    priors: dict[str, pd.DataFrame]
    interactions: pd.DataFrame
    conditions: tuple[str, ...]
    shifts: np.ndarray
    network_shifts: np.ndarray
    shared_scale: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: str | Path, *, overwrite: bool = False) -> dict[str, str]:
        """Write the screen folder atomically (a temporary folder renamed into place).

        Parameters
        ----------
        folder
            Output folder; it must not exist unless ``overwrite`` (then it must be empty or
            hold a previous screen, i.e. a ``simulation.json``).
        overwrite
            Replace an existing screen folder.

        Returns
        -------
        ``{file name: SHA-256}`` of every file written (also in ``simulation.json``).

        Raises
        ------
        GrapeError
            The folder exists (without ``overwrite``), or is not a screen folder.
        """
        X = self.adata.X
        needed = int(getattr(X, "nbytes", 0) or getattr(getattr(X, "data", None), "nbytes", 0)
                     or 0) + 2 * int(self.shifts.nbytes)

        def manifest(digests: dict[str, str]) -> dict[str, Any]:
            return {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "grape_core_version": __version__,
                "seed": self.config.seed,
                "config": self.config.to_dict(),
                "summary": self.summary,
                "files": {name: digests[name] for name in FILES},
            }

        digests = write_folder(folder, kind=SCREEN_FOLDER, write=self._write_files,
                               manifest=manifest, overwrite=overwrite, needed=needed,
                               what="the screen folder", hint="choose another output folder")
        log.info("wrote planted screen %s", folder)
        return {name: digests[name] for name in FILES}

    def _write_files(self, root: Path) -> None:
        from safetensors.numpy import save_file

        self.adata.write_h5ad(root / "screen.h5ad")
        for name, frame in (("true_edges.csv", self.edges),
                            ("prior_informative.csv", self.priors["informative"]),
                            ("prior_random.csv", self.priors["random"]),
                            ("genes.csv", self.genes),
                            ("interactions.csv", self.interactions)):
            frame.to_csv(root / name, index=False, lineterminator="\n")
        genes = self.genes
        save_file(
            {
                "shifts": np.ascontiguousarray(self.shifts, dtype=np.float32),
                "network_shifts": np.ascontiguousarray(self.network_shifts, dtype=np.float32),
                "shared_response": genes["shared_response"].to_numpy(np.float32),
                "shared_scale": np.ascontiguousarray(self.shared_scale, dtype=np.float32),
                "control_mean": genes["control_mean"].to_numpy(np.float32),
            },
            str(root / "truth.safetensors"),
            # one metadata key: safetensors writes several keys in a random order, and the
            # file's bytes (and SHA-256) must not depend on the process
            metadata={"index": json.dumps({"format": FORMAT, "genes": genes["gene"].tolist(),
                                           "conditions": list(self.conditions)},
                                          allow_nan=False)},
        )


def read_truth(folder: str | Path) -> dict[str, Any]:
    """The arrays of ``truth.safetensors`` plus its gene and condition lists.

    Returns
    -------
    dict with ``shifts`` and ``network_shifts`` ``(n_conditions, n_genes)``,
    ``shared_response`` and ``control_mean`` ``(n_genes,)``, ``shared_scale``
    ``(n_conditions,)`` (float32), ``genes`` and ``conditions`` (lists).
    """
    from safetensors import safe_open

    path = Path(folder) / "truth.safetensors"
    if not path.is_file():
        raise GrapeError(f"{path} not found; give a folder written by 'simulate'")
    with safe_open(str(path), framework="numpy") as fh:
        out: dict[str, Any] = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fh.metadata() or {}
    index = json.loads(meta.get("index", "{}"))
    out["genes"] = list(index.get("genes", []))
    out["conditions"] = list(index.get("conditions", []))
    return out


def _cell_words(config: SimulationConfig) -> str:
    """How the cells were drawn, in a few words."""
    if config.simulator == "harissa":
        return "harissa's bursting model, UMI counts"
    words = ["UMI counts" + (f", negative binomial theta {config.dispersion:g}" if config.dispersion
                             else ", Poisson") if config.cell_model == "counts"
             else "Gaussian noise"]
    if config.guides_per_gene > 1:
        words.append(f"{config.guides_per_gene} guides per gene")
    if config.escape_fraction:
        words.append(f"{100 * config.escape_fraction:.0f} % escape")
    return ", ".join(words)


def format_summary(screen: PlantedScreen) -> str:
    """A few lines describing a screen (what ``python -m grape_core simulate`` prints)."""
    s = screen.summary
    g, net, c, pr = s["genes"], s["network"], s["conditions"], s["priors"]
    rel = ", ".join(f"{name.replace('coding', 'c').replace('non', 'n')} {v['edges']}"
                    for name, v in net["relations"].items())
    inter = ", ".join(f"{k} {v}" for k, v in c["interactions"].items() if v and k != ADDITIVE)
    lines = [
        f"genes        {g['total']:,} ({g['coding']:,} protein-coding, {g['noncoding']:,} lncRNA; "
        f"{g['with_go']:,} with GO)",
        f"network      {net['edges']:,} edges from {g['regulators']:,} regulators "
        f"({100 * (net['activating_fraction'] or 0):.0f}% activating; {rel}); spectral "
        f"radius {net['spectral_radius']:.2f}",
        f"GO bias      {100 * net['go_shared_fraction_edges']:.1f}% of edges share a GO term "
        f"(background {100 * net['go_shared_fraction_background']:.1f}%)",
        f"conditions   {c['singles']} singles ({g['perturbed_regulators']} regulators), "
        f"{c['pairs']} pairs ({inter or 'no planted interactions'}); "
        f"{screen.config.mode}, "
        f"{'harissa' if screen.config.simulator == 'harissa' else screen.config.propagation}",
        f"cells        {s['cells']['total']:,} ({s['cells']['control']} control, "
        f"{s['cells']['per_condition']} per condition; {_cell_words(screen.config)})",
        f"priors       informative {pr['informative']['edges']:,} edges "
        f"({pr['informative']['true']:,} true), random {pr['random']['edges']:,} (0 true)"
        + (f"; signed, {pr['informative']['wrong_signs']:,} true edges with the wrong sign"
           if "wrong_signs" in pr["informative"] else ""),
    ]
    return "\n".join(lines)
