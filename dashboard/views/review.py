"""Review page: the run's human review. Flags per checkpoint and per prompt category with Wilson 95% CIs, the
agreement between reviewers (Cohen's kappa per pair, Fleiss' for three or more, with n), the findings (an editor in
review mode: add, change status or severity, mitigate, attach the current view as evidence, retract), every flag
with its note, and the one-file review pack to download."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.review.summary import flat_rows
from dashboard import data, review_ui, reviewdata, ui

info = ui.single_run_page("Review", key="review_run")
path, PIPE = info.path, info.pipeline_check
ui.copy_link()
if not ui.review_mode():
    st.info("Read-only. Start the dashboard with `python -m dashboard --runs-dir DIR --review` to flag images and "
            f"edit findings, or use `{reviewdata.command_review(path)}`.", icon=":material/visibility:")
try:
    review = reviewdata.review_summary(path)
except data.DataError as e:
    st.error(f"Run **{ui.plain(info.name)}**: {ui.plain(e)}")
    st.stop()
state = review.state
for w in state.warnings:
    st.warning(ui.plain(w))

c = st.columns(4)
c[0].metric("Reviewed images", review.reviewed_images)
c[1].metric("Current flags", len(state.active))
c[2].metric("Reviewers", len(state.reviewers))
c[3].metric("Open findings", sum(f.status == "open" for f in state.live_findings()))


def rates_chart(rows: list, by: str, title: str) -> None:
    """Share of reviewed images per flag and group, with Wilson 95% CI error bars; the table under it."""
    flat = pd.DataFrame(flat_rows(rows, by))
    if flat.empty:
        st.caption("No image flags yet.")
        return
    fig = go.Figure()
    for flag, sub in flat.groupby("flag", sort=False):
        fig.add_trace(go.Bar(x=sub[by].astype(str), y=sub["rate"], name=flag,
                             error_y=dict(type="data", symmetric=False, array=sub["95% CI high"] - sub["rate"],
                                          arrayminus=sub["rate"] - sub["95% CI low"]),
                             customdata=sub[["images flagged", "images reviewed"]],
                             hovertemplate="%{customdata[0]}/%{customdata[1]} images"))
    label = "PIPELINE CHECK (random weights) · " if PIPE else ""
    fig.update_layout(title=f"{label}{title} (Wilson 95% CI)", barmode="group", yaxis_range=[0, 1], height=340,
                      yaxis_title="share of reviewed images", margin=dict(t=50, b=10))
    st.plotly_chart(fig, key=f"review_chart_{by}")
    st.dataframe(flat, hide_index=True, width="stretch")


st.header("Flags per checkpoint and per prompt category")
st.caption("The unit is the reviewed image; its label is its reviewers' most common current flag (a tie goes to the "
           "more serious flag).")
tab_step, tab_cat = st.tabs(["Per checkpoint", "Per prompt category"])
with tab_step:
    rates_chart(list(review.by_step), "step", "Flags per checkpoint")
with tab_cat:
    rates_chart(list(review.by_category), "category", "Flags per prompt category")

st.header("Agreement between reviewers")
ag = review.agreement
kappas = list(ag.pairs) + ([ag.fleiss] if ag.fleiss else [])
if not kappas:
    st.caption("Needs two reviewers flagging the same images; none so far.")
else:
    st.dataframe(pd.DataFrame([{"method": f"{k.method}'s kappa", "reviewers": ", ".join(k.raters), "n images": k.n,
                                "kappa": k.value, "observed agreement": k.observed, "chance agreement": k.expected,
                                "note": k.why} for k in kappas]), hide_index=True, width="stretch")

st.header("Findings")
if ui.review_mode():
    with st.expander("Add a finding", icon=":material/add:"):
        review_ui.new_finding_form(path, info.name)
if not state.findings:
    st.caption("No findings yet.")
else:
    st.dataframe(pd.DataFrame([{"id": f.id, "title": f.title, "severity": f.severity,
                                "status": "retracted" if f.retracted else f.status, "mitigation": f.mitigation,
                                "reviewer": f.reviewer, "date": f.date, "evidence": len(f.evidence)}
                               for f in state.findings]), hide_index=True, width="stretch")
    by_id = {f.id: f for f in state.findings}
    pick = st.selectbox("Finding", list(by_id), key=f"review_finding_{info.name}",
                        format_func=lambda i: f"[{by_id[i].severity}, {by_id[i].status}] {by_id[i].title}")
    f = by_id[pick]
    with st.container(border=True):
        st.text(f.text)  # text, never Markdown
        st.markdown(f"**Mitigation:** {ui.plain(f.mitigation or 'none recorded')}")
        st.markdown("**Evidence:** " + (", ".join(ui.plain(e) for e in f.evidence) or "none"))
        st.caption(f"{f.id} · by {ui.plain(f.reviewer)} on {f.date} · updated {f.updated} by "
                   f"{ui.plain(', '.join(f.updated_by))}" + (" · retracted" if f.retracted else ""))
        if not f.retracted:
            review_ui.update_finding_form(path, f, f.id)
            review_ui.retract_control(path, f.id, "Retract this finding", f.id)

st.header("Flags")
if not state.active:
    st.caption(f"No flags yet. Flag images on the Prompt grids or Risks pages in review mode, or with "
               f"`{reviewdata.command_review(path)}`.")
else:
    st.dataframe(pd.DataFrame([{"id": a.id, "time": a.time, "reviewer": a.reviewer, "flag": a.flag,
                                "target": a.target.describe(), "note": a.note} for a in reversed(state.active)]),
                 hide_index=True, width="stretch")
    me = review_ui.reviewer()
    mine = [a for a in state.active if a.reviewer == me] if me else []
    if ui.review_mode() and mine:
        pick = st.selectbox("Retract one of your flags", [a.id for a in mine], key=f"review_retract_{info.name}",
                            format_func=lambda i: next(f"{a.flag} on {a.target.describe()} ({a.time})"
                                                       for a in mine if a.id == i))
        review_ui.retract_control(path, pick, "Retract", f"flag_{pick}")

st.header("Review pack")
others = [i for i in data.ok_runs(ui.infos()) if i.name != info.name]
other = st.selectbox("Include a second run", ["(none)"] + [i.name for i in others], key="review_pack_other")
other_path = next((i.path for i in others if i.name == other), None)
st.download_button("Download the review pack (one HTML file)", icon=":material/download:",
                   data=lambda: reviewdata.review_pack(path, other_path), mime="text/html",
                   file_name=f"{info.name}-review-pack.html", key=f"review_pack_{info.name}")
st.caption("Summary, images per checkpoint, CLIP scores with CIs, risks, this review and the model card in one "
           "self-contained file (images inline, nothing fetched): read it offline, print it to PDF. Same as "
           f"`python -m core review-pack {data.q(path)}`.")
