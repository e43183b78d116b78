"""The dashboard in a real browser: Debian's chromium driven by Playwright against `streamlit run dashboard/app.py`
served on 127.0.0.1 over fixture runs. Opens every page, checks its heading and that no exception or error shows,
switches a run and moves the checkpoint slider, and reads the Risks page of an audited run (its charts, the closest
pairs and their enlarge dialog). Screenshots go to $DASHBOARD_SCREENSHOTS (default /tmp).

Needs /usr/bin/chromium (`apt-get install -y chromium`; Playwright's own browser download does not work here).
Set DASHBOARD_TEST_RUNS_DIR to a runs folder (e.g. the demo's) to walk that instead of the fixture runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_dashboard import APP, ROOT, make_dashboard_runs

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGES = {  # url path -> heading
    "": "Experiments",
    "prompt_grids": "Prompt grids",
    "clip_scores": "CLIP scores",
    "character_vs_style": "Character vs style",
    "token_explorer": "Token explorer",
    "model_card": "Model card and limitations review",
    "sweeps": "Sweeps",
    "risks": "Risks",
}
AUDITED = "risk-audited"  # the fixture's audited run (tests/test_risks_page.make_audited_runs)
LOADED_WIDTH = "img => img.decode().then(() => img.naturalWidth, () => 0)"  # 0: the image failed to load
SHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS", "/tmp"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} missing: install Debian's chromium (apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    given = os.environ.get("DASHBOARD_TEST_RUNS_DIR")
    if given:
        return Path(given)
    runs = make_dashboard_runs(tmp_path_factory.mktemp("browser") / "runs")
    # the browser walk checks that no error shows: keep only the complete runs (AppTest covers damaged ones)
    import shutil

    for name in ("broken-json", "garbage-scores", "no-images"):
        shutil.rmtree(runs / name)
    from tests.test_sweeps_page import make_sweep

    make_sweep(runs)  # a sweep of four trials over fake runs (three scored, one never started)
    from tests.test_risks_page import make_audited_runs

    # `risk-audited` (copy audit, pairs, misuse probes) and `risk-not-audited`; named to sort after fake-object,
    # the first run of the pages that open on the first run
    make_audited_runs(runs, runs.parent / "refs", prefix="risk-")
    return runs


@pytest.fixture(scope="module")
def server(runs_dir, tmp_path_factory):
    """`streamlit run dashboard/app.py` on 127.0.0.1:<free port>; killed (its whole process group) at the end."""
    yield from _serve(runs_dir, tmp_path_factory)


def _serve(runs_dir, tmp_path_factory, extra=()):
    """Serve the dashboard on a free loopback port; `extra` goes after `--` (e.g. ["--review"])."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    log = open(log_path, "wb")
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--", "--runs-dir", str(runs_dir), *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start: {log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1100})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    ctx.close()


def settle(pg, heading: str) -> None:
    """Wait until the page's heading shows and the script has finished running."""
    pg.get_by_role("heading", name=heading, exact=True).first.wait_for()
    pg.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')
    pg.wait_for_timeout(300)  # let the last deltas paint
    pg.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')


def assert_no_errors(pg, where: str) -> None:
    assert pg.locator('[data-testid="stException"]').count() == 0, f"{where}: an exception is shown"
    errors = pg.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"{where}: error shown: {errors.all_inner_texts()}"
    body = pg.locator("body").inner_text()
    assert "Traceback" not in body, f"{where}: a traceback is shown"


def test_every_page_opens_clean(server, page):
    for slug, heading in PAGES.items():
        page.goto(f"{server}/{slug}")
        settle(page, heading)
        assert_no_errors(page, heading)
        page.screenshot(path=str(SHOTS / f"dashboard-{slug or 'experiments'}.png"), full_page=True)


def test_sidebar_navigation_reaches_every_page(server, page):
    page.goto(server)
    settle(page, "Experiments")
    for heading in list(PAGES.values())[1:] + ["Experiments"]:
        title = "Model card and limitations" if heading.startswith("Model card") else heading
        page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
        settle(page, heading)
        assert_no_errors(page, heading)


def test_switch_run_and_move_the_checkpoint_slider(server, page):
    page.goto(f"{server}/prompt_grids")
    settle(page, "Prompt grids")

    # the checkpoint slider: from the last checkpoint one stop to the left
    value = page.locator('[data-testid="stSliderThumbValue"]').first
    old_step = value.inner_text().strip()
    page.get_by_text(f"after · step {old_step}", exact=True).first.wait_for()
    page.locator('[data-testid="stSlider"] input[type="range"]').first.focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("([sel, old]) => document.querySelector(sel).innerText.trim() !== old",
                           arg=['[data-testid="stSliderThumbValue"]', old_step])
    new_step = value.inner_text().strip()
    page.get_by_text(f"after · step {new_step}", exact=True).first.wait_for()
    settle(page, "Prompt grids")
    assert page.get_by_text(f"after · step {old_step}", exact=True).count() == 0
    assert_no_errors(page, "Prompt grids after moving the slider")

    # switch the run: pick the second entry of the run selectbox
    combo = page.get_by_role("combobox", name="Run", exact=True)
    old_run = combo.input_value()
    combo.click()
    options = page.get_by_role("option")
    options.first.wait_for()
    assert options.count() >= 2
    options.nth(1).click()
    page.wait_for_function("([label, old]) => document.querySelector(`input[aria-label='${label}']`).value !== old",
                           arg=["Run", old_run])
    new_run = combo.input_value()
    settle(page, "Prompt grids")
    assert new_run != old_run
    page.get_by_text(new_run.split(" (")[0]).first.wait_for()
    assert_no_errors(page, "Prompt grids after switching the run")
    page.screenshot(path=str(SHOTS / "dashboard-prompt_grids-switched.png"), full_page=True)


def test_sweeps_page_view_lives_in_the_url(server, page):
    """A shared URL opens the same filtered, coloured view; changing the colour updates the URL."""
    page.goto(f"{server}/sweeps?sweep=sw&f_lr=0.005&color=lr")
    settle(page, "Sweeps")
    assert_no_errors(page, "Sweeps")
    page.get_by_text("Reconstruction vs editability", exact=False).first.wait_for()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"]').length >= 3",
                           timeout=30000)
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 3
    assert "f_lr=0.005" in page.url and "color=lr" in page.url
    combo = page.get_by_role("combobox", name="Colour the plane by", exact=True)
    combo.click()
    page.get_by_role("option", name="steps", exact=True).click()
    page.wait_for_function("() => window.location.search.includes('color=steps')")
    settle(page, "Sweeps")
    assert "f_lr=0.005" in page.url
    page.screenshot(path=str(SHOTS / "dashboard-sweeps.png"), full_page=True)


def test_risks_page_of_an_audited_run_shows_charts_pairs_and_labels(server, page, runs_dir):
    """The Risks page of a run WITH audit files: the front, copy-rate and misuse charts drawn (each titled with the
    pipeline-check label of a random-weight run), the closest pairs loaded as images with labelled captions, and
    the enlarge dialog showing the pair. Skipped for a DASHBOARD_TEST_RUNS_DIR without a `risk-audited` run."""
    if not (runs_dir / AUDITED / "audit.json").exists():
        pytest.skip(f"{runs_dir} has no audited run named `{AUDITED}`")
    page.goto(f"{server}/risks?run={AUDITED}")
    settle(page, "Risks")
    assert_no_errors(page, "Risks (audited)")
    assert page.get_by_role("combobox", name="Run", exact=True).input_value().startswith(AUDITED)
    charts = page.locator('[data-testid="stPlotlyChart"]')
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .gtitle').length >= 5",
                           timeout=30000)
    assert charts.count() == 3 + 2  # + leakage and the memorisation screen (test_identity_charts_...)
    titles = page.locator('[data-testid="stPlotlyChart"] .gtitle').all_text_contents()  # SVG: no innerText
    assert len(titles) == 5 and all(t.startswith("PIPELINE CHECK (random weights)") for t in titles), titles
    assert any("Copy rate per checkpoint" in t for t in titles) and any("misuse category" in t for t in titles)
    images = page.locator('[data-testid="stImage"] img')
    assert images.count() == 2 + 6  # n_pairs=2 for the chosen measure, then the memorisation screen's 3 x 2
    for i in range(2):
        assert images.nth(i).evaluate(LOADED_WIDTH) > 0, f"pair {i} did not load"
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()[:2]
    assert len(captions) == 2 and all(c.startswith("PIPELINE CHECK") for c in captions), captions
    page.get_by_role("button", name="Enlarge").first.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    big = dialog.locator('[data-testid="stImage"] img')
    big.wait_for()
    assert big.evaluate(LOADED_WIDTH) > 0
    assert dialog.locator('[data-testid="stImageCaption"]').inner_text() == captions[0]
    page.screenshot(path=str(SHOTS / "dashboard-risks-audited.png"), full_page=True)


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    from tests.test_faults import make_hostile_run

    run, _ = make_hostile_run(tmp_path_factory.mktemp("hostile") / "runs")
    yield from _serve(run.path.parent, tmp_path_factory)


def test_hostile_run_folder_in_a_real_browser(hostile_server, page):
    """Issue 10: a run with symlinks out of it, absolute/`..` paths, a Markdown tracker prompt, a bomb and a
    non-image: every page opens, the outside picture is refused in a note, and the browser fetches nothing
    from the tracker URL."""
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    for slug, heading in PAGES.items():
        page.goto(f"{hostile_server}/{slug}")
        settle(page, heading)
        assert page.locator('[data-testid="stException"]').count() == 0, heading
        if slug == "prompt_grids":
            body = page.locator("body").inner_text()
            assert "leads outside the run folder" in body
            assert "![t](http://127.0.0.1:9/track.png)" in body  # the prompt shows as text
            page.screenshot(path=str(SHOTS / "dashboard-hostile-prompt_grids.png"), full_page=True)
    assert not [u for u in requested if "127.0.0.1:9/" in u], requested


# ------------------------------------------------------------------------------------------ review (issue 20)
WRITES = ("Flag", "Save flag", "Add finding", "Save update", "Retract", "Retract this finding")


def test_read_only_default_has_no_control_that_writes(server, page):
    """Without --review no page offers a flag button, a note box, the findings editor or a folder field."""
    for slug, heading in {**PAGES, "review": "Review"}.items():
        page.goto(f"{server}/{slug}")
        settle(page, heading)
        assert page.locator('[data-testid="stPopoverButton"]', has_text="Flag").count() == 0, slug
        for name in WRITES:
            assert page.get_by_role("button", name=name, exact=True).count() == 0, (slug, name)
        assert page.locator("textarea").count() == 0, slug
        labels = [t.get_attribute("aria-label") or "" for t in page.locator("input[type=text]").all()]
        assert not [x for x in labels if "folder" in x.lower() or "name" in x.lower() and "contains" not in x], labels
        assert "read-only" in page.locator('[data-testid="stSidebar"]').inner_text()


def test_deep_link_restores_run_and_step_and_copy_link_gives_it_back(server, page):
    page.goto(f"{server}/token_explorer?run=fake-style&step=10")
    settle(page, "Token explorer")
    assert page.get_by_role("combobox", name="Run", exact=True).input_value().startswith("fake-style")
    checkpoint = page.get_by_role("group", name="Checkpoint", exact=True)  # not "Words per checkpoint"
    assert checkpoint.get_by_test_id("stSliderThumbValue").inner_text().strip() == "10"
    page.goto(f"{server}/prompt_grids?run=fake-object&step=10")
    settle(page, "Prompt grids")
    assert page.get_by_role("combobox", name="Run", exact=True).input_value().startswith("fake-object")
    assert page.locator('[data-testid="stSliderThumbValue"]').first.inner_text().strip() == "10"
    page.get_by_text("after · step 10", exact=True).first.wait_for()
    assert page.get_by_text("after · step 20", exact=True).count() == 0
    page.locator('[data-testid="stPopoverButton"]', has_text="Copy link").first.click()
    link = page.locator('[data-testid="stPopoverBody"] [data-testid="stCode"]').first.inner_text().strip()
    assert link.startswith(f"{server}/prompt_grids?") and "run=fake-object" in link and "step=10" in link
    page.goto(link)  # the copied link opens the same view
    settle(page, "Prompt grids")
    assert page.locator('[data-testid="stSliderThumbValue"]').first.inner_text().strip() == "10"


@pytest.fixture(scope="module")
def review_server(tmp_path_factory):
    runs = make_dashboard_runs(tmp_path_factory.mktemp("review") / "runs")
    import shutil

    for name in ("broken-json", "garbage-scores", "no-images"):
        shutil.rmtree(runs / name)
    yield from _serve(runs, tmp_path_factory, extra=["--review"])


def test_flag_an_image_in_review_mode_reload_and_see_the_flag(review_server, page):
    page.goto(f"{review_server}/prompt_grids?run=fake-object&step=20")
    settle(page, "Prompt grids")
    page.get_by_label("Your name (recorded on every flag and finding)").fill("browser-reviewer")
    page.keyboard.press("Enter")
    page.get_by_text("Reviewing as").wait_for()
    settle(page, "Prompt grids")
    flags = page.locator('[data-testid="stPopoverButton"]', has_text="Flag")
    assert flags.count() == 2 * 4  # before and after of each of the four pairs
    flags.nth(1).click()  # the first pair's after-image
    body = page.locator('[data-testid="stPopoverBody"]').last
    body.get_by_text("off-model", exact=True).click()  # a segmented control's option
    body.locator("textarea").fill("<b>ears</b> wrong")
    body.get_by_role("button", name="Save flag", exact=True).click()
    caption = page.get_by_text("flags: off-model (browser-reviewer)", exact=True)
    caption.first.wait_for(timeout=60_000)
    page.reload()
    settle(page, "Prompt grids")
    caption.first.wait_for(timeout=60_000)  # read back from RUN/review/annotations.jsonl
    assert page.get_by_text("<b>ears</b> wrong").count() == 0  # notes are not on the grid; the Review page has them
    page.goto(f"{review_server}/review?run=fake-object")
    settle(page, "Review")
    page.get_by_text("Flags per checkpoint and per prompt category").wait_for()
    assert_no_errors(page, "Review")
    page.screenshot(path=str(SHOTS / "dashboard-review.png"), full_page=True)


def _chart_titles(page, at_least: int) -> list[str]:
    page.wait_for_function(
        f"() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .gtitle').length >= {at_least}",
        timeout=30000)
    return page.locator('[data-testid="stPlotlyChart"] .gtitle').all_text_contents()


def test_identity_charts_open_in_a_real_browser(server, page, runs_dir):
    """Issue 21: token similarity and identity on the CLIP scores page, both runs side by side on Character vs
    style, leakage and the memorisation screen (with the highest images beside their nearest training image) on the
    Risks page of the audited run; every title labelled, every trace drawn, every image loaded."""
    page.goto(f"{server}/clip_scores?run=fake-object")
    settle(page, "CLIP scores")
    assert_no_errors(page, "CLIP scores")
    titles = _chart_titles(page, 4)
    token = [t for t in titles if "Token similarity" in t]
    assert token and token[0].startswith("PIPELINE CHECK") and any("Zero-shot identity" in t for t in titles)
    chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="Token similarity").first
    assert chart.locator(".scatterlayer .trace").count() >= 4  # references, band, subject, initializer (+ distractors)
    page.screenshot(path=str(SHOTS / "dashboard-identity-clip-scores.png"), full_page=True)

    page.goto(f"{server}/character_vs_style")
    settle(page, "Character vs style")
    assert_no_errors(page, "Character vs style")
    titles = _chart_titles(page, 4)
    assert sum("Token similarity" in t for t in titles) == 2 and sum("Zero-shot identity" in t for t in titles) == 2
    assert "CustomConcept101" in page.locator("body").inner_text()

    if not (runs_dir / AUDITED / "audit.json").exists():
        pytest.skip(f"{runs_dir} has no audited run named `{AUDITED}`")
    page.goto(f"{server}/risks?run={AUDITED}")
    settle(page, "Risks")
    assert_no_errors(page, "Risks (identity)")
    titles = _chart_titles(page, 5)
    assert any("Concept leakage" in t for t in titles) and any("Memorisation screen" in t for t in titles)
    images = page.locator('[data-testid="stImage"] img')
    for i in range(2, images.count()):  # after the audit's pairs: generated image, nearest training image, ...
        assert images.nth(i).evaluate(LOADED_WIDTH) > 0, f"memorisation screen image {i} did not load"
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()[2:]
    assert len(captions) == 6 and any("nearest training image" in c for c in captions), captions
    page.screenshot(path=str(SHOTS / "dashboard-identity-risks.png"), full_page=True)
