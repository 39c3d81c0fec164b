"""Genes: the model's gene table and a map of its gene embeddings."""

import streamlit as st

from explorer import charts, layout, loaders


def main() -> None:
    sel = layout.page("Genes", ":material/genetics:",
                      intro="Every gene in the model's graph: what is known about it (biotype, name, GO "
                            "terms, whether its DNA sequence was found) and how connected it is before and "
                            "after structure learning. Pick a gene to open it in Predict or Network.")
    layout.model(sel)
    overview, coords = loaders.gene_overview(sel.folder, sel.stamp)
    left, mid, right = st.columns([2, 1, 1])
    query = left.text_input("Search", key="gene_search", placeholder="symbol, name or GO term")
    kinds = mid.pills("Biotype", [charts.CODING, charts.NONCODING], key="gene_kinds", selection_mode="multi",
                      default=[charts.CODING, charts.NONCODING])
    only_measured = right.toggle("Measured genes only", key="gene_measured")
    shown = overview[overview["coding"].map(charts.biotype_class).isin(kinds)]
    if only_measured:
        shown = shown[shown["measured"]]
    if query.strip():
        text = (shown["gene"] + " " + shown["name"] + " " + shown["GO (most specific)"]).str.lower()
        shown = shown[text.str.contains(query.strip().lower(), regex=False)]
    st.caption(f"{len(shown)} of {len(overview)} genes · "
               f"{int((~overview['coding']).sum())} non-coding in the model.")
    picked = _picked(shown)
    if picked:
        st.session_state["gene_pick"] = picked
    st.dataframe(shown, hide_index=True, width="stretch", height=250, key="gene_table",
                 on_select="rerun", selection_mode="single-row")
    chosen = st.session_state.get("gene_pick")
    st.plotly_chart(charts.embedding_figure(overview, coords, highlight=chosen), key="gene_map",
                    on_select="rerun", selection_mode="points")
    st.caption("Each dot is a gene, placed by what the model knows about it (description + DNA); "
               "nearby genes look alike to the model. Click a dot or a table row to pick it.")
    gene = st.selectbox("Gene", list(overview["gene"]), index=None, key="gene_pick",
                        placeholder="pick a gene in the table or the map")
    if gene:
        row = overview.set_index("gene").loc[gene]
        st.markdown(f"**{layout.md(gene)}** · {layout.md(row['biotype'])} · {layout.md(row['name'])}  \n"
                    f"GO: {layout.md(row['GO (most specific)'] or '–')}")
        layout.open_in([gene], sel)


def _picked(shown) -> str | None:
    """A gene newly clicked in the map or chosen in the table (read from their widget states)."""
    points = (st.session_state.get("gene_map") or {}).get("selection", {}).get("points", [])
    rows = (st.session_state.get("gene_table") or {}).get("selection", {}).get("rows", [])
    clicked = {
        "_map_pick": str(points[0]["customdata"]) if points and points[0].get("customdata") else None,
        "_table_pick": str(shown.iloc[rows[0]]["gene"]) if rows and rows[0] < len(shown) else None,
    }
    for memo, gene in clicked.items():
        if gene != st.session_state.get(memo):
            st.session_state[memo] = gene
            if gene:
                return gene
    return None


layout.run(main)
