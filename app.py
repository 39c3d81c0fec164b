"""GRAPE Explorer: `streamlit run app.py` (offline; models in assets/models)."""

import streamlit as st

from explorer import charts, jobs, layout, loaders, widgets


@layout.guarded
def home() -> None:
    sel = layout.page("GRAPE Explorer", layout.APP_ICON)
    st.markdown(
        "GRAPE predicts how the expression of every measured gene changes when you knock down or "
        "switch on one gene, or two at once, in a CRISPR Perturb-seq screen. It learns from the "
        "screen's measured perturbations and from what is known about each gene (its description "
        "and DNA sequence, coding or non-coding), connected in a gene network that it refines "
        "while training. Use it to explore perturbations nobody measured yet, and check on the "
        "Benchmark page how well it does on perturbations it never saw.")
    st.image(charts.pipeline_svg(), width="stretch")
    st.caption(layout.SHIFT_SENTENCE)

    entries = loaders.model_entries(sel.models_dir)
    st.subheader("Models")
    st.dataframe(layout.models_table(entries), hide_index=True, width="stretch")
    if sel.ok:
        st.subheader(f"Model card: {layout.md(sel.model)}")
        layout.model_card(sel)
    jobs.full_screen_section(sel)
    own_data(sel)


def own_data(sel: layout.Selection) -> None:
    st.subheader("Use my own data")
    st.markdown("A Perturb-seq screen in the GEARS `.h5ad` format: log-normalised expression, "
                "a condition column (`ctrl`, `GENE+ctrl`, `A+B`). It stays on this computer.")
    upload, local = st.tabs(["Upload a file", "A file on this computer"])
    path, name = None, ""
    with upload:
        uploaded = st.file_uploader(f"Perturb-seq file (.h5ad, up to {widgets.upload_limit_mb():g} MB)",
                                    type=["h5ad"], key="upload")
        if uploaded is not None:
            path, name = widgets.save_upload(uploaded), uploaded.name
    with local:
        typed = st.text_input("Path of a .h5ad file", key="data_path",
                              placeholder="e.g. ~/data/perturb_processed.h5ad")
        if typed.strip() and path is None:
            path, name = typed.strip(), typed.strip()
    if path is None:
        return
    data = widgets.read_data(path, display_name=name)
    if data is None:
        return
    _, desc, _ = data
    layout.data_summary(desc, name)
    evaluate, train = st.columns(2, gap="large")
    with evaluate:
        st.markdown(f"**Evaluate {layout.md(sel.model or 'a model')} on this file** "
                    "(needs the same measured genes)")
        if sel.ok and st.button(f"Evaluate {layout.md(sel.model)}", key="evaluate"):
            result = widgets.evaluate_on(sel, path)
            if result is not None:
                metrics, verdict = result
                layout.table(metrics)
                st.caption(layout.md(verdict))
    with train:
        st.markdown("**Train a new model on this file** (saved to your models folder)")
        with st.form("train"):
            model_name = st.text_input("Model name", value="my-screen", key="train_name")
            ensemble = st.slider("Models in the ensemble", 1, 5, 2, key="train_ensemble")
            steps = st.slider("Maximum optimisation steps per model", 100, 3000, 2000, step=100, key="train_steps")
            if st.form_submit_button("Train"):
                folder = jobs.train_model(sel, path, name=model_name, ensemble=ensemble, max_steps=steps)
                if folder is not None:
                    st.success(f"Saved to {layout.md(folder)}; choose **{layout.md(model_name)}** in the sidebar.")


def main() -> None:
    st.set_page_config(page_title=layout.APP_TITLE, page_icon=layout.FAVICON, layout="wide")
    pages = [st.Page(home, title=layout.HOME[0], icon=layout.HOME[1], default=True)]
    pages += [st.Page(path, title=title, icon=icon, url_path=title) for path, title, icon in layout.PAGES]
    st.navigation(pages).run()


main()
