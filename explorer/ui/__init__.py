"""The only Streamlit-aware library code: state, widgets, caching and page texts.

Pages in ``pages/`` stay thin by calling into this package; the numerical library in
the rest of ``explorer/`` never imports Streamlit (a test enforces it).
"""
