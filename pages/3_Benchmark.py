"""Benchmark: held-out metrics of the model and of every baseline, honestly compared."""

import streamlit as st

from grape_core import ui, viz

METRICS = ("pearson_delta", "pearson_delta_de", "mse", "mse_de", "frac_correct_direction_20",
           "frac_correct_direction_all")


def main() -> None:
    sel = ui.page("Benchmark", ":material/leaderboard:",
                  intro="How good is the model on perturbations it **never saw**? Every number here is "
                        "on held-out perturbations, next to simple baselines run on the same split. "
                        "A model that does not beat them is not useful for that kind of perturbation.")
    b = ui.bundle(sel)
    man = ui.manifest(sel)
    metric = st.selectbox("Metric", METRICS, format_func=viz.metric_label, key="metric")
    test = man.get("metrics", {}).get("test", {})
    if not test:
        st.info("This model has no held-out metrics.")
        return
    overview = viz.metrics_overview(test, METRICS)
    verdict = man.get("metrics", {}).get("verdict", "")
    sentences = viz.honest_sentences(b.metrics, metric)
    left, right = st.columns([3, 2], gap="large")
    left.plotly_chart(viz.metric_bars(overview, metric), key="metric_bars")
    with right:
        st.markdown("**The honest comparison**")
        lost = [s for s in sentences if "baseline beats" in s]
        (st.warning if lost else st.success)(ui.md(" ".join(sentences) or verdict),
                                              icon=":material/balance:")
        if verdict:
            st.caption("On MSE and Pearson of shifts together: " + ui.md(verdict))
    ui.table(overview.drop(columns="key").set_index("model"))
    st.caption("Pearson of shifts: do predicted and measured changes go up and down together "
               "(1 = perfectly). MSE: average squared error of the predicted expression. "
               "n = held-out perturbations each model can predict (additive: pairs whose singles "
               "were measured).")

    st.subheader("Per perturbation and per subgroup")
    st.plotly_chart(viz.per_condition_figure(b.metrics, metric), key="per_condition")
    subgroups = man.get("metrics", {}).get("subgroups", {})
    if subgroups:
        table = viz.subgroup_table(subgroups, metric)
        a, c = st.columns([3, 2])
        a.plotly_chart(viz.subgroup_figure(table, metric), key="subgroups")
        with c:
            ui.table(table)
        c.caption("unseen_single: a gene never perturbed in training; combo_seenN: a pair with N of "
                  "its genes perturbed in training (GEARS' simulation split).")

    st.subheader("Training")
    st.plotly_chart(viz.history_figure(b.history), key="history")
    unc = man.get("uncertainty", {})
    if unc:
        st.caption(f"Error bars mean something: across held-out genes, the ensemble's spread and the "
                   f"actual error correlate (Spearman {unc.get('spearman_std_vs_error', float('nan')):.2f}).")
    if b.ablations is not None and metric in b.ablations:
        st.subheader("Ablations: what each part of the model buys")
        st.plotly_chart(viz.ablation_figure(b.ablations, metric), key="ablations")
        ui.table(b.ablations)

    st.subheader("Screen check: does the in-silico screen rank perturbations right?")
    try:
        with st.spinner("Ranking held-out perturbations with every model…"):
            check = ui.screen_check(sel.folder, sel.stamp)
    except ui.GrapeError as exc:  # e.g. too few held-out perturbations to rank
        st.info(f"No screen check for this model: {ui.md(exc)}.")
        return
    st.plotly_chart(viz.screen_check_figure(check), key="screen_check")
    best = check["spearman"].idxmax()
    st.caption(f"For the genes that vary most, the Spearman correlation between predicted and measured "
               f"shift across the {int(check['n_conditions'].max())} held-out perturbations. Best here: "
               f"{ui.md(viz.model_label(best))}.")


main()
