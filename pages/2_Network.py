"""Network: what the model learned against its prior, around the chosen gene(s), and why a
perturbation moves a gene."""

import streamlit as st

from explorer import charts, layout, loaders, network_view, widgets, why_view


def main() -> None:
    sel = layout.page("Network", ":material/share:",
                      intro="The model passes messages along a gene network. It starts from a **prior** "
                            "(shared GO terms, co-expression, similar descriptions) and **learns** how strongly, "
                            "and with which sign, each connection carries a perturbation. First what it "
                            "changed against the prior, then the network around your genes.")
    model = layout.model(sel)
    net = loaders.learned_network(sel.folder, sel.stamp)
    changed(sel, model, net)
    example = widgets.open_on_example(model, sel)
    left, mid, right = st.columns([3, 1, 1])
    with left:
        genes = widgets.gene_picker(model, label="Gene(s) at the centre")
    hops = mid.slider("Neighbourhood (steps)", 1, 3, 1, key="hops",
                      help="1 = direct neighbours; 2 = neighbours of neighbours.")
    top_k = right.slider("Strongest edges shown", 10, 200, 60, step=10, key="top_k")
    focus = widgets.resolve(model, genes) if genes else None
    if focus is not None:
        if focus == example:
            st.info(f"An example to start with: **{layout.md(layout.label(focus))}**, held out in training "
                    "(as on Predict). Choose your own gene above.", icon=":material/lightbulb:")
        with st.spinner("Drawing the network…"):
            page_html, edges = loaders.network_view(sel.folder, sel.stamp, focus, hops, top_k)
        layout.show_html(page_html, height=680)
        st.caption(f"{len(edges)} edges. Node colour: biotype; edge colour: dark = in the prior and learned, "
                   "purple = learned only (new); thin dashed grey = in the prior but dropped; dotted = the "
                   "ensemble's members disagree on its sign; width = learned strength. Hover for the members' "
                   "agreement; drag nodes, zoom with the wheel.")
        st.download_button("Download this view (HTML, works offline)", page_html.encode(),
                           file_name=f"grape_{sel.model}_{'_'.join(focus)}_network.html",
                           mime="text/html", icon=":material/download:")
        pred = loaders.prediction(sel.folder, sel.stamp, focus, False)  # the shift; no interaction fit
        why_view.why_section(model, sel, focus, default=why_view.responding_gene(pred), key="net_why")
        layout.open_in(focus, sel, pages=("Predict",))
    elif not genes:
        st.info("Choose a gene above to draw its neighbourhood.")

    st.subheader("What structure learning changed, by relation")
    changes, degrees = loaders.structure_summary(sel.folder, sel.stamp)
    a, c = st.columns(2)
    a.plotly_chart(charts.structure_figure(changes), key="changes")
    c.plotly_chart(charts.degree_figure(degrees, model.bundle.table), key="degrees")
    st.dataframe(changes, hide_index=True, width="stretch")
    st.caption("Relations are typed by biotype (coding / non-coding): each has its own prior "
               "scale and message function. Dots above the dashed line gained connections.")

    st.subheader("Strongest learned interactions")
    new_only = st.toggle("Only those not in the prior", key="new_only")
    st.dataframe(network_view.strongest_edges(net, new_only=new_only), hide_index=True,
                 width="stretch", height=320, column_config=numbers())


def changed(sel, model, net) -> None:
    """What the model changed against its prior, first, with the whole network to download."""
    st.subheader("What changed against the prior")
    sentences = net.change.sentences()
    (st.warning if net.change.nothing_beyond_prior else st.markdown)(layout.md(sentences[0]))
    st.markdown(" ".join(layout.md(s) for s in sentences[1:]))
    st.markdown(f"Prior: {layout.md(network_view.prior_label(model.bundle.manifest.graph))}.")
    with st.expander("The edges learning changed most beyond rescaling the prior"):
        st.dataframe(network_view.changed_table(net), hide_index=True, width="stretch",
                     column_config=numbers())
    cols = st.columns(3)
    for col, (fmt, what) in zip(cols, [("graphml", "GraphML (Cytoscape, Gephi)"),
                                        ("csv", "CSV"), ("cx2", "CX2 (Cytoscape Web, NDEx)")]):
        col.download_button(f"Network as {what}", key=f"net_{fmt}", on_click="ignore",
                            data=lambda fmt=fmt: loaders.network_file(sel.folder, sel.stamp, fmt),
                            file_name=f"grape_{sel.model}_network.{fmt}", icon=":material/download:",
                            help="Every edge: weight, sign, prior or learned, the members' agreement "
                                 "(sign agreement, spread) and weights, relation, biotypes.")


def numbers() -> dict:
    return {c: st.column_config.NumberColumn(format="%.4f") for c in network_view.NUMBER_COLUMNS}


layout.run(main)
