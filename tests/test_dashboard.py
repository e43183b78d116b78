"""Dashboard tests: every page under Streamlit's AppTest against fixture run folders (including damaged and
incomplete runs), the data-access module's caching and paging, and that the dashboard never imports TensorFlow,
keras, keras_cv or torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.runfolder import PIPELINE_CHECK_LABEL, Run
from tests.fakerun import draw_image, make_fake_run, write_fake_scores_meta

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "dashboard" / "app.py"
PAGES = {
    "views/experiments.py": "Experiments",
    "views/prompt_grids.py": "Prompt grids",
    "views/clip_scores.py": "CLIP scores",
    "views/character_vs_style.py": "Character vs style",
    "views/token_explorer.py": "Token explorer",
    "views/risks.py": "Risks",
    "views/review.py": "Review",
    "views/model_card.py": "Model card and limitations review",
    "views/sweeps.py": "Sweeps",
}
HEAVY = ("tensorflow", "keras", "keras_cv", "torch")


# ------------------------------------------------------------------------------------------------ fixtures
def add_images_at(run: Run, step: int) -> None:
    """Copy the step-0 prompt x seed set to another checkpoint (new drawings), so the checkpoint slider has stops."""
    rows = [r for r in run.read_images() if int(r["step"]) == 0]
    out = []
    for r in rows:
        rel = run.image_relpath(step, Path(r["path"]).name)
        (run.path / rel).parent.mkdir(parents=True, exist_ok=True)
        draw_image(step * 100 + int(r["seed"]) + len(r["prompt"])).save(run.path / rel)
        out.append({**r, "path": rel, "step": step})
    run.append_images(out)


def make_dashboard_runs(runs: Path) -> Path:
    """The dashboard's fixture folder: two complete random-weight runs (object, style) plus one of each kind of
    trouble: a corrupt run.json, a garbage scores.csv, a run with no images or scores yet."""
    obj = make_fake_run(runs, "fake-object", "object")
    add_images_at(obj, 10)
    make_fake_run(runs, "fake-style", "style")
    bad = runs / "broken-json"
    bad.mkdir(parents=True)
    (bad / "run.json").write_text('{"schema_version": 1, "name": ', encoding="utf-8")
    garbage = make_fake_run(runs, "garbage-scores", "object")
    garbage.scores_path.write_bytes(b"\x00\xff\xfegarbage\nnot,a,csv\n\x00\x01")
    garbage.metrics_path.write_text("what\nis this\n", encoding="utf-8")
    make_fake_run(runs, "no-images", "object", with_images=False)
    return runs


@pytest.fixture
def dash_runs(tmp_path):
    return make_dashboard_runs(tmp_path / "runs")


def app_test(runs_dir: Path):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=180)
    at.session_state["runs_dir"] = str(runs_dir)
    return at


def open_page(runs_dir: Path, page: str):
    at = app_test(runs_dir).run()
    if page != "views/experiments.py":
        at.switch_page(page).run()
    return at


def texts(elements) -> list[str]:
    return [str(e.value) for e in elements]


def assert_clean(at, page: str, allowed_errors: tuple[str, ...] = ()) -> None:
    """The page drew its heading, raised nothing, and shows no error except the allowed ones."""
    assert not at.exception, [e.value for e in at.exception]
    assert PAGES[page] in texts(at.title)
    errors = [e for e in texts(at.error) if not any(a in e for a in allowed_errors)]
    assert not errors, errors


# -------------------------------------------------------------------------------------- one test per page
def test_experiments_page(dash_runs):
    at = open_page(dash_runs, "views/experiments.py")
    assert_clean(at, "views/experiments.py", allowed_errors=("broken-json", "garbage-scores"))
    errors = texts(at.error)
    # the damaged run is reported, by name, once; the others are listed
    assert sum("broken-json" in e for e in errors) == 1
    assert any("garbage-scores" in e and "metrics.csv" in e for e in errors)
    table = at.dataframe[0].value
    assert set(table["run"]) == {"fake-object", "fake-style", "garbage-scores", "no-images"}
    assert table["weights"].str.contains("PIPELINE CHECK").all()
    assert {"status", "token", "property", "steps", "lr"} <= set(table.columns)
    assert any("python -m core generate" in c.value for c in at.code)
    assert len(at.get("plotly_chart")) == 2


def test_experiments_filters(dash_runs):
    at = open_page(dash_runs, "views/experiments.py")
    at.multiselect(key="exp_prop").set_value(["style"]).run()
    assert list(at.dataframe[0].value["run"]) == ["fake-style"]
    assert not at.exception


def test_prompt_grids_page(dash_runs):
    at = open_page(dash_runs, "views/prompt_grids.py")
    assert_clean(at, "views/prompt_grids.py")
    assert any(PIPELINE_CHECK_LABEL in w for w in texts(at.warning))
    slider = at.select_slider(key="grid_ckpt_fake-object")
    assert slider.options == ["10", "20"] and slider.value == 20
    n_images = len(at.image)
    assert n_images == 8  # 2 prompts x 2 seeds, before and after
    slider.set_value(10).run()
    assert not at.exception and at.select_slider(key="grid_ckpt_fake-object").value == 10
    # full size on demand, with a download
    sel = at.selectbox(key="grid_full_fake-object")
    sel.set_value(sel.options[1]).run()
    assert not at.exception
    assert len(at.get("download_button")) >= 2
    # no grid PNGs in the fixture: say so, and how to make them
    assert any("no grid images" in i for i in texts(at.info))


def test_prompt_grids_missing_and_damaged(dash_runs):
    at = open_page(dash_runs, "views/prompt_grids.py")
    at.selectbox(key="grid_run").set_value("no-images").run()
    assert_clean(at, "views/prompt_grids.py")
    assert any("has no generated images" in i for i in texts(at.info))
    assert any("python -m core generate" in c.value and "no-images" in c.value for c in at.code)


def test_prompt_grids_grid_png(dash_runs):
    run = Run(dash_runs / "fake-object")
    run.grids_dir.mkdir()
    draw_image(5, size=256).save(run.grid_path("prompt-x-seed-step-000020.png"))
    at = open_page(dash_runs, "views/prompt_grids.py")
    assert_clean(at, "views/prompt_grids.py")
    assert at.selectbox(key="grid_png_fake-object").value == "prompt-x-seed-step-000020.png"
    at.toggle(key="grid_png_full_fake-object").set_value(True).run()
    assert not at.exception


def test_clip_scores_page(dash_runs):
    at = open_page(dash_runs, "views/clip_scores.py")
    # the plane offers every scored run: the damaged one gets an error of its own, the page goes on
    assert_clean(at, "views/clip_scores.py", allowed_errors=("garbage-scores",))
    assert any(PIPELINE_CHECK_LABEL in w for w in texts(at.warning))
    # per checkpoint (2), per prompt (2), distributions (2), plane (1), token similarity and identity (2)
    assert len(at.get("plotly_chart")) == 9
    by_step = at.dataframe[0].value
    assert list(by_step["step"]) == [0, 20]
    assert {"clip_i_mean", "clip_i_lo", "clip_i_hi", "clip_t_mean"} <= set(by_step.columns)


def test_clip_scores_damaged_and_missing(dash_runs):
    at = open_page(dash_runs, "views/clip_scores.py")
    at.selectbox(key="clip_run").set_value("garbage-scores").run()
    assert not at.exception
    assert [e for e in texts(at.error) if "scores.csv" in e and "garbage-scores" in e]
    at.selectbox(key="clip_run").set_value("no-images").run()
    assert_clean(at, "views/clip_scores.py")
    assert any("python -m core score" in c.value for c in at.code)


def test_character_vs_style_page(dash_runs):
    at = open_page(dash_runs, "views/character_vs_style.py")
    assert not at.exception
    assert PAGES["views/character_vs_style.py"] in texts(at.title)
    assert at.selectbox(key="cmp_a").value == "fake-object"
    assert at.selectbox(key="cmp_b").value == "fake-style"
    assert sum(PIPELINE_CHECK_LABEL in w for w in texts(at.warning)) >= 2
    assert len(at.image) == 8  # 2 templates x 2 seeds, A beside B
    # not compared yet: the page shows the command that saves the comparison, it does not compute one
    assert not at.error, texts(at.error)
    assert any("have not been compared yet" in i for i in texts(at.info))
    assert any(c.value.startswith("python -m core compare") and "fake-style" in c.value for c in at.code)
    at.selectbox(key="cmp_b").set_value("garbage-scores").run()
    assert not at.exception


@pytest.mark.slow
def test_character_vs_style_saved_comparison(fake_runs, tmp_path):
    from core import compare

    out = fake_runs / "reports" / "fake-object-vs-fake-style"  # where the demo writes it
    compare.compare_runs(Run(fake_runs / "fake-object"), Run(fake_runs / "fake-style")).write(out)
    at = open_page(fake_runs, "views/character_vs_style.py")
    assert at.selectbox(key="cmp_saved_pick").value == str(out)
    assert not at.exception and not at.error, texts(at.error)
    assert len(at.dataframe) == 1 + 2  # the saved table, read (not recomputed) and shown once; + 2 protocol tables
    assert len(at.image) == 8 + 1  # the pairs and the saved plane PNG
    assert any("bootstrap resamples" in c for c in texts(at.caption))
    assert any("shown above" in c for c in texts(at.caption))
    assert at.selectbox(key="cmp_saved_pick").options == [str(out)]  # no free-text folder (issue 20)
    assert not at.text_input


def test_token_explorer_page(dash_runs):
    at = open_page(dash_runs, "views/token_explorer.py")
    assert_clean(at, "views/token_explorer.py")
    assert any(PIPELINE_CHECK_LABEL in w for w in texts(at.warning))
    words = at.dataframe[0].value
    assert list(words.columns) == ["step 0", "step 10", "step 20"]
    assert words.iloc[0, 0] == "cat"
    at.select_slider(key="tok_step_fake-object").set_value(0).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2
    # export downloads: the bytes `python -m core export` writes, for the final checkpoint
    from core.export import export_embedding
    from dashboard import data

    buttons = at.get("download_button")
    assert len(buttons) == 3
    run = Run(dash_runs / "fake-object")
    files = data.export_downloads(str(run.path))
    assert [f["file_name"] for f in files] == ["learned_embeds.safetensors", "tom-cat.pt", "tom-cat.safetensors"]
    for f in files:
        out = export_embedding(run, f["format"], dash_runs.parent / f["format"] / f["file_name"])
        if out.suffix == ".pt":
            assert out.read_bytes() == f["data"]
        else:  # safetensors writes its metadata map in hash order: compare what the files hold
            from safetensors import safe_open

            (dash_runs.parent / "dl.safetensors").write_bytes(f["data"])
            with safe_open(str(out), "np") as a, safe_open(str(dash_runs.parent / "dl.safetensors"), "np") as b:
                assert a.metadata() == b.metadata() and list(a.keys()) == list(b.keys())
                assert all((a.get_tensor(k) == b.get_tensor(k)).all() for k in a.keys())


def test_model_card_page(dash_runs):
    pytest.importorskip("yaml")
    pytest.importorskip("huggingface_hub")
    at = open_page(dash_runs, "views/model_card.py")
    # fake-object has images at step 10 that were never scored: the card refuses, naming the command (a warning:
    # a step to run first, not damage)
    assert not at.exception and not at.error
    (refusal,) = [w for w in texts(at.warning) if "is not ready" in w]
    assert "scores are incomplete (8 of 12 images" in refusal and "python -m core score" in refusal
    assert not at.get("download_button")
    at.selectbox(key="card_run").set_value("fake-style").run()
    assert_clean(at, "views/model_card.py")
    warnings = texts(at.warning)
    assert any(PIPELINE_CHECK_LABEL in w for w in warnings)
    assert any("pipeline check" in w for w in warnings)
    checklist = at.dataframe[0].value
    assert len(checklist) == 5 and checklist["status"].str.contains("open").all()
    assert len(at.get("download_button")) == 5  # md, html, pdf, json, zip


# ---------------------------------------------------------------------------------- folder-wide behaviour
@pytest.mark.slow
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_labels_a_random_only_folder(fake_runs, page):
    at = open_page(fake_runs, page)
    assert_clean(at, page)
    banner = [w for w in texts(at.warning) if "Pipeline demonstration with random weights" in w]
    assert banner and "python -m core train --weights kerascv" in banner[0]


@pytest.mark.slow
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_survives_damaged_runs(dash_runs, page):
    """Whatever run each picker offers, no page raises."""
    at = open_page(dash_runs, page)
    assert not at.exception
    for sb in list(at.selectbox):
        if sb.key in ("grid_run", "clip_run", "tok_run", "card_run", "risks_run", "review_run", "cmp_a", "cmp_b"):
            for option in ("garbage-scores", "no-images"):
                at.selectbox(key=sb.key).set_value(option).run()
                assert not at.exception, (sb.key, option, [e.value for e in at.exception])


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_with_no_runs(tmp_path, page):
    at = open_page(tmp_path / "nothing-here", page)
    assert not at.exception
    assert PAGES[page] in texts(at.title)
    assert any("No runs in" in i for i in texts(at.info))


def test_real_weights_run_has_no_demo_banner_but_random_runs_keep_their_label(fake_runs):
    run = Run(fake_runs / "fake-style")
    run.update_meta(weights={"source": "kerascv", "files": {"text_encoder.h5": "ab" * 32}, "verified": True})
    at = open_page(fake_runs, "views/experiments.py")
    assert not any("Pipeline demonstration" in w for w in texts(at.warning))
    assert any(PIPELINE_CHECK_LABEL in w for w in texts(at.warning))  # fake-object is still random
    table = at.dataframe[0].value.set_index("run")
    assert "PIPELINE CHECK" in table.loc["fake-object", "weights"]
    assert table.loc["fake-style", "weights"].startswith("kerascv: text_encoder.h5 sha256 abababababab")


def test_runs_dir_is_fixed_at_start_and_no_field_changes_it(fake_runs, monkeypatch):
    """Issue 20: the runs folder comes from the command line or $TOMCAT_RUNS_DIR when the server starts; no page
    offers a field that points the server at another folder."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TOMCAT_RUNS_DIR", str(fake_runs))
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    assert at.session_state["runs_dir"] == str(fake_runs) and at.session_state["review_mode"] is False
    assert len(at.dataframe[0].value) == 2
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception
        assert not at.sidebar.text_input, [t.label for t in at.sidebar.text_input]
        assert not [t for t in at.text_input if "folder" in t.label.lower() or "dir" in (t.key or "")]


# ---------------------------------------------------------------------------------------------- data.py
def test_runs_dir_precedence():
    from dashboard.data import runs_dir_from_args

    assert runs_dir_from_args(["--runs-dir", "a"], {"TOMCAT_RUNS_DIR": "b"}) == "a"
    assert runs_dir_from_args(["--runs-dir=a"], {}) == "a"
    assert runs_dir_from_args([], {"TOMCAT_RUNS_DIR": "b"}) == "b"
    assert runs_dir_from_args(["--other", "x"], {}) == "runs"
    from dashboard.data import review_mode_from_args

    assert review_mode_from_args(["--runs-dir", "a", "--review"]) and not review_mode_from_args(["--runs-dir", "a"])


def test_paginate():
    from dashboard.data import paginate

    assert paginate(2000, 1, 24) == (0, 24, 1, 84)
    assert paginate(2000, 84, 24) == (1992, 2000, 84, 84)
    assert paginate(2000, 999, 24) == (1992, 2000, 84, 84)  # clamped
    assert paginate(2000, 0, 24) == (0, 24, 1, 84)
    assert paginate(0, 3, 12) == (0, 0, 1, 1)


def test_pairs_and_paging_on_a_run_with_2000_images(tmp_path):
    """images.csv with 2,000 rows (files not drawn): loading, filtering and paging stay exact."""
    from dashboard import data

    run = make_fake_run(tmp_path / "runs", "big", with_images=False)
    prompts = [f"prompt {i} of <tom-cat>" for i in range(50)]
    rows = [{"path": run.image_relpath(step, f"p{p:02d}-s{seed}.png"), "prompt": prompts[p],
             "template": prompts[p].replace("<tom-cat>", "{}"), "seed": seed, "step": step, "steps": 50,
             "guidance": 7.5, "token": "<tom-cat>", "weights_source": "random", "width": 512, "height": 512}
            for step in (0, 10) for p in range(50) for seed in range(20)]
    run.append_images(rows)
    df = data.images(str(run.path))
    assert len(df) == 2000 and df["step"].dtype.kind == "i"
    table = data.pairs(df, 0, 10)
    assert len(table) == 1000
    assert table.iloc[0]["prompt"] == prompts[0] and table.iloc[0]["seed"] == 0
    assert table["before_path"].str.contains("step-000000").all()
    start, stop, page, n_pages = data.paginate(len(table), 42, 24)
    assert (start, stop, n_pages) == (984, 1000, 42)
    sub = data.pairs(df, 0, 10, prompts=[prompts[3]], seeds=[5, 7])
    assert list(sub["seed"]) == [5, 7] and set(sub["prompt"]) == {prompts[3]}


def test_pairs_without_initializer_images():
    import pandas as pd

    from dashboard.data import pairs

    df = pd.DataFrame([{"path": "a.png", "prompt": "p", "template": "p", "seed": 0, "step": 20}])
    out = pairs(df, 0, 20)
    assert out.iloc[0]["before_path"] is None and out.iloc[0]["after_path"] == "a.png"


def test_loaders_reread_a_changed_file(fake_runs):
    from dashboard import data

    path = str(fake_runs / "fake-object")
    n = len(data.metrics(path))
    time.sleep(0.01)
    Run(path).append_metrics([{"step": n + 1, "loss": 0.5, "lr": 1e-3, "seconds": 1.0}])
    assert len(data.metrics(path)) == n + 1
    info = data.run_info(path)
    Run(path).update_meta(status="interrupted")
    assert data.run_info(path).status == "interrupted" != info.status


def test_damaged_files_raise_data_errors_naming_the_file(dash_runs):
    from dashboard import data

    infos = {i.name: i for i in data.run_infos(str(dash_runs))}
    assert infos["broken-json"].error and "run.json" in infos["broken-json"].error
    assert infos["fake-object"].error is None and infos["broken-json"].record is None
    g = str(dash_runs / "garbage-scores")
    for loader, name in ((data.scores, "scores.csv"), (data.metrics, "metrics.csv")):
        with pytest.raises(data.DataError, match=name):
            loader(g)
    bad_png = dash_runs / "fake-object" / "not-an-image.png"
    bad_png.write_bytes(b"nope")
    with pytest.raises(data.DataError, match="not an image"):
        data.thumbnail(bad_png)


def test_thumbnail_is_small_and_cached_by_mtime(tmp_path):
    from dashboard import data

    p = tmp_path / "big.png"
    draw_image(1, size=1024).save(p)
    first = data.thumbnail(p)
    assert first[:2] == b"\xff\xd8" and len(first) < 20_000
    assert data.thumbnail(p) == first
    time.sleep(0.01)
    draw_image(2, size=1024).save(p)
    assert data.thumbnail(p) != first  # changed file, new thumbnail


def test_provenance_strings():
    """The Experiments page's weights column is RunRecord.weights.describe() (one home for the wording)."""
    from core.runfolder import JsonFields, WeightsProvenance

    def describe(weights):
        return WeightsProvenance.parse(JsonFields(Path("run.json"), weights)).describe()

    assert describe({"source": "random", "seed": 0}) == "random (PIPELINE CHECK)"
    assert describe({"source": "unknown"}) == "unknown (PIPELINE CHECK)"
    s = describe({"source": "local", "files": {"vae.h5": "c" * 64}, "verified": False})
    assert s == "local: vae.h5 sha256 cccccccccccc (NOT verified)"


# ---------------------------------------------------------------------------------------- read-only, light
def test_dashboard_never_imports_tensorflow_keras_or_torch(tmp_path):
    """Run every page in a fresh interpreter (this test session may already hold TensorFlow) and list what the
    dashboard imported."""
    runs = make_dashboard_runs(tmp_path / "runs")
    script = textwrap.dedent(f"""
        import json, sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(APP)!r}, default_timeout=120)
        at.session_state["runs_dir"] = {str(runs)!r}
        at.run()
        for page in {list(PAGES)!r}:
            at.switch_page(page).run()
            assert not at.exception, (page, [e.value for e in at.exception])
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_dashboard_sources_import_nothing_heavy():
    import ast

    for path in sorted((ROOT / "dashboard").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert n.split(".")[0] not in HEAVY, f"{path}: imports {n}"


def _listening(port: int) -> set[str]:
    """Local addresses of the sockets listening on TCP `port`, from /proc/net/tcp and tcp6 (what the kernel
    reports, whatever the server says about itself)."""
    import ipaddress

    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            host, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(host)  # the kernel prints each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(raw)))
    return found


def _serve_and_read_listeners(argv: list[str], port: int) -> tuple[set[str], str]:
    """Start `argv` (a server on `port`) in its own process group, wait until something listens on the port,
    and return (listening addresses, the streamlit process's command line); the group is killed after."""
    import signal

    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while not _listening(port):
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "the dashboard did not start listening in 120 s"
            time.sleep(0.2)
        time.sleep(1)  # a second socket (IPv6) would be opened right after the first
        cmdlines = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if os.getpgid(int(pid)) == proc.pid:
                    cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:  # gone meanwhile
                continue
        return _listening(port), " ".join(c for c in cmdlines if "streamlit" in c)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dashboard_started_as_the_readme_says_listens_on_loopback_only(tmp_path):
    """Issue 23.2: `python -m dashboard --runs-dir DIR` (README) and `streamlit run dashboard/app.py` by hand
    (.streamlit/config.toml), neither given an address: the kernel's socket table shows them listening on
    127.0.0.1 only (no 0.0.0.0, no IPv6 wildcard)."""
    port = _free_port()
    listeners, cmd = _serve_and_read_listeners(
        [sys.executable, "-m", "dashboard", "--runs-dir", str(tmp_path), "--port", str(port), "--headless"], port)
    assert listeners == {"127.0.0.1"}, listeners
    assert f"-- --runs-dir {tmp_path}" in cmd, cmd  # the runs folder reaches the app
    port = _free_port()
    listeners, _ = _serve_and_read_listeners(
        [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port)], port)
    assert listeners == {"127.0.0.1"}, listeners
    port = _free_port()  # review mode (issue 20) is the same server, with --review passed on to the app
    listeners, cmd = _serve_and_read_listeners(
        [sys.executable, "-m", "dashboard", "--runs-dir", str(tmp_path), "--review", "--port", str(port),
         "--headless"], port)
    assert listeners == {"127.0.0.1"}, listeners
    assert f"-- --runs-dir {tmp_path} --review" in cmd, cmd


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`: path -> sha256 of its bytes ('dir' for folders)."""
    import hashlib

    return {str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


@pytest.mark.slow
def test_the_dashboard_never_writes_to_the_runs_folder(dash_runs):
    """README: the dashboard only reads. Every page is opened, and on each page every run its first picker
    offers is chosen, over the fixture runs (good, damaged and empty ones, plus a saved comparison); the runs
    folder's files, bytes and folders are the same afterwards (no cache, lock or temp file left in it)."""
    from core.compare import compare_runs

    write_fake_scores_meta(Run(dash_runs / "fake-object"))  # scores.json current again after add_images_at
    compare_runs(Run(dash_runs / "fake-object"), Run(dash_runs / "fake-style")).write(
        dash_runs / "reports" / "fake-object-vs-fake-style")
    before = _tree(dash_runs)
    pages = sorted(f"views/{p.name}" for p in (ROOT / "dashboard" / "views").glob("*.py"))
    assert len(pages) >= 8
    at = app_test(dash_runs).run()
    for page in pages:
        at.switch_page(page).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        if at.selectbox:
            box = at.selectbox[0]
            for option in list(box.options)[:6]:
                box.set_value(option).run()
                assert not at.exception, (page, option, [e.value for e in at.exception])
                box = at.selectbox[0]
    assert _tree(dash_runs) == before
