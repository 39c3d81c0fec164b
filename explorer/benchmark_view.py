"""Sections of the Benchmark page: what drives the predictions, the planted-truth grid and
the screen check."""

import streamlit as st

from grape_core.viz import charts

from . import layout, loaders


def decomposition(sel) -> None:
    """The held-out predictions split into the parts the model adds up."""
    parts = loaders.decomposition(sel.folder, sel.stamp)
    if parts is not None:
        st.subheader("What drives the predictions")
        layout.table(parts)
        st.caption(layout.md(charts.decomposition_caption(parts)))


def planted(metric: str) -> None:
    """The planted-truth grid: GRAPE and every baseline on the simulator family."""
    planted = loaders.planted_benchmark(loaders.planted_stamp())
    if planted is not None:
        st.subheader("Planted truth: does the model win on dynamics it was not built from? "
                     "(generated screens)")
        group = st.radio("Held-out perturbations", charts.PLANTED_GROUPS, horizontal=True,
                         format_func=charts.group_label, key="planted_group")
        layout.table(planted.grid(metric if metric in ("pearson_delta", "mse") else "pearson_delta",
                                  group))
        st.caption(layout.md(charts.planted_caption(planted)))
        failed = planted.failures()
        if len(failed):
            st.warning(layout.md(f"Where a baseline beats GRAPE ({len(failed)} of "
                                 f"{len(planted.checks())} checks):"), icon=":material/balance:")
            layout.table(failed)
        with st.expander("Per screen: the prior's worth, structure learning, intervals, screen"):
            layout.table(planted.summary().set_index("screen"))
        ablations = planted.ablations()
        if not ablations.empty:  # the benchmark can be run without them
            st.plotly_chart(charts.planted_ablation_figure(ablations), key="planted_ablations")


def screen_check(sel) -> None:
    """Does the in-silico screen rank held-out perturbations like the measurements?"""
    st.subheader("Screen check: does the in-silico screen rank perturbations right?")
    try:
        with st.spinner("Ranking held-out perturbations with every model…"):
            check = loaders.screen_check(sel.folder, sel.stamp)
    except layout.GrapeError as exc:  # e.g. too few held-out perturbations to rank
        st.info(f"No screen check for this model: {layout.md(exc)}.")
        return
    st.plotly_chart(charts.screen_check_figure(check), key="screen_check")
    best = check["spearman"].idxmax()
    st.caption(f"For the genes that vary most, the Spearman correlation between predicted and measured "
               f"shift across the {int(check['n_conditions'].max())} held-out perturbations. Best here: "
               f"{layout.md(charts.model_label(best))}.")

