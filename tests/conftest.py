"""Shared pytest fixtures. Fast tests use tiny stand-ins; tests marked `real` build the real KerasCV
architecture (random weights, 128 px) once per session."""

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored across exec: the
# children our tests Ctrl-C (sweep, train) would never see it. With the default handler restored here, every child
# starts with SIGINT at its default, however the suite was started.
signal.signal(signal.SIGINT, signal.default_int_handler)
# One torch thread per test process (and its children): the tests' torch work is single images through CLIP and
# networks a few channels wide, where a second thread costs more in hand-offs than it gains, and `make test` runs two
# pytest workers on the two cores (measured in docs/testing.md: a random ViT-B-32 image encode took 0.25 s on one
# thread and 1.9 s on two on the loaded 2-core machine). Set OMP_NUM_THREADS to override.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# torch/open_clip must be imported before TensorFlow in one process (LLVM clash in triton otherwise).
import open_clip  # noqa: E402,F401
import torch  # noqa: E402,F401

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parent.parent  # `core` and `dashboard` import through `make install`'s editable install


@pytest.fixture
def fake_runs(tmp_path):
    """A runs folder holding an object run and a style run with images and scores (fabricated test data)."""
    from tests.fakerun import make_fake_run

    runs = tmp_path / "runs"
    make_fake_run(runs, "fake-object", "object")
    make_fake_run(runs, "fake-style", "style")
    return runs


@pytest.fixture(scope="session")
def char_images(tmp_path_factory):
    """Six pictures of the demo character plus a licenses.csv, drawn by code."""
    from core.cartoon import write_image_set

    folder = tmp_path_factory.mktemp("character")
    write_image_set(folder, "character", 6, size=96)
    return folder


@pytest.fixture(scope="session")
def clip_scorer():
    """The random ViT-B-32 CLIP scorer (`ViT-B-32:random`, seed 0), built once per test process and shared by every
    test that only encodes with it (the CLI tests rebuild it from the spec, which is what they test)."""
    from core.clip_score import load_clip

    return load_clip("ViT-B-32:random", seed=0, device="cpu")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With `CI` set (.ci/run sets it), a skipped test is a failure: CI installs everything the suite needs
    (`make test` runs `make browser`), so a skip there means a check silently did not run."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=1, which must run every test: {reason}"
