"""The app's pages in the sidebar's order: the one list app.py, the tests and bench/ read, so a
new page is one line here. Plain data: importing it loads neither Streamlit nor torch."""

from typing import NamedTuple


class Page(NamedTuple):
    path: str  # the page script, run by st.navigation
    title: str  # the sidebar label and the page's st.title (the Overview's title is the run)
    icon: str
    shot: str  # its screenshot, docs/screenshots/<shot>.png


PAGES = [
    Page("views/overview.py", "Overview", ":material/dashboard:", "overview"),
    Page("views/traversal.py", "Latent traversal", ":material/tune:", "traversal"),
    Page("views/latent_map.py", "Latent map", ":material/scatter_plot:", "latent-map"),
    Page("views/interpolation.py", "Interpolation", ":material/linear_scale:", "interpolation"),
    Page("views/generation.py", "Generation grid", ":material/grid_on:", "generation"),
    Page("views/timeline.py", "Expert timeline", ":material/timeline:", "timeline"),
    Page("views/dhsic.py", "dHSIC heatmap", ":material/blur_on:", "dhsic"),
    Page("views/sharedprivate.py", "Shared / private", ":material/join_inner:", "sharedprivate"),
    Page("views/forgetting.py", "Forgetting", ":material/history:", "forgetting"),
    Page("views/experts.py", "Compare experts", ":material/view_column:", "experts"),
    Page("views/compare.py", "Compare runs", ":material/leaderboard:", "compare"),
    Page("views/train.py", "Train", ":material/model_training:", "train"),
]
RUN_PAGES = [p for p in PAGES if p.path != "views/train.py"]  # the pages that show a run
