"""'Why does perturbing X move Y?': the exact split of one gene's predicted shift
(:func:`grape_core.serving.explain.explain`) laid out for the Predict and Network pages."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from grape_core.data.conditions import label
from grape_core.serving.explain import responding_gene, signed  # noqa: F401 (pages)

from . import loaders
from .layout import md, show_error
from .state import Selection

METHOD = ("How this is computed: the model's prediction of this gene is split exactly into the "
          "shared response (what every perturbation does), the perturbed gene's own change and "
          "the walks of up to the model's propagation steps from the perturbed gene(s) through "
          "the learned network, each carrying the product of its edge weights and of the "
          "message gains at the states the model passes through; for a pair, what composing it "
          "from its singles adds. It is done in each ensemble member and averaged; the parts add "
          "up to the predicted shift. Share: of the predicted shift (negative: the path pushes "
          "the other way).")


def parts_table(why) -> pd.DataFrame:
    """The parts as shown: what, value, share of the shift, and each member's value."""
    out = pd.DataFrame({"part": why.parts["label"], "shift": why.parts["value"],
                        "share of the prediction": why.parts["share"]})
    for i in range(why.n_members):
        out[f"member {i + 1}"] = why.parts[f"value_member_{i + 1}"]
    return out


def paths_table(why) -> pd.DataFrame:
    """The listed paths as shown (with member agreement)."""
    p = why.paths
    return pd.DataFrame({
        "path": p["path"], "steps": p["length"], "contribution": p["contribution"],
        "share of the prediction": p["share"],
        "members with this sign": [f"{int(k)} of {why.n_members}" for k in p["members_same_sign"]],
        "spread across members": p["spread"]})


def edges_table(why) -> pd.DataFrame:
    """The edges of the listed paths: weight, sign, prior or learned, member agreement."""
    e = why.edges
    if not len(e):
        return pd.DataFrame()
    return pd.DataFrame({
        "source": e["source"], "target": e["target"], "weight": e["weight"], "sign": e["sign"],
        "status": e["status"],
        "members with this sign": [f"{int(k)} of {why.n_members}" for k in e["members_same_sign"]],
        "spread across members": e["spread"], "relation": e["relation"]})


def why_section(model, sel: Selection, perturbed: Sequence[str], *, default: str | None,
                key: str = "why") -> None:
    """Pick a responding gene and show why the perturbation moves it."""
    from grape_core.errors import GrapeError

    measured = sorted(model.measured)
    st.subheader(f"Why does perturbing {md(label(perturbed))} move a gene?")
    index = measured.index(default) if default in measured else 0
    gene = st.selectbox("Responding gene", measured, index=index, key=f"{key}_gene",
                        help="A measured gene: its predicted shift is split into the shared "
                             "response, the perturbed gene's own change and the strongest paths "
                             "through the learned network.")
    try:
        with st.spinner("Following the paths…"):
            why = loaders.explanation(sel.folder, sel.stamp, tuple(perturbed), gene)
    except GrapeError as exc:
        show_error(exc)
        return
    st.markdown(" ".join(md(s) for s in why.sentences()))
    number = st.column_config.NumberColumn(format="%.4g")
    percent = st.column_config.NumberColumn(format="percent")
    members = {f"member {i + 1}": number for i in range(why.n_members)}
    st.dataframe(parts_table(why), hide_index=True, width="stretch", key=f"{key}_parts",
                 column_config={"shift": number, "share of the prediction": percent, **members})
    if len(why.paths):
        st.markdown(f"**The {len(why.paths)} strongest of {why.n_walks:,} paths** "
                    f"(shift of {md(why.gene)}: {signed(why.shift)})")
        st.dataframe(paths_table(why), hide_index=True, width="stretch", key=f"{key}_paths",
                     column_config={"contribution": number, "share of the prediction": percent,
                                    "spread across members": number})
        with st.expander("Edges of these paths"):
            st.dataframe(edges_table(why), hide_index=True, width="stretch", key=f"{key}_edges",
                         column_config={"weight": number, "spread across members": number})
    st.caption(METHOD)
