"""The only Streamlit-aware library code: state, widgets, caching and page texts.

Pages in ``app_pages/`` stay thin by calling into this package; the numerical library
in the rest of ``explorer/`` never imports Streamlit (a test enforces it). The folder
is not called ``pages/``: Streamlit treats that name as a legacy multipage folder and,
on a fresh server, answers a deep link (``/curvature?...``) by running the page alone
with a file-name sidebar instead of ``app.py``'s navigation.
"""
