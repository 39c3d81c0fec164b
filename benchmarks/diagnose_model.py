"""Why is a trained GRAPE close to a baseline? Steps, gradients per part, residual size.

For a saved model and its held-out conditions:

- ``pearson_delta`` of the trained ensemble, of its warm start (each member rebuilt at step 0:
  the least-squares fit of its linear part) and of the ``propagation`` baseline;
- how far training moved the held-out predictions from the warm start, and how much of the
  measured shift no baseline explains, both as a fraction of the measured shift's norm;
- per held-out condition: both models' ``pearson_delta`` and whether they predict the same
  thing (the correlation of what each predicts beyond the mean training shift);
- the training loss and the gradient norm of each part of member 1, at its warm start and
  trained (is anything starved of gradient?);
- the held-out trajectory of ``--trajectory N`` steps of a fresh member with the held-out
  conditions used as validation: the best that perfect early stopping could reach. This
  reads the test set on purpose, as a diagnosis; it never chooses a model;
- with ``--data`` (the model's cell-level ``.h5ad``): the share of each held-out condition's
  measured shift that is sampling noise (sum over genes of the variance of the two means,
  over the sum of squared shifts).

    python benchmarks/diagnose_model.py --model assets/models/adamson \\
        --data ../shared/data/adamson_gears_mini.h5ad --out benchmarks/results/diagnose_adamson.json

Prints a summary and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def gradient_norms(member, bundle, graph, train) -> dict:
    """Training loss and gradient norm per top-level part, on every training condition, with
    the objective training uses (:func:`~grape_core.training.step.batch_loss`)."""
    import torch

    from grape_core.nn.inputs import perturbation_tensor
    from grape_core.training.step import batch_loss, structure_l1_weight

    tc = bundle.train_config
    x = perturbation_tensor(train, bundle.node_index)
    y = torch.as_tensor(bundle.pseudobulk.shifts_of(train), dtype=torch.float32)
    member.train()
    member.zero_grad()
    loss = batch_loss(member, graph, x, y, train_config=tc,
                      reg_weight=structure_l1_weight(tc, len(train), len(bundle.measured)))
    loss.total.backward()
    parts: dict[str, float] = {}
    for name, p in member.named_parameters():
        if p.grad is not None:
            part = name.split(".")[0]
            parts[part] = parts.get(part, 0.0) + float(p.grad.norm()) ** 2
    member.zero_grad()
    member.eval()
    return {"fit": float(loss.fit.detach()), "consistency": float(loss.consistency.detach()),
            "gradient_norm": {k: v ** 0.5 for k, v in parts.items()}}


def noise_share(h5ad: str, bundle, conditions: list[str]) -> dict[str, float]:
    """Per condition: the sampling variance of its measured shift (both means), summed over
    the measured genes, over the sum of squared shifts."""
    import grape_core as gc
    from grape_core import keys
    from grape_core.data.pseudobulk import _group_moments

    adata = gc.read(h5ad)
    n, mean, var = _group_moments(adata, [keys.CTRL, *conditions])
    genes = [str(g) for g in adata.var[keys.GENE_NAME]] if keys.GENE_NAME in adata.var else list(adata.var_names)
    position = {g: i for i, g in enumerate(genes)}
    cols = [position[g] for g in bundle.measured]
    n, mean, var = n[:, None], mean[:, cols], var[:, cols]
    noise = var[1:] / n[1:] + var[0] / n[0]
    shift = mean[1:] - mean[0]
    return {c: float(noise[i].sum() / (shift[i] ** 2).sum()) for i, c in enumerate(conditions)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", help="the model's cell-level .h5ad (for the noise share)")
    parser.add_argument("--trajectory", type=int, default=1500, help="steps of the diagnostic run (0: skip)")
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args(argv)

    import torch

    import grape_core as gc
    from grape_core import keys
    from grape_core.evaluation.metrics import pearson
    from grape_core.nn.inputs import perturbation_tensor, predict_shifts
    from grape_core.training.warm import new_member
    from grape_core.training.members import train_member

    torch.set_num_threads(1)
    model = gc.load(args.model)
    b = model.bundle
    pb, graph, split = b.pseudobulk, b.graph, b.split
    train = [c for c in split.train if c in pb and c != keys.CTRL]
    test = [c for c in split.test if c in pb and c != keys.CTRL]
    measured = pb.shifts_of(test)
    args_state = {"model_config": b.model_config, "encoder_args": b.manifest.encoder_args}
    warm = [new_member(pb, graph, b.node_index, train, encoder_state=m.encoder.state_dict(),
                       seed=info.seed, **args_state)
            for m, info in zip(b.members, b.manifest.training.members)]
    for member in warm:  # as training does before its first step
        if member.structure.learn:
            member.refresh_structure(graph)
    perts = perturbation_tensor(test, b.node_index)
    with torch.no_grad():
        trained = torch.stack([predict_shifts(m, graph, perts) for m in b.members]).numpy()
        started = torch.stack([predict_shifts(m, graph, perts) for m in warm]).numpy()
    baselines = model.baselines()
    propagation = baselines["propagation"].predict(test) - pb.control_mean
    typical = baselines["train_mean"].predict(test) - pb.control_mean
    grape = trained.mean(0)

    def pd(pred):
        return float(np.mean([pearson(pred[i], measured[i]) for i in range(len(test))]))

    def share(a, c):
        return float(np.linalg.norm(a - c) / np.linalg.norm(measured))

    result = {
        "model": b.name, "train_conditions": len(train), "held_out": test,
        "steps_kept": [m.best_step for m in b.manifest.training.members],
        "pearson_delta": {"grape": pd(grape), "warm_start": pd(started.mean(0)),
                          "propagation": pd(propagation)},
        "per_condition": {c: {"grape": pearson(grape[i], measured[i]),
                              "propagation": pearson(propagation[i], measured[i]),
                              "beyond_mean_agreement": pearson(grape[i] - typical[i],
                                                               propagation[i] - typical[i])}
                          for i, c in enumerate(test)},
        "members_pearson_delta": [pd(t) for t in trained],
        "members_warm_start_mse": [float(np.mean((w - measured) ** 2)) for w in started],
        "moved_from_warm_start": share(grape, started.mean(0)),
        "grape_vs_propagation": share(grape, propagation),
        "unexplained_by_propagation": share(measured, propagation),
        "member1_warm_start": gradient_norms(warm[0], b, graph, train),
        "member1_trained": gradient_norms(b.members[0], b, graph, train),
    }
    if args.trajectory:
        config = b.train_config.replace(patience=10 ** 9, max_steps=args.trajectory)
        history = train_member(pb, graph, b.node_index, train, test, train_config=config,
                               seed=b.manifest.training.members[0].seed,
                               encoder_state=b.members[0].encoder.state_dict(),
                               progress=True, **args_state).history
        result["held_out_trajectory"] = [{"step": h["step"], "mse": h["val_mse"]} for h in history]
        result["best_held_out_mse_any_step"] = min(h["val_mse"] for h in history)
        result["held_out_mse_step0"] = history[0]["val_mse"]
    if args.data:
        result["noise_share"] = noise_share(args.data, b, test)

    p = result["pearson_delta"]
    print(f"{b.name}: {len(train)} training / {len(test)} held-out conditions; steps kept {result['steps_kept']}")
    print(f"pearson_delta  GRAPE {p['grape']:.3f}  its warm start {p['warm_start']:.3f}  "
          f"propagation {p['propagation']:.3f}")
    print(f"as a share of the measured shift: training moved GRAPE {result['moved_from_warm_start']:.3f} "
          f"from its warm start; GRAPE - propagation {result['grape_vs_propagation']:.3f}; "
          f"measured - propagation {result['unexplained_by_propagation']:.3f}")
    for c, row in result["per_condition"].items():
        print(f"{c}: pearson_delta GRAPE {row['grape']:.3f}, propagation {row['propagation']:.3f}; "
              f"their predictions beyond the mean training shift correlate "
              f"{row['beyond_mean_agreement']:.2f}")
    for when in ("member1_warm_start", "member1_trained"):
        g = result[when]
        print(f"{when}: fit {g['fit']:.4f}, consistency {g['consistency']:.4f}, gradient norms "
              + ", ".join(f"{k} {v:.2e}" for k, v in g["gradient_norm"].items()))
    if "held_out_trajectory" in result:
        print(f"held-out mse: step 0 {result['held_out_mse_step0']:.5f}, best of any step "
              f"{result['best_held_out_mse_any_step']:.5f} (perfect early stopping, diagnosis only)")
    if "noise_share" in result:
        print("sampling noise share of the measured shift: "
              + ", ".join(f"{c} {v:.2f}" for c, v in result["noise_share"].items()))
    if args.out:
        from grape_core.io import write_json

        write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
