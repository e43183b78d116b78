"""The human review (issue 20): the store's records and locked appends, retraction and updates, kappa and Wilson
intervals against hand-computed examples, the `review` CLI's refusals, the review pack (self-contained, escaped,
labelled) and the card's Human Review subsection with hostile notes in every renderer."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

from core.errors import UserError
from core.review.agreement import agreement, cohen_kappa, fleiss_kappa
from core.review.records import Target
from core.review.store import ReviewStore
from core.review.summary import consensus, summarize
from core.runfolder import PIPELINE_CHECK_LABEL, Run
from core.stats import wilson_ci
from tests.fakerun import make_fake_run

ROOT = Path(__file__).resolve().parent.parent
IMG = "images/step-000020/p00-s0.png"
IMG2 = "images/step-000020/p01-s1.png"
HOSTILE = ("<script>alert(1)</script> <img src=x onerror=alert(2)> ![t](http://127.0.0.1:9/track.png) "
           "[x](javascript:alert(3)) | cell | **bold** # not a heading\nsecond line & <b>")


@pytest.fixture
def run(tmp_path) -> Run:
    return make_fake_run(tmp_path / "runs", "fake-object", "object")


# ------------------------------------------------------------------------------------------------ statistics
def test_cohen_kappa_matches_a_hand_computed_example():
    # 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15. p_o = 35/50 = 0.7;
    # p_e = (25/50)(30/50) + (25/50)(20/50) = 0.3 + 0.2 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    k = cohen_kappa(pairs, ("A", "B"))
    assert (k.n, k.observed, k.expected) == (50, pytest.approx(0.7), pytest.approx(0.5))
    assert k.value == pytest.approx(0.4)
    assert "0.400" in k.describe() and "n = 50" in k.describe()
    assert cohen_kappa([("a", "a"), ("a", "a")]).value is None  # chance agreement is 1: undefined, said so
    assert cohen_kappa([]).n == 0 and cohen_kappa([]).value is None


def test_fleiss_kappa_matches_the_published_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories -> P-bar 0.378, P_e 0.213, 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    k = fleiss_kappa([{str(j): c for j, c in enumerate(row)} for row in table])
    assert k.n == 10
    assert k.observed == pytest.approx(0.378, abs=5e-4) and k.expected == pytest.approx(0.213, abs=5e-4)
    assert k.value == pytest.approx(0.210, abs=5e-4)
    # two raters on every item: Fleiss' kappa is Scott's pi of the pairs, close to (not equal to) Cohen's
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    two = fleiss_kappa([{a: 1, b: 1} if a != b else {a: 2} for a, b in pairs])
    assert two.value == pytest.approx((0.7 - (0.55 ** 2 + 0.45 ** 2)) / (1 - (0.55 ** 2 + 0.45 ** 2)))


def test_agreement_uses_cohen_for_pairs_and_fleiss_for_three():
    flags = {"a.png": {"ann": "off-model", "bob": "off-model", "cat": "on-model"},
             "b.png": {"ann": "on-model", "bob": "on-model"}, "c.png": {"ann": "on-model"}}
    ag = agreement(flags)
    assert ag.shared_images == 2 and ag.reviewers == ("ann", "bob", "cat")
    by = {k.raters: k for k in ag.pairs}
    assert by[("ann", "bob")].n == 2 and by[("ann", "bob")].observed == 1.0
    assert by[("ann", "cat")].n == 1 and ("bob", "cat") in by
    assert ag.fleiss is not None and ag.fleiss.n == 2
    assert agreement({"a.png": {"ann": "on-model", "bob": "off-model"}}).fleiss is None  # two reviewers: Cohen only


def test_wilson_interval_against_hand_computed_values():
    # 0/10: centre z^2/2n / (1 + z^2/n) = 0.1388, half the same -> [0, 0.2775]; 5/10 -> [0.2366, 0.7634]
    assert wilson_ci(0, 10) == (0.0, 0.0, pytest.approx(0.27753, abs=1e-4))
    _, lo, hi = wilson_ci(5, 10)
    assert (lo, hi) == (pytest.approx(0.23659, abs=1e-4), pytest.approx(0.76341, abs=1e-4))
    assert wilson_ci(10, 10)[2] == 1.0
    with pytest.raises(ValueError):
        wilson_ci(11, 10)


def test_consensus_breaks_ties_towards_the_serious_flag():
    assert consensus(["on-model", "off-model"]) == "off-model"
    assert consensus(["on-model", "on-model", "harmful"]) == "on-model"
    assert consensus(["copy-suspected", "harmful"]) == "harmful"


# --------------------------------------------------------------------------------------------------- the store
def test_two_processes_appending_100_lines_each_give_200_parsable_lines(run):
    script = textwrap.dedent(f"""
        import sys
        from core.review.records import Target
        from core.review.store import ReviewStore
        from core.runfolder import Run
        store = ReviewStore(Run({str(run.path)!r}))
        who = sys.argv[1]
        for i in range(100):
            flag = "off-model" if i % 2 else "on-model"
            store.add_flag(who, Target.image({IMG!r}), flag, f"{{who}} line {{i}} " * 40)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, name]) for name in ("ann", "bob")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    lines = run.annotations_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 200
    parsed = ReviewStore(run).annotation_lines()
    assert len(parsed) == 200 and len({a.id for a in parsed}) == 200
    for who in ("ann", "bob"):  # each writer's lines are all there, whole, in its own order
        notes = [a.note for a in parsed if a.reviewer == who]
        assert notes == [f"{who} line {i} " * 40 for i in range(100)]


def test_retraction_keeps_the_history_and_restores_the_earlier_flag(run):
    store = ReviewStore(run)
    first = store.add_flag("ann", Target.image(IMG), "on-model")
    second = store.add_flag("ann", Target.image(IMG), "off-model", "changed my mind")
    assert store.state().image_flags()[IMG]["ann"].id == second.id  # a later flag replaces the earlier one
    retraction = store.retract("ann", second.id, "wrong image")
    state = store.state()
    assert state.image_flags()[IMG]["ann"].id == first.id
    assert second.id in state.retracted and [r.id for r in state.retractions] == [retraction.id]
    assert len(run.annotations_path.read_text().splitlines()) == 3  # nothing edited: three lines
    with pytest.raises(UserError, match="already retracted"):
        store.retract("ann", second.id)
    store.retract("bob", first.id)
    assert IMG not in store.state().image_flags()


def test_findings_update_and_retract_as_new_lines(run):
    store = ReviewStore(run)
    f = store.add_finding("ann", "Copies a training image", "p01 seed 1 is a near copy", "high",
                          evidence=[IMG2, "copy_rate"])
    store.update_finding("bob", f.id, status="mitigated", mitigation="ship step 10", evidence=["https://x/?run=a"])
    store.update_finding("ann", f.id, severity="medium")
    (state,) = store.state().findings
    assert (state.status, state.severity, state.mitigation) == ("mitigated", "medium", "ship step 10")
    assert state.evidence == (IMG2, "copy_rate", "https://x/?run=a") and state.updated_by == ("ann", "bob")
    assert len(state.history) == 3
    store.retract("ann", f.id)
    assert store.state().findings[0].retracted and not store.state().live_findings()
    with pytest.raises(UserError, match="retracted"):
        store.update_finding("ann", f.id, status="open")
    with pytest.raises(UserError, match="nothing to change"):
        store.update_finding("ann", f.id)


def test_torn_last_line_is_ignored_then_cut_and_damage_is_named(run):
    store = ReviewStore(run)
    store.add_flag("ann", Target.image(IMG), "on-model")
    with open(run.annotations_path, "a", encoding="utf-8") as f:
        f.write('{"id": "a-0123456789ab", "time": "2026')  # a writer killed mid-line
    assert len(store.state().active) == 1
    store.add_flag("bob", Target.image(IMG), "off-model")
    assert [json.loads(line)["reviewer"] for line in run.annotations_path.read_text().splitlines()] == ["ann", "bob"]
    with open(run.annotations_path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "a-0123456789ab", "time": "2026-01-01T00:00:00Z", "reviewer": "x\u202ey",
                            "target": {"type": "image", "path": IMG}, "flag": "off-model"}) + "\n")
    with pytest.raises(UserError, match=r"annotations.jsonl: line 3: reviewer: contains control"):
        store.state()


def test_summary_rates_per_checkpoint_and_category_with_wilson_intervals(run):
    store = ReviewStore(run)
    for path, flags in ((IMG, ("off-model", "off-model")), (IMG2, ("on-model", "off-model")),
                        ("images/step-000000/p00-s0.png", ("on-model", "on-model"))):
        for who, flag in zip(("ann", "bob"), flags):
            store.add_flag(who, Target.image(path), flag)
    store.add_flag("ann", Target.checkpoint(20), "other", "checkpoint-wide note")
    s = summarize(run)
    assert s.reviewed_images == 3
    by_step = {r["step"]: r for r in s.by_step}
    assert by_step[20]["n"] == 2 and by_step[20]["flags"]["off-model"]["k"] == 2  # the tie goes to off-model
    assert by_step[20]["flags"]["off-model"]["lo"] == pytest.approx(wilson_ci(2, 2)[1])
    assert by_step[0]["flags"]["on-model"]["k"] == 1 and by_step[0]["judgments"] == 2
    assert [r["category"] for r in s.by_category] == ["general prompts"]
    assert [a.target.describe() for a in s.state.other_flags()] == ["checkpoint 20"]
    (pair,) = s.agreement.pairs
    assert pair.n == 3 and pair.observed == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------------------------------- CLI
def _cli(*args: str, capsys=None) -> tuple[int, str, str]:
    """`python -m core review ARGS` in a process of its own, or in this one (faster) when given pytest's capsys."""
    if capsys is None:
        out = subprocess.run([sys.executable, "-m", "core", "review", *args], capture_output=True, text=True,
                             cwd=ROOT, timeout=120)
        return out.returncode, out.stdout, out.stderr
    from core.__main__ import main

    capsys.readouterr()
    try:
        code = main(["review", *args])
    except SystemExit as e:  # a usage error (argparse) exits from the parser
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args, says", [
    (["--image", IMG, "--flag", "weird", "--reviewer", "a"], "invalid choice: 'weird'"),
    (["--finding", "t", "--text", "x", "--severity", "huge", "--reviewer", "a"], "invalid choice: 'huge'"),
    (["--image", "images/step-000020/nope.png", "--flag", "other", "--reviewer", "a"], "does not list it"),
    (["--image", "../fake-style/" + IMG, "--flag", "other", "--reviewer", "a"], "leads outside the run"),
    (["--image", "/etc/passwd", "--flag", "other", "--reviewer", "a"], "leads outside the run"),
    (["--image", IMG, "--flag", "other", "--reviewer", "  "], "reviewer: empty"),
    (["--image", IMG, "--flag", "other", "--reviewer", "a", "--note", "x" * 2001], "2,001 characters"),
    (["--image", IMG, "--flag", "other", "--reviewer", "a", "--note", "red \x1b[31m"], "U+001B"),
    (["--finding", "ti\u202etle", "--text", "x", "--severity", "low", "--reviewer", "a"], "U+202E"),
    (["--image", IMG, "--flag", "other"], "give --reviewer"),
    (["--list", "--retract", "a-0123456789ab"], "exactly one of"),
    (["--retract", "a-0123456789ab", "--reviewer", "a"], "no flag or finding with this id"),
])
def test_cli_refusals_are_one_line_and_write_nothing(run, args, says, capsys):
    code, out, err = _cli(str(run.path), *args, capsys=capsys)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and says in err, err
    assert not run.review_dir.exists()


def test_cli_flag_finding_update_retract_and_list(run):
    code, out, _ = _cli(str(run.path), "--image", IMG, "--flag", "copy-suspected", "--note", "near copy",
                        "--reviewer", "ann")
    assert code == 0 and re.match(r"a-[0-9a-f]{12}: copy-suspected on " + re.escape(IMG) + " by ann", out)
    flag_id = out.split(":")[0]
    code, out, _ = _cli(str(run.path), "--finding", "Near copy", "--text", "see the flag", "--severity", "high",
                        "--evidence", IMG, "--evidence", "copy_rate", "--reviewer", "ann")
    finding_id = out.split(":")[0]
    assert code == 0 and finding_id.startswith("f-")
    assert _cli(str(run.path), "--update", finding_id, "--status", "accepted", "--reviewer", "bob")[0] == 0
    assert _cli(str(run.path), "--retract", flag_id, "--reviewer", "ann")[0] == 0
    code, out, _ = _cli(str(run.path), "--list", "--json")
    data = json.loads(out)
    assert code == 0 and data["flags"] == [] and data["retractions"][0]["retracts"] == flag_id
    assert data["findings"][0]["status"] == "accepted" and data["findings"][0]["evidence"] == [IMG, "copy_rate"]
    code, out, _ = _cli(str(run.path), "--list")
    assert PIPELINE_CHECK_LABEL in out and "[high, accepted] 'Near copy'" in out


# ---------------------------------------------------------------------------------------------- the renderers
def _hostile_review(run: Run) -> None:
    store = ReviewStore(run)
    store.add_flag("ann <b>", Target.image(IMG), "harmful", HOSTILE)
    store.add_flag("bob", Target.image(IMG), "harmful", "agree")
    store.add_finding("ann", "Title <script>alert(4)</script>", HOSTILE, "high", mitigation=HOSTILE,
                      evidence=[IMG, "misuse_transfer"])


class _Resources(HTMLParser):
    """Every attribute through which a browser would fetch something, and the tags that run or embed content."""

    FETCH = {"src", "srcset", "data", "poster", "background", "action", "formaction", "xlink:href"}

    def __init__(self):
        super().__init__()
        self.fetched, self.links, self.bad_tags = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "iframe", "object", "embed", "link", "base", "meta") and not (
                tag == "meta" and {k for k, _ in attrs} <= {"charset", "name", "content"}):
            self.bad_tags.append(tag)
        for key, value in attrs:
            if key in self.FETCH or (key == "href" and tag != "a"):
                self.fetched.append(value or "")
            if tag == "a" and key == "href":
                self.links.append(value or "")


def test_review_pack_is_self_contained_escaped_and_labelled(run, tmp_path):
    from core.review.pack import build_pack

    _hostile_review(run)
    other = make_fake_run(tmp_path / "runs", "fake-style", "style")
    html = build_pack(run, other).decode("utf-8")
    parser = _Resources()
    parser.feed(html)
    assert parser.fetched and all(v.startswith("data:image/") for v in parser.fetched), parser.fetched[:3]
    assert not parser.bad_tags, parser.bad_tags
    assert all(link.startswith("#") or link.startswith("https://") for link in parser.links)  # navigation only
    css = re.findall(r"<style>(.*?)</style>", html, flags=re.S)
    assert css and not any(re.search(r"url\(|@import", c) for c in css)
    assert not re.search(r"src(?:set)?\s*=\s*[\"']?\s*(?:https?:)?//", html, flags=re.I)
    assert 'class="tomcat-card"' in html  # the model card is in the pack (links in it are navigation only)
    assert "<script" not in html.lower() and "onerror=alert" not in html.replace("onerror=alert(2)&gt;", "")
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2  # the note and the finding, as text
    assert "Title &lt;script&gt;alert(4)&lt;/script&gt;" in html and "ann &lt;b&gt;" in html
    assert html.index(PIPELINE_CHECK_LABEL) < html.index("<h2")
    assert html.count('class="pipeline-check"') >= 3
    assert "Cohen&#x27;s kappa" in html and "Human review" in html and "Wilson 95% CI" in html
    assert len(html) < 2_000_000


def test_card_human_review_in_every_format_escapes_hostile_notes(run):
    import markdown

    import core.card as C
    from tests.test_card import _body_after_front_matter, pdf_text

    _hostile_review(run)  # the fixture run has every image scored: its card is ready
    card = C.build_card(run)
    section = card.section("Human Review")
    assert section.level == 3
    titles = [s.title for s in card.sections]
    assert titles.index("Measured Risks") < titles.index("Human Review") < titles.index(
        "Known Limitations of the Base Model")
    html = C.render(card, "html").decode("utf-8")
    low = html.lower()
    for bad in ("<script", "<img src=x", "href=\"javascript", "<b>second", "ann <b>"):
        assert bad not in low, bad
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = C.render(card, "md").decode("utf-8")
    rendered = markdown.markdown(_body_after_front_matter(md), extensions=["tables"]).lower()
    for bad in ("<script", "<img src=x", "src=\"http://127", "href=\"javascript", "<b>"):
        assert bad not in rendered, bad
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered and "![t](http://127.0.0.1:9/track.png)" in rendered
    pdf = pdf_text(C.render(card, "pdf"))
    assert "<script>alert(1)</script>" in pdf and "Human Review" in pdf
    data = json.loads(C.render(card, "json"))
    assert data["considerations"]["ethical_considerations"] == [
        {"name": "Title <script>alert(4)</script>", "mitigation_strategy": HOSTILE}]
    assert data["human_review"]["reviewed_images"] == 1 and data["human_review"]["agreement"]["cohen"][0]["n"] == 1
    checklist = next(b for b in card.section("Ethics Checklist").blocks if getattr(b, "kind", "") == "table")
    misuse = next(row for row in checklist.rows if row[0] == "Misuse")
    assert 'finding "Title <script>alert(4)</script>" (high, open)' in misuse[3]


def test_card_without_review_says_how_to_start_one(run):
    import core.card as C

    section = C.build_card(run).section("Human Review")
    assert "python -m core review runs/fake-object --image PATH --flag FLAG --reviewer NAME" in str(section.blocks)


def test_demo_example_review_is_labelled_and_written_once(run):
    from core.demo import EXAMPLE_REVIEWERS, add_example_review

    add_example_review(run)
    add_example_review(run)  # a resumed demo adds nothing
    state = ReviewStore(run).state()
    assert len(state.annotations) == 7 and len(state.findings) == 1
    assert all(a.note.startswith("EXAMPLE") for a in state.annotations)
    assert state.findings[0].title.startswith("EXAMPLE") and state.reviewers == list(EXAMPLE_REVIEWERS)
    s = summarize(run)
    assert s.agreement.pairs[0].n == 3  # both example reviewers flagged three images: the agreement shows


def test_the_fast_path_reads_a_flag_exactly_as_the_full_parse(run):
    """6,000 lines must parse fast (the dashboard's first screen): the common line takes a one-pass check that
    must agree with the full parse, and anything unusual goes to the full parse (which names the key)."""
    from core.review.records import Annotation, _fast_flag, _fields

    line = ReviewStore(run).add_flag("ann", Target.image(IMG), "harmful", "a note\nwith two lines\tand a tab")
    data = line.to_json()
    assert _fast_flag(data) == Annotation.parse("x", _fields("x", data)) == line
    for bad in ({"reviewer": " ann"}, {"reviewer": "a\u202eb"}, {"note": "x\x1b"}, {"note": "x" * 2001},
                {"flag": "nice"}, {"time": "2026-13-01T00:00:00Z"}, {"id": "a-XYZ"},
                {"target": {"type": "image", "path": "images/../../x.png"}},
                {"target": {"type": "image", "path": "/etc/passwd"}}, {"target": {"type": "checkpoint", "step": 3}}):
        assert _fast_flag({**data, **bad}) is None, bad
