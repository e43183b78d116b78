"""A Stable Diffusion 1.x checkpoint as users keep it, opened: an original single file (`.safetensors`/`.ckpt`,
fp32/fp16/bf16, with or without EMA weights, its VAE inside or a separate `--vae FILE`) or a diffusers folder
(`unet/`, `vae/`, `text_encoder/`). `open_checkpoint` refuses anything else in one line naming what it found;
`Checkpoint.tensor` gives each KerasCV weight (names: `core.weightmap`), read one at a time.

EMA: a full training checkpoint holds both the trained weights (`model.diffusion_model.*`) and their moving
average (`model_ema.*`, dots dropped from the names). A1111 (its v1-inference.yaml says `use_ema: False`) and
diffusers' `from_single_file` (`extract_ema=False`) both use the trained weights; so do we unless `ema=True`
(diffusers' `extract_ema=True`). A pruned "emaonly" file has no `model_ema.*` keys: its weights are used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.ckptfile import NotACheckpoint, TensorFile, open_tensors
from core.errors import UserError
from core.weightmap import (
    DIFFUSERS_FOLDER,
    LAYERS,
    LDM_PREFIX,
    LDM_TEXT_PREFIX_OLD,
    TEXT_WIDTH,
    Weight,
    to_keras,
    torch_shape,
)

UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
UNET_CTX = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
VAE_SUGGESTION = "e.g. vae-ft-mse-840000-ema-pruned.safetensors"
# diffusers folder: component -> weight file names, in the order diffusers prefers them
DIFFUSERS_FILES = {
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
             "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
            "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"),
    "text_encoder": ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin"),
}


@dataclass
class Part:
    """Where one component's tensors are: the file, how its keys are spelled, and whether names are diffusers'."""

    file: TensorFile
    prefix: str  # prepended to the LDM name (single files) or ignored (diffusers names)
    diffusers: bool = False
    ema: bool = False  # UNet only: read `model_ema.<name without dots>`

    def key(self, w: Weight) -> str:
        if self.diffusers:
            return next((k for k in w.diffusers if k in self.file), w.diffusers[0])
        if self.ema:
            return "model_ema." + (self.prefix + w.ldm).split(".", 1)[1].replace(".", "")
        return self.prefix + w.ldm


@dataclass
class Checkpoint:
    """An opened SD 1.x checkpoint: `parts[component]` says where each KerasCV network's weights are."""

    path: Path
    format: str  # "safetensors" | "ckpt" | "diffusers"
    parts: dict[str, Part]
    vae_path: Path | None = None
    ema: str = "none in file"  # "none in file" | "not used (as A1111 and diffusers)" | "used (--ema)"
    modelspec: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Every weight of every component is there with SD 1.x's shape (headers only; nothing is read)."""
        for component in LAYERS:
            for layer in LAYERS[component]():
                for w in layer.weights:
                    self._entry(component, w)

    def _entry(self, component: str, w: Weight):
        part = self.parts[component]
        key = part.key(w)
        entry = part.file.entries.get(key)
        if entry is None:
            raise UserError(f"{part.file.path}: {key} is missing (a damaged or partial SD 1.x checkpoint)")
        want = torch_shape(w, part.diffusers)
        if tuple(entry.shape) != want and not (w.kind == "conv1x1" and tuple(entry.shape) == torch_shape(w)):
            raise UserError(f"{part.file.path}: {key} has shape {list(entry.shape)}, SD 1.x's is {list(want)}")
        return entry

    def tensor(self, component: str, w: Weight) -> np.ndarray:
        """The KerasCV weight `w` of `component` as float32 in Keras layout (shape checked)."""
        part, entry = self.parts[component], self._entry(component, w)
        try:
            return to_keras(w, entry.read())
        except NotACheckpoint as e:
            raise UserError(f"{part.file.path}: {e}") from None

    def dtypes(self) -> str:
        """The float dtypes of the weights used: 'fp16', 'fp32', 'bf16' or e.g. 'fp16+fp32'."""
        seen = set()
        for component, part in self.parts.items():
            for layer in LAYERS[component]():
                for w in layer.weights:
                    entry = part.file.entries.get(part.key(w))
                    if entry is not None:
                        seen.add(entry.short_dtype)
        return "+".join(sorted(seen))


# ------------------------------------------------------------------------------------------------ opening
def open_checkpoint(path: Path, vae: Path | None = None, ema: bool = False) -> Checkpoint:
    """`path`: a single file or a diffusers folder; `vae`: a VAE file that replaces (or supplies) the VAE."""
    path = Path(path)
    if path.is_dir():
        if ema:
            raise UserError(f"{path}: --ema picks the EMA weights inside a single-file checkpoint; a diffusers "
                            "folder holds one set (drop --ema)")
        ckpt = _open_diffusers(path, vae_given=vae is not None)
    elif path.is_file():
        ckpt = _open_single(path, ema, vae_given=vae is not None)
    else:
        raise UserError(f"{path}: no such file or folder")
    if vae is not None:
        ckpt.vae_path = Path(vae)
        part = open_vae(Path(vae))
        ckpt.parts["image_encoder"] = ckpt.parts["decoder"] = part
    return ckpt


def _read(path: Path) -> TensorFile:
    try:
        return open_tensors(path)
    except NotACheckpoint as e:
        raise UserError(f"{path}: {e}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def _open_single(path: Path, ema: bool, vae_given: bool) -> Checkpoint:
    tf = _read(path)
    refuse_non_sd1(path, tf)
    text = LDM_PREFIX["text_encoder"]
    if not any(k.startswith(text) for k in tf.entries):
        text = LDM_TEXT_PREFIX_OLD
        if f"{text}embeddings.token_embedding.weight" not in tf:
            raise UserError(f"{path}: no CLIP text encoder (cond_stage_model.transformer.*) in this file; "
                            "SD 1.x single files carry it")
    has_ema = sum(k.startswith("model_ema.") for k in tf.entries) > 100  # diffusers' test
    if ema and not has_ema:
        raise UserError(f"{path}: --ema asked for, but the file has no EMA weights (model_ema.*); drop --ema")
    parts = {"text_encoder": Part(tf, text), "diffusion_model": Part(tf, LDM_PREFIX["diffusion_model"], ema=ema)}
    has_vae = "first_stage_model.decoder.conv_in.weight" in tf
    if has_vae:
        parts["image_encoder"] = parts["decoder"] = Part(tf, LDM_PREFIX["decoder"])
    elif not vae_given:
        raise UserError(f"{path}: the file holds no VAE (first_stage_model.*); pass --vae FILE ({VAE_SUGGESTION})")
    state = ("used (--ema)" if ema else "not used (as A1111 and diffusers)") if has_ema else "none in file"
    spec = {k: v for k, v in tf.metadata.items() if k.startswith("modelspec.")}
    return Checkpoint(path, tf.format, parts, ema=state, modelspec=spec)


def refuse_non_sd1(path: Path, tf: TensorFile) -> None:
    """One line naming what the file is when it is not an SD 1.x base model (checked on keys and two shapes)."""
    keys = list(tf.keys())
    arch = tf.metadata.get("modelspec.architecture", "")
    if any(k.startswith("conditioner.embedders.") for k in keys) or "stable-diffusion-xl" in arch:
        raise UserError(f"{path}: an SDXL checkpoint (conditioner.embedders.*); only SD 1.x checkpoints are supported")
    if "cond_stage_model.model.token_embedding.weight" in tf or (
            UNET_CTX in tf and tf.entries[UNET_CTX].shape[-1] != TEXT_WIDTH):
        width = tf.entries[UNET_CTX].shape[-1] if UNET_CTX in tf else 1024
        raise UserError(f"{path}: an SD 2.x checkpoint (OpenCLIP text encoder, {width} wide); "
                        f"only SD 1.x (CLIP ViT-L/14, {TEXT_WIDTH} wide) is supported")
    if UNET_IN in tf and tf.entries[UNET_IN].shape[1] != 4:
        n = tf.entries[UNET_IN].shape[1]
        what = "an inpainting" if n == 9 else "a"
        raise UserError(f"{path}: {what} UNet with {n} input channels (SD 1.x text-to-image has 4); "
                        "use the base model the fine-tune came from")
    if UNET_IN not in tf:
        raise UserError(f"{path}: {describe_keys(keys)}; not an SD 1.x checkpoint (no model.diffusion_model.* UNet)")


def describe_keys(keys: list[str]) -> str:
    """What a file without an SD UNet most likely is, from its key names."""
    if not keys:
        return "holds no tensors"
    if any("lora_" in k or ".lora_down." in k or ".lora_A." in k or "lora_unet" in k for k in keys):
        return f"a LoRA file ({len(keys)} tensors like {keys[0][:60]}): apply it in a web UI, it is not a base model"
    if any(k in ("string_to_param.*", "emb_params") or k.startswith("string_to_param.") for k in keys):
        return "a textual-inversion embedding: use `python -m core import FILE`"
    if any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in keys):
        return "a VAE-only file: pass it as --vae FILE with a full SD 1.x checkpoint"
    return f"{len(keys)} tensors like {keys[0][:60]!r}"


def open_vae(path: Path) -> Part:
    """A separate VAE file: LDM names with or without `first_stage_model.`/`vae.`, or diffusers' names."""
    tf = _read(path)
    for prefix in ("first_stage_model.", "vae.", ""):
        if f"{prefix}decoder.conv_in.weight" in tf and f"{prefix}encoder.conv_in.weight" in tf:
            if f"{prefix}decoder.up_blocks.0.resnets.0.conv1.weight" in tf:
                return Part(tf, "", diffusers=True) if not prefix else _prefixed_diffusers(tf, prefix)
            return Part(tf, prefix)
    raise UserError(f"{path}: not a VAE (no encoder.conv_in / decoder.conv_in weights): "
                    f"{describe_keys(list(tf.keys()))}")


def _prefixed_diffusers(tf: TensorFile, prefix: str) -> Part:
    tf.entries = {k[len(prefix):]: v for k, v in tf.entries.items() if k.startswith(prefix)}
    return Part(tf, "", diffusers=True)


# ----------------------------------------------------------------------------------------------- diffusers
def _open_diffusers(folder: Path, vae_given: bool) -> Checkpoint:
    missing = [sub for sub in DIFFUSERS_FILES if not (folder / sub).is_dir()]
    if len(missing) == len(DIFFUSERS_FILES):
        raise UserError(f"{folder}: not a diffusers folder (no unet/, vae/, text_encoder/) and no KerasCV .h5 files")
    if missing and missing != ["vae"] or missing == ["vae"] and not vae_given:
        extra = "; pass --vae FILE" if missing == ["vae"] else ""
        raise UserError(f"{folder}: diffusers folder without {', '.join(m + '/' for m in missing)}{extra}")
    _check_diffusers_configs(folder)
    files = {sub: Part(_read(_diffusers_file(folder / sub)), "", diffusers=True)
             for sub in DIFFUSERS_FILES if sub not in missing}
    return Checkpoint(folder, "diffusers", {c: files[sub] for c, sub in DIFFUSERS_FOLDER.items() if sub in files})


def _diffusers_file(sub: Path) -> Path:
    for name in DIFFUSERS_FILES[sub.name]:
        if (sub / name).is_file():
            return sub / name
    if any(sub.glob("*.index.json")):
        raise UserError(f"{sub}: sharded weights are not supported for SD 1.x components (save them unsharded)")
    raise UserError(f"{sub}: no weight file ({' or '.join(DIFFUSERS_FILES[sub.name][:3])})")


def _check_diffusers_configs(folder: Path) -> None:
    """The configs say SD 1.x before any tensor is read: 4 input channels, a 768-wide CLIP text encoder."""
    def load(sub: str) -> dict[str, Any]:
        try:
            return json.loads((folder / sub / "config.json").read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise UserError(f"{folder / sub / 'config.json'}: unreadable ({e})") from None

    unet, text = load("unet"), load("text_encoder")
    if unet.get("addition_embed_type") or unet.get("cross_attention_dim") == 2048:
        raise UserError(f"{folder}: an SDXL diffusers folder; only SD 1.x is supported")
    if unet.get("cross_attention_dim", TEXT_WIDTH) != TEXT_WIDTH or text.get("hidden_size", TEXT_WIDTH) != TEXT_WIDTH:
        raise UserError(f"{folder}: an SD 2.x diffusers folder (text encoder {text.get('hidden_size', '?')} wide); "
                        f"only SD 1.x ({TEXT_WIDTH} wide) is supported")
    if unet.get("in_channels", 4) != 4:
        raise UserError(f"{folder}: a UNet with {unet['in_channels']} input channels (inpainting?); SD 1.x "
                        "text-to-image has 4")
