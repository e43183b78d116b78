"""Prompt grids page: a run's images, before (checkpoint 0, the initializer) beside after, paged, with downloads.
The view lives in the URL (`?run=&step=&prompt=&seed=&image=`); in review mode every image has a 'Flag' button."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import data, review_ui, ui

info = ui.single_run_page("Prompt grids", key="grid_run")
run_path, rkey = info.path, info.name

df = ui.load_or_stop(data.images, info)
if df.empty:
    ui.missing(f"{info.name} has no generated images yet.", data.command_generate(run_path))
    st.stop()

steps = sorted(int(s) for s in df["step"].unique())
before = steps[0]
if before != 0:
    st.info(f"No images of checkpoint 0 (the initializer) in {info.name}; comparing against step {before}. "
            f"Generate them with `{data.command_generate(run_path)}`.")
after_steps = steps[1:] or steps
all_prompts = list(dict.fromkeys(df["prompt"]))
all_seeds = sorted(int(s) for s in df["seed"].unique())
linked = df[df["path"] == st.query_params.get("image")]  # ?image=PATH opens that image's pair full size
if not linked.empty:
    hit = linked.iloc[0]
    for key, value in ((f"grid_prompts_{rkey}", [hit["prompt"]]), (f"grid_seeds_{rkey}", [int(hit["seed"])]),
                       (f"grid_full_{rkey}", f"{hit['prompt']} · seed {hit['seed']}")):
        st.session_state.setdefault(key, value)
    if int(hit["step"]) in after_steps:
        st.session_state.setdefault(f"grid_ckpt_{rkey}", int(hit["step"]))
ui.from_url(f"grid_ckpt_{rkey}", "step", after_steps, int)
ui.from_url(f"grid_prompts_{rkey}", "prompt", all_prompts, many=True)
ui.from_url(f"grid_seeds_{rkey}", "seed", all_seeds, int, many=True)
if st.session_state.get(f"grid_ckpt_{rkey}") not in after_steps:
    st.session_state[f"grid_ckpt_{rkey}"] = after_steps[-1]

# ------------------------------------------------------------------------------------------------- choices
c1, c2, c3 = st.columns([2, 3, 1])
with c1:
    if len(after_steps) > 1:
        after = st.select_slider("Checkpoint (after)", options=after_steps, key=f"grid_ckpt_{rkey}")
    else:
        after = after_steps[0]
        st.markdown(f"Checkpoint (after): **step {after}** (the only one with images)")
prompts = c2.multiselect("Prompts", all_prompts, placeholder=f"all {len(all_prompts)} prompts",
                         key=f"grid_prompts_{rkey}")
seeds = c3.multiselect("Seeds", all_seeds, placeholder="all seeds", key=f"grid_seeds_{rkey}")


def full_size_path() -> str | None:
    """The after-image of the pair chosen for the full-size view (its label is 'PROMPT · seed N'), or None."""
    label = st.session_state.get(f"grid_full_{rkey}") or "(none)"
    if label == "(none)":
        return None
    at = df[df["step"] == after]
    hit = at[[f"{p} · seed {s}" == label for p, s in zip(at["prompt"], at["seed"])]]
    return None if hit.empty else str(hit.iloc[-1]["path"])


ui.to_url(run=info.name, step=after, prompt=prompts, seed=seeds, image=full_size_path())
ui.copy_link(c3)
table = data.pairs(df, before, after, prompts, seeds)
if table.empty:
    st.info(f"No images at step {after} for the chosen prompts and seeds.")
    st.stop()

c1, c2, c3 = st.columns([1, 1, 3])
per_page = c1.selectbox("Pairs per page", [6, 12, 24, 48], index=1, key="grid_per_page")
n_pages = data.paginate(len(table), 1, per_page)[3]
page_key = f"grid_page_{rkey}"
if st.session_state.get(page_key, 1) > n_pages:
    st.session_state[page_key] = n_pages
page = c2.number_input(f"Page (of {n_pages})", min_value=1, max_value=n_pages, value=1, step=1, key=page_key)
start, stop, page, n_pages = data.paginate(len(table), page, per_page)
c3.caption(f"{len(table)} prompt x seed pair(s) at step {after} · {len(df)} images in the run · "
           f"showing {start + 1}-{stop}")

# --------------------------------------------------------------------------------------------- the pairs
rows = table.iloc[start:stop].to_dict("records")
for i in range(0, len(rows), 2):
    cols = st.columns(2, border=True)
    for col, r in zip(cols, rows[i:i + 2]):
        with col:
            st.markdown(f"**{ui.plain(r['prompt'])}** · seed {r['seed']}")  # prompts are text, never Markdown
            b, a = st.columns(2)
            with b:
                ui.run_image(run_path, r["before_path"],
                             f"before · step {before}" + (" (initializer)" if before == 0 else ""))
                review_ui.flag_box(run_path, r["before_path"], f"grid_{i}_b_{r['before_path']}")
            with a:
                ui.run_image(run_path, r["after_path"], f"after · step {after}")
                review_ui.flag_box(run_path, r["after_path"], f"grid_{i}_a_{r['after_path']}")

# ---------------------------------------------------------------------------------------- full size view
st.subheader("Full size and download")
labels = {f"{r['prompt']} · seed {r['seed']}": r for r in rows}
if st.session_state.get(f"grid_full_{rkey}") not in ["(none)"] + list(labels):
    st.session_state[f"grid_full_{rkey}"] = "(none)"
choice = st.selectbox("Image pair from this page", ["(none)"] + list(labels), key=f"grid_full_{rkey}")
if choice != "(none)":
    r = labels[choice]
    cols = st.columns(2)
    for col, rel, step in ((cols[0], r["before_path"], before), (cols[1], r["after_path"], after)):
        with col:
            if not isinstance(rel, str) or not rel:  # None or NaN: no partner at this step
                st.caption(f"step {step}: not generated")
                continue
            try:
                path = data.image_file(run_path, rel)
            except data.DataError as e:
                st.warning(ui.plain(e))
                continue
            if not path.exists():
                st.warning(ui.plain(f"{path}: missing (listed in images.csv but not on disk)"))
                continue
            try:
                st.image(data.image_bytes(path), caption=f"step {step}")
            except Exception as e:  # noqa: BLE001 - a bad file is reported, not raised
                st.warning(ui.plain(f"{path}: cannot show ({e})"))
                continue
            st.download_button(f"Download step {step} image", data=lambda p=path: data.file_bytes(p),
                               file_name=f"{info.name}-{Path(rel).parent.name}-{Path(rel).name}",
                               mime="image/png", key=f"dl_{rkey}_{rel}")

# ---------------------------------------------------------------------------------------------- grid PNGs
st.subheader("Grids")
names = data.grids(run_path)
if not names:
    ui.missing(f"{info.name} has no grid images yet.", data.command_generate(run_path),
               "Grids (prompt x seed, checkpoint x seed) are written by `generate`.")
else:
    g = st.selectbox("Grid", names, key=f"grid_png_{rkey}")
    show = st.toggle("Show full size", value=False, key=f"grid_png_full_{rkey}")
    try:
        path = data.grid_file(run_path, g)  # contained in the run: a symlink out of it is refused
        if show:
            st.image(data.image_bytes(path), caption=ui.plain(g))
        else:
            st.image(data.thumbnail(path, 640), caption=f"{ui.plain(g)} (preview; toggle full size above)")
    except Exception as e:  # noqa: BLE001 - a bad file is reported, not raised
        st.warning(ui.plain(f"{g}: cannot show ({e})"))
    else:
        st.download_button("Download grid", data=lambda p=path: data.file_bytes(p),
                           file_name=f"{info.name}-{g}", mime="image/png", key=f"dl_grid_{rkey}_{g}")
