"""Stable Diffusion v1 weight names: every KerasCV weight, in the order KerasCV's `.h5` files hold them, with its key
in an original single-file checkpoint (CompVis/LDM names, as A1111 keeps them) and in a diffusers folder.

Where the mapping comes from:
- the LDM <-> diffusers names: diffusers' `scripts/convert_diffusers_to_original_stable_diffusion.py` (its prefix
  tables `unet_conversion_map*`, `vae_conversion_map*`, `textenc_conversion_lst`) and
  `src/diffusers/loaders/single_file_utils.py` (`convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
  `convert_ldm_clip_checkpoint`: the prefixes `model.diffusion_model.`, `first_stage_model.`,
  `cond_stage_model.transformer.`), diffusers commit edc154da0906ddc7ade2dfea739917266908451a;
- the KerasCV side: keras-cv 0.9.0 `keras_cv/src/models/stable_diffusion/` (`text_encoder.py`,
  `diffusion_model.py`, `image_encoder.py`, `decoder.py`, `resnet_block.py`, `attention_block.py`): the order
  of the layers each constructor creates, and in each layer the order its sub-layers are assigned, which is the
  order Keras' legacy h5 format stores weights in (`_legacy_weights`: trainable weights, sub-layers in
  assignment order) and loads them by (`load_weights_from_hdf5_group` matches layers by position, not name).
  `tests/test_real_equivalence.py` checks every shape against the built KerasCV networks and every value
  against diffusers' outputs.

A torch Linear weight is [out, in] where a Keras Dense kernel is [in, out]; a torch Conv2d weight is
[out, in, kh, kw] where Keras' is [kh, kw, in, out]; the VAE's attention projections are 1x1 convolutions in
the LDM file and in KerasCV but Linear layers in diffusers (both older `query/key/value/proj_attn` and current
`to_q/to_k/to_v/to_out.0` names are accepted). `to_keras` does these transposes; `to_torch` undoes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# component -> prefix of its keys in an original single file
LDM_PREFIX = {"text_encoder": "cond_stage_model.transformer.text_model.", "diffusion_model": "model.diffusion_model.",
              "image_encoder": "first_stage_model.", "decoder": "first_stage_model."}
LDM_TEXT_PREFIX_OLD = "cond_stage_model.transformer."  # CLIP keys without `text_model.` (older files; A1111 maps them)
# component -> diffusers folder's subfolder
DIFFUSERS_FOLDER = {"text_encoder": "text_encoder", "diffusion_model": "unet", "image_encoder": "vae",
                    "decoder": "vae"}
TEXT_WIDTH = 768  # SD v1's CLIP ViT-L/14 text encoder (SD 2.x's OpenCLIP one is 1024 wide)
VOCAB_ROWS = 49408
MAX_LENGTH = 77


@dataclass(frozen=True)
class Weight:
    """One KerasCV weight: its shape in Keras, its LDM key (without the component prefix), its diffusers keys
    (the first is what diffusers writes today; others are older spellings), and how a torch tensor becomes it."""

    shape: tuple[int, ...]
    ldm: str
    diffusers: tuple[str, ...]
    kind: str  # "embedding" | "norm" | "bias" | "dense" | "conv" | "conv1x1" (a Linear in diffusers' VAE)


@dataclass(frozen=True)
class Layer:
    """One top-level KerasCV layer that holds weights (one group of the h5 file), weights in h5 order."""

    name: str  # the layer name the h5 file uses (any unique name loads: Keras matches layers by position)
    weights: tuple[Weight, ...]


def _w(shape, ldm, diff, kind) -> Weight:
    return Weight(tuple(int(s) for s in shape), ldm, (diff,) if isinstance(diff, str) else tuple(diff), kind)


def _norm(c: int, ldm: str, diff: str | tuple[str, ...]) -> list[Weight]:
    diffs = (diff,) if isinstance(diff, str) else diff
    return [_w((c,), f"{ldm}.weight", [f"{d}.weight" for d in diffs], "norm"),
            _w((c,), f"{ldm}.bias", [f"{d}.bias" for d in diffs], "bias")]


def _dense(n_in: int, n_out: int, ldm: str, diff: str | tuple[str, ...], bias: bool = True) -> list[Weight]:
    diffs = (diff,) if isinstance(diff, str) else diff
    out = [_w((n_in, n_out), f"{ldm}.weight", [f"{d}.weight" for d in diffs], "dense")]
    if bias:
        out.append(_w((n_out,), f"{ldm}.bias", [f"{d}.bias" for d in diffs], "bias"))
    return out


def _conv(n_in: int, n_out: int, k: int, ldm: str, diff: str | tuple[str, ...], kind: str = "conv") -> list[Weight]:
    diffs = (diff,) if isinstance(diff, str) else diff
    return [_w((k, k, n_in, n_out), f"{ldm}.weight", [f"{d}.weight" for d in diffs], kind),
            _w((n_out,), f"{ldm}.bias", [f"{d}.bias" for d in diffs], "bias")]


class _Layers:
    """Collects top-level layers in order, naming them like Keras would (`res_block_3`, ...)."""

    def __init__(self):
        self.layers: list[Layer] = []
        self._counts: dict[str, int] = {}

    def add(self, kind: str, weights: list[Weight]) -> None:
        n = self._counts.get(kind, 0)
        self._counts[kind] = n + 1
        self.layers.append(Layer(kind if n == 0 else f"{kind}_{n}", tuple(weights)))


# ------------------------------------------------------------------------------------------- text encoder
def text_encoder_layers() -> list[Layer]:
    """keras_cv TextEncoder(77): CLIPEmbedding, 12 CLIPEncoderLayers, the final LayerNormalization. LDM and
    diffusers share CLIP's transformers names: `text_model.X` until transformers 5.6 flattened CLIPTextModel to
    `X` (both accepted; the LDM prefix is checked in `core.sdcheckpoint`)."""
    d, out = TEXT_WIDTH, _Layers()

    def te(key: str) -> tuple[str, str]:
        return (f"text_model.{key}", key)

    out.add("clip_embedding", [_w((VOCAB_ROWS, d), "embeddings.token_embedding.weight",
                                  te("embeddings.token_embedding.weight"), "embedding"),
                               _w((MAX_LENGTH, d), "embeddings.position_embedding.weight",
                                  te("embeddings.position_embedding.weight"), "embedding")])
    for i in range(12):
        p = f"encoder.layers.{i}."
        ws = _norm(d, p + "layer_norm1", te(p + "layer_norm1"))
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            ws += _dense(d, d, f"{p}self_attn.{proj}", te(f"{p}self_attn.{proj}"))
        ws += _norm(d, p + "layer_norm2", te(p + "layer_norm2"))
        ws += _dense(d, 4 * d, p + "mlp.fc1", te(p + "mlp.fc1"))
        ws += _dense(4 * d, d, p + "mlp.fc2", te(p + "mlp.fc2"))
        out.add("clip_encoder_layer", ws)
    out.add("layer_normalization", _norm(d, "final_layer_norm", te("final_layer_norm")))
    return out.layers


# ------------------------------------------------------------------------------------------------- UNet
def _unet_resblock(c_in: int, c_out: int, ldm: str, diff: str) -> list[Weight]:
    """keras_cv diffusion_model.ResBlock: entry_flow (norm, conv), embedding_flow (dense), exit_flow (norm,
    conv), then the 1x1 residual projection when the width changes (LDM `in_layers.0/2`, `emb_layers.1`,
    `out_layers.0/3`, `skip_connection`)."""
    ws = _norm(c_in, f"{ldm}.in_layers.0", f"{diff}.norm1") + _conv(c_in, c_out, 3, f"{ldm}.in_layers.2",
                                                                    f"{diff}.conv1")
    ws += _dense(1280, c_out, f"{ldm}.emb_layers.1", f"{diff}.time_emb_proj")
    ws += _norm(c_out, f"{ldm}.out_layers.0", f"{diff}.norm2") + _conv(c_out, c_out, 3, f"{ldm}.out_layers.3",
                                                                      f"{diff}.conv2")
    if c_in != c_out:
        ws += _conv(c_in, c_out, 1, f"{ldm}.skip_connection", f"{diff}.conv_shortcut")
    return ws


def _unet_transformer(c: int, ldm: str, diff: str) -> list[Weight]:
    """keras_cv SpatialTransformer (SD v1: 1x1-conv projections): norm, proj_in, one BasicTransformerBlock
    (norm1, attn1 q/k/v/out, norm2, attn2 q/k/v/out with k/v from the 768-wide context, norm3, GEGLU, dense),
    proj_out. The names below `transformer_blocks.0` are the same in LDM and diffusers."""
    ws = _norm(c, f"{ldm}.norm", f"{diff}.norm") + _conv(c, c, 1, f"{ldm}.proj_in", f"{diff}.proj_in")
    b, bd = f"{ldm}.transformer_blocks.0", f"{diff}.transformer_blocks.0"
    for attn, ctx in (("attn1", c), ("attn2", TEXT_WIDTH)):
        ws += _norm(c, f"{b}.norm{attn[-1]}", f"{bd}.norm{attn[-1]}")
        ws += _dense(c, c, f"{b}.{attn}.to_q", f"{bd}.{attn}.to_q", bias=False)
        ws += _dense(ctx, c, f"{b}.{attn}.to_k", f"{bd}.{attn}.to_k", bias=False)
        ws += _dense(ctx, c, f"{b}.{attn}.to_v", f"{bd}.{attn}.to_v", bias=False)
        ws += _dense(c, c, f"{b}.{attn}.to_out.0", f"{bd}.{attn}.to_out.0")
    ws += _norm(c, f"{b}.norm3", f"{bd}.norm3")
    ws += _dense(c, 8 * c, f"{b}.ff.net.0.proj", f"{bd}.ff.net.0.proj")  # GEGLU: [hidden | gate]
    ws += _dense(4 * c, c, f"{b}.ff.net.2", f"{bd}.ff.net.2")
    ws += _conv(c, c, 1, f"{ldm}.proj_out", f"{diff}.proj_out")
    return ws


def unet_layers() -> list[Layer]:
    """keras_cv DiffusionModel in its h5 order: the time-embedding MLP, conv_in, 4 down levels, the middle,
    4 up levels, the output norm and conv. Block numbering as in diffusers' conversion script."""
    out, widths = _Layers(), (320, 640, 1280, 1280)
    # Keras orders the functional graph's first layers as: time Dense 1, conv_in, time Dense 2
    out.add("dense", _dense(320, 1280, "time_embed.0", "time_embedding.linear_1"))
    out.add("padded_conv2d", _conv(4, 320, 3, "input_blocks.0.0", "conv_in"))
    out.add("dense", _dense(1280, 1280, "time_embed.2", "time_embedding.linear_2"))
    skips, c = [320], 320
    for i, w in enumerate(widths):
        for j in range(2):
            out.add("res_block",
                    _unet_resblock(c, w, f"input_blocks.{3 * i + j + 1}.0", f"down_blocks.{i}.resnets.{j}"))
            c = w
            if i < 3:
                out.add("spatial_transformer",
                        _unet_transformer(w, f"input_blocks.{3 * i + j + 1}.1", f"down_blocks.{i}.attentions.{j}"))
            skips.append(c)
        if i < 3:
            out.add("padded_conv2d", _conv(c, c, 3, f"input_blocks.{3 * (i + 1)}.0.op",
                                           f"down_blocks.{i}.downsamplers.0.conv"))
            skips.append(c)
    out.add("res_block", _unet_resblock(c, c, "middle_block.0", "mid_block.resnets.0"))
    out.add("spatial_transformer", _unet_transformer(c, "middle_block.1", "mid_block.attentions.0"))
    out.add("res_block", _unet_resblock(c, c, "middle_block.2", "mid_block.resnets.1"))
    for i, w in enumerate(reversed(widths)):
        for j in range(3):
            out.add("res_block", _unet_resblock(c + skips.pop(), w, f"output_blocks.{3 * i + j}.0",
                                                f"up_blocks.{i}.resnets.{j}"))
            c = w
            if i > 0:
                out.add("spatial_transformer",
                        _unet_transformer(w, f"output_blocks.{3 * i + j}.1", f"up_blocks.{i}.attentions.{j}"))
        if i < 3:
            out.add("upsample", _conv(c, c, 3, f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.conv",
                                      f"up_blocks.{i}.upsamplers.0.conv"))
    out.add("group_normalization", _norm(c, "out.0", "conv_norm_out"))
    out.add("padded_conv2d", _conv(c, 4, 3, "out.2", "conv_out"))
    return out.layers


# -------------------------------------------------------------------------------------------------- VAE
def _vae_resblock(c_in: int, c_out: int, ldm: str, diff: str) -> list[Weight]:
    """keras_cv ResnetBlock: norm1, conv1, norm2, conv2, residual projection (LDM `nin_shortcut`)."""
    ws = _norm(c_in, f"{ldm}.norm1", f"{diff}.norm1") + _conv(c_in, c_out, 3, f"{ldm}.conv1", f"{diff}.conv1")
    ws += _norm(c_out, f"{ldm}.norm2", f"{diff}.norm2") + _conv(c_out, c_out, 3, f"{ldm}.conv2", f"{diff}.conv2")
    if c_in != c_out:
        ws += _conv(c_in, c_out, 1, f"{ldm}.nin_shortcut", f"{diff}.conv_shortcut")
    return ws


def _vae_attention(part: str) -> list[Weight]:
    """keras_cv AttentionBlock (the VAE's mid-block, 512 channels): norm, q, k, v, proj_out."""
    ldm, diff = f"{part}.mid.attn_1", f"{part}.mid_block.attentions.0"
    ws = _norm(512, f"{ldm}.norm", f"{diff}.group_norm")
    for old, new, legacy in (("q", "to_q", "query"), ("k", "to_k", "key"), ("v", "to_v", "value"),
                             ("proj_out", "to_out.0", "proj_attn")):
        ws += _conv(512, 512, 1, f"{ldm}.{old}", (f"{diff}.{new}", f"{diff}.{legacy}"), kind="conv1x1")
    return ws


def _vae_mid_block(out: _Layers, side: str) -> None:
    """The VAE's mid-block (resnet, attention, resnet at 512 channels), the same in its encoder and decoder."""
    out.add("resnet_block", _vae_resblock(512, 512, f"{side}.mid.block_1", f"{side}.mid_block.resnets.0"))
    out.add("attention_block", _vae_attention(side))
    out.add("resnet_block", _vae_resblock(512, 512, f"{side}.mid.block_2", f"{side}.mid_block.resnets.1"))


def _vae_levels(out: _Layers, c: int, widths: tuple[int, ...], blocks: int, ldm: Callable[[int], str],
                hf: Callable[[int], str], sample: str) -> None:
    """The VAE's resolution levels in KerasCV's order: `blocks` resnets per level, then a `sample` ("downsample" /
    "upsample") conv between levels; `ldm(i)` / `hf(i)` name level i in the LDM and diffusers layouts."""
    for i, w in enumerate(widths):
        for j in range(blocks):
            out.add("resnet_block", _vae_resblock(c, w, f"{ldm(i)}.block.{j}", f"{hf(i)}.resnets.{j}"))
            c = w
        if i < len(widths) - 1:
            out.add("padded_conv2d", _conv(c, c, 3, f"{ldm(i)}.{sample}.conv", f"{hf(i)}.{sample}rs.0.conv"))


def image_encoder_layers() -> list[Layer]:
    """keras_cv ImageEncoder (the VAE encoder) up to the 8-channel moments (`quant_conv`)."""
    out, c = _Layers(), 128
    out.add("padded_conv2d", _conv(3, 128, 3, "encoder.conv_in", "encoder.conv_in"))
    _vae_levels(out, c, (128, 256, 512, 512), 2, lambda i: f"encoder.down.{i}", lambda i: f"encoder.down_blocks.{i}",
                "downsample")
    _vae_mid_block(out, "encoder")
    out.add("group_normalization", _norm(512, "encoder.norm_out", "encoder.conv_norm_out"))
    out.add("padded_conv2d", _conv(512, 8, 3, "encoder.conv_out", "encoder.conv_out"))
    out.add("padded_conv2d", _conv(8, 8, 1, "quant_conv", "quant_conv"))
    return out.layers


def decoder_layers() -> list[Layer]:
    """keras_cv Decoder: post_quant_conv, conv_in, the mid-block, 4 up levels (LDM `up.3` first), norm, conv."""
    out = _Layers()
    out.add("padded_conv2d", _conv(4, 4, 1, "post_quant_conv", "post_quant_conv"))
    out.add("padded_conv2d", _conv(4, 512, 3, "decoder.conv_in", "decoder.conv_in"))
    _vae_mid_block(out, "decoder")
    _vae_levels(out, 512, (512, 512, 256, 128), 3, lambda i: f"decoder.up.{3 - i}",
                lambda i: f"decoder.up_blocks.{i}", "upsample")
    out.add("group_normalization", _norm(128, "decoder.norm_out", "decoder.conv_norm_out"))
    out.add("padded_conv2d", _conv(128, 3, 3, "decoder.conv_out", "decoder.conv_out"))
    return out.layers


LAYERS = {"text_encoder": text_encoder_layers, "diffusion_model": unet_layers,
          "image_encoder": image_encoder_layers, "decoder": decoder_layers}


# ------------------------------------------------------------------------------------------- transforms
def torch_shape(w: Weight, diffusers: bool = False) -> tuple[int, ...]:
    """The shape the tensor has in the LDM file (or in diffusers' file)."""
    s = w.shape
    if w.kind == "dense":
        return (s[1], s[0])
    if w.kind == "conv" or (w.kind == "conv1x1" and not diffusers):
        return (s[3], s[2], s[0], s[1])
    if w.kind == "conv1x1":
        return (s[3], s[2])
    return s


def to_keras(w: Weight, t: np.ndarray) -> np.ndarray:
    """A torch-layout tensor (LDM or diffusers) as the Keras weight, float32."""
    t = np.asarray(t)
    if w.kind == "dense":
        t = t.T
    elif w.kind in ("conv", "conv1x1"):
        t = t.reshape(t.shape[0], t.shape[1], *w.shape[:2]).transpose(2, 3, 1, 0)
    return np.ascontiguousarray(t, dtype=np.float32)


def to_torch(w: Weight, k: np.ndarray, diffusers: bool = False) -> np.ndarray:
    """The Keras weight back in torch layout (LDM's, or diffusers' for the VAE attention's Linear layers)."""
    k = np.asarray(k)
    if w.kind == "dense":
        k = k.T
    elif w.kind in ("conv", "conv1x1"):
        k = k.transpose(3, 2, 0, 1)
        if w.kind == "conv1x1" and diffusers:
            k = k[:, :, 0, 0]
    return np.ascontiguousarray(k)
