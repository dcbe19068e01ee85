"""Curvature Explorer: the Streamlit entry point (``streamlit run app.py``).

Page configuration and navigation only; every page is a thin script in ``pages/``.
"""

import streamlit as st

st.set_page_config(page_title="Curvature Explorer", page_icon="🧭", layout="wide")

navigation = st.navigation(
    [st.Page("pages/overview.py", title="Overview", icon="🧭", default=True)]
)
navigation.run()
