"""Entry point: `streamlit run app.py`. Navigation over views/ and the sidebar run picker."""

import streamlit as st

st.set_page_config(
    page_title="Lifelong generative explorer", page_icon=":material/hub:", layout="wide"
)

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page("views/traversal.py", title="Latent traversal", icon=":material/tune:"),
    st.Page("views/latent_map.py", title="Latent map", icon=":material/scatter_plot:"),
    st.Page("views/interpolation.py", title="Interpolation", icon=":material/linear_scale:"),
    st.Page("views/generation.py", title="Generation grid", icon=":material/grid_on:"),
    st.Page("views/timeline.py", title="Expert timeline", icon=":material/timeline:"),
    st.Page("views/dhsic.py", title="dHSIC heatmap", icon=":material/blur_on:"),
    st.Page("views/sharedprivate.py", title="Shared / private", icon=":material/join_inner:"),
    st.Page("views/forgetting.py", title="Forgetting", icon=":material/history:"),
    st.Page("views/experts.py", title="Compare experts", icon=":material/view_column:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
]

nav = st.navigation(PAGES)
import ui  # noqa: E402  (after set_page_config: ui configures torch on import)

st.session_state["selection"] = ui.sidebar()
nav.run()
