"""Issue 21's charts and page sections: token similarity and zero-shot identity per checkpoint (CLIP scores page),
both side by side for a character and a style run (Character vs style page), concept leakage and the memorisation
screen with the highest-gap images beside their nearest training image (Risks page). Every number comes from what
`score` wrote (scores.json through the ScoresRecord, images.csv's cond_gap, audit.csv), never recomputed; each
chart's hover gives the measure's provenance; a random-weight run's chart titles say PIPELINE CHECK."""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, ui

COLORS = {"vs_references": "#636efa", "vs_subject": "#00a36c", "vs_init": "#ef553b", "distractor": "#aaaaaa"}


def _title(text: str, pipeline: bool) -> str:
    return f"PIPELINE CHECK (random weights) · {text}" if pipeline else text


def provenance_text(prov: Mapping[str, Any] | None) -> str:
    """One hover line per provenance fact of a measure (encoder, tag/sha256, preprocessing, prompt variant,
    library versions)."""
    if not prov:
        return "provenance not recorded (rescore with this version)"
    parts = [f"encoder: {prov.get('encoder')}"]
    if prov.get("tag"):
        parts.append(f"tag/file: {prov.get('tag')}")
    if prov.get("sha256"):
        parts.append(f"sha256: {str(prov['sha256'])[:16]}…")
    parts.append(f"preprocessing: {prov.get('preprocessing')}")
    parts.append(f"prompt: {prov.get('prompt_variant')}")
    versions = prov.get("versions") or {}
    if versions:
        parts.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v != "not installed"))
    return "<br>".join(str(p).replace("<", "&lt;") for p in parts)


# ------------------------------------------------------------------------------------------------- figures
def token_similarity_figure(rec, name: str = "") -> go.Figure:
    """Cosine of the token's CLIP text feature per checkpoint: to the references (mean, 95% CI band), the subject
    description, the initializer word's prompt and each distractor label."""
    rows = list(rec.token_similarity)
    x = [r["step"] for r in rows]
    hover = provenance_text(rec.provenance.get("token_similarity"))
    fig = go.Figure()
    lo = [r["vs_references_ci"][0] for r in rows]
    hi = [r["vs_references_ci"][1] for r in rows]
    fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor="rgba(99,110,250,0.2)",
                             line=dict(width=0), hoverinfo="skip", name="references 95% CI"))
    for key, label in (("vs_references", "reference images (mean)"), ("vs_subject", "subject description"),
                       ("vs_init", "initializer word")):
        ys = [r[key] for r in rows]
        if all(y is None for y in ys):
            continue
        fig.add_trace(go.Scatter(x=x, y=ys, mode="lines+markers", name=label, line=dict(color=COLORS[key]),
                                 hovertemplate=f"{label}<br>step %{{x}}: %{{y:.4f}}<br>{hover}<extra></extra>"))
    labels = sorted({k for r in rows for k in r["vs_distractors"]})
    for k, label in enumerate(labels):
        fig.add_trace(go.Scatter(x=x, y=[r["vs_distractors"].get(label) for r in rows], mode="lines",
                                 name=f"distractor: {label}", line=dict(color=COLORS["distractor"], width=1),
                                 legendgroup="distractors", showlegend=k == 0 or len(labels) <= 4,
                                 hovertemplate=f"{label}<br>step %{{x}}: %{{y:.4f}}<extra></extra>"))
    fig.update_layout(title=_title(f"Token similarity in CLIP's text space{' · ' + name if name else ''}",
                                   rec.is_pipeline_check),
                      xaxis_title="checkpoint (step; 0 = initializer)", yaxis_title="cosine", height=400,
                      margin=dict(t=50, b=10))
    return fig


def rate_figure(rows, key: str, title: str, yaxis: str, prov: Mapping[str, Any] | None, pipeline: bool,
                name: str = "") -> go.Figure:
    """A share per checkpoint with its 95% CI as error bars (identity `rate`, leakage `survival`)."""
    df = pd.DataFrame(list(rows))
    hover = provenance_text(prov)
    fig = go.Figure(go.Scatter(
        x=df["step"], y=df[key], mode="lines+markers", name=name or key,
        error_y=dict(type="data", symmetric=False, array=df["ci_hi"] - df[key], arrayminus=df[key] - df["ci_lo"]),
        customdata=df[["n"]],
        hovertemplate=f"step %{{x}}: %{{y:.3f}} (n=%{{customdata[0]}})<br>{hover}<extra></extra>"))
    fig.update_layout(title=_title(title, pipeline), xaxis_title="checkpoint (step; 0 = initializer)",
                      yaxis_title=yaxis, yaxis_range=[-0.02, 1.02], height=360, margin=dict(t=50, b=10))
    return fig


def identity_figure(rec, name: str = "") -> go.Figure:
    return rate_figure(rec.identity, "rate", f"Zero-shot identity{' · ' + name if name else ''}",
                       "share of images whose top label is the subject", rec.provenance.get("identity"),
                       rec.is_pipeline_check, name)


def leakage_figure(rec) -> go.Figure:
    return rate_figure(rec.leakage, "survival", "Concept leakage: does the second subject survive?",
                       "share of images where CLIP prefers the second subject", rec.provenance.get("leakage"),
                       rec.is_pipeline_check)


def memorisation_figure(images: pd.DataFrame, rec, pipeline: bool) -> go.Figure:
    """cond_gap per checkpoint as box plots, with checkpoint 0's 95th percentile (the screen's threshold)."""
    fig = go.Figure()
    hover = provenance_text(rec.provenance.get("memorisation") if rec is not None else None)
    for step, g in images.groupby("step", sort=True):
        fig.add_trace(go.Box(y=g["cond_gap"], name=f"step {step}", boxpoints="all", customdata=g[["template"]],
                             hovertemplate=f"%{{y:.3f}}<br>%{{customdata[0]}}<br>{hover}<extra></extra>"))
    threshold = next((r["threshold"] for r in (rec.memorisation if rec is not None else ())
                      if r.get("threshold") is not None), None)
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dot", annotation_text="step-0 95th percentile (screen threshold)")
    fig.update_layout(title=_title("Memorisation screen: cond_gap per checkpoint", pipeline), showlegend=False,
                      yaxis_title="|eps(cond) - eps(uncond)|, mean of the first steps", height=380,
                      margin=dict(t=50, b=10))
    return fig


# --------------------------------------------------------------------------------------------- page sections
def _record(info: data.RunEntry):
    try:
        return data.scores_record(info.path)
    except data.DataError as e:
        st.error(f"Run **{info.name}**: {e}")
        return None


def clip_scores_section(info: data.RunEntry) -> None:
    """CLIP scores page: token similarity and identity per checkpoint."""
    st.subheader("Is it the subject? Token similarity and zero-shot identity")
    rec = _record(info)
    if rec is None:
        return
    c1, c2 = st.columns(2)
    with c1:
        if rec.token_similarity:
            st.plotly_chart(token_similarity_figure(rec), key="identity_token_similarity")
        else:
            note = rec.token_similarity_provenance.get("note") or "not computed by this version of `score`"
            st.info(f"Token similarity: {note}.")
            st.code(data.command_score(info.path) + " --token-clip ViT-L-14:openai", language="bash")
    with c2:
        if rec.identity:
            st.plotly_chart(identity_figure(rec), key="identity_rate")
            labels = rec.identity_labels.get("labels") or []
            st.caption(f"{len(labels)} labels in '{rec.identity_labels.get('template')}': " + "; ".join(labels))
        else:
            st.info("Zero-shot identity: " + (rec.identity_labels.get("note") or "not computed; rescore the run")
                    + ".")


def _protocol_table(rec) -> None:
    prot = rec.protocol
    if not prot:
        return
    rows = prot["rows"]
    last = rows[-1] if rows else {}
    pub = prot["published_textual_inversion"]
    st.dataframe(pd.DataFrame([
        {"": f"ours (step {last.get('step')}, n={last.get('n')})", "CLIP-T": last.get("clip_t"),
         "CLIP-I": last.get("clip_i"), "DINO": last.get("dino")},
        {"": "CustomConcept101 textual inversion (published)", "CLIP-T": pub["clip_t"], "CLIP-I": pub["clip_i"],
         "DINO": pub["dino"]}]), hide_index=True, width="stretch")
    st.caption("Source: " + prot["source"] + ". What differs: " + "; ".join(prot["differences"]) + ".")


def character_vs_style_section(a: data.RunEntry, b: data.RunEntry) -> None:
    """Character vs style page: token similarity and identity of the two runs side by side."""
    st.subheader("Is it the subject? Token similarity and identity, side by side")
    cols = st.columns(2)
    for col, info in zip(cols, (a, b)):
        with col:
            rec = _record(info)
            if rec is None:
                continue
            if rec.token_similarity:
                st.plotly_chart(token_similarity_figure(rec, info.name), key=f"cvs_token_{info.name}")
            if rec.identity:
                st.plotly_chart(identity_figure(rec, info.name), key=f"cvs_identity_{info.name}")
            if not rec.token_similarity and not rec.identity:
                ui.missing(f"{info.name} has no token similarity or identity yet.",
                           data.command_score(info.path) + " --token-clip ViT-L-14:openai --subject 'WHO'")
            _protocol_table(rec)


def risks_section(info: data.RunEntry) -> None:
    """Risks page: concept leakage, and the memorisation screen with the highest images beside their nearest
    training image from the audit."""
    path = info.path
    st.header("Does the token swallow the other subjects of a prompt?")
    rec = _record(info)
    if rec is not None and rec.leakage:
        st.plotly_chart(leakage_figure(rec), key="risks_leakage")
        st.dataframe(pd.DataFrame(list(rec.leakage)), hide_index=True, width="stretch")
        st.caption("Against the same prompts and seeds at checkpoint 0 (`change`, paired bootstrap 95% CI). "
                   "Prompts: " + "; ".join(sorted(rec.identity_labels.get("leakage_subjects") or {})))
    elif rec is not None:
        ui.missing(f"{info.name} has no leakage images scored yet.",
                   f"python -m core generate {data.q(path)} --prompts prompts/eval/leakage.txt --checkpoints all\n"
                   + data.command_score(path))
    st.header("Memorisation screen")
    st.caption("A screen, not a verdict (Wen et al., ICLR 2024): images whose text-conditional noise prediction "
               "departs unusually far from the unconditional one in the first sampling steps are worth a look; "
               "the threshold is checkpoint 0's 95th percentile.")
    try:
        images = data.images(path)
    except data.DataError as e:
        st.error(str(e))
        return
    if images.empty or "cond_gap" not in images.columns:
        st.info(f"{info.name}'s images were generated before cond_gap was recorded; regenerate them to screen.")
        return
    images = images.assign(cond_gap=pd.to_numeric(images["cond_gap"], errors="coerce")).dropna(subset=["cond_gap"])
    if images.empty:
        st.info(f"{info.name} has no cond_gap values.")
        return
    st.plotly_chart(memorisation_figure(images, rec, info.pipeline_check), key="risks_cond_gap")
    if rec is not None and rec.memorisation:
        st.dataframe(pd.DataFrame(list(rec.memorisation)), hide_index=True, width="stretch")
    _highest_gap_images(info, images)


def _highest_gap_images(info: data.RunEntry, images: pd.DataFrame, k: int = 3) -> None:
    path = info.path
    top = images.sort_values("cond_gap", ascending=False).head(k)
    nearest = data.nearest_training_images(path)
    st.subheader("Highest cond_gap images beside their nearest training image (audit, CLIP)")
    if not nearest:
        ui.missing("No audit yet, so no nearest training images.", data.command_audit(path))
    label = "PIPELINE CHECK · " if info.pipeline_check else ""
    for _, r in top.iterrows():
        c1, c2 = st.columns(2)
        try:
            c1.image(data.image_bytes(data.image_file(path, r["path"])), width="stretch",
                     caption=f"{label}step {r['step']} · cond_gap {r['cond_gap']:.3f} · {r['prompt']}")
        except data.DataError as e:
            c1.warning(str(e))
        match = nearest.get(r["path"])
        if match is not None:
            try:
                c2.image(data.image_bytes(match["file"]), width="stretch",
                         caption=f"{label}nearest training image: {match['name']} (CLIP cosine {match['cosine']:.3f})")
            except data.DataError as e:
                c2.warning(str(e))
