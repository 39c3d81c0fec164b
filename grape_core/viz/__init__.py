"""Figures and reports drawn from the library's results, without Streamlit: what the app's
pages show and what ``--report`` writes.

``charts``  plotly figures and display tables (no analysis: that is the library's)
``network_view``  the interactive network page of a neighbourhood (offline HTML)
``report``  a prediction's or a screen's self-contained HTML report (text, tables, trust)
``report_charts``  the same report with its charts inlined (what ``--report`` writes)

Imported on demand: ``import grape_core`` loads no plotting library.
"""
