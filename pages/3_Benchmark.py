"""Benchmark: held-out metrics of the model and of every baseline, honestly compared."""

import streamlit as st

from explorer import benchmark_view, charts, layout

METRICS = ("pearson_delta", "pearson_delta_de", "mse", "mse_de", "frac_correct_direction_20",
           "frac_correct_direction_all")


def main() -> None:
    sel = layout.page("Benchmark", ":material/leaderboard:",
                      intro="How good is the model on perturbations it **never saw**? Every number here is "
                            "on held-out perturbations, next to simple baselines run on the same split. "
                            "A model that does not beat them is not useful for that kind of perturbation.")
    b = layout.model(sel).bundle
    man = b.manifest
    metric = st.selectbox("Metric", METRICS, format_func=charts.metric_label, key="metric")
    if man.metrics is None or not man.metrics.test:
        st.info("This model has no held-out metrics.")
        return
    overview = charts.metrics_overview(man.metrics.test, METRICS)
    verdict = man.metrics.verdict
    comparisons = charts.compare(b.metrics, metric)
    left, right = st.columns([3, 2], gap="large")
    left.plotly_chart(charts.metric_bars(overview, metric), key="metric_bars")
    with right:
        st.markdown("**The honest comparison**")
        lost = any(c.baseline_wins for c in comparisons)
        (st.warning if lost else st.success)(layout.md(" ".join(c.sentence for c in comparisons) or verdict),
                                              icon=":material/balance:")
        if verdict:
            st.caption("On MSE and Pearson of shifts together: " + layout.md(verdict))
    layout.table(overview.drop(columns="key").set_index("model"))
    st.caption("Pearson of shifts: do predicted and measured changes go up and down together "
               "(1 = perfectly). MSE: average squared error of the predicted expression. "
               "n = held-out perturbations each model can predict (additive: pairs whose singles "
               "were measured; its bar is hatched). Replicate: half of each perturbation's cells "
               "scored against the other half, the data's own ceiling. Differences of 0.001 or "
               "less (1 % on errors) are ties.")
    layout.ceiling(b, metric)

    st.subheader("Per perturbation and per subgroup")
    st.plotly_chart(charts.per_condition_figure(b.metrics, metric), key="per_condition")
    if man.metrics.subgroups:
        table = charts.subgroup_table(man.metrics.subgroups, metric)
        a, c = st.columns([3, 2])
        a.plotly_chart(charts.subgroup_figure(table, metric), key="subgroups")
        with c:
            layout.table(table)
        c.caption("unseen_single: a gene never perturbed in training; combo_seenN: a pair with N of "
                  "its genes perturbed in training (GEARS' simulation split).")

    benchmark_view.decomposition(sel)

    if man.uncertainty:
        st.subheader("Error bars: how often the measured shift fell inside")
        held = charts.interval_coverage(man)
        for column, (label, value, help) in zip(st.columns(max(len(held), 1)), held):
            column.metric(label, value, help=help)
        st.caption(layout.md(charts.error_bar_record(man)))

    st.subheader("Training")
    st.plotly_chart(charts.history_figure(b.history), key="history")
    if b.ablations is not None and metric in b.ablations:
        st.subheader("Ablations: what each part of the model buys")
        st.plotly_chart(charts.ablation_figure(b.ablations, metric), key="ablations")
        layout.table(b.ablations)

    benchmark_view.planted(metric)
    benchmark_view.screen_check(sel)

layout.run(main)
