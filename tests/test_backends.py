"""The same code on Keras' JAX backend and under mixed precision (tiny stand-ins, each in a subprocess since the
backend and the dtype policy are process-wide): train with a checkpoint, resume (same losses), generate."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = r"""
import sys
import keras
import numpy as np
from core.generate import GenerateConfig, generate
from core.train import TrainConfig, set_precision, start_run, train
from tests.tiny import tiny_components

images, out, backend, precision = sys.argv[1:5]
assert keras.backend.backend() == backend, keras.backend.backend()
set_precision(precision)
comps = tiny_components(128)
cfg = TrainConfig.from_dict({"images": images, "weights": "random", "resolution": 128, "steps": 4,
                             "checkpoint_every": 2, "batch_size": 2, "lr": 5e-3, "mixed_precision": precision})
full = train(cfg, start_run(cfg, out, "full"), comps, progress=False)
part = train(cfg, start_run(cfg, out, "part"), comps, progress=False, stop_after=3)
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
print("OK", full.meta["versions"]["backend"], keras.mixed_precision.global_policy().name)
"""


@pytest.mark.parametrize("backend,precision,policy", [
    ("jax", "no", "float32"),
    ("tensorflow", "bf16", "mixed_bfloat16"),
    ("tensorflow", "fp16", "mixed_float16"),
])
def test_train_resume_generate(char_images, tmp_path, backend, precision, policy):
    if backend == "jax":
        pytest.importorskip("jax")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(char_images), str(tmp_path), backend, precision],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert f"OK {backend} {policy}" in p.stdout
