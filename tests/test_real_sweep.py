"""`sweep` with the real KerasCV architecture (random weights, 128 px) on the embedded local Ray: one trial of
2 steps, generated and CLIP-scored, then `--dry-run` estimates from the measured step time (several trials,
retries and Ctrl-C are tested with tiny stand-ins in tests/test_sweep.py; one real build is enough here). Slow; marked
`real`; runs in a pytest process of its own (Makefile) because each trial's worker builds the full model."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.real
ROOT = Path(__file__).resolve().parent.parent

SPEC = """
name = "real"
[base]
images = "{images}"
weights = "random"
resolution = 128
batch_size = 1
steps = 2
checkpoint_every = 2
[grid]
lr = [0.005]
[generate]
prompts = "{prompts}"
seeds = "0"
steps = 2
batch_size = 1
[score]
references = "{images}"
clip = "ViT-B-32:random"
n_boot = 50
"""


def sweep(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", RAY_AUTH_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "core", "sweep", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1500)


def test_real_architecture_sweep_end_to_end(char_images, tmp_path):
    from core.runfolder import Run
    from core.sweeprecord import SweepRecord

    (tmp_path / "p.txt").write_text("a picture of {}\n")
    spec = tmp_path / "real.toml"
    spec.write_text(SPEC.format(images=char_images, prompts=tmp_path / "p.txt"))
    runs = tmp_path / "runs"
    p = sweep(str(spec), "--runs-dir", str(runs), "--num-cpus", "2", "--object-store-mb", "100")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 training at once (no GPU)" in p.stdout  # CPU only: one real build at a time
    trials = SweepRecord(runs, "real").trials()
    assert [t["status"] for t in trials] == ["finished"]
    for t in trials:
        run = Run(runs / t["name"])
        meta = run.meta
        assert meta["status"] == "finished" and meta["final_step"] == 2 and run.is_pipeline_check
        assert meta["config"]["lr"] == t["params"]["lr"]
        assert [m["step"] for m in run.read_metrics()] == [1, 2]
        assert len(run.read_images()) == 2  # 1 prompt x 1 seed x checkpoints 0 and 2
        smeta = run.read_scores_meta()
        assert smeta["complete"] and smeta["pipeline_check"] and len(run.read_scores()) == 2
    d = sweep(str(spec), "--runs-dir", str(runs), "--dry-run")
    assert d.returncode == 0, d.stderr
    assert "finished (skipped)" in d.stdout and "s/step measured from 1 step(s) of 1 earlier run(s)" in d.stdout
