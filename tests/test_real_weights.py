"""The real weight-loading path (--weights DIR): KerasCV publishes Keras 2 HDF5 files. A subprocess running
KerasCV on Keras 2 (tf-keras, TF_USE_LEGACY_KERAS=1) writes seeded random components under the published file
names; we load them with --weights DIR, check every tensor equals what was written, and train a step."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from core.weights import WEIGHT_FILES, WeightSpec

pytestmark = pytest.mark.real
ROOT = Path(__file__).resolve().parent.parent
RES = 128

WRITER = """
import hashlib, json, sys
import numpy as np
from keras_cv.src.backend import keras
assert keras.__name__.endswith("keras2"), keras.__name__   # Keras 2 (tf-keras), the published files' format
import tf_keras
from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, ImageEncoder, TextEncoder
out = sys.argv[1]
tf_keras.utils.set_random_seed(123)
digests = {}
for fname, model in (("vae_encoder.h5", ImageEncoder(download_weights=False)),
                     ("kcv_encoder.h5", TextEncoder(77, download_weights=False)),
                     ("kcv_decoder.h5", Decoder(128, 128, download_weights=False)),
                     ("kcv_diffusion_model.h5", DiffusionModel(128, 128, 77, download_weights=False))):
    model.save_weights(out + "/" + fname)
    # what was written, tensor by tensor (instead of reading ~4 GB back through h5py)
    digests[fname] = sorted(hashlib.sha1(np.ascontiguousarray(w, np.float32).tobytes()).hexdigest()
                            for w in model.get_weights())
    del model
print("DIGESTS " + json.dumps(digests))
"""


def tensor_digests(model):
    return sorted(hashlib.sha1(np.ascontiguousarray(np.array(w), np.float32).tobytes()).hexdigest()
                  for w in model.weights)


@pytest.fixture(scope="module")
def legacy_dir(tmp_path_factory):
    """KerasCV's four files written by Keras 2, and the digest of every tensor the writer held when it wrote them."""
    d = tmp_path_factory.mktemp("kerascv-weights")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    p = subprocess.run([sys.executable, "-c", WRITER, str(d)], env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    line = next(x for x in p.stdout.splitlines() if x.startswith("DIGESTS "))
    return d, json.loads(line[len("DIGESTS "):])


def test_local_weights_load_every_tensor_and_train(legacy_dir, char_images, tmp_path):
    legacy_dir, written_digests = legacy_dir
    from core.components import Components
    from core.train import TrainConfig, start_run, train

    with pytest.raises(UserError, match="does not match KerasCV's published"):
        WeightSpec.parse(str(legacy_dir)).resolve("image_encoder")
    spec = WeightSpec.parse(str(legacy_dir), allow_unverified=True)
    comps = Components(spec, RES)
    for name, (fname, _, _) in WEIGHT_FILES.items():
        model = comps.get(name)
        held = tensor_digests(model)
        written = written_digests[fname]
        assert len(held) == len(written) and held == written, f"{fname}: tensors differ from the file"
    prov = spec.provenance()
    assert prov["source"] == "local" and prov["verified"] is False and len(prov["files"]) == 4

    cfg = TrainConfig.from_dict({"images": str(char_images), "weights": str(legacy_dir), "allow_unverified": True,
                                 "resolution": RES, "steps": 1, "batch_size": 1, "checkpoint_every": 1})
    run = train(cfg, start_run(cfg, tmp_path, "local"), comps, progress=False)
    meta = run.meta
    assert meta["status"] == "finished" and meta["weights"]["source"] == "local"
    assert meta["weights"]["files"]["kcv_encoder.h5"] == spec.files["text_encoder"]["sha256"]
    assert not run.is_pipeline_check


def test_missing_file_and_offline_kerascv_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="kcv_encoder.h5: missing"):
        WeightSpec.parse(str(tmp_path)).resolve("text_encoder")
    import core.weights as w

    monkeypatch.setitem(w.WEIGHT_FILES, "decoder", ("kcv_decoder.h5", "http://127.0.0.1:9/kcv_decoder.h5", "0" * 64))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    with pytest.raises(UserError, match=r"--weights DIR.*--weights random"):
        WeightSpec.parse("kerascv").resolve("decoder")
