"""Dashboard entry: routes the pages with st.navigation and picks the runs folder.

    streamlit run dashboard/app.py --server.address 127.0.0.1 -- --runs-dir DIR [--review]
    python -m dashboard --runs-dir DIR [--review]   (same, on 127.0.0.1 unless --address is given)

The runs folder is `--runs-dir DIR` (after `--`), else $TOMCAT_RUNS_DIR, else `runs`, fixed when the server starts
(no page can point it elsewhere). Read-only by default; `--review` adds flag buttons, notes and the findings editor,
which append to RUN/review/ through core.review (the reviewer's name is asked once per browser session).
The dashboard never imports TensorFlow, keras, keras_cv or torch.
"""

from __future__ import annotations

import os
import sys

import streamlit as st

from dashboard import data, ui  # noqa: E402

st.set_page_config(page_title="tomcat-ti experiments", page_icon=":material/pets:", layout="wide")

PAGES = [
    st.Page("views/experiments.py", title="Experiments", icon=":material/science:", default=True),
    st.Page("views/prompt_grids.py", title="Prompt grids", icon=":material/grid_view:"),
    st.Page("views/clip_scores.py", title="CLIP scores", icon=":material/monitoring:"),
    st.Page("views/character_vs_style.py", title="Character vs style", icon=":material/compare:"),
    st.Page("views/token_explorer.py", title="Token explorer", icon=":material/match_word:"),
    st.Page("views/sweeps.py", title="Sweeps", icon=":material/tune:"),
    st.Page("views/risks.py", title="Risks", icon=":material/policy:"),
    st.Page("views/review.py", title="Review", icon=":material/rate_review:"),
    st.Page("views/model_card.py", title="Model card and limitations", icon=":material/description:"),
]

if ui.RUNS_DIR_KEY not in st.session_state:  # fixed at start; no widget owns these keys
    st.session_state[ui.RUNS_DIR_KEY] = data.runs_dir_from_args(sys.argv[1:], os.environ)
if ui.REVIEW_KEY not in st.session_state:
    st.session_state[ui.REVIEW_KEY] = data.review_mode_from_args(sys.argv[1:])
page = st.navigation(PAGES)
if ui.review_mode():
    from dashboard import review_ui

    review_ui.ask_reviewer()

try:
    all_infos = ui.infos()
    ui.pipeline_demo_banner(all_infos)
    damaged = [i for i in all_infos if i.error]
    if damaged:
        st.sidebar.warning(f"{len(damaged)} damaged run(s): " + ", ".join(i.name for i in damaged)
                           + " (see Experiments)")
    mode = "review mode: flags and findings are saved in the runs" if ui.review_mode() else "read-only"
    st.sidebar.caption(f"{len(all_infos)} run(s) in `{ui.runs_dir()}` · {mode}")
    page.run()
except Exception as e:  # noqa: BLE001 - last safety net: a page must never crash the app
    st.error(f"This page could not be drawn: {type(e).__name__}: {e}")
