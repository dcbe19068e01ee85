"""Curvature Explorer: the Streamlit entry point (``streamlit run app.py``).

Page configuration, plugin loading and navigation only; every page is a thin script
in ``app_pages/`` over the library in ``explorer/``.
"""

from pathlib import Path

import streamlit as st
import torch

from explorer.ui import state
from explorer.ui.plugins import load_app_plugins

# Small models run faster on one thread, and concurrent sessions do not fight
# over the cores (STREAMLIT_NOTES.md).
torch.set_num_threads(1)
st.set_page_config(page_title="Curvature Explorer", page_icon="🧭", layout="wide")
load_app_plugins(str(Path(__file__).parent / "plugins"))

navigation = st.navigation(
    [
        st.Page(
            "app_pages/compare.py", title="Compare optimizers", icon="📉", default=True
        ),
        st.Page("app_pages/curvature.py", title="Curvature", icon="🔬"),
        st.Page("app_pages/landscape.py", title="Landscape", icon="🗺️"),
        st.Page("app_pages/sweep.py", title="Sweep", icon="🧮"),
        st.Page("app_pages/tour.py", title="Paper tour", icon="🎓"),
        st.Page("app_pages/check.py", title="Check your approximation", icon="🧪"),
        st.Page("app_pages/theory.py", title="Theory", icon="📖"),
    ]
)
# While this session has work running, a heartbeat keeps it on any page; a closed
# tab stops beating and its work is cancelled (Limits.lease_seconds).
state.keep_alive()
navigation.run()
