"""Predict: one gene or a pair -> the predicted shift of every measured gene."""

import streamlit as st

from grape_core import ui, viz

PARTS = {"train": "was measured and used for training", "val": "was measured and used for early stopping",
         "test": "was measured but **held out**: the model never saw it",
         "measured": "was measured in the screen", "unmeasured": "was **not measured**: a pure prediction"}


def main() -> None:
    sel = ui.page("Predict", ":material/bar_chart:",
                  intro="Choose a gene to perturb, or two for a pair, and see which genes respond. "
                        + ui.SHIFT_SENTENCE)
    b = ui.bundle(sel)
    left, right = st.columns([3, 1])
    with left:
        genes = ui.gene_picker(b)
    top = right.slider("Genes in the chart", 5, 50, 20, key="top_n")
    if not genes:
        examples = [c.replace("+ctrl", "") for c in b.split.test[:4]]
        st.info("Choose a gene above. Perturbations the model never saw in training: "
                + ", ".join(ui.md(e) for e in examples))
        return
    condition = ui.resolve(b, genes)
    if condition is None:
        return
    with st.spinner(f"Predicting {condition} with {len(b.members)} models…"):
        frame = ui.prediction(sel, condition)
    attrs = frame.attrs
    for warning in attrs["warnings"]:
        st.warning(ui.md(warning), icon=":material/warning:")
    st.markdown(f"**{ui.md(attrs['condition'])}** {PARTS.get(attrs['part'], '')}.")

    st.plotly_chart(viz.shift_chart(frame, top=top, title=f"Top {top} predicted shifts after perturbing "
                                    f"{attrs['condition'].replace('+ctrl', '')}"), key="shift_chart")
    st.caption("Bars: the model's predicted shift (blue = coding gene, orange = non-coding), with the "
               "ensemble's spread as error bars; grey bars: what the screen measured; markers: what "
               "the simple baselines predict. Long error bars = the models disagree.")
    if "interaction" in attrs:
        interaction(attrs)
    if "measured_shift" in frame:
        fig = viz.scatter_measured(frame)
        st.plotly_chart(fig, key="scatter")
        st.caption("Each dot is a gene: on the dashed line the prediction equals the measurement. "
                   "Pearson r near 1 = the model gets the pattern right.")
    table = viz.prediction_table(frame)
    with st.expander(f"All {len(table)} genes (table)", expanded=False):
        st.dataframe(table, hide_index=True, width="stretch", height=360)
    st.download_button("Download the prediction (CSV)", table.to_csv(index=False).encode(),
                       file_name=f"grape_{sel.model}_{attrs['condition']}.csv", mime="text/csv",
                       icon=":material/download:")
    ui.open_in([g for g in attrs["condition"].split("+") if g != "ctrl"], sel, pages=("Network",))


def interaction(attrs: dict) -> None:
    st.subheader("Genetic interaction")
    st.markdown(f"The additive expectation (markers: {ui.md(attrs.get('additive_label', 'additive'))}) "
                "is what the pair would do if the two genes acted independently.")
    reports = attrs["interaction"]
    cols = st.columns(len(reports))
    for col, (source, report) in zip(cols, reports.items()):
        with col:
            st.markdown(f"**{'Predicted' if source == 'predicted' else 'Measured'}: "
                        f"{ui.md(report['gi_type'])}**")
            st.markdown(ui.md(report["explanation"]))
            st.dataframe(viz.interaction_summary(report), hide_index=True, width="stretch")


main()
