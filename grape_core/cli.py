"""Command line: ``python -m grape_core <command>``.

Each handler parses arguments, calls the library and prints; heavy imports happen inside
handlers. Errors print one line ``error: ...`` on stderr and exit 1 (usage errors exit 2);
``--debug`` shows the traceback instead.

``--report`` draws its charts with the app's figure code (``explorer.report``, plotly and
pyvis, no Streamlit), imported only by that option: the library itself imports no plotting
toolkit.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import GrapeError
from .simulate.config import FAMILY


# ----------------------------------------------------------------------------------------
# shared options
# ----------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``error: ...; see --help``), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        from .errors import echo

        if len(message) > 200:  # e.g. an argument that holds a huge paste
            message = echo(message, limit=200)
        self.exit(2, f"error: {message}; see '{self.prog} --help'\n")


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    from .errors import echo

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number, 1 or more, not {echo(text)}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _add_device_option(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default,
                   help="where tensors live: auto (a GPU when there is one), cpu, cuda, cuda:N "
                        f"or mps (default: {default})")


def _add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--unverified", action="store_true",
                   help="also load a model folder whose manifest has no checksums (every tensor "
                        "is still checked)")
    _add_device_option(p)


def _load(args):
    from .devices import resolve_device
    from .predict import load

    resolve_device(args.device)  # a device this machine lacks: one line, before any work
    model = load(args.model, unverified=args.unverified, device=args.device)
    if args.unverified:
        print(f"warning: model {model.name!r} loaded with --unverified: files without a checksum "
              "were not verified", file=sys.stderr)
    return model


def _inputs(args) -> list[tuple[str, str]]:
    """The files and folders the command reads, as ``(flag, path)``: no output may be one of
    them or lie inside one."""
    found = []
    for name in ("model", "data", "split_file", "perturbations", "signature", "conditions",
                 "config"):
        value = getattr(args, name, None)
        if value:
            found.append((f"--{name.replace('_', '-')}", value))
    found += [("--prior", p) for p in (getattr(args, "prior", None) or [])]
    return found


def _outputs(args, *flags: str, folder: tuple[str, str] | None = None) -> None:
    """Check every output file of the command (the options ``flags``, e.g. ``"--json"``)
    before any work: not a link, a device, a FIFO or a folder, not an input of the command
    nor inside one, not another output of the run (nor inside the output ``folder``,
    ``(flag, path)``, which the command replaces), in a folder that can be written."""
    from .io import check_output

    given = [(flag, getattr(args, flag[2:].replace("-", "_"), None)) for flag in flags]
    given = [(flag, path) for flag, path in given if path]
    inputs = _inputs(args)
    for i, (flag, path) in enumerate(given):
        others = given[:i] + ([folder] if folder else [])
        check_output(path, what=flag, hint=f"choose another {flag}", inputs=inputs,
                     others=others)


def _add_data_options(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="a .h5ad file or a known dataset (adamson, norman)")
    p.add_argument("--condition-key", help="obs column with the perturbation (default: auto)")
    p.add_argument("--control-label", help="label of control cells (default: auto)")
    p.add_argument("--gene-name-key", help="var column with gene symbols, or 'index' (default: auto)")
    p.add_argument("--subset", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep only matching cells, e.g. dataset=norman19 (repeatable)")
    _add_backed_option(p)


def _add_backed_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backed", action="store_true",
                   help="leave the expression matrix in the file and read it in chunks (a file "
                   "larger than memory); automatic when it would take more than "
                   "GRAPE_STREAM_ABOVE_GB GB in memory (default: a quarter of free memory)")


def _add_split_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default="simulation", choices=["simulation", "grape"],
                   help="held-out design (default: simulation = GEARS)")
    p.add_argument("--split-file", help="use a saved split (our JSON or GEARS' train/val/test JSON)")
    p.add_argument("--train-gene-set-size", type=float, default=0.75)


def _read(args, path: str | None = None):
    """The screen ``path`` (default ``--data``) read with the data options."""
    from .data.datasets import read

    return read(path or args.data, condition_key=args.condition_key,
                control_label=args.control_label, gene_name_key=args.gene_name_key,
                subset=args.subset, backed=args.backed or None, progress=_progress(args))


def _split_for(args, conditions):
    from .config import SplitConfig
    from .data.splits import Split, make_split

    if getattr(args, "split_file", None):
        split = Split.load(args.split_file).restrict(conditions)
        if split.seed < 0:  # a GEARS split file does not record its seed
            split = dataclasses.replace(split, seed=args.seed)
        return split
    return make_split(conditions, SplitConfig(name=args.split, seed=args.seed,
                                               train_gene_set_size=args.train_gene_set_size))


def _emit_json(data, out: str | None) -> None:
    from .io import to_json, write_json

    if out:
        write_json(out, data, what="the JSON output")
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(to_json(data))


# ----------------------------------------------------------------------------------------
# handlers
# ----------------------------------------------------------------------------------------
def cmd_describe(args) -> int:
    from .data.read import describe

    adata = _read(args, args.path)
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
    if info["backed"]:
        lines.append("expression        read in chunks from the file (backed)")
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
    from .data.splits import make_split, read_conditions

    _outputs(args, "--out")
    conditions = read_conditions(args.conditions)
    split = make_split(conditions, SplitConfig(name=args.split, seed=args.seed,
                                               train_gene_set_size=args.train_gene_set_size))
    _emit_json(split.to_dict(), args.out)
    return 0


def cmd_benchmark(args) -> int:
    from .data.pseudobulk import pseudobulk
    from .evaluation.evaluate import evaluate_models

    import numpy as np

    from .knowledge.build import data_priors
    from .knowledge.graphs import resolve_priors
    from .model.inputs import named_edges

    _outputs(args, "--json")
    adata = _read(args)
    pb = pseudobulk(adata, progress=_progress(args))
    split = _split_for(args, pb.conditions)
    # the propagation baseline's prior: files or built-in priors that need no embeddings
    symbols, builtin = data_priors(adata)
    edges, sources = resolve_priors(args.prior or ["union"], builtin, symbols)
    is_coding = np.ones(len(symbols), dtype=bool)  # relations play no part in a baseline
    report = evaluate_models(pb, split, prior=named_edges(edges, symbols, is_coding), genes=symbols)
    print(f"{pb.dataset}: {len(report.test_conditions)} held-out conditions, split "
          f"{split.name} seed {split.seed}; propagation over "
          f"{' + '.join(str(p['name']) for p in sources)} ({len(edges):,} edges)")
    print(report.format())
    if args.json:
        _emit_json(report.to_dict(), args.json)
    return 0


def cmd_genes(args) -> int:
    from dataclasses import replace

    from .config import FeatureConfig, GraphConfig, Paths
    from .knowledge.build import knowledge_for_adata
    from .knowledge.genes import format_coverage
    from .knowledge.graphs import format_graph_stats

    from .io import check_output_folder
    from .knowledge.build import KNOWLEDGE_FOLDER

    out = Path(args.out)
    if (out / "knowledge.json").exists() and not args.overwrite:
        raise GrapeError(f"{out} already holds gene knowledge; pass --overwrite or choose "
                         "another --out folder")
    try:  # an empty folder made for it is used as it is
        empty = out.is_dir() and not out.is_symlink() and not any(out.iterdir())
    except OSError:
        empty = False
    check_output_folder(out, kind=KNOWLEDGE_FOLDER, overwrite=args.overwrite or empty,
                        inputs=_inputs(args))
    _outputs(args, "--json", folder=("--out", args.out))
    paths = Paths.from_env()
    for field_name, value in (("gene_sources", args.gene_sources), ("text_model", args.text_model),
                              ("dna_model", args.dna_model)):
        if value is not None:
            paths = replace(paths, **{field_name: value})
    if args.kmer_max is not None and not 1 <= args.kmer_max <= 6:
        raise GrapeError(f"--kmer-max {args.kmer_max} is out of range; give 1 to 6")
    fc = FeatureConfig(seed=args.seed)
    changes = {"description": args.description, "n_go_terms": args.go_terms,
               "text_pooling": args.text_pooling, "sequence_source": args.sequences,
               "dna_pooling": args.dna_pooling, "pretrain_epochs": args.epochs,
               "kmer_sizes": tuple(range(1, args.kmer_max + 1)) if args.kmer_max else None}
    fc = fc.replace(**{k: v for k, v in changes.items() if v is not None})
    gc = GraphConfig()
    if args.priors:
        gc = gc.replace(priors=tuple(p.strip() for p in args.priors.split(",") if p.strip()))
    adata = _read(args)
    try:
        know = knowledge_for_adata(adata, feature_config=fc, graph_config=gc, paths=paths,
                                   progress=not args.quiet and sys.stderr.isatty(),
                                   cache=not args.no_cache, device=args.device)
    except ValueError as exc:
        raise GrapeError(str(exc)) from exc
    know.save(out, overwrite=args.overwrite)
    stats = know.stats
    print(f"{len(know.genes):,} genes ({len(know.measured):,} measured), text {know.text.shape[1]}-d, "
          f"DNA {know.dna.shape[1]}-d ({stats['models']['dna']}), fused {know.fused.shape[1]}-d")
    print(format_coverage(stats["coverage"]))
    print()
    print(format_graph_stats(stats["graphs"]))
    timings = stats.get("timings", {})
    if know.from_cache:
        print("\nread from the cache (run with --no-cache to rebuild)")
    elif timings:
        print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"wrote {out}", file=sys.stderr)
    if args.json:
        _emit_json({"coverage": stats["coverage"], "graphs": stats["graphs"],
                    "timings": timings}, args.json)
    return 0


def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _configs(args):
    from .config import ModelConfig, TrainConfig

    model = ModelConfig.paper() if args.paper else ModelConfig()
    changes = {"gsl_top_k": args.top_k}
    model = model.replace(**{k: v for k, v in changes.items() if v is not None})
    train = TrainConfig(seed=args.seed, device=args.device)
    changes = {"ensemble": args.ensemble, "max_steps": args.max_steps, "lr": args.lr,
               "batch_size": args.batch_size, "threads": args.threads}
    return model, train.replace(**{k: v for k, v in changes.items() if v is not None})


def cmd_train(args) -> int:
    from contextlib import nullcontext

    from .bundle import MODEL_FOLDER
    from .io import check_output_folder, reserve

    out = Path(args.out)
    # before the work: a folder of the user's is never replaced, an input never overwritten
    check_output_folder(out, kind=MODEL_FOLDER, overwrite=args.overwrite, what="--out",
                        inputs=_inputs(args))
    from .devices import resolve_device

    resolve_device(args.device)  # a device this machine lacks: one line, before any work
    # a second run for the same --out stops here, not after training (unless --overwrite:
    # then the last run to finish wins)
    hold = nullcontext() if args.overwrite else reserve(
        out, what="model folder", hint="wait for it to finish, choose another --out or pass "
        "--overwrite")
    with hold:
        from .data.pseudobulk import pseudobulk  # torch and the model: after the checks
        from .train import train_bundle

        adata = _read(args)
        pb = pseudobulk(adata, progress=_progress(args))  # once for the whole command
        split = _split_for(args, pb.conditions)
        model_config, train_config = _configs(args)
        command = "python -m grape_core " + " ".join(_argv_for_record(args._argv))
        bundle = train_bundle(adata, split, model_config=model_config, train_config=train_config,
                              progress=_progress(args), name=args.name or out.name,
                              command=command, ablations=args.ablations, pb=pb,
                              priors=args.prior or None)
        bundle.save(out, overwrite=args.overwrite)
    manifest = bundle.manifest
    t = manifest.training
    steps = ", ".join(str(m.refit_steps or m.best_step) for m in t.members)
    print(f"trained {manifest.ensemble} member(s) in {t.seconds:.1f} s "
          f"({len(t.train_conditions)} train / {len(t.val_conditions)} val conditions; "
          f"optimisation steps kept: {steps}); wrote {out}")
    if manifest.metrics is not None:
        import pandas as pd

        from .evaluation.evaluate import HEADLINE

        table = pd.DataFrame(manifest.metrics.test).T
        print(table[["n_conditions", *HEADLINE]].to_string(float_format=lambda v: f"{v:.4f}",
                                                          na_rep="n/a"))
        print(manifest.metrics.verdict)
    if bundle.ablations is not None:
        print("\nablations (one member each, same split and seed):")
        print(bundle.ablations.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def _argv_for_record(argv: list[str]) -> list[str]:
    """The command as typed, with file paths reduced to their names (no machine paths)."""
    out = []
    for item in argv:
        out.append(Path(item).name if ("/" in item or "\\" in item) and not item.startswith("-") else item)
    return out


def cmd_evaluate(args) -> int:
    from .data.pseudobulk import pseudobulk
    from .predict import evaluate

    _outputs(args, "--json", folder=("--h5ad", args.h5ad) if args.h5ad else None)
    if args.h5ad and not args.data:
        raise GrapeError("--h5ad writes the measured cells beside the predictions: give the "
                         "model's data with --data")
    if args.h5ad:
        from .io import check_output

        if Path(args.h5ad).exists() and not Path(args.h5ad).is_dir():
            raise GrapeError(f"--h5ad {args.h5ad} is a file; give a folder for cell-eval's files")
        check_output(Path(args.h5ad) / "cell_eval.json", what="--h5ad", inputs=_inputs(args))
    model = _load(args)
    bundle = model.bundle
    adata = _read(args) if args.data else None
    pb = pseudobulk(adata, progress=_progress(args)) if adata is not None else bundle.pseudobulk
    report = evaluate(model, pb, cells=adata)
    print(f"{bundle.name}: {len(report.test_conditions)} held-out conditions of "
          f"{pb.dataset or 'the training data'} (split {report.split}, seed {report.seed})")
    print(report.format())
    print(report.extra["verdict"])
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.h5ad:
        from .evaluation.replicate import CellSample
        from .export import write_cell_eval

        index = write_cell_eval(args.h5ad, report,
                                CellSample.from_adata(adata, report.test_conditions))
        print(f"wrote {len(index['pairs'])} prediction(s) for cell-eval and the measured cells "
              f"to {args.h5ad}; e.g. {index['pairs'][0]['command']} (in that folder)",
              file=sys.stderr)
    for group, rows in report.subgroup_summary().get("grape", {}).items():
        print(f"  {group}: {rows['n_conditions']} conditions")
    data = report.to_dict()
    if args.ablations:
        if adata is None:
            raise GrapeError("--ablations retrains the model: give the training data with --data")
        from .train import run_ablations

        ablations = run_ablations(bundle, adata, steps=args.max_steps, progress=_progress(args),
                                  pb=pb, priors=args.prior or None)
        print("\nablations (retrained on the same split, same seeds):")
        print(ablations.to_string(float_format=lambda v: f"{v:.4f}"))
        data["ablations"] = ablations.reset_index().to_dict(orient="records")
    if args.json:
        _emit_json(data, args.json)
    return 0


def _report_maker(name: str):
    """``explorer.report.<name>`` (plotly and pyvis charts), or a one-line error."""
    try:
        from explorer import report
    except ImportError as exc:  # plotly / pyvis missing, or run outside the project folder
        raise GrapeError(f"--report needs plotly and pyvis and the app package explorer/ ({exc}); "
                         "run from the project folder after pip install -r requirements.txt") from exc
    return getattr(report, name)


def _command(args, model=None) -> str:
    """The command as typed, for a report's "Reproduce" line: file names without their
    folders (no machine paths in a file that is sent around), except ``--model``, which must
    find the model again (:func:`~grape_core.report.model_argument`)."""
    words = _argv_for_record(args._argv)
    if model is not None:
        from .report import model_argument

        for i, word in enumerate(words[:-1]):
            if word == "--model":
                words[i + 1] = model_argument(model)
        words = [f"--model={model_argument(model)}" if w.startswith("--model=") else w
                 for w in words]
    return "python -m grape_core " + " ".join(words)


def cmd_predict(args) -> int:
    from .errors import echo
    from .predict import predict_many, read_perturbations

    perturbations = list(args.perturbation or [])
    where = [f"--perturbation {echo(p)}" for p in perturbations]
    if args.perturbations:
        listed, listed_where = read_perturbations(args.perturbations)
        perturbations, where = perturbations + listed, where + listed_where
    if not perturbations:
        raise GrapeError("give a perturbation with --perturbation GENE[+GENE] (repeatable) or a "
                         "file of them with --perturbations FILE")
    listed = bool(args.perturbations) or len(perturbations) > 1  # a list, not one perturbation
    if args.report and listed:
        raise GrapeError("--report writes one perturbation's report; give one --perturbation, "
                         "or write a list's predictions with --h5ad or --json")
    _outputs(args, "--report", "--h5ad", "--json")
    model = _load(args)
    preds = predict_many(model, perturbations, where=where if listed else None,
                         baselines=bool(args.report), interactions=not args.no_interactions,
                         progress=_progress(args))
    for pred in preds:
        for w in pred.warnings:
            print(f"warning: {pred.condition}: {w}" if listed else f"warning: {w}",
                  file=sys.stderr)
    if args.h5ad:
        from .export import to_anndata, write_h5ad

        write_h5ad(to_anndata(preds), args.h5ad, what="--h5ad")
        print(f"wrote {args.h5ad}", file=sys.stderr)
    if args.report:
        from .io import write_text

        write_text(args.report, _report_maker("prediction_report_html")(model, preds[0],
                                                                         command=_command(args, model)),
                   what="--report")
        print(f"wrote {args.report}", file=sys.stderr)
    if args.json:
        data = ({"model": model.name, "predictions": [p.to_dict(top=args.top) for p in preds]}
                if listed else preds[0].to_dict(top=args.top))
        _emit_json(data, args.json)
        return 0
    if listed:
        from .export import predictions_frame

        print(f"{len(preds)} perturbations, model {model.name}; the {args.top} largest shifts "
              "of each")
        print(predictions_frame(preds, top=args.top).to_string(
            index=False, float_format=lambda v: f"{v:.4f}", na_rep="-"))
        return 0
    pred = preds[0]
    print(f"{pred.condition} ({pred.part}), model {model.name}")
    print(pred.to_frame(top=args.top).to_string(index=False, float_format=lambda v: f"{v:.4f}",
                                                na_rep="-"))
    gi = pred.interaction
    if gi:
        for kind, rep in gi.items():
            print(f"interaction ({kind}): {rep.get('gi_type')} - {rep.get('explanation', '')}")
    return 0


def cmd_screen(args) -> int:
    from tqdm.auto import tqdm

    from .screen import read_signature, screen

    if bool(args.target) == bool(args.signature):
        raise GrapeError("give target genes with --target GENE[,GENE...] or a --signature file (not both)")
    _outputs(args, "--report", "--json")
    targets = read_signature(args.signature) if args.signature else \
        [t.strip() for t in args.target.split(",") if t.strip()]
    model = _load(args)
    bar = tqdm(desc="predicting every single (a large model's first screen)", unit="pass",
               disable=not _progress(args), file=sys.stderr, delay=0.5)

    def passes(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        result = screen(model, targets, direction=args.direction, pairs=args.pairs, top=args.top,
                        on_progress=passes)
    finally:
        bar.close()
    for note in result.notes:
        print(f"warning: {note}", file=sys.stderr)
    if args.json:
        _emit_json(result.to_dict(), args.json)
    if args.report:
        from .io import write_text

        maker = _report_maker("screen_report_html")
        check = _report_maker("check_or_none")(model)
        write_text(args.report, maker(model, result, check=check, command=_command(args, model)),
                   what="--report")
        print(f"wrote {args.report}", file=sys.stderr)
    shown_targets = ", ".join(result.targets[:8])
    if len(result.targets) > 8:
        shown_targets = f"{len(result.targets)} target genes ({shown_targets}, ...)"
    print(f"{'raise' if args.direction == 'up' else 'lower'} {shown_targets} "
          f"(model {model.name}; effect = mean predicted shift of the targets, higher is better)")
    shown = result.table.drop(columns=["perturbation"]).rename(columns={"genes": "perturbation"})
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}", na_rep="-"))
    return 0


def cmd_network(args) -> int:
    from .network import learned_network
    from .network_export import network_format, write_network

    fmt = network_format(args.out, args.format)  # a bad suffix fails before the work
    _outputs(args, "--out")
    model = _load(args)
    net = learned_network(model)
    write_network(net, args.out, fmt=fmt)
    for sentence in net.change.sentences():
        print(sentence)
    print(f"{len(net.edges):,} edges ({int(net.edges['learned'].sum()):,} learned, "
          f"{net.change.dropped:,} prior edges dropped), {net.n_members} member(s)")
    print(f"wrote {args.out} ({fmt})", file=sys.stderr)
    return 0


def cmd_why(args) -> int:
    from .explain import explain

    _outputs(args, "--json")
    model = _load(args)
    why = explain(model, args.perturbation, args.gene, top=args.top)
    if args.json:
        _emit_json(why.to_dict(), args.json)
        return 0
    print("\n".join(why.sentences()))
    print()
    parts = why.parts[["label", "value", "share"]].rename(columns={"label": "part"})
    print(parts.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if len(why.paths):
        print()
        cols = ["rank", "path", "contribution", "share", "sign_agreement", "spread"]
        print(why.paths[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def _numbers(text: str, flag: str, count: int, kind: type = float) -> tuple:
    """``"0.6,1.0"`` -> ``(0.6, 1.0)``; a one-line GrapeError when it is not ``count`` numbers."""
    try:
        values = tuple(kind(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise GrapeError(f"{flag} {text!r} must be {count} comma-separated "
                         f"{'whole numbers' if kind is int else 'numbers'}")
    return values


def cmd_simulate(args) -> int:
    import json

    from .simulate import SimulationConfig, format_summary, simulate

    from .io import check_output_folder, read_text_file
    from .simulate import SCREEN_FOLDER

    out = Path(args.out)
    # checked before the work: only a previous screen (or an empty folder) is replaced
    check_output_folder(out, kind=SCREEN_FOLDER, overwrite=args.overwrite, what="--out",
                        inputs=_inputs(args))
    config = SimulationConfig()
    if args.kind:
        config = SimulationConfig(**FAMILY[args.kind])
    if args.config:
        fix = "give a JSON file of settings or a screen's simulation.json"
        text = read_text_file(args.config, what="--config", fix=fix)
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise GrapeError(f"cannot read --config {args.config} (not JSON: {reason}); "
                             f"{fix}") from exc
        data = data.get("config", data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            raise GrapeError(f"--config {args.config} must hold a JSON object of settings")
        config = SimulationConfig.from_dict(data)
    changes = {
        "seed": args.seed, "n_genes": args.genes, "noncoding_fraction": args.noncoding,
        "n_singles": args.singles, "n_pairs": args.pairs, "cells_per_condition": args.cells,
        "n_control_cells": args.control_cells, "propagation": args.propagation,
        "mode": args.mode, "prior_true_fraction": args.prior_true_fraction,
        "prior_false_edges": args.prior_false_edges, "regulator_fraction": args.regulators,
        "spectral_radius": args.spectral_radius, "go_bias": args.go_bias,
        "interaction_fraction": args.interaction_fraction, "cell_noise": args.noise,
        "network_noise": args.network_noise, "shared_std": args.shared_std,
        "saturation": args.saturation, "simulator": args.simulator,
        "hill_coefficient": args.hill_coefficient, "guides_per_gene": args.guides,
        "escape_fraction": args.escape, "cell_model": args.cell_model,
        "library_size": args.library_size, "dispersion": args.dispersion,
    }
    for flag, name, count, kind in (("--efficiency", "efficiency", 2, float),
                                    ("--targets", "targets", 2, int),
                                    ("--propensity", "relation_propensity", 4, float),
                                    ("--activating", "relation_activating", 4, float),
                                    ("--strength", "relation_strength", 4, float)):
        text = getattr(args, flag[2:])
        changes[name] = _numbers(text, flag, count, kind) if text is not None else None
    config = config.replace(**{k: v for k, v in changes.items() if v is not None})
    from .io import ensure_space
    from .simulate import check_memory

    check_memory(config)  # before any work: memory, then the disk for the folder
    ensure_space(out, config.disk_bytes(), what="the screen folder",
                 hint="free some space or choose another --out")
    screen = simulate(config, progress=_progress(args))
    screen.write(out, overwrite=args.overwrite)
    print(format_summary(screen))
    print(f"wrote {out}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m grape_core",
        description="GRAPE: perturbation response prediction on Perturb-seq screens.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = sub.add_parser("describe", help="summarise a Perturb-seq .h5ad")
    p.add_argument("path", help="a .h5ad file or a known dataset name")
    p.add_argument("--condition-key")
    p.add_argument("--control-label")
    p.add_argument("--gene-name-key")
    p.add_argument("--subset", action="append", default=[], metavar="COLUMN=VALUE")
    p.add_argument("--conditions", action="store_true", help="also list cells per condition")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_backed_option(p)
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
    p.add_argument("--prior", action="append", metavar="NAME|FILE",
                   help="prior graph of the propagation baseline: go, coexpression, union "
                   "(default) or an edge-list file source,target[,weight] (repeatable: merged)")
    p.add_argument("--json", help="write the report as JSON here")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("genes", help="gene table, text/DNA features, fused embeddings, prior graphs")
    _add_data_options(p)
    p.add_argument("--out", required=True, help="output folder (genes.csv, features, priors/...)")
    p.add_argument("--gene-sources", help="folder with the GENCODE and EPD files "
                   "(default: $GRAPE_GENE_SOURCES)")
    p.add_argument("--text-model", help="local BERT-type model folder (default: packaged MiniLM)")
    p.add_argument("--dna-model", help="local DNA language-model folder (default: k-mers)")
    p.add_argument("--sequences", help="'epd' (default), 'none' or a FASTA file of gene sequences")
    p.add_argument("--description", choices=["name", "name_biotype", "name_biotype_go"])
    p.add_argument("--go-terms", type=int, help="GO terms per description (most specific first)")
    p.add_argument("--text-pooling", choices=["mean", "cls"])
    p.add_argument("--dna-pooling", choices=["mean", "first"])
    p.add_argument("--kmer-max", type=int, help="k-mer spectra for k = 1..K (K at most 6)")
    p.add_argument("--epochs", type=int, help="encoder pre-training epochs")
    p.add_argument("--priors", help="comma list among similarity,go,coexpression (default: all)")
    p.add_argument("--seed", type=int, default=0)
    _add_device_option(p, default="cpu")
    p.add_argument("--no-cache", action="store_true", help="rebuild instead of reading the cache")
    p.add_argument("--overwrite", action="store_true", help="replace gene knowledge in --out")
    p.add_argument("--json", help="also write coverage and graph statistics as JSON here")
    p.set_defaults(func=cmd_genes)

    p = sub.add_parser("train", help="train a GRAPE ensemble and save it as a model folder")
    _add_data_options(p)
    _add_split_options(p)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--name", help="model name shown in the app (default: folder name)")
    p.add_argument("--ensemble", type=int, help="ensemble members (default 3)")
    p.add_argument("--max-steps", type=int,
                   help="maximum optimisation steps per member (default 2000, early stopping)")
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int, help="conditions per step (default 8)")
    p.add_argument("--top-k", type=int, help="learned-only candidate edges per gene (default 5)")
    p.add_argument("--prior", action="append", metavar="NAME|FILE",
                   help="prior graph: union (default), go, coexpression, similarity, or an "
                   "edge-list file (CSV, TSV or Parquet; columns source,target[,weight], gene "
                   "symbols, source regulates target); repeat to merge several")
    p.add_argument("--paper", action="store_true", help="the published architecture and flags")
    p.add_argument("--ablations", action="store_true",
                   help="also retrain each ablation (one member) and store its metrics in the model")
    p.add_argument("--threads", type=int, help="torch threads")
    _add_device_option(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="GRAPE and every baseline on a model's held-out conditions")
    _add_model_option(p)
    _add_data_options(p, required=False)
    p.add_argument("--json", help="write the report as JSON here")
    p.add_argument("--h5ad", metavar="DIR", help="also write the measured cells and every model's "
                   "predictions as AnnData for cell-eval (obs['perturbation'], control label "
                   "'control', log1p data), with cell_eval.json naming each pair and its "
                   "cell-eval command (needs --data)")
    p.add_argument("--ablations", action="store_true", help="also retrain the ablations (needs --data)")
    p.add_argument("--max-steps", type=int, help="maximum optimisation steps for the ablation runs")
    p.add_argument("--prior", action="append", metavar="NAME|FILE",
                   help="the model's prior file(s), for the ablations of a model trained on one")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predicted expression shifts for one gene or a pair, or "
                       "for a list of them")
    _add_model_option(p)
    p.add_argument("--perturbation", action="append", metavar="GENE[+GENE]",
                   help="GENE or GENE_A+GENE_B; repeat it for several")
    p.add_argument("--perturbations", metavar="FILE", help="a text file of perturbations, one "
                   "GENE or GENE_A+GENE_B per line (# comments); a CSV or TSV table whose "
                   "header's first column is perturbation or condition also works")
    p.add_argument("--top", type=_at_least_one, default=20,
                   help="genes to show (largest |shift|; 1 or more)")
    p.add_argument("--no-interactions", action="store_true",
                   help="skip the genetic-interaction analysis of pairs (about a second per "
                   "pair: for long lists)")
    p.add_argument("--json", help="write the full prediction as JSON here")
    p.add_argument("--h5ad", metavar="FILE", help="also write the prediction(s) as AnnData "
                   "(.h5ad) for scanpy, one row per perturbation: X predicted expression, "
                   "var['biotype'], layers shift, ensemble_std, interval (the calibrated "
                   "interval's half width), measured")
    p.add_argument("--report", metavar="FILE.html", help="also write a self-contained offline "
                   "HTML report for collaborators (charts, network, interaction, model card, "
                   "how far to trust it)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("screen", help="rank perturbations that move target genes up or down")
    _add_model_option(p)
    p.add_argument("--target", help="target gene(s), comma separated")
    p.add_argument("--signature", help="file of gene and weight per line (instead of --target)")
    p.add_argument("--direction", choices=["up", "down"], default="up")
    p.add_argument("--pairs", action="store_true", help="also score pairs of the best singles")
    p.add_argument("--top", type=_at_least_one, default=20, help="candidates to show (1 or more)")
    p.add_argument("--json", help="write the ranking as JSON here")
    p.add_argument("--report", metavar="FILE.html",
                   help="also write the ranking as a self-contained offline HTML report")
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("network", help="write the learned gene network (GraphML, CSV or "
                       "Cytoscape CX2) with each edge's weight, sign, prior or learned status and "
                       "agreement across ensemble members")
    _add_model_option(p)
    p.add_argument("--out", required=True, metavar="FILE",
                   help="network.graphml, network.csv or network.cx2 (the format follows the "
                   "suffix)")
    p.add_argument("--format", choices=["graphml", "csv", "cx2"],
                   help="the format, whatever the suffix")
    p.set_defaults(func=cmd_network)

    p = sub.add_parser("why", help="why a perturbation moves a gene: its predicted shift split "
                       "into the shared response, the perturbed gene's own change and the "
                       "strongest paths through the learned network")
    _add_model_option(p)
    p.add_argument("--perturbation", required=True, metavar="GENE[+GENE]")
    p.add_argument("--gene", required=True, help="the responding (measured) gene")
    p.add_argument("--top", type=_at_least_one, default=10, help="paths to list (default 10)")
    p.add_argument("--json", help="write the explanation as JSON here")
    p.set_defaults(func=cmd_why)

    p = sub.add_parser("simulate", help="a planted-truth screen: known gene network, "
                       "Perturb-seq cells, true edges and priors")
    p.add_argument("--out", required=True, help="folder to write (must not exist)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--config", help="JSON of settings, or a screen's simulation.json; flags override")
    p.add_argument("--kind", choices=sorted(FAMILY),
                   help="a setting of the simulator family the benchmark uses (its dynamics, "
                        "cells and prior); the other flags override it")
    p.add_argument("--simulator", choices=["steady_state", "harissa"],
                   help="the project's steady states (default) or harissa's bursting model")
    p.add_argument("--genes", type=int, help="genes (default 300)")
    p.add_argument("--noncoding", type=float, help="share of lncRNA genes (default 0.25)")
    p.add_argument("--regulators", type=float, help="share of genes that regulate (default 0.45)")
    p.add_argument("--targets", help="min,max targets per regulator (default 2,7)")
    p.add_argument("--spectral-radius", type=float, help="of W (default 0.8, below 1)")
    p.add_argument("--propensity", help="edge odds per relation cc,cn,nc,nn (default 1,0.8,1,0.6)")
    p.add_argument("--activating", help="activating share per relation (default 0.9,0.85,0.3,0.7)")
    p.add_argument("--strength", help="weight multiplier per relation (default 1,0.8,1.3,0.6)")
    p.add_argument("--go-bias", type=float, help="extra odds of a target sharing GO (default 5; 0 off)")
    p.add_argument("--singles", type=int, help="perturbed genes (default 100)")
    p.add_argument("--pairs", type=int, help="pairs among them (default 50)")
    p.add_argument("--interaction-fraction", type=float,
                   help="share of pairs with a planted interaction (default 0.3)")
    p.add_argument("--mode", choices=["knockdown", "activation"], help="CRISPRi or CRISPRa")
    p.add_argument("--efficiency", help="low,high of the uniform efficiency (default 0.6,1.0)")
    p.add_argument("--propagation", choices=["linear", "saturating", "bounded", "hill"],
                   help="steady-state dynamics (default linear)")
    p.add_argument("--saturation", type=float, help="c of c*tanh(x/c) (default 1)")
    p.add_argument("--hill-coefficient", type=float, help="n of the hill dynamics (default 2)")
    p.add_argument("--guides", type=int, help="guides per perturbed gene (default 1)")
    p.add_argument("--escape", type=float,
                   help="share of a condition's cells the perturbation fails in (default 0)")
    p.add_argument("--cell-model", choices=["gaussian", "counts"],
                   help="cells on the log scale with Gaussian noise (default), or UMI counts "
                        "normalised and log1p'd")
    p.add_argument("--library-size", type=float, help="counts: median UMIs per cell (default 2000)")
    p.add_argument("--dispersion", type=float,
                   help="counts: negative binomial theta (default 0: Poisson)")
    p.add_argument("--shared-std", type=float, help="std of the shared response (default 0.11)")
    p.add_argument("--cells", type=int, help="cells per condition (default 50)")
    p.add_argument("--control-cells", type=int, help="control cells (default 500)")
    p.add_argument("--noise", type=float, help="per-cell noise std (default 0.25)")
    p.add_argument("--network-noise", type=float,
                   help="std of cell noise passed through the network (default 0)")
    p.add_argument("--prior-true-fraction", type=float,
                   help="share of true edges in prior_informative.csv (default 0.5)")
    p.add_argument("--prior-false-edges", type=int,
                   help="false edges in prior_informative.csv (default: as many as true)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing screen folder")
    p.set_defaults(func=cmd_simulate)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    args._argv = argv
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        return int(args.func(args) or 0)
    except GrapeError as exc:
        if args.debug:
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, details with --debug
        if args.debug:
            raise
        print(f"error: unexpected {type(exc).__name__}: {_one_line(exc, 300)} (run with --debug "
              "for details)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException, limit: int = 1000) -> str:
    """An error message on one line, cut to about ``limit`` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
