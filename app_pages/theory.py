import streamlit as st

from explorer.ui.theory import SECTIONS

st.title("Theory")
st.markdown(
    "The definitions behind every number the explorer shows, after Martens, *New "
    "insights and perspectives on the natural gradient method* (JMLR 2020). Every "
    "selector's help links here."
)
for section in SECTIONS:
    st.header(section.title, anchor=section.anchor)
    st.markdown(section.body)
