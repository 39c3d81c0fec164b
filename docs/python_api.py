"""GRAPE Explorer from Python, the scverse way: AnnData in, AnnData out.

Run it on any Perturb-seq screen (log-normalised ``.h5ad``)::

    python docs/python_api.py SCREEN.h5ad --out models/my-screen
    python docs/python_api.py SCREEN.h5ad --quick          # a small model, in a minute

What it shows, step by step:

1. a screen in pertpy's layout: ``obs['perturbation']`` holds ``KLF1``, ``KLF1+MAP2K6`` or
   ``control`` (a GEARS file, ``obs['condition']`` = ``KLF1+ctrl``, is put in that layout
   here; ``gc.fit`` reads either);
2. ``gc.fit(adata)`` trains an ensemble on GEARS' simulation split and evaluates it on the
   held-out perturbations;
3. ``model.predict([...])`` returns AnnData: one row per perturbation and a ``control`` row,
   ready for scanpy, pertpy or cell-eval;
4. ``model.evaluate(adata)``: GEARS' and cell-eval's metrics, the data's own replicate (half
   of each held-out perturbation's cells against the other half) and each model scaled
   between the mean response (0) and that replicate (1);
5. ``model.save(folder)`` and ``gc.load(folder)``: the app opens the same folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import anndata
import numpy as np

ROOT = Path(__file__).resolve().parent.parent  # run from a clone: the package beside docs/
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import grape_core as gc  # noqa: E402
from grape_core.data.conditions import perturbation_label  # noqa: E402


def pertpy_layout(adata: anndata.AnnData) -> anndata.AnnData:
    """``obs['perturbation']`` with ``control``, as pertpy names it (from GEARS' labels)."""
    if "perturbation" in adata.obs:
        return adata
    adata = adata.copy()
    labels = adata.obs["condition"].astype(str)
    adata.obs["perturbation"] = [perturbation_label(gc.canonical(c)) for c in labels]
    adata.obs = adata.obs.drop(columns=["condition"])
    if "gene_name" in adata.var:  # gene symbols as the index, as scanpy shows them
        adata.var_names = adata.var["gene_name"].astype(str).to_numpy()
    return adata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("screen", help="a Perturb-seq .h5ad (log-normalised)")
    parser.add_argument("--out", help="model folder to write (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="a small ensemble, few steps")
    args = parser.parse_args(argv)

    # 1. the screen, as scverse tools hold it
    adata = pertpy_layout(anndata.read_h5ad(args.screen))
    counts = adata.obs["perturbation"].value_counts()
    print(f"{adata.n_obs} cells x {adata.n_vars} genes; {counts.get('control', 0)} control "
          f"cells; {len(counts) - 1} perturbations")

    # 2. train and evaluate (seeded: the same model every run)
    settings = {"ensemble": 1, "max_steps": 40} if args.quick else {}
    model = gc.fit(adata, seed=1, progress=False, **settings)
    held_out = model.bundle.manifest.metrics.test
    print(f"held out: {held_out['grape']['n_conditions']} perturbations; pearson_delta GRAPE "
          f"{held_out['grape']['pearson_delta']:.3f}, train mean "
          f"{held_out['train_mean']['pearson_delta']:.3f}, replicate "
          f"{held_out['replicate']['pearson_delta']:.3f}")

    # 3. predictions as AnnData
    singles = [g for g in model.bundle.trained_genes][:2]
    wanted = [*singles, "+".join(singles)] if len(singles) == 2 else singles
    predicted = model.predict(wanted)
    print(predicted)
    shift = predicted.layers["shift"][predicted.obs["perturbation"] != "control"]
    top = predicted.var_names[np.argsort(-np.abs(shift).max(axis=0))[:5]]
    print("genes that move most:", ", ".join(top))

    # 4. GEARS' and cell-eval's metrics, the replicate, the scaled score
    report = model.evaluate(adata)
    ce = report.to_dict()["cell_eval"]["models"]
    print(f"cell-eval on GRAPE: pearson_delta {ce['grape']['pearson_delta']:.3f}, "
          f"discrimination_score_l1 {ce['grape']['discrimination_score_l1']:.3f}, "
          f"overlap_at_N {ce['grape']['overlap_at_N']:.3f}")
    scaled = report.scaled()["grape"]
    value = scaled.overall["pearson_delta"]
    print("pearson_delta between the mean response (0) and the replicate (1): "
          + (f"{value:.2f}" if np.isfinite(value) else scaled.reasons["pearson_delta"]))

    # 5. a model folder the app and the command line open
    folder = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="grape-")) / "model"
    model.save(folder, overwrite=bool(args.out))
    again = gc.load(folder)
    same = np.allclose(again.predict(wanted).X, predicted.X, atol=1e-6)
    print(f"saved to {folder}; loaded again, the same predictions: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
