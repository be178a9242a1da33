"""Entry point: `streamlit run app.py`. Navigation over views/ and the sidebar run picker."""

import streamlit as st

import pagelist

st.set_page_config(
    page_title="Lifelong generative explorer", page_icon=":material/hub:", layout="wide"
)

PAGES = [
    st.Page(p.path, title=p.title, icon=p.icon, default=i == 0)
    for i, p in enumerate(pagelist.PAGES)
]

nav = st.navigation(PAGES)
import ui  # noqa: E402  (after set_page_config: ui configures torch on import)

st.session_state["selection"] = ui.sidebar()
nav.run()
