"""Model card and limitations review page: the run's model card (from `core.card`, the same bytes as
`python -m core card`), its warnings and ethics checklist, and export buttons for every format."""

from __future__ import annotations

import io
import zipfile

import streamlit as st

from core import card as card_mod
from core.card.facts import CardNotReady
from dashboard import data, ui

st.title("Model card and limitations review")
if ui.no_runs():
    st.stop()

ok = data.ok_runs(ui.infos())
c1, c2 = st.columns(2)
ui.from_url("card_run", "run", [i.name for i in ok])  # ?run= from a link
info = ui.pick_run("Run", ok, key="card_run", container=c1)
ui.to_url(run=info.name)
ui.pipeline_label(info)

# the character-vs-style part is read from the folder `python -m core compare` wrote (never recomputed here)
others = [i for i in ok if i.name != info.name]
counterpart = None
if others:
    compared = {i.name: data.comparison_folder(info.path, i.path) for i in others}
    names = ["(none)"] + [i.name for i in others]
    default = next((k + 1 for k, i in enumerate(others) if compared[i.name]), 0)
    pick = c2.selectbox("Counterpart run for the character-vs-style section", names, index=default,
                        key=f"card_cmp_{info.name}",
                        help="The card shows the comparison `python -m core compare` wrote for the two runs.")
    counterpart = next((i for i in others if i.name == pick), None)
    if counterpart:
        ui.pipeline_label(counterpart)

card_command = data.command_card(info.path) + (f" --compare {data.q(counterpart.path)}" if counterpart else "")
try:
    card = data.model_card(info.path, counterpart.path if counterpart else None)
except CardNotReady as e:  # a step to run first (unscored images, a missing comparison...), not damage
    st.warning(f"The model card of **{info.name}** is not ready: {e}")
    st.caption(f"Then build it here or from the command line: `{card_command}`")
    st.stop()
except Exception as e:  # noqa: BLE001 - a damaged file or bad card.yaml is reported for this run only
    st.error(f"The model card of **{info.name}** cannot be built: {e}")
    st.caption(f"Fix the named file, then rebuild it from the command line: `{card_command}`")
    st.stop()

# --------------------------------------------------------------------------------------------- the review
if card.pipeline_check:
    st.warning("This card describes a **pipeline check** (random weights). It must not be published as a model.",
             icon=":material/warning:")
st.subheader("Limitations review")
if card.warnings:
    for w in card.warnings:
        if w != data.PIPELINE_CHECK_LABEL:
            st.warning(w, icon=":material/warning:")
else:
    st.success("The card raises no warnings.")

st.markdown("**Ethics checklist** (declared by you in the run's `card.yaml`; nothing here is guessed)")
ethics = (card.data or {}).get("ethics") or {}
icons = {"open": "☐ open", "addressed": "☑ addressed", "not-applicable": "– not applicable"}
rows = [{"item": title, "status": icons.get((ethics.get(key) or {}).get("status", "open"), "open"),
         "notes": (ethics.get(key) or {}).get("notes", "")} for key, title in card_mod.ETHICS_ITEMS.items()]
st.dataframe(rows, hide_index=True, width="stretch")
with st.expander("How to fill in the checklist and the owner"):
    st.markdown("Write a commented `card.yaml` into the run, edit it, and the card updates here on the next rerun:")
    st.code(f"python -m core card {data.q(info.path)} --init-overrides", language="bash")
    st.code(card_mod.overrides_template(), language="yaml")

# ----------------------------------------------------------------------------------------------- export
st.subheader("Export")
cols = st.columns(len(card_mod.FORMATS) + 1)
for col, fmt in zip(cols, card_mod.FORMATS):
    col.download_button(
        f"Download {fmt.upper()}", data=lambda f=fmt: card_mod.render(card, f),
        file_name=f"{info.name}-{card_mod.FILE_NAMES[fmt]}", mime=card_mod.MIME_TYPES[fmt],
        key=f"card_dl_{fmt}_{info.name}")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for fmt in card_mod.FORMATS:
            z.writestr(card_mod.FILE_NAMES[fmt], card_mod.render(card, fmt))
        for name, png in card.figures.items():
            z.writestr(f"{card_mod.IMAGES_SUBDIR}/{name}", png)
        z.writestr(card_mod.LICENSE_FILE_NAME, card_mod.license_text())  # the licence's 4(b): a copy, not a link
    return buf.getvalue()


cols[-1].download_button("Download all (zip)", data=_zip, file_name=f"{info.name}-model-card.zip",
                         mime="application/zip", key=f"card_dl_zip_{info.name}")
st.caption(f"The same files as `{card_command}` writes (Markdown refers to figures under "
           "images/, included in the zip; HTML has them inline), with the licence text as LICENSE.")

# ------------------------------------------------------------------------------------------------ the card
st.subheader("The card")
tab_html, tab_md = st.tabs(["Rendered", "Markdown source"])
with tab_html:
    try:
        st.html(card_mod.fragment(card))  # the same body as card.html, its stylesheet scoped to the card
    except Exception as e:  # noqa: BLE001
        st.error(f"The HTML card could not be rendered: {e}")
with tab_md:
    try:
        st.code(card_mod.render(card, "md").decode("utf-8"), language="markdown")
    except Exception as e:  # noqa: BLE001
        st.error(f"The Markdown card could not be rendered: {e}")

ui.copy_link()
