"""Reading SD checkpoints without torch and without running pickles (core.ckptfile), what counts as an SD 1.x
checkpoint and the one-line refusals of everything else (core.sdcheckpoint, `convert-weights`), the EMA choice,
and the weight map's transposes. Tiny synthetic files; the full-size conversion and the equivalence with
diffusers are in tests/test_real_equivalence.py."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from core.__main__ import main
from core.ckptfile import NotACheckpoint, open_tensors
from core.errors import UserError
from core.sdcheckpoint import UNET_CTX, UNET_IN, open_checkpoint
from core.weightmap import LAYERS, to_keras, to_torch, torch_shape

RNG = np.random.default_rng(3)


def sd1_keys(width=768, in_ch=4, vae=True, text="cond_stage_model.transformer.text_model."):
    """The few keys (real shapes where detection reads them) that make a file look like SD 1.x."""
    d = {UNET_IN: RNG.normal(size=(320, in_ch, 3, 3)).astype(np.float32),
         UNET_CTX: RNG.normal(size=(320, width)).astype(np.float32),
         text + "embeddings.token_embedding.weight": np.ones((2, 2), np.float32)}
    if vae:
        d["first_stage_model.decoder.conv_in.weight"] = np.ones((2, 2), np.float32)
        d["first_stage_model.encoder.conv_in.weight"] = np.ones((2, 2), np.float32)
    return d


def save_st(path, tensors, metadata=None):
    safetensors.numpy.save_file(tensors, str(path), metadata=metadata)
    return path


# ------------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_safetensors_read_in_every_dtype(tmp_path, dtype):
    t = {"a": torch.randn(3, 5).to(dtype), "b": torch.randn(7).to(dtype), "ids": torch.arange(77)[None]}
    safetensors.torch.save_file(t, str(tmp_path / "x.safetensors"), metadata={"modelspec.title": "x"})
    tf = open_tensors(tmp_path / "x.safetensors")
    assert tf.format == "safetensors" and tf.metadata == {"modelspec.title": "x"}
    for k, v in t.items():
        np.testing.assert_array_equal(tf.read(k), v.float().numpy() if v.is_floating_point() else v.numpy())
    assert tf.entries["a"].short_dtype == {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_ckpt_read_lazily_views_and_lightning_dict(tmp_path, dtype):
    """torch.save's zip (with torch >= 2.1's extra members): a Lightning-style dict, a transposed tensor, a view
    into a shared storage at an offset, a numpy scalar; each tensor equals what torch.load returns."""
    base = torch.randn(10, 6).to(dtype)
    sd = {"w": torch.randn(4, 3).to(dtype), "t": base.t(), "view": base[2:5], "ids": torch.arange(77)[None]}
    torch.save({"state_dict": sd, "global_step": 470000, "epoch": np.int64(3)}, tmp_path / "m.ckpt")
    tf = open_tensors(tmp_path / "m.ckpt")
    assert tf.format == "ckpt" and set(tf.keys()) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(tf.read(k), v.float().numpy() if v.is_floating_point() else v.numpy())


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": {"x": Evil()}}, protocol=2))
        z.writestr("archive/version", "3\n")
    (tmp_path / "evil.ckpt").write_bytes(buf.getvalue())
    with pytest.raises(NotACheckpoint, match=r"refused: .*posix\.system|refused: .*os\.system"):
        open_tensors(tmp_path / "evil.ckpt")
    assert not marker.exists()
    out = tmp_path / "out"
    assert main(["convert-weights", str(tmp_path / "evil.ckpt"), "--out", str(out)]) == 2
    assert not marker.exists() and not out.exists()


# ------------------------------------------------------------------------------------------------ refusals
REFUSALS = {
    "sd2": (lambda: sd1_keys(width=1024), r"SD 2\.x checkpoint \(OpenCLIP text encoder, 1024 wide\)"),
    "openclip": (lambda: {**sd1_keys(), "cond_stage_model.model.token_embedding.weight": np.ones(2, np.float32)},
                 r"SD 2\.x checkpoint"),
    "sdxl": (lambda: {"conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight":
                      np.ones(2, np.float32), **sd1_keys()}, r"an SDXL checkpoint"),
    "inpainting": (lambda: sd1_keys(in_ch=9), r"an inpainting UNet with 9 input channels"),
    "lora": (lambda: {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.ones((4, 4), np.float32)},
             r"a LoRA file \(1 tensors like lora_unet_.*not a base model"),
    "vae_only": (lambda: {"encoder.conv_in.weight": np.ones(2, np.float32), "decoder.conv_in.weight":
                          np.ones(2, np.float32)}, r"a VAE-only file: pass it as --vae FILE"),
    "embedding": (lambda: {"emb_params": np.ones((1, 768), np.float32)}, r"a textual-inversion embedding: use"),
    "no_vae": (lambda: sd1_keys(vae=False), r"holds no VAE \(first_stage_model\.\*\); pass --vae FILE"),
    "no_text": (lambda: {k: v for k, v in sd1_keys().items() if "cond_stage" not in k}, r"no CLIP text encoder"),
}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_not_sd1_refused_in_one_line_nothing_written(tmp_path, capsys, kind):
    make, pattern = REFUSALS[kind]
    path = save_st(tmp_path / f"{kind}.safetensors", make())
    with pytest.raises(UserError, match=pattern):
        open_checkpoint(path)
    out = tmp_path / "out"
    assert main(["convert-weights", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err, err
    assert not out.exists()


def test_truncated_and_non_checkpoint_files(tmp_path):
    path = save_st(tmp_path / "full.safetensors", sd1_keys())
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(UserError, match=r"truncated: tensor .* ends at byte \d+, the file has \d+"):
        open_checkpoint(tmp_path / "cut.safetensors")
    torch.save({"state_dict": {"w": torch.ones(1000)}}, tmp_path / "m.ckpt")
    raw = (tmp_path / "m.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match=r"cut\.ckpt: damaged or truncated zip"):
        open_checkpoint(tmp_path / "cut.ckpt")
    (tmp_path / "notes.txt").write_text("hello, not a model\n")
    with pytest.raises(UserError, match=r"notes\.txt: neither safetensors nor a torch zip checkpoint"):
        open_checkpoint(tmp_path / "notes.txt")
    with pytest.raises(UserError, match=r"no such file or folder"):
        open_checkpoint(tmp_path / "missing.safetensors")


def test_missing_tensor_named_before_anything_is_written(tmp_path):
    """A file that passes detection but lacks a weight: the key is named, --out is not created."""
    path = save_st(tmp_path / "partial.safetensors", sd1_keys())
    with pytest.raises(UserError, match=r"partial\.safetensors: cond_stage_model\.transformer\.text_model\."
                                        r"embeddings\.token_embedding\.weight has shape \[2, 2\], SD 1\.x's is"):
        open_checkpoint(path).check()


def test_vae_file_kinds_and_missing_vae_message(tmp_path):
    """--vae takes LDM names (bare or prefixed) and diffusers names; a checkpoint without VAE needs it."""
    path = save_st(tmp_path / "novae.safetensors", sd1_keys(vae=False))
    bare = save_st(tmp_path / "vae.safetensors", {"encoder.conv_in.weight": np.ones(2, np.float32),
                                                  "decoder.conv_in.weight": np.ones(2, np.float32)})
    diff = save_st(tmp_path / "vae-diffusers.safetensors", {
        "encoder.conv_in.weight": np.ones(2, np.float32), "decoder.conv_in.weight": np.ones(2, np.float32),
        "decoder.up_blocks.0.resnets.0.conv1.weight": np.ones(2, np.float32)})
    ck = open_checkpoint(path, vae=bare)
    assert ck.parts["decoder"].prefix == "" and not ck.parts["decoder"].diffusers and ck.vae_path == bare
    assert open_checkpoint(path, vae=diff).parts["image_encoder"].diffusers
    with pytest.raises(UserError, match=r"not a VAE"):
        open_checkpoint(path, vae=save_st(tmp_path / "x.safetensors", {"foo": np.ones(2, np.float32)}))


def test_ema_choice_as_a1111_and_diffusers(tmp_path):
    """With model_ema.* keys the non-EMA weights are used unless ema=True; the EMA key drops the dots."""
    keys = sd1_keys()
    flat = "model_ema.diffusion_modelinput_blocks00weight"
    keys[flat] = keys[UNET_IN] + 1.0
    keys.update({f"model_ema.filler{i}": np.zeros(1, np.float32) for i in range(101)})
    path = save_st(tmp_path / "full-ema.safetensors", keys)
    w = LAYERS["diffusion_model"]()[1].weights[0]  # conv_in kernel
    plain, ema = open_checkpoint(path), open_checkpoint(path, ema=True)
    assert plain.ema == "not used (as A1111 and diffusers)" and ema.ema == "used (--ema)"
    assert plain.parts["diffusion_model"].key(w) == UNET_IN and ema.parts["diffusion_model"].key(w) == flat
    np.testing.assert_array_equal(plain.tensor("diffusion_model", w), to_keras(w, keys[UNET_IN]))
    np.testing.assert_array_equal(ema.tensor("diffusion_model", w), to_keras(w, keys[UNET_IN] + 1.0))
    no_ema = save_st(tmp_path / "pruned.safetensors", sd1_keys())
    assert open_checkpoint(no_ema).ema == "none in file"
    with pytest.raises(UserError, match=r"--ema asked for, but the file has no EMA weights"):
        open_checkpoint(no_ema, ema=True)


def test_old_clip_key_layout_and_modelspec(tmp_path):
    """Files whose CLIP keys lack `text_model.` (what diffusers' script writes from transformers >= 5.6, and
    older checkpoints A1111 maps) are read; ModelSpec metadata is kept for the card."""
    path = save_st(tmp_path / "old.safetensors", sd1_keys(text="cond_stage_model.transformer."),
                   metadata={"modelspec.title": "Toon v2", "modelspec.license": "creativeml-openrail-m",
                             "format": "pt"})
    ck = open_checkpoint(path)
    assert ck.parts["text_encoder"].prefix == "cond_stage_model.transformer."
    assert ck.modelspec == {"modelspec.title": "Toon v2", "modelspec.license": "creativeml-openrail-m"}


def test_weight_map_transposes_round_trip_and_keys_unique():
    for component, layers in LAYERS.items():
        ws = [w for layer in layers() for w in layer.weights]
        assert len({w.ldm for w in ws}) == len(ws), component
        assert len({w.diffusers[0] for w in ws}) == len(ws), component
    for w in (w for layer in LAYERS["decoder"]() for w in layer.weights):
        if w.kind in ("conv", "conv1x1", "dense"):
            t = RNG.normal(size=torch_shape(w)).astype(np.float32)
            k = to_keras(w, t)
            assert k.shape == w.shape
            np.testing.assert_array_equal(to_torch(w, k), t)
            if w.kind == "conv1x1":  # diffusers' Linear [out, in] is the 1x1 kernel's [out, in, 0, 0]
                np.testing.assert_array_equal(to_keras(w, t[:, :, 0, 0]), k)
                np.testing.assert_array_equal(to_torch(w, k, diffusers=True), t[:, :, 0, 0])


def test_learned_embeds_bin_holding_a_view_of_the_whole_table(tmp_path):
    """diffusers' textual_inversion.py on a CPU saves `weight[min_id:max_id + 1]`: torch writes the whole
    49,409-row storage (145 MiB). `import` reads just the viewed row; a larger file is still refused by size."""
    from core.embedfile import MAX_VIEW_FILE_BYTES, read_embedding_file

    table = torch.randn(49409, 768)
    path = tmp_path / "learned_embeds.bin"
    torch.save({"<tom-cat>": table[49408:49409]}, path)
    assert path.stat().st_size > 144 << 20  # 49,409 x 768 float32
    emb = read_embedding_file(path)
    assert emb.token == "<tom-cat>"
    np.testing.assert_array_equal(emb.vectors, table[49408:49409].numpy())
    big = tmp_path / "v1-5-pruned.bin"
    with open(big, "wb") as f:
        f.truncate(MAX_VIEW_FILE_BYTES + 1)
    with pytest.raises(UserError, match=r"MiB is far too large .*checkpoint"):
        read_embedding_file(big)
    whole = tmp_path / "table.bin"
    torch.save({"<tom-cat>": table}, whole)  # not a view: 49,409 rows
    with pytest.raises(UserError, match=r"not a textual-inversion embedding; is it a model checkpoint"):
        read_embedding_file(whole)


CKPT_SHA = "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"
CKPT_WEIGHTS = {"source": "checkpoint", "format": "safetensors", "file": "/models/v1-5-pruned-emaonly.safetensors",
                "sha256": CKPT_SHA, "short_hash": CKPT_SHA[:10], "dtype": "fp16", "ema": "none in file", "vae": None,
                "modelspec": {}, "files": {"kcv_encoder.h5": "ab" * 32}, "verified": True, "directory": "/cache/x"}


def test_card_names_the_checkpoint_and_its_licence_only_when_stated(tmp_path):
    import core.card as C
    from core.card.basemodel import LICENCE_NOT_STATED
    from tests.fakerun import make_fake_run

    run = make_fake_run(tmp_path / "runs", "from-ckpt")
    run.update_meta(weights=CKPT_WEIGHTS)
    text = C.render(C.build_card(run), "md").decode("utf-8")
    assert "**Finetuned from model:** " + C.md_escape(f"v1-5-pruned-emaonly [{CKPT_SHA[:10]}]") in text
    assert f"trained through the SD 1.x checkpoint v1-5-pruned-emaonly (sha256 {CKPT_SHA})" in text
    assert C.md_escape(LICENCE_NOT_STATED) in text and "base_model:" not in text.split("\n---\n", 1)[0]
    run.update_meta(weights={**CKPT_WEIGHTS, "modelspec": {"modelspec.license": "Fair AI Public License 1.0-SD"}})
    assert "Fair AI Public License 1.0-SD" in C.render(C.build_card(run), "md").decode("utf-8")


def test_exports_name_the_real_base_checkpoint(tmp_path):
    """A run trained from a user's checkpoint: A1111's sd_checkpoint/sd_checkpoint_name are its short hash and
    name (what A1111 records itself), ModelSpec names it and carries its licence only when the file stated one."""
    from safetensors import safe_open

    from core.export import export_embedding
    from tests import toolrules
    from tests.test_export import make_run

    sha, weights = CKPT_SHA, CKPT_WEIGHTS
    run = make_run(tmp_path / "r", "from-ckpt")
    run.update_meta(weights=weights)
    rec = run.record
    assert not rec.is_pipeline_check and rec.weights.checkpoint.name == "v1-5-pruned-emaonly"
    assert rec.weights.describe() == f"checkpoint: v1-5-pruned-emaonly [{sha[:10]}] (safetensors, fp16)"
    _, fields = toolrules.a1111_load(export_embedding(run, "a1111", tmp_path / "e.pt"))
    assert fields["sd_checkpoint"] == sha[:10] and fields["sd_checkpoint_name"] == "v1-5-pruned-emaonly"
    out = export_embedding(run, "kohya", tmp_path / "e.safetensors")
    with safe_open(str(out), "np") as f:
        meta = f.metadata()
    assert f"v1-5-pruned-emaonly [{sha[:10]}]" in meta["modelspec.description"]
    assert meta["modelspec.license"] == "not stated"
    run.update_meta(weights={**weights, "modelspec": {"modelspec.license": "creativeml-openrail-m"}})
    with safe_open(str(export_embedding(run, "kohya", tmp_path / "e2.safetensors")), "np") as f:
        assert f.metadata()["modelspec.license"] == "creativeml-openrail-m"


@pytest.mark.parametrize("steps", [5, 50])
def test_ddim_diffusers_convention_is_ddimscheduler_with_sd_config(steps):
    """Sampler(ddim="diffusers") visits DDIMScheduler's timesteps (SD v1's scheduler config) and steps each to the
    alpha DDIMScheduler.step uses, the last to alphas_cumprod[0] (set_alpha_to_one=False); the KerasCV
    convention keeps KerasCV's linspace timesteps and ends at 1.0."""
    from diffusers import DDIMScheduler

    from core.sampler import Sampler
    from tests.sdv1 import SCHEDULER

    sched = DDIMScheduler.from_config(SCHEDULER)
    sched.set_timesteps(steps)
    ts, _, a_t, a_prev = Sampler(None, None, ddim="diffusers").schedule(steps)
    np.testing.assert_array_equal(ts[::-1], sched.timesteps.numpy())
    ac = sched.alphas_cumprod.numpy()
    for t, a, p in zip(ts, a_t, a_prev):
        prev = t - SCHEDULER["num_train_timesteps"] // steps
        np.testing.assert_allclose([a, p], [ac[t], ac[prev] if prev >= 0 else sched.final_alpha_cumprod.item()],
                                   rtol=1e-6)
    ts_k, _, _, prev_k = Sampler(None, None).schedule(steps)
    assert ts_k[0] == 0 and ts_k[-1] == 999 and prev_k[0] == 1.0
