"""Command line: ``python -m grape_core <command>``.

Each handler parses arguments, calls the library and prints; heavy imports happen inside
handlers. Errors print one line ``error: ...`` on stderr and exit 1 (usage errors exit 2);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import GrapeError


# ----------------------------------------------------------------------------------------
# shared options
# ----------------------------------------------------------------------------------------
def _add_data_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="a .h5ad file or a known dataset (adamson, norman)")
    p.add_argument("--condition-key", help="obs column with the perturbation (default: auto)")
    p.add_argument("--control-label", help="label of control cells (default: auto)")
    p.add_argument("--gene-name-key", help="var column with gene symbols, or 'index' (default: auto)")
    p.add_argument("--subset", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep only matching cells, e.g. dataset=norman19 (repeatable)")


def _add_split_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="simulation", choices=["simulation", "grape"],
                   help="held-out design (default: simulation = GEARS)")
    p.add_argument("--split-file", help="use a saved split (our JSON or GEARS' train/val/test JSON)")
    p.add_argument("--train-gene-set-size", type=float, default=0.75)


def _read(args):
    from .data import read_perturbseq

    return read_perturbseq(args.data, condition_key=args.condition_key,
                           control_label=args.control_label, gene_name_key=args.gene_name_key,
                           subset=args.subset)


def _split_for(args, conditions):
    from .config import SplitConfig
    from .splits import Split, make_split

    if getattr(args, "split_file", None):
        return Split.load(args.split_file).restrict(conditions)
    return make_split(conditions, SplitConfig(name=args.split, seed=args.seed,
                                               train_gene_set_size=args.train_gene_set_size))


def _emit_json(data, out: str | None) -> None:
    from .io import to_json, write_json

    if out:
        write_json(out, data)
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(to_json(data))


# ----------------------------------------------------------------------------------------
# handlers
# ----------------------------------------------------------------------------------------
def cmd_describe(args) -> int:
    from .data import describe, read_perturbseq

    adata = read_perturbseq(args.path, condition_key=args.condition_key,
                            control_label=args.control_label, gene_name_key=args.gene_name_key,
                            subset=args.subset)
    info = describe(adata)
    if args.json:
        _emit_json(info, None)
        return 0
    cpc = info["cells_per_condition"]
    lines = [
        f"file              {info['path']}",
        f"sha256            {info['sha256']}",
        f"cells             {info['cells']:,}",
        f"genes             {info['genes']:,}",
        f"control cells     {info['control_cells']:,}  (label {info['control_label']!r} in obs[{info['condition_key']!r}])",
        f"conditions        {info['conditions']}  ({info['singles']} singles, {info['pairs']} pairs)",
        f"perturbed genes   {info['perturbed_genes']}  ({len(info['perturbed_genes_not_measured'])} not measured)",
        f"cells/condition   min {cpc['min']}, median {cpc['median']:g}, max {cpc['max']}",
        f"cell types        {', '.join(info['cell_types'])}",
        f"gene names        var[{info['gene_name_key']!r}]",
        f"DE genes          {info['de_genes']}",
    ]
    for w in info["warnings"]:
        lines.append(f"warning           {w}")
    print("\n".join(lines))
    if args.conditions:
        print("\ncondition\tcells")
        for cond, n in info["cells_by_condition"].items():
            print(f"{cond}\t{n}")
    return 0


def cmd_split(args) -> int:
    from .config import SplitConfig
    from .splits import make_split, read_conditions

    conditions = read_conditions(args.conditions)
    split = make_split(conditions, SplitConfig(name=args.split, seed=args.seed,
                                               train_gene_set_size=args.train_gene_set_size))
    _emit_json(split.to_dict(), args.out)
    return 0


def cmd_benchmark(args) -> int:
    from .data import pseudobulk
    from .evaluate import evaluate_models

    adata = _read(args)
    pb = pseudobulk(adata)
    split = _split_for(args, pb.conditions)
    report = evaluate_models(pb, split)
    print(f"{pb.dataset}: {len(report.test_conditions)} held-out conditions, split "
          f"{split.name} seed {split.seed}")
    print(report.format())
    if args.json:
        _emit_json(report.to_dict(), args.json)
    return 0


# ----------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grape_core",
        description="GRAPE: perturbation response prediction on Perturb-seq screens.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("describe", help="summarise a Perturb-seq .h5ad")
    p.add_argument("path", help="a .h5ad file or a known dataset name")
    p.add_argument("--condition-key")
    p.add_argument("--control-label")
    p.add_argument("--gene-name-key")
    p.add_argument("--subset", action="append", default=[], metavar="COLUMN=VALUE")
    p.add_argument("--conditions", action="store_true", help="also list cells per condition")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("split", help="print a seeded split of a list of conditions as JSON")
    p.add_argument("--conditions", required=True, help="file: one condition per line, or a JSON list")
    p.add_argument("--split", default="simulation", choices=["simulation", "grape"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--train-gene-set-size", type=float, default=0.75)
    p.add_argument("--out", help="write JSON here instead of stdout")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("benchmark", help="all baselines on a split, GEARS metrics")
    _add_data_options(p)
    _add_split_options(p)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", help="write the report as JSON here")
    p.set_defaults(func=cmd_benchmark)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    if args.quiet:
        import os
        os.environ["TQDM_DISABLE"] = "1"
    try:
        return int(args.func(args) or 0)
    except GrapeError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, details with --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 1
