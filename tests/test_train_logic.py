"""Training, generation and token logic on tiny stand-in networks (seconds, not minutes)."""

import json

import numpy as np
import pytest
from PIL import Image

from core.errors import UserError

RES = 128


@pytest.fixture(scope="module")
def tiny():
    from tests.tiny import tiny_components

    return tiny_components(RES)


def cfg_for(images, **kw):
    from core.train import TrainConfig

    base = dict(images=str(images), weights="random", resolution=RES, steps=6, checkpoint_every=2, batch_size=2,
                lr=5e-3)
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_config_is_strict():
    from core.train import TrainConfig

    with pytest.raises(UserError, match="unknown config key.*stepz"):
        TrainConfig.from_dict({"images": "x", "stepz": 3})
    with pytest.raises(UserError, match="resolution=100"):
        TrainConfig.from_dict({"images": "x", "resolution": 100})
    with pytest.raises(UserError, match="property='face'"):
        TrainConfig.from_dict({"images": "x", "property": "face"})


def test_token_rules():
    from core.tokenizer import PromptTokenizer

    with pytest.raises(UserError, match="already in the CLIP vocabulary"):
        PromptTokenizer("cat")
    with pytest.raises(UserError, match="lower-cases"):
        PromptTokenizer("<Tom-Cat>")
    tok = PromptTokenizer("<tom-cat>", 3)
    with pytest.raises(UserError, match=r"tokenizes to 2 tokens \(tom cat</w>\)"):
        tok.initializer_id("tomcat")
    ids = tok.encode("a photo of <tom-cat>")
    assert ids[4:7] == [49408, 49409, 49410] and len(ids) == 77
    with pytest.raises(UserError, match="is 80 tokens long"):
        tok.encode(" ".join(["cat"] * 78))


def test_prompt_file_errors(tmp_path):
    from core.prompts import load_templates

    p = tmp_path / "p.txt"
    p.write_text("a photo of {}\n# comment\n\na picture without the marker\n")
    with pytest.raises(UserError, match=r"p.txt:4: 'a picture without the marker' has 0"):
        load_templates(p)


def test_only_new_vector_trains_and_run_folder(tiny, char_images, tmp_path):
    import keras

    from core.train import start_run, train

    te_before = [np.array(w) for w in tiny.text_encoder.get_weights()]
    unet_before = [np.array(w) for w in tiny.diffusion_model.get_weights()]
    cfg = cfg_for(char_images)
    run = train(cfg, start_run(cfg, tmp_path, "r"), tiny, progress=False)
    meta = run.meta
    assert meta["status"] == "finished" and meta["final_step"] == 6
    assert meta["weights"]["source"] == "random" and run.is_pipeline_check
    assert [m["step"] for m in run.read_metrics()] == [1, 2, 3, 4, 5, 6]
    assert run.embedding_steps() == [0, 2, 4, 6] and run.checkpoint_steps() == [0, 2, 4, 6]
    for a, b in zip(te_before, tiny.text_encoder.get_weights()):
        assert np.array_equal(a, np.array(b))  # the whole frozen table and encoder: bit-identical
    for a, b in zip(unet_before, tiny.diffusion_model.get_weights()):
        assert np.array_equal(a, np.array(b))
    e0, e6 = run.load_embedding(0)["<tom-cat>"], run.load_embedding(6)["<tom-cat>"]
    vocab = keras.ops.convert_to_numpy(tiny.text_encoder.layers[2].token_embedding.embeddings)
    np.testing.assert_array_equal(e0[0], vocab[2368])  # step 0 is the initializer "cat"
    assert not np.array_equal(e0, e6)
    nb = run.read_neighbors()
    assert nb[0]["token"] == "cat</w>" and float(nb[0]["cosine"]) == pytest.approx(1.0)
    assert {int(r["step"]) for r in nb} == {0, 2, 4, 6}
    rows = run.read_manifest()
    assert len(rows) == 6 and rows[0]["license"] == "CC0-1.0"


def test_resume_matches_uninterrupted(tiny, char_images, tmp_path):
    from core.train import start_run, train

    cfg = cfg_for(char_images)
    full = train(cfg, start_run(cfg, tmp_path, "full"), tiny, progress=False)
    part = train(cfg, start_run(cfg, tmp_path, "part"), tiny, progress=False, stop_after=3)
    assert part.meta["status"] == "interrupted"
    assert [m["step"] for m in part.read_metrics()] == [1, 2, 3]  # step 3 ran, but its checkpoint never came
    train(cfg, part, tiny, resume=True, progress=False)
    a, b = full.read_metrics(), part.read_metrics()
    assert [m["step"] for m in b] == [1, 2, 3, 4, 5, 6]  # every step exactly once
    np.testing.assert_allclose([m["loss"] for m in a], [m["loss"] for m in b], rtol=1e-5)
    np.testing.assert_allclose(full.load_embedding(6)["<tom-cat>"], part.load_embedding(6)["<tom-cat>"], rtol=1e-5,
                               atol=1e-7)
    assert part.meta["status"] == "finished"


def test_a_later_run_on_the_same_networks_trains_as_on_a_fresh_build(char_images, tmp_path):
    """core.train keeps one compiled training model per setting on the networks (Components.trainers); a later run
    starts from its own initializer vectors and a fresh optimizer state, so it trains exactly as on a new build."""
    from core.train import start_run, train
    from tests.tiny import tiny_components

    cfg = cfg_for(char_images, steps=4)
    shared = tiny_components(RES)
    first = train(cfg, start_run(cfg, tmp_path, "first"), shared, progress=False)
    again = train(cfg, start_run(cfg, tmp_path, "again"), shared, progress=False)
    fresh = train(cfg, start_run(cfg, tmp_path, "fresh"), tiny_components(RES), progress=False)
    assert len(shared.trainers) == 1  # `again` used the model `first` compiled
    for run in (again, fresh):
        np.testing.assert_allclose([m["loss"] for m in run.read_metrics()],
                                   [m["loss"] for m in first.read_metrics()], rtol=1e-6)
        for step in (0, 2, 4):
            np.testing.assert_allclose(run.load_embedding(step)["<tom-cat>"], first.load_embedding(step)["<tom-cat>"],
                                       rtol=1e-6, atol=1e-8)


def test_nan_loss_stops_and_keeps_checkpoint(tiny, char_images, tmp_path, monkeypatch):
    from core import train as train_mod

    cfg = cfg_for(char_images, steps=5)
    orig = train_mod.TrainingData.batch

    def poisoned(self, step):
        b = orig(self, step)
        if step == 3:
            b["noise"][:] = np.inf
        return b

    monkeypatch.setattr(train_mod.TrainingData, "batch", poisoned)
    run = train_mod.train(cfg, train_mod.start_run(cfg, tmp_path, "nan"), tiny, progress=False)
    meta = run.meta
    assert meta["status"] == "failed" and "step 3" in meta["message"] and "step 2" in meta["message"]
    # --resume keeps the run's config (its --lr), so the advice is a new run with a lower --lr
    assert "start a new run with a lower --lr" in meta["message"]
    assert run.embedding_steps() == [0, 2]
    assert all(np.isfinite(run.load_embedding(2)["<tom-cat>"]).ravel())


def test_generate_pngs_index_skip_and_determinism(tiny, char_images, tmp_path):
    from core.generate import GenerateConfig, generate
    from core.train import start_run, train

    cfg = cfg_for(char_images, steps=2)
    run = train(cfg, start_run(cfg, tmp_path, "g"), tiny, progress=False)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a 3D animation frame of {}, photorealistic\na horror movie poster with {}\n")
    gcfg = GenerateConfig.from_dict({"prompts": str(prompts), "seeds": "0,1", "checkpoints": "0,final", "steps": 3,
                                     "batch_size": 3})
    counts = generate(run, gcfg, tiny, progress=False)
    assert counts["generated"] == 8 and counts["skipped"] == 0
    rows = run.read_images()
    assert len(rows) == 8 and {r["step"] for r in rows} == {"0", "2"}
    first = run.path / rows[0]["path"]
    with Image.open(first) as im:
        info = im.text
        pixels = np.asarray(im)
    assert info["prompt"] == rows[0]["prompt"] and "<tom-cat>" in info["prompt"]
    assert json.loads(info["weights"])["source"] == "random" and "PIPELINE CHECK" in info["label"]
    for k in ("seed", "steps", "guidance", "checkpoint_step", "token", "init_image", "strength", "tool",
              "negative_prompt"):
        assert k in info
    assert generate(run, gcfg, tiny, progress=False)["skipped"] == 8  # rerun skips everything
    first.unlink()  # same inputs give identical pixels, even in another batch composition
    assert generate(run, gcfg, tiny, progress=False)["generated"] == 1
    with Image.open(first) as im:
        np.testing.assert_array_equal(np.asarray(im), pixels)
    assert len(list(run.grids_dir.glob("*.png"))) == 2 + 2
    with pytest.raises(UserError, match="no such checkpoint"):
        generate(run, GenerateConfig.from_dict({"prompts": str(prompts), "checkpoints": "7"}), tiny, progress=False)


def test_img2img_uses_the_picture(tiny, char_images, tmp_path):
    from core.generate import GenerateConfig, generate
    from core.train import start_run, train

    cfg = cfg_for(char_images, steps=2)
    run = train(cfg, start_run(cfg, tmp_path, "i"), tiny, progress=False)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a horror movie poster with {}\n")
    pics = sorted(char_images.glob("*.png"))
    outs = []
    for pic in pics[:2]:
        g = GenerateConfig.from_dict({"prompts": str(prompts), "seeds": "0", "checkpoints": "final", "steps": 4,
                                      "init_image": str(pic), "strength": 0.5})
        generate(run, g, tiny, progress=False)
        row = [r for r in run.read_images() if r["init_image"] == str(pic)][0]
        assert row["strength"] == "0.5"
        outs.append(np.asarray(Image.open(run.path / row["path"])))
    assert not np.array_equal(outs[0], outs[1])  # a different start picture gives a different result
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    with pytest.raises(UserError, match="bad.png: not an image"):
        generate(run, GenerateConfig.from_dict({"prompts": str(prompts), "init_image": str(bad)}), tiny, progress=False)


def test_cli_offline_kerascv_fails_before_any_run_folder(char_images, tmp_path, monkeypatch, capsys):
    """Unreachable weight host (here a closed local port, so the test never downloads anything, and an empty Keras
    cache): one clear error naming both alternatives, exit status 2, and no run folder left behind. Through the
    CLI's main() in this process: the test is about the message and the folder, not about a process."""
    import functools

    import keras

    import core.weights as w
    from core.__main__ import main

    for k, (f, _, h) in list(w.WEIGHT_FILES.items()):
        monkeypatch.setitem(w.WEIGHT_FILES, k, (f, "http://127.0.0.1:9/" + f, h))
    monkeypatch.setattr(keras.utils, "get_file",
                        functools.partial(keras.utils.get_file, cache_dir=str(tmp_path / "keras-home")))
    rc = main(["train", "--images", str(char_images), "--weights", "kerascv", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    assert "could not get KerasCV's kcv_encoder.h5" in err and "--weights random" in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_fresh_train_reads_and_hashes_the_training_images_once(char_images, tmp_path, monkeypatch):
    """`python -m core train` validates the images before anything is built and hands what it read to the
    training loop: each training image is hashed exactly once (counted on the real sha256_file, through main())."""
    from pathlib import Path

    import core.components
    import core.runfolder
    from core.__main__ import main
    from core.runfolder import Run
    from tests.tiny import tiny_components

    monkeypatch.setattr(core.components, "Components", lambda spec, res, **kw: tiny_components(res, spec.seed))
    hashed, real = [], core.runfolder.sha256_file
    monkeypatch.setattr(core.runfolder, "sha256_file",
                        lambda p, *a, **k: hashed.append(Path(p).name) or real(p, *a, **k))
    assert main(["train", "--images", str(char_images), "--weights", "random", "--resolution", str(RES), "--steps",
                 "2", "--checkpoint-every", "2", "--runs-dir", str(tmp_path), "--name", "once", "--no-progress"]) == 0
    pictures = sorted(p.name for p in char_images.glob("*.png"))
    assert sorted(n for n in hashed if n.endswith(".png")) == pictures  # each once
    assert [r["file"] for r in Run(tmp_path / "once").read_manifest()] == pictures


def test_placeholder_id_check_is_a_real_error(monkeypatch):
    """Not an assert (stripped under python -O): a tokenizer that gives the placeholder another id is refused."""
    import core.tokenizer as tok

    monkeypatch.setattr(tok, "VOCAB_SIZE", tok.VOCAB_SIZE + 5)
    with pytest.raises(RuntimeError, match="expected .* \\(the first added token\\)"):
        tok.PromptTokenizer("<x-tok>", 1)
