"""A random Stable Diffusion v1 in diffusers, every parameter perturbed (a swapped norm weight/bias or a transposed
kernel then changes the outputs), and the files users keep, written from it the way they are made:
- original single files by diffusers' own `scripts/convert_diffusers_to_original_stable_diffusion.py`
  (vendored in tests/vendor/): fp32 and fp16 `.ckpt` (`torch.save({"state_dict": ...})`, its default, and its
  `--half`); a bf16 `.safetensors` (its `--use_safetensors`; the script has no bf16 switch: the same state dict
  cast to bfloat16). fp16 `.safetensors` are read by the same code (tests/test_checkpoint_files.py);
- a diffusers folder (`save_pretrained`; UNet and VAE as fp16 safetensors, the text encoder as a `.bin`).

The configs are SD v1.5's (runwayml/stable-diffusion-v1-5 `unet/`, `vae/`, `text_encoder/`, `scheduler/`
config.json), written here because nothing can be downloaded."""

from __future__ import annotations

import gc
from pathlib import Path

import torch

UNET = {"sample_size": 64, "in_channels": 4, "out_channels": 4, "center_input_sample": False,
        "flip_sin_to_cos": True, "freq_shift": 0, "layers_per_block": 2, "downsample_padding": 1,
        "mid_block_scale_factor": 1, "act_fn": "silu", "norm_num_groups": 32, "norm_eps": 1e-5,
        "cross_attention_dim": 768, "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}
VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "act_fn": "silu",
       "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215, "block_out_channels": [128, 256, 512, 512],
       "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}
TEXT = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
        "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
        "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}
SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
             "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "skip_prk_steps": True,
             "trained_betas": None}


def build(seed: int = 0) -> dict[str, torch.nn.Module]:
    """UNet, VAE and CLIP text encoder with SD v1's shapes; each parameter gets seeded noise added (1-D ones
    - norm weights and biases - N(0, 0.1), the others 0.1 x their own std), so no two are alike."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    models = {"unet": UNet2DConditionModel(**UNET), "vae": AutoencoderKL(**VAE),
              "text_encoder": CLIPTextModel(CLIPTextConfig(**TEXT))}
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for model in models.values():
            model.eval()
            for p in model.parameters():
                scale = 0.1 if p.ndim == 1 else 0.1 * float(p.std())
                p.add_(torch.randn(p.shape, generator=gen) * scale)
    return models


def ldm_state_dict(models: dict[str, torch.nn.Module], text_model_prefix: bool = True) -> dict[str, torch.Tensor]:
    """The original single file's state dict, by the vendored diffusers script's converters and prefixes (its
    `__main__`, minus the file loading). transformers >= 5.6 flattened CLIPTextModel's keys (no `text_model.`);
    `text_model_prefix` puts it back, as in the checkpoints users hold (written with transformers 4), with the
    `position_ids` buffer they carry."""
    from tests.vendor.diffusers_to_original_sd import (
        convert_text_enc_state_dict,
        convert_unet_state_dict,
        convert_vae_state_dict,
    )

    unet = {"model.diffusion_model." + k: v for k, v in convert_unet_state_dict(models["unet"].state_dict()).items()}
    vae = {"first_stage_model." + k: v for k, v in convert_vae_state_dict(models["vae"].state_dict()).items()}
    text = convert_text_enc_state_dict(models["text_encoder"].state_dict())
    prefix = "cond_stage_model.transformer." + ("text_model." if text_model_prefix else "")
    text = {prefix + k: v for k, v in text.items()}
    if text_model_prefix:
        text[prefix + "embeddings.position_ids"] = torch.arange(77)[None]
    return {**unet, **vae, **text}


def write_files(models: dict[str, torch.nn.Module], folder: Path) -> dict[str, Path]:
    """Every format of the same weights; returns {name: path}. Leaves `models` in fp16 (diffusers folder)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    out = {name: folder / name for name in ("fp32.ckpt", "fp16.ckpt", "bf16.safetensors")}
    sd = ldm_state_dict(models)
    torch.save({"state_dict": sd}, out["fp32.ckpt"])  # the script's default output
    save_file({k: (v.bfloat16() if v.is_floating_point() else v).contiguous() for k, v in sd.items()},
              str(out["bf16.safetensors"]),
              metadata={"modelspec.title": "random SD v1 (test)", "modelspec.architecture": "stable-diffusion-v1"})
    del sd
    # the script exactly as it runs today: keys without `text_model.`, --half, .ckpt
    torch.save({"state_dict": {k: v.half() for k, v in ldm_state_dict(models, text_model_prefix=False).items()}},
               out["fp16.ckpt"])
    gc.collect()
    out["diffusers"] = folder / "diffusers"
    for name, model in models.items():
        model.to(torch.float16)
        if name == "text_encoder":
            model.save_pretrained(out["diffusers"] / name)  # config.json; weights as the older .bin below
            (out["diffusers"] / name / "model.safetensors").unlink()
            torch.save(model.state_dict(), out["diffusers"] / name / "pytorch_model.bin")
        else:
            model.save_pretrained(out["diffusers"] / name)
    import json

    (out["diffusers"] / "scheduler").mkdir()
    (out["diffusers"] / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "DDIMScheduler", **SCHEDULER}))
    return out


def load_reference(single_file: Path, config_dir: Path) -> dict[str, torch.nn.Module]:
    """diffusers' own reading of an original single file (fp32), offline with a local config: `from_single_file`
    for the UNet and VAE, `create_diffusers_clip_model_from_ldm` (what `from_single_file` pipelines call) for
    the text encoder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm, load_single_file_checkpoint
    from transformers import CLIPTextModel

    kw = {"config": str(config_dir), "local_files_only": True, "torch_dtype": torch.float32}
    checkpoint = load_single_file_checkpoint(str(single_file), local_files_only=True)  # read once, used thrice
    models = {"unet": UNet2DConditionModel.from_single_file(checkpoint, subfolder="unet", **kw),
              "vae": AutoencoderKL.from_single_file(checkpoint, subfolder="vae", **kw)}
    models["text_encoder"] = create_diffusers_clip_model_from_ldm(
        CLIPTextModel, checkpoint, subfolder="text_encoder", config=str(config_dir), local_files_only=True,
        torch_dtype=torch.float32)
    del checkpoint
    gc.collect()
    for m in models.values():
        m.eval().requires_grad_(False)
    return models
