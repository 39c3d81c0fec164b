"""The model commands: ``train``, ``evaluate``, ``predict``, ``screen``, ``network``,
``why``."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import GrapeError
from .common import (_argv_for_record, _command, _configs, _emit_json, _inputs, _load, _outputs,
                     _progress, _read, _report_maker, _split_for)


def cmd_train(args) -> int:
    from contextlib import nullcontext

    from ..bundle import MODEL_FOLDER
    from ..io import check_output_folder, reserve

    out = Path(args.out)
    # before the work: a folder of the user's is never replaced, an input never overwritten
    check_output_folder(out, kind=MODEL_FOLDER, overwrite=args.overwrite, what="--out",
                        inputs=_inputs(args))
    from ..devices import resolve_device

    resolve_device(args.device)  # a device this machine lacks: one line, before any work
    # a second run for the same --out stops here, not after training (unless --overwrite:
    # then the last run to finish wins)
    hold = nullcontext() if args.overwrite else reserve(
        out, what="model folder", hint="wait for it to finish, choose another --out or pass "
        "--overwrite")
    with hold:
        from ..data.pseudobulk import pseudobulk  # torch and the model: after the checks
        from ..knowledge.build import knowledge_for_adata
        from ..training.ablations import run_ablations
        from ..training.recipe import save_model, train_bundle

        adata = _read(args)
        pb = pseudobulk(adata, progress=_progress(args))  # once for the whole command
        split = _split_for(args, pb.conditions)
        model_config, train_config = _configs(args)
        command = "python -m grape_core " + " ".join(_argv_for_record(args._argv))
        # the ablations retrain on the same gene knowledge: built once for both
        knowledge = knowledge_for_adata(adata, progress=_progress(args)) if args.ablations else None
        bundle = train_bundle(adata, split, model_config=model_config, train_config=train_config,
                              progress=_progress(args), name=args.name or out.name,
                              command=command, pb=pb, priors=args.prior or None,
                              knowledge=knowledge)
        if args.ablations and bundle.manifest.metrics is not None:  # something held out
            bundle = bundle.replace(ablations=run_ablations(
                bundle, adata, knowledge=knowledge, progress=_progress(args), pb=pb,
                priors=args.prior or None))
        save_model(bundle, out, overwrite=args.overwrite)
    manifest = bundle.manifest
    t = manifest.training
    steps = ", ".join(str(m.refit_steps or m.best_step) for m in t.members)
    print(f"trained {manifest.ensemble} member(s) in {t.seconds:.1f} s "
          f"({len(t.train_conditions)} train / {len(t.val_conditions)} val conditions; "
          f"optimisation steps kept: {steps}); wrote {out}")
    if manifest.metrics is not None:
        import pandas as pd

        from ..evaluation.benchmark import HEADLINE

        table = pd.DataFrame(manifest.metrics.test).T
        print(table[["n_conditions", *HEADLINE]].to_string(float_format=lambda v: f"{v:.4f}",
                                                          na_rep="n/a"))
        print(manifest.metrics.verdict)
    if bundle.ablations is not None:
        print("\nablations (one member each, same split and seed):")
        print(bundle.ablations.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_evaluate(args) -> int:
    from ..data.pseudobulk import pseudobulk
    from ..serving.evaluate import evaluate

    _outputs(args, "--json", folder=("--h5ad", args.h5ad) if args.h5ad else None)
    if args.h5ad and not args.data:
        raise GrapeError("--h5ad writes the measured cells beside the predictions: give the "
                         "model's data with --data")
    if args.h5ad:
        from ..io import check_output

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
        from ..evaluation.replicate import CellSample
        from ..serving.export import write_cell_eval

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
        from ..training.ablations import run_ablations

        ablations = run_ablations(bundle, adata, steps=args.max_steps, progress=_progress(args),
                                  pb=pb, priors=args.prior or None)
        print("\nablations (retrained on the same split, same seeds):")
        print(ablations.to_string(float_format=lambda v: f"{v:.4f}"))
        data["ablations"] = ablations.reset_index().to_dict(orient="records")
    if args.json:
        _emit_json(data, args.json)
    return 0


def cmd_predict(args) -> int:
    from ..errors import echo
    from ..serving.predict import predict_many
    from ..serving.resolve import read_perturbations

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
        from ..serving.export import to_anndata, write_h5ad

        write_h5ad(to_anndata(preds), args.h5ad, what="--h5ad")
        print(f"wrote {args.h5ad}", file=sys.stderr)
    if args.report:
        from ..io import write_text

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
        from ..serving.export import predictions_frame

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

    from ..serving.resolve import read_signature
    from ..serving.screen import screen

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
        from ..io import write_text

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
    from ..serving.network import learned_network
    from ..serving.network_export import network_format, write_network

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
    from ..serving.explain import explain

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
