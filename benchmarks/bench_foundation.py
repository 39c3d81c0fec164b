"""Scale benchmark of the foundation layer on SYNTHETIC (generated) data of full Adamson size.

Generates an AnnData shaped like the GEARS Adamson file (68,603 cells x 5,060 genes, CSR,
log-normalised values, 87 conditions incl. ``ctrl`` with 24,263 control cells), writes it to
a temporary ``.h5ad`` and times what ``python -m grape_core benchmark`` does with it:

    read_perturbseq -> pseudobulk (means + DE by Welch t) -> simulation split ->
    fit + predict of every baseline -> benchmark

The data are random numbers, not Adamson's measurements: only the timings and the memory
figures mean anything. The file is generated in a child process, so the peak RSS reported is
that of the timed pipeline alone. Targets (issue): < 30 s and < 4 GB peak on 2 cores.

Usage::

    python benchmarks/bench_foundation.py            # prints a table, writes results JSON
    python benchmarks/bench_foundation.py --keep DIR # also keep the generated .h5ad in DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_LABEL = "synthetic (generated) data"
DEFAULTS = {"cells": 68_603, "genes": 5_060, "conditions": 87, "control_cells": 24_263,
            "density": 0.07, "seed": 0, "pairs": 0}
TARGET_SECONDS = 30.0
TARGET_PEAK_GB = 4.0


# ----------------------------------------------------------------------------------------
# synthetic data
# ----------------------------------------------------------------------------------------
def generate(path: Path, *, cells: int, genes: int, conditions: int, control_cells: int,
             density: float, seed: int, pairs: int = 0) -> dict:
    """Write a synthetic Perturb-seq screen in the GEARS layout; return its figures.

    ``conditions`` counts ``ctrl`` and the singles; ``pairs`` adds ``A+B`` conditions of
    the perturbed genes, whose effect is the sum of the two singles' effects.
    """
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    symbols = np.array([f"SYN{i:04d}" for i in range(genes)])
    n_singles = conditions - 1
    perturbed = symbols[:n_singles]  # every perturbed gene is measured, as in Adamson
    pair_genes: list[tuple[int, int]] = []
    while len(pair_genes) < min(pairs, n_singles * (n_singles - 1) // 2):
        a, b = sorted(int(i) for i in rng.choice(n_singles, 2, replace=False))
        if (a, b) not in pair_genes:
            pair_genes.append((a, b))
    pairs = len(pair_genes)
    labels = np.array(["ctrl", *[f"{g}+ctrl" for g in perturbed],
                       *[f"{perturbed[a]}+{perturbed[b]}" for a, b in pair_genes]])
    n_perts = n_singles + pairs
    per_pert = np.full(n_perts, (cells - control_cells) // n_perts)
    per_pert[: (cells - control_cells) - per_pert.sum()] += 1
    codes = rng.permutation(np.repeat(np.arange(1 + n_perts), [control_cells, *per_pert]))

    # gene detection rate (mean ~density) and expression level; per condition: a shared
    # "stress" response on 200 genes, a specific response on 40 genes, the knocked-down gene
    detect = rng.beta(0.6, 0.6 * (1 - density) / density, genes).astype(np.float32)
    level = rng.lognormal(0.5, 0.6, genes).astype(np.float32)
    effect = np.zeros((1 + n_perts, genes), dtype=np.float32)
    shared = rng.choice(genes, 200, replace=False)
    effect[1:, shared] = rng.normal(0, 0.3, 200)
    for c in range(1, 1 + n_singles):
        specific = rng.choice(genes, 40, replace=False)
        effect[c, specific] += rng.normal(0, 0.6, 40)
        effect[c, c - 1] = -2.0  # CRISPRi knock-down of its own gene
    for i, (a, b) in enumerate(pair_genes):
        effect[1 + n_singles + i] = effect[1 + a] + effect[1 + b]
    p_detect = np.clip(detect[None, :] * np.exp(0.5 * effect), 0, 1).astype(np.float32)
    mu = (level[None, :] * np.exp(effect)).astype(np.float32)

    chunks = []
    for start in range(0, cells, 4096):
        rows = codes[start:start + 4096]
        mask = rng.random((len(rows), genes), dtype=np.float32) < p_detect[rows]
        r, c = np.nonzero(mask)
        values = np.log1p(mu[rows[r], c] * rng.gamma(2.0, 0.5, len(r)).astype(np.float32))
        indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))])
        chunks.append(sp.csr_matrix((values.astype(np.float32), c.astype(np.int32), indptr),
                                    shape=(len(rows), genes)))
    X = sp.vstack(chunks, format="csr")
    obs = pd.DataFrame({"condition": pd.Categorical(labels[codes]), "cell_type": "K562"},
                       index=[f"cell{i}" for i in range(cells)])
    var = pd.DataFrame({"gene_name": symbols},
                       index=[f"ENSGSYN{i:08d}" for i in range(genes)])
    adata = anndata.AnnData(X=X, obs=obs, var=var,
                            uns={"grape_benchmark": {"data": DATA_LABEL, "seed": seed}})
    adata.write_h5ad(path)
    return {"cells": cells, "genes": genes, "conditions": conditions, "pairs": pairs,
            "control_cells": control_cells, "nnz": int(X.nnz),
            "density": float(X.nnz / (cells * genes)), "max_value": float(X.data.max()),
            "file_bytes": path.stat().st_size}


# ----------------------------------------------------------------------------------------
# timed pipeline
# ----------------------------------------------------------------------------------------
def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:  # pragma: no cover - psutil is in requirements.txt
        return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_pipeline(path: Path) -> tuple[list[dict], dict]:
    from grape_core.evaluation.baselines import fit_baselines
    from grape_core.data import pseudobulk, read_perturbseq
    from grape_core.evaluation.benchmark import benchmark
    from grape_core.data.splits import simulation_split

    steps: list[dict] = []
    state: dict = {}

    def step(name, fn):
        t0 = time.perf_counter()
        result = fn()
        steps.append({"step": name, "seconds": time.perf_counter() - t0,
                      "rss_mb": _rss_mb(), "peak_rss_mb": _peak_mb()})
        return result

    adata = step("read_perturbseq (incl. checks, sha256)", lambda: read_perturbseq(path))
    pb = step("pseudobulk (means + DE20 by Welch t)", lambda: pseudobulk(adata))
    split = step("simulation split (seed 1, 0.75)", lambda: simulation_split(pb.conditions, seed=1))

    def baselines():
        models = fit_baselines(pb, split.train)
        test = [c for c in split.test if c in pb]
        return {name: model.predict(test) for name, model in models.items()}

    preds = step("fit + predict all baselines", baselines)
    report = step("benchmark (refit + GEARS metrics)", lambda: benchmark(pb, split))
    state.update(
        n_test=len(report.test_conditions), models=sorted(preds),
        headline={name: {m: round(v, 4) for m, v in summary.items()
                         if m in ("mse", "pearson_delta", "n_conditions")}
                  for name, summary in report.models.items()},
        de_source=pb.de_source, n_conditions=len(pb.conditions),
    )
    return steps, state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "foundation.json"),
                        help="results JSON (default: benchmarks/results/foundation.json)")
    parser.add_argument("--keep", help="write the generated .h5ad into this folder and keep it")
    parser.add_argument("--generate-only", help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    params = {key: getattr(args, key) for key in DEFAULTS}

    if args.generate_only:
        info = generate(Path(args.generate_only), **params)
        print(json.dumps(info, allow_nan=False))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "synthetic_adamson_size.h5ad"
        t0 = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--generate-only", str(path),
             *[f"--{k.replace('_', '-')}={v}" for k, v in params.items()]],
            check=True, capture_output=True, text=True,
        )
        gen_seconds = time.perf_counter() - t0
        data = json.loads(child.stdout.strip().splitlines()[-1])
        load_before = os.getloadavg()[0]  # other work on the machine skews the timings
        steps, state = run_pipeline(path)

    total = sum(s["seconds"] for s in steps)
    peak_gb = _peak_mb() / 1024
    print(f"GRAPE foundation benchmark on {DATA_LABEL}")
    with_pairs = f" + {data['pairs']} pairs" if data["pairs"] else ""
    print(f"  {data['cells']:,} cells x {data['genes']:,} genes, {data['conditions']} conditions"
          f"{with_pairs} "
          f"({data['control_cells']:,} control cells), CSR {100 * data['density']:.1f}% non-zero, "
          f"file {data['file_bytes'] / 2**20:.0f} MiB "
          f"(generated in {gen_seconds:.1f} s, not timed)")
    print(f"  {os.cpu_count()} CPU cores (load average {load_before:.1f} before the timed steps), "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print()
    print(f"  {'step':<42} {'seconds':>8} {'RSS MiB':>9} {'peak MiB':>9}")
    for s in steps:
        print(f"  {s['step']:<42} {s['seconds']:>8.2f} {s['rss_mb']:>9.0f} "
              f"{s['peak_rss_mb']:>9.0f}")
    print(f"  {'total':<42} {total:>8.2f} {'':>9} {_peak_mb():>9.0f}")
    print()
    ok_time, ok_mem = total < TARGET_SECONDS, peak_gb < TARGET_PEAK_GB
    print(f"  target < {TARGET_SECONDS:.0f} s: {'met' if ok_time else 'MISSED'} ({total:.1f} s); "
          f"target < {TARGET_PEAK_GB:.0f} GB peak: {'met' if ok_mem else 'MISSED'} "
          f"({peak_gb:.2f} GB)")
    print(f"  {state['n_test']} held-out conditions; baselines: {', '.join(state['models'])}; "
          f"DE genes {state['de_source']}")

    results = {
        "benchmark": "foundation",
        "data": DATA_LABEL,
        "note": "random numbers shaped like the GEARS Adamson file; only timings and memory "
                "are meaningful, the metric values are not",
        "dataset": data,
        "generation_seconds": round(gen_seconds, 2),
        "steps": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}
                  for s in steps],
        "total_seconds": round(total, 2),
        "peak_rss_gb": round(peak_gb, 3),
        "targets": {"seconds": TARGET_SECONDS, "peak_rss_gb": TARGET_PEAK_GB,
                    "seconds_met": ok_time, "memory_met": ok_mem},
        "held_out_conditions": state["n_test"],
        "synthetic_metrics": state["headline"],
        "machine": {"cpu_count": os.cpu_count(), "load_average_1min": round(load_before, 2),
                    "python": platform.python_version(),
                    "numpy": np.__version__, "platform": platform.platform()},
    }
    from grape_core.io import write_json

    write_json(args.out, results)
    print(f"  wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
