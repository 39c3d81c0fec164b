"""Pseudo-bulk and DE of a file larger than memory, streamed in chunks, on GENERATED data.

The file is GENERATED (synthetic, random numbers; no biology): by default 1,000,000 cells x
5,000 genes, sparse CSR with about 12 % non-zero log-normalised values, 1,800 singles
(``GENE+ctrl``) and 200 pairs (``A+B``) plus 50,000 control cells, in the GEARS layout
(``obs['condition']``, ``obs['cell_type']``, ``var['gene_name']``), cells in random order.
Every single knocks its own gene down and moves 30 others; a pair adds its singles' effects.

It is written once, in chunks of cells (anndata's ``write_elem`` for obs, var and the first
chunk, then ``sparse_dataset(...).append`` for the rest), so the whole matrix is never in
memory, and kept in ``--folder`` for the next run (a sidecar JSON records how it was made).
Give a folder outside the repository: the default file takes about 5 GB.

Then, in a fresh Python process (so that the peak RSS is that of the measured steps):

- ``read_perturbseq(path, backed=True)``: obs and var, every check of X streamed over the
  file, the file's SHA-256;
- ``pseudobulk(adata)``: per-condition cell counts, means and variances in one pass over X,
  and the top 20 DE genes per condition by |Welch t| against control.

Printed as a table and written to ``benchmarks/results/streaming.json`` (machine, cells,
genes, seconds, peak_rss_gb). Goal: peak RSS < 3 GB.

    python benchmarks/bench_streaming.py --folder ../grape-streaming      # full size
    python benchmarks/bench_streaming.py --folder ../grape-streaming-small --cells 100000     # smaller
    python benchmarks/bench_streaming.py --folder ../grape-streaming-small --delete           # remove the file after
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA_LABEL = "GENERATED (synthetic) data"
DEFAULTS = {"cells": 1_000_000, "genes": 5_000, "singles": 1_800, "pairs": 200,
            "control_cells": 50_000, "density": 0.12, "seed": 0}
TARGET_PEAK_GB = 3.0


# ----------------------------------------------------------------------------------------
# the generated file
# ----------------------------------------------------------------------------------------
def design(*, cells: int, genes: int, singles: int, pairs: int, control_cells: int,
           density: float, seed: int) -> dict:
    """Conditions, cell labels and per-condition expression of a generated screen."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    if not 0 < density < 1:
        raise ValueError(f"density={density}: must be between 0 and 1")
    if singles > genes or control_cells >= cells:
        raise ValueError("more singles than genes, or no room for perturbed cells")
    symbols = np.array([f"GEN{i:05d}" for i in range(genes)])
    own = rng.choice(genes, singles, replace=False)
    labels = ["ctrl"] + [f"{symbols[g]}+ctrl" for g in own]
    combos: set[tuple[int, int]] = set()
    while len(combos) < pairs:
        a, b = sorted(rng.choice(singles, 2, replace=False).tolist())
        combos.add((a, b))
    combos_list = sorted(combos)
    labels += [f"{symbols[own[a]]}+{symbols[own[b]]}" for a, b in combos_list]
    n_perts = singles + pairs

    counts = np.full(n_perts, (cells - control_cells) // n_perts)
    counts[: (cells - control_cells) % n_perts] += 1
    codes = np.repeat(np.arange(1 + n_perts), np.concatenate([[control_cells], counts]))
    rng.shuffle(codes)  # cells of every condition interleaved, as in a real file

    level = rng.lognormal(0.5, 0.6, genes).astype(np.float32)
    detect = rng.beta(1.2, 1.2 * (1 - density) / density, genes)
    effect = np.zeros((1 + n_perts, genes), dtype=np.float32)
    for i, g in enumerate(own, start=1):
        moved = rng.choice(genes, 30, replace=False)
        effect[i, moved] = rng.normal(0, 0.5, 30)
        effect[i, g] = -2.0  # CRISPRi knock-down of its own gene
    for j, (a, b) in enumerate(combos_list):
        effect[1 + singles + j] = effect[1 + a] + effect[1 + b]
    return {
        "labels": labels, "codes": codes, "symbols": symbols, "own": own,
        "p": np.clip(detect[None, :] * np.exp(0.5 * effect), 0, 1).astype(np.float32),
        "mu": (level[None, :] * np.exp(effect)).astype(np.float32),
        "obs": pd.DataFrame(
            {"condition": pd.Categorical(np.asarray(labels, dtype=object)[codes], categories=labels),
             "cell_type": pd.Categorical(np.full(cells, "K562", dtype=object))},
            index=pd.Index([f"cell{i}" for i in range(cells)])),
        "var": pd.DataFrame({"gene_name": symbols},
                            index=pd.Index([f"ENSGSYN{i:08d}" for i in range(genes)])),
    }


def cell_chunks(plan: dict, *, seed: int, chunk_cells: int = 4096) -> Iterator:
    """CSR blocks of ``chunk_cells`` cells: log1p of the condition's level times noise,
    where a Bernoulli draw with the gene's detection rate says the gene is seen."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed + 1)
    codes, p, mu = plan["codes"], plan["p"], plan["mu"]
    genes = p.shape[1]
    for start in range(0, len(codes), chunk_cells):
        rows = codes[start:start + chunk_cells]
        mask = rng.random((len(rows), genes), dtype=np.float32) < p[rows]
        r, c = np.nonzero(mask)
        noise = np.exp(0.3 * rng.standard_normal(len(r), dtype=np.float32))
        values = np.log1p(mu[rows[r], c] * noise).astype(np.float32)
        indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int64)
        yield sp.csr_matrix((values, c.astype(np.int32), indptr), shape=(len(rows), genes))


def write_h5ad_in_chunks(path: Path, obs, var, chunks, *, uns: dict) -> dict:
    """An ``.h5ad`` whose X (CSR) is written chunk by chunk: anndata's on-disk format
    through its own ``write_elem`` and ``sparse_dataset(...).append``. Returns nnz and the
    largest value."""
    import h5py
    from anndata.io import sparse_dataset, write_elem

    nnz, vmax, n_rows = 0, 0.0, 0
    with h5py.File(path, "w") as fh:
        fh.attrs["encoding-type"] = "anndata"
        fh.attrs["encoding-version"] = "0.1.0"
        write_elem(fh, "obs", obs)
        write_elem(fh, "var", var)
        write_elem(fh, "uns", uns)
        for key in ("layers", "obsm", "obsp", "varm", "varp"):
            write_elem(fh, key, {})
        matrix = None
        for block in chunks:
            if matrix is None:
                write_elem(fh, "X", block, dataset_kwargs={"chunks": (1 << 20,)})
                matrix = sparse_dataset(fh["X"])
            else:
                matrix.append(block)
            nnz += block.nnz
            n_rows += block.shape[0]
            if block.nnz:
                vmax = max(vmax, float(block.data.max()))
    if n_rows != len(obs):
        raise RuntimeError(f"wrote {n_rows} rows for {len(obs)} cells")
    return {"nnz": nnz, "max_value": vmax}


def generate(path: Path, *, cells: int, genes: int, singles: int, pairs: int,
             control_cells: int, density: float, seed: int) -> dict:
    """Write the GENERATED screen to ``path`` (through ``path.part``, renamed when complete)."""
    params = dict(cells=cells, genes=genes, singles=singles, pairs=pairs,
                  control_cells=control_cells, density=density, seed=seed)
    plan = design(**params)
    part = path.with_name(path.name + ".part")
    uns = {"grape_benchmark": {"data": DATA_LABEL, "script": "benchmarks/bench_streaming.py",
                               **{k: str(v) for k, v in params.items()}}}
    written = write_h5ad_in_chunks(part, plan["obs"], plan["var"],
                                   cell_chunks(plan, seed=seed), uns=uns)
    os.replace(part, path)
    return {"data": DATA_LABEL, **params, "conditions": len(plan["labels"]) - 1,
            "nnz": written["nnz"], "density_measured": written["nnz"] / (cells * genes),
            "max_value": written["max_value"], "file_bytes": path.stat().st_size,
            "knocked_down": {lab: str(plan["symbols"][g])
                             for lab, g in zip(plan["labels"][1:singles + 1], plan["own"])}}


def cached_file(folder: Path, params: dict) -> tuple[Path, dict, float | None]:
    """The generated file for ``params`` in ``folder``: reused when its sidecar matches,
    else generated (in a child process, so that generating costs no memory here)."""
    name = f"generated_{params['cells']}x{params['genes']}_seed{params['seed']}"
    path, sidecar = folder / f"{name}.h5ad", folder / f"{name}.json"
    if path.exists() and sidecar.exists():
        info = json.loads(sidecar.read_text())
        if all(info.get(k) == v for k, v in params.items()) and info.get("file_bytes") == path.stat().st_size:
            return path, info, None
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    child = _child("--generate-only", str(path),
                   *[f"--{k.replace('_', '-')}={v}" for k, v in params.items()])
    seconds = time.perf_counter() - t0
    info = json.loads(child.stdout.strip().splitlines()[-1])
    info["generation_seconds"] = round(seconds, 1)
    sidecar.write_text(json.dumps(info, indent=1))
    return path, info, seconds


def _child(*argv: str) -> subprocess.CompletedProcess:
    """This script again in a fresh Python process; its stderr is shown when it fails."""
    child = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if child.returncode:
        sys.stderr.write(child.stderr)
        raise SystemExit(f"{' '.join(argv[:1])} failed (exit {child.returncode})")
    return child


# ----------------------------------------------------------------------------------------
# measured steps (child process)
# ----------------------------------------------------------------------------------------
def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def measure(path: Path) -> dict:
    """Time and peak RSS of the backed read and of the pseudo-bulk, in this process."""
    from grape_core.data import pseudobulk, read_perturbseq
    from grape_core.data.backed import CHUNK_VALUES

    steps = [{"step": "imports", "seconds": 0.0, "peak_rss_gb": _peak_gb()}]
    t0 = time.perf_counter()
    adata = read_perturbseq(path, backed=True)
    steps.append({"step": "read_perturbseq(backed=True): obs, var, checks streamed, sha256",
                  "seconds": time.perf_counter() - t0, "peak_rss_gb": _peak_gb()})
    t0 = time.perf_counter()
    pb = pseudobulk(adata)
    steps.append({"step": "pseudobulk: counts, means, variances, DE20 (Welch t)",
                  "seconds": time.perf_counter() - t0, "peak_rss_gb": _peak_gb()})
    own = {c: c.split("+")[0] for c in pb.conditions if c.endswith("+ctrl")}
    index = {g: i for i, g in enumerate(pb.genes)}
    found = [index[g] in pb.de_idx[pb.index(c)] for c, g in own.items()]
    return {"steps": steps, "cells": int(adata.n_obs), "genes": int(adata.n_vars),
            "conditions": len(pb.conditions), "control_cells": int(pb.n_control),
            "de_source": pb.de_source, "chunk_values": CHUNK_VALUES,
            "own_gene_in_de20": float(np.mean(found)) if found else float("nan")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder",
                        help="(required) where the generated file is written and kept (outside the repository)")
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "streaming.json"),
                        help="results JSON (default: benchmarks/results/streaming.json)")
    parser.add_argument("--delete", action="store_true", help="delete the generated file after")
    parser.add_argument("--generate-only", help=argparse.SUPPRESS)  # child process
    parser.add_argument("--measure-only", help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    params = {key: getattr(args, key) for key in DEFAULTS}

    if args.generate_only:
        print(json.dumps(generate(Path(args.generate_only), **params)))
        return 0
    if args.measure_only:
        print(json.dumps(measure(Path(args.measure_only))))
        return 0

    import psutil

    if not args.folder:
        parser.error("--folder is required")
    folder = Path(args.folder).expanduser()
    if ROOT in folder.resolve().parents or folder.resolve() == ROOT:
        parser.error("--folder must be outside the repository (the file takes several GB)")
    path, data, gen_seconds = cached_file(folder, params)
    load_before = os.getloadavg()[0]
    child = _child("--measure-only", str(path))
    result = json.loads(child.stdout.strip().splitlines()[-1])
    steps = result["steps"]
    read_s, pb_s = steps[1]["seconds"], steps[2]["seconds"]
    peak = max(s["peak_rss_gb"] for s in steps)
    x_gb = data["nnz"] * 8 / 2**30  # float32 values + int32 indices, were X in memory

    print(f"Streaming pseudo-bulk on {DATA_LABEL}")
    print(f"  {result['cells']:,} cells x {result['genes']:,} genes, {result['conditions']:,} "
          f"conditions + control ({result['control_cells']:,} cells), CSR "
          f"{100 * data['density_measured']:.1f}% non-zero; file {data['file_bytes'] / 2**30:.2f} GiB, "
          f"X would take {x_gb:.2f} GiB in memory")
    print(f"  file {'generated in ' + format(gen_seconds, '.0f') + ' s' if gen_seconds else 'reused from ' + str(folder)}"
          " (not timed); it is read right after, mostly from the page cache")
    print(f"  {os.cpu_count()} CPU cores, {psutil.virtual_memory().total / 2**30:.0f} GiB memory, "
          f"load average {load_before:.1f}; Python {platform.python_version()}, numpy {np.__version__}")
    print()
    print(f"  {'step':<66} {'seconds':>8} {'peak RSS GiB':>13}")
    for s in steps:
        print(f"  {s['step']:<66} {s['seconds']:>8.1f} {s['peak_rss_gb']:>13.2f}")
    print()
    met = peak < TARGET_PEAK_GB
    print(f"  pseudo-bulk + DE: {pb_s:.1f} s; with the backed read {read_s + pb_s:.1f} s; "
          f"peak RSS {peak:.2f} GiB: target < {TARGET_PEAK_GB:.0f} GB {'met' if met else 'MISSED'}")
    print(f"  own gene among the DE20 of its single: {100 * result['own_gene_in_de20']:.0f}% "
          f"of singles (planted knock-down; DE genes {result['de_source']})")

    from importlib.metadata import version

    import h5py

    payload = {
        "benchmark": "streaming",
        "data": DATA_LABEL,
        "note": "random numbers in the GEARS layout; only timings and memory are meaningful",
        "cells": result["cells"], "genes": result["genes"],
        "conditions": result["conditions"], "control_cells": result["control_cells"],
        "nnz": data["nnz"], "density": round(data["density_measured"], 4),
        "file_gib": round(data["file_bytes"] / 2**30, 2), "x_in_memory_gib": round(x_gb, 2),
        "seconds": round(pb_s, 2),
        "seconds_read_backed": round(read_s, 2),
        "seconds_total": round(read_s + pb_s, 2),
        "peak_rss_gb": round(peak, 3),
        "steps": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items()}
                  for s in steps],
        "chunk_values": result["chunk_values"],
        "own_gene_in_de20": round(result["own_gene_in_de20"], 4),
        "target_peak_rss_gb": TARGET_PEAK_GB, "target_met": met,
        "generation_seconds": data.get("generation_seconds"),
        "machine": {"cpu_count": os.cpu_count(),
                    "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "load_average_1min": round(load_before, 2),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "anndata": version("anndata"),
                    "h5py": h5py.__version__, "platform": platform.platform()},
    }
    from grape_core.io import write_json

    write_json(args.out, payload)
    print(f"  wrote {args.out}")
    if args.delete:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
        print(f"  deleted {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
