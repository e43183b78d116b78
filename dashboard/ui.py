"""Dashboard widgets shared by the pages: run pickers, the pipeline-check label, missing-piece and error notes.

Data comes only from `dashboard.data`; this module only draws.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import streamlit as st

from dashboard import data

RUNS_DIR_KEY = "runs_dir"


def runs_dir() -> str:
    """The runs folder chosen in app.py (command line, $TOMCAT_RUNS_DIR or the sidebar)."""
    return st.session_state.get(RUNS_DIR_KEY) or data.DEFAULT_RUNS_DIR


def infos() -> list[data.RunEntry]:
    return data.run_infos(runs_dir())


def pipeline_label(info: data.RunEntry) -> None:
    """The visible warning every page shows next to a random-weight (or unknown-weight) run."""
    if info.pipeline_check:
        st.warning(f"**{info.name}** - {data.PIPELINE_CHECK_LABEL}", icon=":material/warning:")


def plain(text: Any) -> str:
    """`text` for a Markdown context (st.markdown, captions, notes) shown literally: every character that opens
    Markdown syntax is backslash-escaped, so a prompt like `![t](http://host/x.png)` is text, never an image fetch."""
    return _MD_SPECIAL.sub(r"\\\g<0>", str(text)).replace("\n", " ")


# the characters that open Markdown/Streamlit syntax (links and images, emphasis, code, HTML, math, :icons:,
# tables, headings); '-', '.', '/', ',' and ';' are kept readable because newlines are removed (no list starts)
_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]()<>#+!|~$:=&]")


def run_error(info: data.RunEntry) -> None:
    st.error(f"Run **{plain(info.name)}** cannot be read: {plain(info.error)}", icon=":material/error:")


def load_or_stop(load: Any, info: data.RunEntry) -> Any:
    """`load(info.path)` (a `dashboard.data` loader), or the page shows the error for this run and stops."""
    try:
        return load(info.path)
    except data.DataError as e:
        st.error(f"Run **{plain(info.name)}**: {plain(e)}")
        st.stop()


def missing(what: str, command: str, why: str = "") -> None:
    """Say what a run lacks and the command that makes it."""
    st.info(f"{what}{(' ' + why) if why else ''} Make it with:", icon=":material/info:")
    st.code(command, language="bash")


def no_runs() -> bool:
    """Tell the user there is nothing to show (and how to make runs); True when that is the case."""
    all_infos = infos()
    if data.ok_runs(all_infos):
        return False
    if all_infos:
        st.error(f"No run in `{runs_dir()}` can be read; the damaged runs are listed on the Experiments page.")
    else:
        st.info(f"No runs in `{runs_dir()}`. Build the demo experiment, or train a real run:", icon=":material/info:")
        st.code(f"python -m core demo --runs-dir {data.q(runs_dir())}\n{data.REAL_TRAIN_COMMAND}",
                language="bash")
    return True


def pick_run(label: str, candidates: Sequence[data.RunEntry], key: str, default: int = 0,
             container: Any = None) -> data.RunEntry | None:
    """A run selectbox (readable runs only) that shows the pipeline-check label for the chosen run."""
    where = container or st
    if not candidates:
        return None
    names = [c.name for c in candidates]
    by_name = {c.name: c for c in candidates}

    def fmt(n: str) -> str:
        i = by_name[n]
        tag = " ⚠ random weights" if i.pipeline_check else ""
        return f"{n} ({i.record.property or '?'}){tag}"

    if key in st.session_state and st.session_state[key] not in names:
        del st.session_state[key]  # the runs folder changed under the widget
    name = where.selectbox(label, names, index=min(default, len(names) - 1), key=key, format_func=fmt)
    return by_name[name]


def single_run_page(title: str, key: str) -> data.RunEntry:
    """The start of a one-run page: title, stop when there is no readable run, run picker, its label."""
    st.title(title)
    if no_runs():
        st.stop()
    candidates = data.ok_runs(infos())
    linked = st.query_params.get("run")  # a link such as the Sweeps page's `?run=NAME` picks the run once
    if key not in st.session_state and linked in {c.name for c in candidates}:
        st.session_state[key] = linked
    info = pick_run("Run", candidates, key=key)
    pipeline_label(info)
    return info


def pipeline_demo_banner(all_infos: list[data.RunEntry]) -> None:
    """Shown on every page when the runs folder holds only random-weight runs."""
    if data.only_pipeline_checks(all_infos):
        st.warning(
            "**Pipeline demonstration with random weights.** Every run in this folder was made with random "
            "weights: the images, CLIP scores and nearest words here test the code path only and say nothing "
            "about what Stable Diffusion learns. To run the real thing, train with the published weights:\n\n"
            f"`{data.REAL_TRAIN_COMMAND}`\n\nthen `python -m core generate`, `score`, `compare` and `card` "
            "on the new run.",
            icon=":material/warning:",
        )


def image_or_note(path: Any, caption: str = "", width: int | None = None) -> None:
    """A cached thumbnail, or a short note when the file is missing or not an image."""
    if path is None:
        st.caption(f"{plain(caption)}: not generated")
        return
    try:
        st.image(data.thumbnail(path), caption=plain(caption), width=width or data.THUMB_SIZE)
    except data.DataError as e:
        st.warning(plain(e))


def run_image(run_path: str, rel: Any, caption: str = "", width: int | None = None) -> None:
    """The thumbnail of an images.csv path, contained in its run (a path out of the run is refused in a note)."""
    if not isinstance(rel, str) or not rel:  # no partner image: None, or NaN after a pandas merge (truthy!)
        image_or_note(None, caption, width)
        return
    try:
        path = data.image_file(run_path, rel)
    except data.DataError as e:
        st.warning(plain(e))
        return
    image_or_note(path, caption, width)
