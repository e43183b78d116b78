"""Review-mode widgets: the reviewer's name (asked once per browser session), the flags under an image with a
'Flag' button and note, and the findings editor's forms. Writes go through core.review's store (locked appends to
RUN/review/); in the read-only default these widgets show the flags and offer nothing that writes."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.errors import UserError
from core.review.records import FINDING_STATUSES, FLAGS, MAX_NOTE, SEVERITIES, check_reviewer
from core.review.store import ReviewStore
from core.runfolder import Run
from dashboard import data, reviewdata, ui


def ask_reviewer() -> None:
    """The sidebar field for the reviewer's name (review mode only); it stays for the browser session."""
    st.sidebar.text_input("Your name (recorded on every flag and finding)", key=ui.REVIEWER_KEY, max_chars=100,
                          placeholder="asked once per session")
    name = reviewer()
    if name:
        st.sidebar.caption(f"Reviewing as **{ui.plain(name)}**")
    elif st.session_state.get(ui.REVIEWER_KEY):
        st.sidebar.error("That name cannot be used: one line of text, no control characters.")


def reviewer() -> str | None:
    """The name given in the sidebar, checked as core.review checks it; None when there is none (or it is bad)."""
    try:
        return check_reviewer(st.session_state.get(ui.REVIEWER_KEY) or "")
    except UserError:
        return None


def store(run_path: str) -> ReviewStore:
    return ReviewStore(Run(run_path))


def flags_text(run_path: str, rel: str) -> str:
    """'flags: off-model (ann) · on-model (bob)' for an image, '' when unflagged or the store cannot be read."""
    try:
        return reviewdata.image_flag_texts(run_path).get(rel, "")
    except data.DataError:
        return ""


def flag_box(run_path: str, rel: Any, key: str) -> None:
    """Under an image: its current flags (every reviewer's), and in review mode a 'Flag' popover (flag + note)."""
    if not isinstance(rel, str) or not rel:
        return
    text = flags_text(run_path, rel)
    if text:
        st.caption(ui.plain(text))
    if not ui.review_mode():
        return
    with st.popover("Flag", icon=":material/flag:"):
        name = reviewer()
        if not name:
            st.info("Enter your name in the sidebar first: it is recorded on every flag.")
            return
        with st.form(f"flag_form_{key}", clear_on_submit=True, border=False):
            flag = st.segmented_control("Flag", FLAGS, key=f"flag_pick_{key}")
            note = st.text_area("Note (optional)", max_chars=MAX_NOTE, key=f"flag_note_{key}")
            saved = st.form_submit_button("Save flag")
        if saved:
            save_flag(run_path, rel, flag, note, name)


def save_flag(run_path: str, rel: str, flag: str | None, note: str, name: str) -> None:
    from core.review.records import Target

    if flag is None:
        st.warning("Choose a flag first.")
        return
    try:
        store(run_path).add_flag(name, Target.image(rel), flag, note)
    except UserError as e:
        st.error(ui.plain(e))
        return
    st.rerun()  # the caption above shows the new flag


def retract_control(run_path: str, ident: str, label: str, key: str) -> None:
    """A 'Retract' button for one flag or finding (review mode): a new line names it; the history keeps both."""
    name = reviewer()
    if not ui.review_mode() or not name:
        return
    if st.button(label, key=f"retract_{key}", icon=":material/undo:"):
        try:
            store(run_path).retract(name, ident, f"retracted in the dashboard by {name}")
        except UserError as e:
            st.error(ui.plain(e))
            return
        st.rerun()


def _evidence(text: str, views: list[str]) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()] + list(views)


def _view_picker(key: str, preselect: bool) -> list[str]:
    """'Attach views as evidence': the links of the pages this session opened (the Prompt grids view of an image,
    a Risks pair...), the most recent first."""
    views = ui.recent_views(exclude="/review")
    if not views:
        st.caption("Views you open (Prompt grids, Risks, ...) can be attached here as evidence.")
        return []
    return st.multiselect("Attach views you opened (their links) as evidence", views,
                          default=views[:1] if preselect else [], key=key)


def new_finding_form(run_path: str, key: str) -> None:
    """Add a finding: title, text, severity, status, mitigation, evidence (one per line), and views opened."""
    if not ui.review_mode():
        return
    name = reviewer()
    if not name:
        st.info("Enter your name in the sidebar to write findings.")
        return
    with st.form(f"finding_form_{key}", clear_on_submit=True):
        title = st.text_input("Title", max_chars=200, key=f"new_title_{key}")
        text = st.text_area("What was found", key=f"new_text_{key}")
        c1, c2 = st.columns(2)
        severity = c1.selectbox("Severity", SEVERITIES, index=1, key=f"new_severity_{key}")
        status = c2.selectbox("Status", FINDING_STATUSES, key=f"new_status_{key}")
        mitigation = st.text_area("Mitigation (optional)", key=f"new_mitigation_{key}")
        evidence = st.text_area("Evidence: image paths, metric names or links, one per line (optional)",
                                key=f"new_evidence_{key}")
        views = _view_picker(f"new_view_{key}", preselect=True)
        if not st.form_submit_button("Add finding"):
            return
    try:
        store(run_path).add_finding(name, title, text, severity, status, mitigation, _evidence(evidence, views))
    except UserError as e:
        st.error(ui.plain(e))
        return
    st.rerun()


def update_finding_form(run_path: str, finding: Any, key: str) -> None:
    """Change a finding's status, severity or mitigation, or add evidence (a new line naming it)."""
    name = reviewer()
    if not ui.review_mode() or not name:
        return
    with st.form(f"update_form_{key}", clear_on_submit=True):
        c1, c2 = st.columns(2)
        status = c1.selectbox("Status", FINDING_STATUSES, index=FINDING_STATUSES.index(finding.status),
                              key=f"upd_status_{key}")
        severity = c2.selectbox("Severity", SEVERITIES, index=SEVERITIES.index(finding.severity),
                                key=f"upd_severity_{key}")
        mitigation = st.text_area("Mitigation", value=finding.mitigation, key=f"upd_mitigation_{key}")
        evidence = st.text_area("Add evidence, one per line (optional)", key=f"upd_evidence_{key}")
        views = _view_picker(f"upd_view_{key}", preselect=False)
        if not st.form_submit_button("Save update"):
            return
    changes = {"status": status if status != finding.status else None,
               "severity": severity if severity != finding.severity else None,
               "mitigation": mitigation if mitigation != finding.mitigation else None,
               "evidence": _evidence(evidence, views)}
    try:
        store(run_path).update_finding(name, finding.id, **changes)
    except UserError as e:
        st.error(ui.plain(e))
        return
    st.rerun()
