"""How long "Get the full Adamson (or Norman) screen" takes after the download, on SYNTHETIC
(generated) data of the real size.

The screen: ``bench_foundation.generate`` shaped like the GEARS file (Adamson: 68,603 cells
x 5,060 genes, 86 singles; Norman: 91,205 cells x 5,045 genes, 105 singles + 131 pairs), with
the first real protein-coding and lncRNA symbols of the shipped annotation as gene names so
that gene knowledge (text embeddings, GO, promoters) has realistic work. Zipped like the
GEARS download and served on 127.0.0.1, it goes through exactly what the app runs
(``grape_core.training.public.train_public``: registry download, SHA-256, read, split, gene
knowledge with an empty cache, training with the default settings, evaluation, save), with
the app's torch threads (``GRAPE_APP_THREADS``, default 1).

The download itself is local here: add the time the real file takes on your connection.
Only timings mean anything; the model's metrics are those of random data.

    GRAPE_GENE_SOURCES=../shared/data/genes python benchmarks/bench_full_screen.py --size adamson
    GRAPE_GENE_SOURCES=../shared/data/genes python benchmarks/bench_full_screen.py --size norman

Prints the time per stage and writes ``benchmarks/results/full_screen_<size>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SIZES = {"adamson": {"cells": 68_603, "genes": 5_060, "conditions": 87, "control_cells": 24_263,
                     "pairs": 0},
         "norman": {"cells": 91_205, "genes": 5_045, "conditions": 106, "control_cells": 11_855,
                    "pairs": 131}}
DATA_LABEL = "synthetic (generated) data with real gene symbols"


def make_screen(folder: Path, size: str) -> Path:
    """The generated screen, renamed to real symbols, zipped like the GEARS download."""
    import anndata
    import numpy as np

    from bench_foundation import generate
    from bench_genes import pick_genes

    spec = SIZES[size]
    raw = folder / "raw.h5ad"
    generate(raw, density=0.07, seed=0, **spec)
    adata = anndata.read_h5ad(raw)
    symbols = pick_genes(spec["genes"])
    rename = dict(zip(adata.var["gene_name"].astype(str), symbols))
    adata.var["gene_name"] = symbols
    conditions = adata.obs["condition"].astype(str).to_numpy()
    adata.obs["condition"] = np.array(["+".join(rename.get(g, g) for g in c.split("+"))
                                       for c in conditions])
    h5ad = folder / "perturb_processed.h5ad"
    adata.write_h5ad(h5ad)
    archive = folder / "site" / f"{size}.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(h5ad, f"{size}/perturb_processed.h5ad")
    raw.unlink()
    return h5ad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="adamson")
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--out", help="results JSON (default: benchmarks/results/full_screen_<size>.json)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="grape-bench-full-"))
    t0 = time.perf_counter()
    h5ad = make_screen(work, args.size)
    generate_s = time.perf_counter() - t0
    site = work / "site"

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(site), **k)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    registry = work / "registry.json"
    registry.write_text(json.dumps({args.size: {
        "url": f"http://127.0.0.1:{httpd.server_address[1]}/{args.size}.zip",
        "sha256": hashlib.sha256(h5ad.read_bytes()).hexdigest(), "size": h5ad.stat().st_size}}))
    os.environ.update({"GRAPE_REGISTRY": str(registry), "GRAPE_DATA_DIR": str(work / "data"),
                       "GRAPE_CACHE_DIR": str(work / "cache")})  # cold: nothing cached

    import torch

    from grape_core.config import TrainConfig
    from grape_core.settings import settings
    from grape_core.training.public import train_public

    threads = settings.app_threads
    torch.set_num_threads(threads)
    stages: dict[str, float] = {}
    begin = time.perf_counter()

    def progress(p) -> None:
        if p.stage not in stages:
            stages[p.stage] = time.perf_counter() - begin
            print(f"{stages[p.stage]:7.1f} s  {p.stage}: {p.message}", flush=True)

    load_before = os.getloadavg()
    folder = train_public(args.size, models_dir=work / "models",
                          train_config=TrainConfig(ensemble=args.ensemble), on_progress=progress)
    total = time.perf_counter() - begin
    httpd.shutdown()
    order = ["download", "read", "knowledge", "train", "save", "done"]
    marks = [stages[s] for s in order if s in stages]
    spans = {s: round(b - a, 1) for s, a, b in zip(order, marks, marks[1:])}
    manifest = json.loads((folder / "manifest.json").read_text())
    result = {
        "size": args.size, "data": DATA_LABEL, **SIZES[args.size],
        "file_bytes": h5ad.stat().st_size, "zip_bytes": (site / f"{args.size}.zip").stat().st_size,
        "generate_s": round(generate_s, 1), "stages_s": spans, "total_s": round(total, 1),
        "ensemble": args.ensemble, "members": manifest["training"]["members"],
        "training_s": manifest["training"]["seconds"],
        "note": "download from 127.0.0.1: add the real transfer time; cold gene-knowledge cache",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
    }
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"full_screen_{args.size}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(spans), f"total {total:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
