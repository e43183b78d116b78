"""Dashboard widgets shared by the pages: run pickers, the pipeline-check label, missing-piece and error notes, and
the view's state in the URL (deep links: `from_url` seeds a widget from `?param=`, `to_url` writes the view back,
`copy_link` shows the link to copy).

Data comes only from `dashboard.data`; this module only draws.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import streamlit as st

from dashboard import data

RUNS_DIR_KEY = "runs_dir"  # set once per session by app.py; no widget has this key, so no visitor can change it
REVIEW_KEY = "review_mode"  # True when the server was started with --review (set by app.py, never by a widget)
REVIEWER_KEY = "reviewer_name"  # the reviewer's name, asked once per browser session in review mode
VIEWS_KEY = "_recent_views"  # page address -> the last link of that page this session (most recent first)


def runs_dir() -> str:
    """The runs folder fixed when the dashboard started (command line or $TOMCAT_RUNS_DIR)."""
    return st.session_state.get(RUNS_DIR_KEY) or data.DEFAULT_RUNS_DIR


def review_mode() -> bool:
    """The server was started with --review: pages show flag buttons and the findings editor."""
    return bool(st.session_state.get(REVIEW_KEY))


# -------------------------------------------------------------------------------------------- deep links
def from_url(key: str, param: str, options: Sequence[Any], cast: Any = str, many: bool = False) -> None:
    """Start widget `key` from the URL's `?param=` (once per session: afterwards the widget owns its value).
    Values that do not convert with `cast` or are not among `options` are ignored; `many` reads every value."""
    if key in st.session_state:
        return
    raw = st.query_params.get_all(param) if many else [st.query_params.get(param)]
    values = []
    for value in raw:
        try:
            value = cast(value) if value is not None else None
        except (TypeError, ValueError):
            continue
        if value is not None and value in options:
            values.append(value)
    if many and values:
        st.session_state[key] = values
    elif values:
        st.session_state[key] = values[0]


def to_url(**params: Any) -> None:
    """Make the URL's query say exactly `params` (None and empty values left out; lists repeat the key), so a link
    copied now reopens this view."""
    want = {k: [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v)
            for k, v in params.items() if v is not None and v != "" and v != [] and v != ()}
    have = {k: st.query_params.get_all(k) for k in st.query_params}
    if {k: v if isinstance(v, list) else [v] for k, v in want.items()} != have:
        st.query_params.from_dict(want)
    _remember_view()


def _remember_view() -> None:
    link = link_url()
    if link:
        page = link.split("?", 1)[0]
        views = {page: link, **{k: v for k, v in st.session_state.get(VIEWS_KEY, {}).items() if k != page}}
        st.session_state[VIEWS_KEY] = dict(list(views.items())[:12])


def recent_views(exclude: str = "") -> list[str]:
    """Links of the views this browser session opened, most recent first (one per page), for evidence."""
    return [v for k, v in st.session_state.get(VIEWS_KEY, {}).items() if not exclude or not k.endswith(exclude)]


def link_url() -> str:
    """The full link to this view: the page's address and its query."""
    from urllib.parse import urlencode

    base = st.context.url or ""
    query = urlencode([(k, v) for k in st.query_params for v in st.query_params.get_all(k)])
    return f"{base}?{query}" if query else base


def copy_link(container: Any = None) -> None:
    """A 'Copy link' popover holding this view's link (the box's copy button puts it on the clipboard)."""
    with (container or st).popover("Copy link", icon=":material/link:"):
        st.caption("Opening this link shows this view (run, checkpoint, prompt, seed, image):")
        st.code(link_url(), language=None)


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
    index = 0 if key in st.session_state else min(default, len(names) - 1)  # a value set by a link wins
    name = where.selectbox(label, names, index=index, key=key, format_func=fmt)
    return by_name[name]


def single_run_page(title: str, key: str) -> data.RunEntry:
    """The start of a one-run page: title, stop when there is no readable run, run picker, its label."""
    st.title(title)
    if no_runs():
        st.stop()
    candidates = data.ok_runs(infos())
    from_url(key, "run", [c.name for c in candidates])  # a link's `?run=NAME` picks the run once
    info = pick_run("Run", candidates, key=key)
    if st.query_params.get("run") != info.name:  # another run: the link's step, prompt... were the other's
        to_url(run=info.name)  # the page adds what else its view has (step, prompt, seed, image)
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
