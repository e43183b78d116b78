"""The real KerasCV SD v1.4 architecture, random weights, 128 px: one shared build for the in-process tests,
plus the CLI end to end (train, kill, resume) in subprocesses. Slow (minutes); marked `real`."""

import gc
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core.weights import WeightSpec
from tests.tflog import cpp_log_lines

pytestmark = pytest.mark.real
ROOT = Path(__file__).resolve().parent.parent
RES = 128


@pytest.fixture(scope="module")
def real():
    from core.components import Components

    comps = Components(WeightSpec("random", seed=0), RES)
    for name in ("text_encoder", "diffusion_model", "image_encoder", "decoder"):
        comps.get(name)
    yield comps
    del comps
    import keras

    keras.backend.clear_session()
    gc.collect()


def cli(*args, **kw):
    """`python -m core ARGS` with no TF_* variable from this process: the command must set its own (issue 23.8)."""
    from tests.tflog import env_without_tf_settings

    env = env_without_tf_settings()
    return subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_only_new_row_changes_and_loss_falls_on_one_batch(real, char_images, tmp_path):
    """Overfit one fixed batch: the loss falls; every other weight, the vocabulary included, is bit-identical."""
    from core.components import PlaceholderTextEncoder
    from core.train import TrainConfig, TrainingData, build_model, prepare

    cfg = TrainConfig.from_dict({"images": str(char_images), "weights": "random", "resolution": RES,
                                 "batch_size": 1, "lr": 2e-2})
    images, _, templates, tokenizer, init_id = prepare(cfg)
    te_before = [np.array(w) for w in real.text_encoder.get_weights()]
    unet_sum = float(sum(np.abs(w).sum() for w in real.diffusion_model.get_weights()))
    vocab = te_before[0] if te_before[0].shape[0] == 49408 else None
    assert vocab is not None
    encoder = PlaceholderTextEncoder(real.text_encoder, vocab[init_id][None])
    model = build_model(encoder, real.diffusion_model, real.image_encoder, cfg)
    assert [v.path for v in model.trainable_variables] == [encoder.embedding.placeholder.path]
    batch = TrainingData(images, templates, tokenizer, cfg).batch(1)
    losses = [float(model.train_on_batch(batch, return_dict=True)["loss"]) for _ in range(8)]
    assert losses[-1] < losses[0], losses
    assert not np.array_equal(encoder.get_vectors()[0], vocab[init_id])
    for a, b in zip(te_before, real.text_encoder.get_weights()):
        assert np.array_equal(a, np.array(b))
    assert float(sum(np.abs(w).sum() for w in real.diffusion_model.get_weights())) == unet_sum


def test_sampler_matches_kerascv_generate_image(real):
    """Our batched-CFG compiled loop gives KerasCV's generate_image result for the same noise."""
    import keras_cv

    from core.components import PlaceholderTextEncoder
    from core.sampler import UNCONDITIONAL_TOKENS, Sampler
    from core.tokenizer import PromptTokenizer

    tok = PromptTokenizer("<tom-cat>")
    vocab = np.array(real.text_encoder.get_weights()[0])
    enc = PlaceholderTextEncoder(real.text_encoder, vocab[2368][None])
    ctx = enc.encode(np.asarray([tok.encode("a horror movie poster with <tom-cat>")]))
    uncond = enc.encode(np.asarray([UNCONDITIONAL_TOKENS]))
    noise = np.random.default_rng(0).standard_normal((1, RES // 8, RES // 8, 4)).astype(np.float32)
    ours = Sampler(real.diffusion_model, real.decoder).sample(ctx, uncond, noise, num_steps=3, guidance=7.5)

    sd = keras_cv.models.StableDiffusion(img_height=RES, img_width=RES, jit_compile=False)
    sd._text_encoder, sd._diffusion_model, sd._decoder = real.text_encoder, real.diffusion_model, real.decoder
    theirs = sd.generate_image(ctx, batch_size=1, num_steps=3, unconditional_guidance_scale=7.5,
                               diffusion_noise=noise)
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert ours.shape == theirs.shape == (1, RES, RES, 3)
    assert diff.max() <= 2 and diff.mean() < 0.05, (diff.max(), diff.mean())
    assert ours.std() > 1  # not a blank image


def test_cli_train_kill_resume(real, char_images, tmp_path, monkeypatch, capsys):
    """`train` through the CLI, SIGKILL after the first checkpoint, then `train --resume` through the CLI's
    `main()` in this process, on the module's networks (one build fewer than a second CLI child): every step
    exactly once, the same losses as an uninterrupted in-process run with the same seeds."""
    import core.components
    from core.__main__ import main
    from core.runfolder import Run
    from core.train import TrainConfig, start_run, train

    runs = tmp_path / "runs"
    args = ["train", "--images", str(char_images), "--weights", "random", "--resolution", str(RES), "--steps", "4",
            "--checkpoint-every", "2", "--batch-size", "1", "--runs-dir", str(runs), "--name", "cli", "--no-progress"]
    proc = cli(*args)
    run = Run(runs / "cli")
    # wait on progress, not on a fixed time: the child is alive and still before its first checkpoint
    # (the module's timeout bounds a child that hangs)
    while not run.checkpoint_path(2).exists():
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0]
    assert cpp_log_lines(out) == [], out  # it loaded TensorFlow and trained: not one TensorFlow C++ log line
    assert run.reload().record.status == "running"  # killed: nothing could mark it
    assert run.stale_reason() is not None  # ... and every reader sees that no process holds it

    monkeypatch.setattr(core.components, "Components", lambda spec, resolution, **kw: real)
    assert main(["train", "--resume", str(run.path), "--no-progress"]) == 0
    assert "stale" in capsys.readouterr().err  # the CLI said what it found before resuming
    resumed = run.reload()
    cfg = TrainConfig.from_dict(resumed.meta["config"])
    assert resumed.meta["status"] == "finished" and resumed.embedding_steps() == [0, 2, 4]
    steps = [m["step"] for m in resumed.read_metrics()]
    assert steps == [1, 2, 3, 4], steps

    ref = train(cfg, start_run(cfg, runs, "ref"), real, progress=False)
    np.testing.assert_allclose([m["loss"] for m in resumed.read_metrics()],
                               [m["loss"] for m in ref.read_metrics()], rtol=1e-4)
    np.testing.assert_allclose(resumed.load_embedding(4)["<tom-cat>"], ref.load_embedding(4)["<tom-cat>"],
                               rtol=1e-4, atol=1e-6)


def test_cli_train_rejects_bad_images_before_building(tmp_path, char_images):
    import shutil

    folder = tmp_path / "imgs"
    shutil.copytree(char_images, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    p = cli("train", "--images", str(folder), "--weights", "random", "--runs-dir", str(tmp_path / "runs"))
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 2, out
    assert "broken.png" in out and "bad file" in out
    assert not (tmp_path / "runs").exists()  # nothing written


def test_score_token_clip_writes_every_identity_field(real, char_images, tmp_path, monkeypatch):
    """Issue 21 on the real architecture: `score --token-clip ViT-L-14:random` (the run's own KerasCV text encoder,
    random ViT-L/14 projection) writes token similarity, identity, leakage, the memorisation screen and the
    CustomConcept101 numbers for every checkpoint; at step 0 the token's feature is the initializer's. The CLI's
    main() runs in this process on the module's networks (no second build; torch was imported first)."""
    import core.components
    from core.__main__ import main
    from core.generate import GenerateConfig, generate
    from core.runfolder import Run
    from core.train import TrainConfig, start_run, train

    cfg = TrainConfig.from_dict({"images": str(char_images), "weights": "random", "resolution": RES, "steps": 2,
                                 "checkpoint_every": 1, "batch_size": 1})
    run = train(cfg, start_run(cfg, tmp_path / "runs", "identity"), real, progress=False)
    leakage = tmp_path / "leakage.txt"
    leakage.write_text("# subject: a dog\na dog sitting next to {}\n", encoding="utf-8")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a horror movie poster with {}\na dog sitting next to {}\n", encoding="utf-8")
    generate(run, GenerateConfig.from_dict({"prompts": str(prompts), "seeds": "0", "checkpoints": "all",
                                            "steps": 2, "batch_size": 6}), real, progress=False)
    monkeypatch.setattr(core.components, "Components", lambda spec, resolution, **kw: real)
    assert main(["score", str(run.path), "--references", str(char_images), "--clip", "ViT-B-32:random",
                 "--token-clip", "ViT-L-14:random", "--subject", "Tom, the cat from Tom and Jerry", "--leakage",
                 str(leakage), "--protocol", "customconcept101", "--n-boot", "200", "--no-progress"]) == 0
    rec = Run(run.path).scores_record()
    steps = [0, 1, 2]
    assert [r["step"] for r in rec.token_similarity] == steps
    assert all(r["vs_references"] is not None and r["vs_subject"] is not None for r in rec.token_similarity)
    assert rec.token_similarity[0]["vs_init"] >= 0.9999
    assert rec.token_similarity_provenance["encoder"]["model"] == "ViT-L-14"
    for key in ("identity", "leakage", "memorisation"):
        assert [r["step"] for r in getattr(rec, key)] == steps, key
    assert all(r["n"] == 1 and r["rate"] is not None for r in rec.identity)
    assert all(r["survival"] is not None for r in rec.leakage)
    assert all(r["n"] == 2 and r["mean"] > 0 for r in rec.memorisation)
    assert [r["step"] for r in rec.protocol["rows"]] == steps and all(r["n"] == 1 for r in rec.protocol["rows"])
    assert {"clip_i", "clip_t", "identity", "leakage", "memorisation", "token_similarity", "protocol"} <= set(
        rec.provenance)
    assert rec.is_pipeline_check
