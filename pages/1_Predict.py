"""Predict: one gene or a pair -> the predicted shift of every measured gene."""

import streamlit as st

from explorer import charts, layout, loaders, report, widgets, why_view

PARTS = {"train": "was measured and used for training", "val": "was measured and used for early stopping",
         "test": "was measured but **held out**: the model never saw it",
         "measured": "was measured in the screen", "unmeasured": "was **not measured**: a pure prediction"}


def main() -> None:
    sel = layout.page("Predict", ":material/bar_chart:",
                      intro="Choose a gene to perturb, or two for a pair, and see which genes respond. "
                            + layout.SHIFT_SENTENCE)
    model = layout.model(sel)
    one(model, sel)
    widgets.perturbation_list_section(sel)


def one(model, sel) -> None:
    """One gene or a pair: chart, interaction, comparison with the measurement, downloads."""
    example = widgets.open_on_example(model, sel)
    left, right = st.columns([3, 1])
    with left:
        genes = widgets.gene_picker(model)
    top = right.slider("Genes in the chart", 5, 50, 20, key="top_n")
    if not genes:
        examples = model.bundle.split.test[:4]
        st.info("Choose a gene above. Perturbations the model never saw in training: "
                + ", ".join(layout.md(layout.short_label(c)) for c in examples))
        return
    perturbed = widgets.resolve(model, genes)
    if perturbed is None:
        return
    with st.spinner(f"Predicting {layout.md(layout.label(perturbed))} with "
                    f"{len(model.bundle.members)} models…"):
        pred = loaders.prediction(sel.folder, sel.stamp, perturbed, False)  # the chart first
    if perturbed == example:
        st.info(f"An example to start with: **{layout.md(layout.label(perturbed))}** was measured but held "
                "out, so you can compare the prediction with the measurement. Of the model's held-out "
                "perturbations it is the one of median accuracy. Choose your own gene above.",
                icon=":material/lightbulb:")
    for warning in (*pred.warnings, *widgets.typical_response(model, pred)):
        st.warning(layout.md(warning), icon=":material/warning:")
    st.markdown(f"**{layout.md(pred.condition)}** {PARTS.get(pred.part, '')}.")
    for note in widgets.replicate_note(model, pred):
        st.info(layout.md(note), icon=":material/target:")

    st.plotly_chart(charts.shift_chart(pred, top=top, title=f"Top {top} predicted shifts after perturbing "
                                       f"{layout.short_label(pred.condition)}"), key="shift_chart")
    st.caption(layout.md(charts.shift_chart_caption(model, pred)))
    if len(pred.perturbed) == 2:
        with st.spinner("Analysing the genetic interaction…"):
            pred = loaders.prediction(sel.folder, sel.stamp, perturbed)
        interaction(pred)
    if pred.measured_shift is not None:
        st.plotly_chart(charts.scatter_measured(pred), key="scatter")
        st.caption("Each dot is a gene: on the dashed line the prediction equals the measurement. "
                   "Pearson r near 1 = the model gets the pattern right.")
    table = charts.prediction_table(pred)
    with st.expander(f"All {len(table)} genes (table)", expanded=False):
        st.dataframe(table, hide_index=True, width="stretch", height=360)
    why_view.why_section(model, sel, pred.perturbed, default=why_view.responding_gene(pred))
    csv, html = st.columns(2)
    csv.download_button("Download the prediction (CSV)", table.to_csv(index=False).encode(),
                        file_name=f"grape_{sel.model}_{pred.condition}.csv", mime="text/csv",
                        icon=":material/download:")
    html.download_button("Download report (HTML)", lambda: report.prediction_report_html(
                             model, pred, why_gene=st.session_state.get("why_gene")),
                         file_name=f"grape_{sel.model}_{pred.condition}.html", mime="text/html",
                         icon=":material/description:", on_click="ignore", key="report",
                         help="One offline file for collaborators: charts, network, interaction, "
                              "model card and how far to trust it.")
    layout.open_in(pred.perturbed, sel, pages=("Network",))


def interaction(pred) -> None:
    st.subheader("Genetic interaction")
    st.markdown(f"The additive expectation (markers: {layout.md(pred.additive_label)}) "
                "is what the pair would do if the two genes acted independently.")
    cols = st.columns(len(pred.interaction))
    for col, (source, fit) in zip(cols, pred.interaction.items()):
        with col:
            st.markdown(f"**{'Predicted' if source == 'predicted' else 'Measured'}: "
                        f"{layout.md(fit['gi_type'])}**")
            st.markdown(layout.md(fit["explanation"]))
            st.dataframe(charts.interaction_summary(fit), hide_index=True, width="stretch")


layout.run(main)
