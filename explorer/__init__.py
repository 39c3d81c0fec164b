"""GRAPE Explorer, the Streamlit app: the only package that imports streamlit.

``state``  the sidebar's :class:`Selection`, session and URL memory; the full-screen runs
(server-side, so a reload finds them)
``loaders``  every cached function: model list, loaded models, predictions, tables
``layout``  the page frame, sidebar (with the full-screen progress), model card, messages, tables
``widgets``  gene picker, suggestions, uploads, pasted signatures
``jobs``  background work (warm-up, screen pre-computation, training, full public screens)
``why_view``, ``benchmark_view``  sections of the Predict, Network and Benchmark pages
``server``  start, health-check and stop ``streamlit run app.py`` (tests, benchmarks)

The figures come from the library (:mod:`grape_core.viz`), handed on here as ``charts``,
``network_view`` and ``report`` so that pages (``app.py``, ``pages/``) import this package
only; the work is done by ``grape_core``.
"""

from grape_core.viz import charts, network_view
from grape_core.viz import report_charts as report

__all__ = ["charts", "network_view", "report"]
