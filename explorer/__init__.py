"""GRAPE Explorer, the Streamlit app: the only package that imports streamlit, plotly or pyvis.

``state``  the sidebar's :class:`Selection`, session and URL memory
``loaders``  every cached function: model list, loaded models, predictions, tables
``layout``  the page frame, sidebar, model card, messages and tables
``widgets``  gene picker, suggestions, uploads, pasted signatures
``jobs``  background work (warm-up, screen pre-computation, training), one progress loop
``charts``  plotly figures of library results (no analysis)
``network_view``  the interactive network page (pyvis, offline)
``server``  start, health-check and stop ``streamlit run app.py`` (tests, benchmarks)

Pages (``app.py``, ``pages/``) import this package only; the work is done by ``grape_core``.
"""
