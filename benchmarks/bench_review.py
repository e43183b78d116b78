"""How long the Prompt grids and Review pages take to draw their first screen on a large run (issue 20: 5,000 images
at 50 checkpoints, target <= 2 s), against the same pages on a small run measured in the same process.

    .venv/bin/python -m benchmarks.bench_review [--images-per-checkpoint 100] [--checkpoints 50] [--flags 6000]
                                                [--browser] [--keep DIR]

(from the repository root, as a module: --browser serves the dashboard with the browser tests' helpers)

The synthetic run is written through core.runfolder (images.csv, tiny PNGs, embeddings) with a review store of
`--flags` flag lines by three reviewers and ten findings (core.review). Each page is run under Streamlit's AppTest in
review mode (every image with its flag button: the heavier mode): 'cold' switches to the run with Streamlit's caches
cleared (every file read and parsed again), 'warm' is the next rerun (what a click costs). With --browser the first
screen is also timed in headless Chromium against a served dashboard: from navigation to the page's script finishing
and every image on screen decoded. Prints one line per measurement and the ratio to the small run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PAGES = {"prompt_grids": "dashboard/views/prompt_grids.py", "review": "dashboard/views/review.py"}
REVIEWERS = ("rev-a", "rev-b", "rev-c")
FLAGS = ("on-model", "off-model", "copy-suspected", "harmful", "misuse-transfer", "other")


def make_run(runs: Path, name: str, checkpoints: int, prompts: int, seeds: int, flags: int):
    """A finished random-weight run with `checkpoints` x `prompts` x `seeds` images and a review store."""
    import numpy as np
    from PIL import Image

    from core.review.records import Annotation, Finding, Target
    from core.runfolder import Run

    run = Run.create(runs, name, {
        "kind": "train", "status": "finished", "property": "object",
        "config": {"token": "<tom-cat>", "steps": 100 * checkpoints, "resolution": 128, "weights": "random",
                   "weights_seed": 0},
        "token": {"placeholder": "<tom-cat>", "initializer": "cat", "vectors": 1, "tokens": ["<tom-cat>"]},
        "weights": {"source": "random", "seed": 0}})
    rng = np.random.default_rng(0)
    steps = [100 * k for k in range(checkpoints)]
    rows = []
    for step in steps:
        run.save_embedding(step, {"<tom-cat>": rng.normal(size=(1, 768)).astype(np.float32)})
        folder = run.path / run.image_relpath(step, "x").rsplit("/", 1)[0]
        folder.mkdir(parents=True, exist_ok=True)
        for p in range(prompts):
            for s in range(seeds):
                rel = run.image_relpath(step, f"p{p:02d}-s{s}.png")
                Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(0, 255, 3))).save(run.path / rel)
                rows.append({"path": rel, "prompt": f"prompt {p} of <tom-cat>", "template": f"prompt {p} of {{}}",
                             "seed": s, "step": step, "steps": 3, "guidance": 7.5, "token": "<tom-cat>",
                             "weights_source": "random", "width": 64, "height": 64})
    run.append_images(rows)
    run.update_meta(final_step=steps[-1])
    picks = rng.choice(len(rows), size=min(len(rows), max(1, flags // len(REVIEWERS))), replace=False)
    lines = [Annotation.new(who, Target.image(rows[i]["path"]), FLAGS[int(rng.integers(0, len(FLAGS)))],
                            "a note " * 5).to_json() for who in REVIEWERS for i in picks]
    run.append_annotations(lines[:flags])
    run.append_findings([Finding.new(REVIEWERS[k % 3], f"finding {k}", "text", "medium",
                                     evidence=[rows[int(picks[k % len(picks)])]["path"]]).to_json()
                         for k in range(10)])
    return run, len(rows), min(flags, len(lines))


def time_page(runs: Path, page: str, run_name: str, repeats: int) -> tuple[float, float]:
    """(median cold seconds, median warm seconds) of one page's script for `run_name` under AppTest, in review mode.

    AppTest spends ~1 s on its first run of a new app scanning installed packages for components (a served
    dashboard does that once at start), so each repeat first draws the page on the other run, then clears
    Streamlit's caches and switches to `run_name`: 'cold' is that run (every file read and parsed again), 'warm'
    the rerun after it."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    key = {"prompt_grids": "grid_run", "review": "review_run"}[page]
    other = "small" if run_name != "small" else "big"
    cold, warm = [], []
    for _ in range(repeats):
        at = AppTest.from_file(str(ROOT / PAGES[page]), default_timeout=300)
        at.session_state["runs_dir"] = str(runs)
        at.session_state["review_mode"] = True
        at.session_state["reviewer_name"] = "bench"
        at.query_params["run"] = other
        at.run()
        st.cache_data.clear()
        st.cache_resource.clear()
        at.selectbox(key=key).set_value(run_name)
        t0 = time.perf_counter()
        at.run()
        cold.append(time.perf_counter() - t0)
        if at.exception:
            raise RuntimeError(f"{page} on {run_name}: {[e.value for e in at.exception]}")
        t0 = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - t0)
    return statistics.median(cold), statistics.median(warm)


def time_browser(runs: Path, names: list[str]) -> dict[tuple[str, str], float]:
    """First screen in Chromium: navigation -> script finished and every visible image decoded (median of 3,
    each on a fresh server so no cache helps)."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, _serve

    class _Factory:  # tests.test_browser._serve wants pytest's tmp_path_factory
        def mktemp(self, name):
            return Path(tempfile.mkdtemp(prefix=name))

    out: dict[tuple[str, str], list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(3):
            server = _serve(runs, _Factory(), extra=["--review"])
            url = next(server)
            try:
                for name in names:
                    for page in PAGES:
                        pg = browser.new_page(viewport={"width": 1400, "height": 1100})
                        t0 = time.perf_counter()
                        pg.goto(f"{url}/{page}?run={name}")
                        pg.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                                             timeout=120_000)
                        pg.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=120_000)
                        out.setdefault((page, name), []).append(time.perf_counter() - t0)
                        pg.close()
            finally:
                server.close()
        browser.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=50)
    ap.add_argument("--images-per-checkpoint", type=int, default=100, help="prompts x seeds (20 x 5 by default)")
    ap.add_argument("--flags", type=int, default=6000, help="flag lines in the big run's review store")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--browser", action="store_true", help="also time the first screen in headless Chromium")
    ap.add_argument("--keep", type=Path, help="build the runs here and keep them (default: a temporary folder)")
    args = ap.parse_args(argv)
    seeds = 5
    prompts = max(1, args.images_per_checkpoint // seeds)
    runs = args.keep or Path(tempfile.mkdtemp(prefix="bench-review-")) / "runs"
    t0 = time.perf_counter()
    _, n_big, n_flags = make_run(runs, "big", args.checkpoints, prompts, seeds, args.flags)
    _, n_small, _ = make_run(runs, "small", 2, 5, 2, 20)
    print(f"runs built in {time.perf_counter() - t0:.1f} s: big = {n_big} images at {args.checkpoints} checkpoints, "
          f"{n_flags} flag lines; small (reference) = {n_small} images at 2 checkpoints, 20 flag lines")
    for page in PAGES:
        ref_cold, ref_warm = time_page(runs, page, "small", args.repeats)
        big_cold, big_warm = time_page(runs, page, "big", args.repeats)
        print(f"{page:13s} AppTest first screen (cold caches): big {big_cold:.2f} s, small {ref_cold:.2f} s, "
              f"ratio {big_cold / ref_cold:.2f}x | rerun (warm): big {big_warm:.2f} s, small {ref_warm:.2f} s, "
              f"ratio {big_warm / ref_warm:.2f}x")
    if args.browser:
        times = time_browser(runs, ["small", "big"])
        for page in PAGES:
            big, small = times[(page, "big")], times[(page, "small")]
            print(f"{page:13s} Chromium first screen (fresh server): big {big:.2f} s, small {small:.2f} s, "
                  f"ratio {big / small:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
