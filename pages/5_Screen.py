"""Screen: which perturbation moves my genes the way I want? (in-silico screen)"""

import streamlit as st

from explorer import charts, jobs, layout, loaders, report, widgets


def main() -> None:
    sel = layout.page("Screen", ":material/manage_search:",
                      intro="Pick target genes (or paste a signature) and a direction: the model scores every "
                            "gene it knows as a perturbation and ranks them by how much they move your targets "
                            "that way, and by how much they disturb everything else.")
    model = layout.model(sel)
    with st.form("screen"):
        left, right = st.columns([3, 2])
        targets = widgets.target_picker(model, left)
        signature = left.text_area("…or paste a signature (gene and weight per line; negative = "
                                   "move the other way)", key="signature", height=90,
                                   placeholder="HBG2 1\nHBE1 1\nGATA1 -0.5")
        direction = right.radio("Direction", ["up", "down"], horizontal=True, key="direction",
                                format_func=lambda d: f"push targets {d}")
        pairs = right.toggle("Also try pairs of the best singles", key="pairs")
        top = right.slider("Candidates to list", 5, 50, 20, key="screen_top")
        run = st.form_submit_button("Run the screen", type="primary", icon=":material/play_arrow:")
    if run:
        weights = widgets.signature(signature) if signature.strip() else {t: 1.0 for t in targets}
        if weights is not None and not weights:
            st.info("Choose target genes or paste a signature first.")
        elif weights:
            st.session_state["screen_args"] = (tuple(weights.items()), direction, pairs, top)
    args = st.session_state.get("screen_args")
    if not args:
        return
    try:
        jobs.prepare_screen(sel, args[0])
        with st.spinner("Ranking the candidates…"):
            result = loaders.screen_result(sel.folder, sel.stamp, *args)
    except layout.GrapeError as exc:
        widgets.gene_error(exc, key="targets", on_click=widgets.use_target)
        return
    for note in result.notes:
        st.info(layout.md(note), icon=":material/info:")
    noise = charts.ranking_is_noise(result)
    if noise:
        st.warning(layout.md(noise), icon=":material/warning:")
    st.plotly_chart(charts.screen_figure(result), key="screen_chart")
    shown = ", ".join(result.targets[:8])
    if len(result.targets) > 8:
        shown += f" and {len(result.targets) - 8} more"
    st.caption(f"Targets: {layout.md(shown)} ({args[1]}). Top left is best: a strong "
               "effect on your targets and little else changed. Error bars: the ensemble's spread, "
               "a lower bound on the uncertainty (for single genes' shifts it is far narrower "
               "than the held-out errors). "
               f"A typical perturbation scores {result.typical_effect:.3f}"
               + (f", a typical pair {result.typical_pair_effect:.3f}" if result.typical_pair_effect
                  is not None else "")
               + "; 'vs typical' is what is specific to a candidate (pairs against pairs), and the "
               "ranking follows it. 'members agree': in how many of the ensemble's "
               f"{result.n_members} members the candidate beats a typical perturbation.")
    shown_table = result.table.dropna(axis="columns", how="all")  # e.g. additive_effect without pairs
    table = st.dataframe(shown_table, hide_index=True, width="stretch", key="screen_table",
                         on_select="rerun", selection_mode="single-row",
                         column_config={"measured": st.column_config.CheckboxColumn("measured in screen"),
                                        "members_agree": st.column_config.NumberColumn(
                                            "members agree", format=f"%d of {result.n_members}")})
    csv, html = st.columns(2)
    csv.download_button("Download the ranking (CSV)", result.table.to_csv(index=False).encode(),
                        file_name=f"grape_{sel.model}_screen.csv", mime="text/csv", icon=":material/download:")
    html.download_button("Download report (HTML)", key="report", mime="text/html", on_click="ignore",
                         data=lambda: report.screen_report_html(model, result, check=report.check_or_none(model)),
                         file_name=f"grape_{sel.model}_screen.html", icon=":material/description:")
    rows = table.selection.rows if table else []
    if rows:
        layout.open_in(result.perturbed[rows[0]], sel)
    else:
        st.caption("Select a row to open that candidate in Predict or Network.")


layout.run(main)
