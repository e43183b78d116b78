"""Shared pytest fixtures. Fast tests use tiny stand-ins; tests marked `real` build the real KerasCV
architecture (random weights, 128 px) once per session."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def fake_runs(tmp_path):
    """A runs folder holding an object run and a style run with images and scores (fabricated test data)."""
    from tests.fakerun import make_fake_run

    runs = tmp_path / "runs"
    make_fake_run(runs, "fake-object", "object")
    make_fake_run(runs, "fake-style", "style")
    return runs
