"""GRAPE Explorer, the Streamlit app: the only package that imports streamlit, plotly or pyvis.

``state``  the sidebar's :class:`Selection`, session and URL memory; the full-screen runs
(server-side, so a reload finds them)
``loaders``  every cached function: model list, loaded models, predictions, tables
``layout``  the page frame, sidebar (with the full-screen progress), model card, messages, tables
``widgets``  gene picker, suggestions, uploads, pasted signatures
``jobs``  background work (warm-up, screen pre-computation, training, full public screens)
``charts``  plotly figures of library results (no analysis)
``network_view``  the interactive network page (pyvis, offline)
``report``  the collaborator report's charts, inlined into one offline HTML file (no Streamlit:
the command line's ``--report`` uses it too)
``server``  start, health-check and stop ``streamlit run app.py`` (tests, benchmarks)

Pages (``app.py``, ``pages/``) import this package only; the work is done by ``grape_core``.
"""
