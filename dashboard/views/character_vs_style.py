"""Character vs style page: a character (object) run and a style run side by side on the same prompt templates and
seeds, and the differences of their CLIP metrics as `python -m core compare` saved them (never recomputed here)."""

from __future__ import annotations

import streamlit as st

from dashboard import data, ui

st.title("Character vs style")
if ui.no_runs():
    st.stop()

ok = data.ok_runs(ui.infos())
if len(ok) < 2:
    st.info("Comparing needs two runs (a character run and a style run); this folder has one. Train the other "
            "with `python -m core train --property style ...` (or `--property object`).")
    st.stop()


def _first(prop: str, fallback: int) -> int:
    return next((k for k, i in enumerate(ok) if i.record.property == prop), fallback)


ia = _first("object", 0)
ib = _first("style", 1 if ia == 0 else 0)
c1, c2 = st.columns(2)
ui.from_url("cmp_a", "run", [i.name for i in ok])  # ?run=A&other=B from a link
ui.from_url("cmp_b", "other", [i.name for i in ok])
a = ui.pick_run("Run A (character)", ok, key="cmp_a", default=ia, container=c1)
b = ui.pick_run("Run B (style)", ok, key="cmp_b", default=ib, container=c2)
ui.to_url(run=a.name, other=b.name)
for col, i in ((c1, a), (c2, b)):
    with col:
        ui.pipeline_label(i)
if a.name == b.name:
    st.info("Pick two different runs.")
    st.stop()


def images_or_note(i: dict, col):
    with col:
        try:
            df = data.images(i.path)
        except data.DataError as e:
            st.error(f"Run **{i.name}**: {e}")
            return None
        if df.empty:
            ui.missing(f"{i.name} has no generated images yet.", data.command_generate(i.path))
            return None
        steps = sorted(int(s) for s in df["step"].unique())
        step = st.selectbox(f"Checkpoint of {i.name}", steps, index=len(steps) - 1, key=f"cmp_step_{i.name}",
                            format_func=lambda s: f"step {s}" + (" (initializer)" if s == 0 else ""))
        return df, step


# ---------------------------------------------------------------------------------------- side by side
st.subheader("Same prompts and seeds")
c1, c2 = st.columns(2)
ga, gb = images_or_note(a, c1), images_or_note(b, c2)
if ga is not None and gb is not None:
    shared = data.shared_pairs(ga[0], ga[1], gb[0], gb[1])
    if shared.empty:
        st.info(f"{a.name} at step {ga[1]} and {b.name} at step {gb[1]} share no prompt template and seed. "
                "Generate both with the same prompt file and seeds, e.g.\n\n"
                f"`{data.command_generate(a.path)} --prompts prompts/eval/character.txt`\n\n"
                f"`{data.command_generate(b.path)} --prompts prompts/eval/character.txt`")
    else:
        per_page = 8
        n_pages = data.paginate(len(shared), 1, per_page)[3]
        key = "cmp_page"
        if st.session_state.get(key, 1) > n_pages:
            st.session_state[key] = n_pages
        page = (st.number_input(f"Page (of {n_pages})", 1, n_pages, 1, key=key) if n_pages > 1 else 1)
        start, stop, _, _ = data.paginate(len(shared), page, per_page)
        st.caption(f"{len(shared)} shared prompt x seed pair(s); showing {start + 1}-{stop}")
        for r in shared.iloc[start:stop].to_dict("records"):
            with st.container(border=True):
                st.markdown(f"{ui.plain(r['template'])} · seed {r['seed']}")  # prompts are text, never Markdown
                x, y = st.columns(2)
                with x:
                    ui.run_image(a.path, r["a_path"], f"A · {r['a_prompt']}")
                with y:
                    ui.run_image(b.path, r["b_path"], f"B · {r['b_prompt']}")

# ------------------------------------------------------------------------------------- metric differences
st.subheader("Metric differences (A - B)")


def show_saved(cmp, where: str) -> None:
    """A comparison folder written by `compare` (core.compare.ComparisonRecord), shown as saved."""
    st.caption(f"{cmp.a.name} ({cmp.a.property}) vs {cmp.b.name} ({cmp.b.property}) · {where} · "
               f"CIs from {cmp.n_boot} bootstrap resamples")
    stale = cmp.stale_reason()
    if stale:
        st.warning(stale, icon=":material/warning:")
    if cmp.is_pipeline_check:
        st.warning(f"{data.PIPELINE_CHECK_LABEL} ({'; '.join(cmp.pipeline_check_reasons)})", icon=":material/warning:")
    st.dataframe(cmp.table, hide_index=True, width="stretch")
    if cmp.png is not None:
        try:
            st.image(data.file_bytes(cmp.png), caption="reconstruction vs editability (saved)")
        except Exception as e:  # noqa: BLE001 - a bad PNG is reported, not raised
            st.warning(f"{cmp.png}: cannot show ({e})")


def not_compared() -> None:
    """No saved comparison of this pair: say what `compare` needs and the command that writes it (the dashboard
    shows what `compare` wrote; it never computes a comparison itself)."""
    lacking = [i for i in (a, b) if not i.has("scores_path")]
    for i in lacking:
        ui.missing(f"{i.name} has no CLIP scores yet, so there is nothing to compare.",
                   data.command_score(i.path))
    if not lacking:
        ui.missing(f"{a.name} and {b.name} have not been compared yet.", data.command_compare(a.path, b.path),
                   "The comparison (tables with paired bootstrap CIs, the plane as HTML and PNG) is written to "
                   f"{ui.runs_dir()}/reports/, where this page finds it.")


pair_folder = data.comparison_folder(a.path, b.path)
if pair_folder:
    try:
        show_saved(data.saved_comparison(pair_folder), pair_folder)
    except data.UserError as e:
        st.error(str(e))
else:
    not_compared()

st.subheader("Saved comparisons")
found = data.saved_comparisons(ui.runs_dir())  # only under the runs folder fixed at start (no free-text folder)
folder = st.selectbox(f"Written by `python -m core compare ...` (found under `{ui.runs_dir()}/reports/`)", found,
                      key="cmp_saved_pick", index=None if not found else 0,
                      placeholder="none yet: `python -m core compare RUN_A RUN_B` writes one there")
if folder and folder == pair_folder:
    st.caption(f"`{ui.plain(folder)}` is this pair's comparison, shown above.")
elif folder:
    try:
        saved = data.saved_comparison(folder)
    except data.UserError as e:
        st.error(str(e))
    else:
        show_saved(saved, folder)

# ------------------------------------------------------------------- issue 21 (dashboard/identity_views.py)
from dashboard import identity_views  # noqa: E402

identity_views.character_vs_style_section(a, b)

ui.copy_link()
