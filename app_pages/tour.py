import streamlit as st

from explorer.presets import CLAIMS, PRESETS
from explorer.ui import tour

st.title("Paper tour")
st.markdown(
    "Every claim of Martens (2020) and Kunstner, Balles & Hennig (2019) that the "
    "explorer makes is one click away. **Load** runs the preset, draws the plots that "
    "make the point and checks the claim live: the badge shows each measured number "
    "with its tolerance, and the test suite runs the very same checks."
)
for warning in tour.seed_from_url():
    st.warning(warning)
size = tour.size_picker()
for claim, statement in CLAIMS.items():
    st.header(f"{claim} · {statement}", anchor=claim.lower())
    for preset in PRESETS.values():
        if preset.claim == claim:
            tour.card(preset, size)
            st.divider()
