"""The same code on Keras' JAX backend and under mixed precision (tiny stand-ins, in child processes since the
backend and the dtype policy are process-wide): train with a checkpoint, resume (same losses), generate.
One child per backend: the TensorFlow child runs bf16, then fp16 (`set_precision` switches the global policy and
the networks are rebuilt under it), so TensorFlow loads once for both."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import sys, traceback
import keras
import numpy as np
from core.generate import GenerateConfig, generate
from core.train import TrainConfig, set_precision, start_run, train
from tests.tiny import tiny_components

images, out, backend = sys.argv[1:4]
assert keras.backend.backend() == backend, keras.backend.backend()
failed = False
for precision in sys.argv[4:]:
    try:
        set_precision(precision)
        comps = tiny_components(128)
        cfg = TrainConfig.from_dict({"images": images, "weights": "random", "resolution": 128, "steps": 4,
                                     "checkpoint_every": 2, "batch_size": 2, "lr": 5e-3, "mixed_precision": precision})
        runs = f"{out}/{precision}"
        full = train(cfg, start_run(cfg, runs, "full"), comps, progress=False)
        part = train(cfg, start_run(cfg, runs, "part"), comps, progress=False, stop_after=3)
        train(cfg, part, comps, resume=True, progress=False)
        a, b = full.read_metrics(), part.read_metrics()
        assert [m["step"] for m in b] == [1, 2, 3, 4], b
        np.testing.assert_allclose([m["loss"] for m in a], [m["loss"] for m in b], rtol=1e-5)
        e0, e4 = full.load_embedding(0)["<tom-cat>"], full.load_embedding(4)["<tom-cat>"]
        assert not np.array_equal(e0, e4)
        g = GenerateConfig.from_dict({"prompts": None, "seeds": "0", "checkpoints": "0,final", "steps": 3})
        counts = generate(full, g, comps, progress=False)
        assert counts["generated"] == 2 * 6, counts
        assert all(np.isfinite(m["loss"]) for m in a)
        print("OK", precision, full.meta["versions"]["backend"], keras.mixed_precision.global_policy().name,
              flush=True)
    except Exception:
        failed = True
        print("FAILED", precision, traceback.format_exc(), flush=True)
sys.exit(1 if failed else 0)
"""

CASES = [("jax", "no", "float32"), ("tensorflow", "bf16", "mixed_bfloat16"), ("tensorflow", "fp16", "mixed_float16")]


@pytest.fixture(scope="module")
def children(char_images, tmp_path_factory):
    """backend -> its finished child process (started on first use, one per backend)."""
    done = {}

    def run(backend: str) -> subprocess.CompletedProcess:
        if backend not in done:
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
                       PYTHONPATH=str(ROOT))
            precisions = [p for b, p, _ in CASES if b == backend]
            done[backend] = subprocess.run(
                [sys.executable, "-c", SCRIPT, str(char_images), str(tmp_path_factory.mktemp(backend)), backend,
                 *precisions], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        return done[backend]

    return run


@pytest.mark.slow
@pytest.mark.xdist_group("backends")  # the two TensorFlow cases share one child: keep them on one worker
@pytest.mark.parametrize("backend,precision,policy", CASES)
def test_train_resume_generate(children, backend, precision, policy):
    if backend == "jax":
        pytest.importorskip("jax")
    p = children(backend)
    assert f"OK {precision} {backend} {policy}" in p.stdout, (p.stdout + p.stderr)[-4000:]
    assert p.returncode == 0 or "FAILED" in p.stdout, (p.stdout + p.stderr)[-4000:]  # a crash fails every case
