"""Network: the learned gene network against the prior, around the chosen gene(s)."""

import streamlit as st

from explorer import charts, layout, loaders, network_view, widgets


def main() -> None:
    sel = layout.page("Network", ":material/share:",
                      intro="The model passes messages along a gene network. It starts from a **prior** "
                            "(shared GO terms, co-expression, similar descriptions) and **learns** which "
                            "connections help predict perturbations. Here is what it learned around your genes.")
    model = layout.model(sel)
    b = model.bundle
    left, mid, right = st.columns([3, 1, 1])
    with left:
        genes = widgets.gene_picker(model, label="Gene(s) at the centre")
    hops = mid.slider("Neighbourhood (steps)", 1, 3, 1, key="hops",
                      help="1 = direct neighbours; 2 = neighbours of neighbours.")
    top_k = right.slider("Strongest edges shown", 10, 200, 60, step=10, key="top_k")
    if genes:
        focus = widgets.resolve(model, genes)
        if focus is not None:
            with st.spinner("Drawing the network…"):
                page_html, edges = loaders.network_view(sel.folder, sel.stamp, focus, hops, top_k)
            layout.show_html(page_html, height=680)
            st.caption(f"{len(edges)} edges. Node colour: biotype; edge colour: dark = in the prior and "
                       "learned, purple = learned only (new), dashed grey = in the prior but dropped; "
                       "width = strength. Drag nodes, zoom with the wheel, hover for details.")
            st.download_button("Download this network (HTML, works offline)", page_html.encode(),
                               file_name=f"grape_{sel.model}_{'_'.join(focus)}_network.html",
                               mime="text/html", icon=":material/download:")
            layout.open_in(focus, sel, pages=("Predict",))
    else:
        st.info("Choose a gene above to draw its neighbourhood.")

    st.subheader("What structure learning changed")
    changes, degrees = loaders.structure_summary(sel.folder, sel.stamp)
    graph = b.manifest.graph
    st.markdown(f"Prior ({layout.md(network_view.prior_label(graph))}): **{graph.prior_edges}** edges; "
                f"learned: **{graph.learned_edges}** edges, of which {graph.learned_in_prior} were "
                "already in the prior.")
    a, c = st.columns(2)
    a.plotly_chart(charts.structure_figure(changes), key="changes")
    c.plotly_chart(charts.degree_figure(degrees, b.table), key="degrees")
    st.dataframe(changes, hide_index=True, width="stretch")
    st.caption("Relations are typed by biotype (coding / non-coding): each has its own prior "
               "scale and message function. Dots above the dashed line gained connections.")

    st.subheader("Strongest learned interactions")
    new_only = st.toggle("Only those not in the prior", key="new_only")
    st.dataframe(network_view.strongest_learned(b.learned_edges, new_only=new_only), hide_index=True,
                 width="stretch", height=320,
                 column_config={"strength": st.column_config.ProgressColumn(
                     "strength", format="%.3f", min_value=0.0,
                     max_value=float(b.learned_edges["weight"].abs().max()))})


layout.run(main)
