"""`bench --weights FILE`: both sides time the same SD 1.x checkpoint. Ours loads it converted (core.convert, the
`--weights FILE` path of `train`); diffusers' side loads it through diffusers' own single-file converters. Before
any timing, one untimed call of each side on the same inputs must agree (`agreement`), and the JSON records it."""

from __future__ import annotations

from typing import Any

import numpy as np

PROBE_T = 500  # the UNet call both sides make: one latent, this timestep, the text encoder's context
PROBE_IDS = [49406, 320, 1125, 539, 320, 2368] + [49407] * 71  # "a photo of a cat": no learned token involved
TOLERANCE = 2e-3  # relative (max abs diff / max abs value), as tests/test_real_equivalence.py


def load_into_diffusers(path: str, text_encoder, unet, vae) -> None:
    """diffusers' reading of an original single file into the bench's networks (same converters as its
    `from_single_file`), before the new token's row is added."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        load_single_file_checkpoint,
    )

    checkpoint = load_single_file_checkpoint(path, local_files_only=True)
    unet.load_state_dict(convert_ldm_unet_checkpoint(checkpoint, unet.config), strict=True)
    vae.load_state_dict(convert_ldm_vae_checkpoint(checkpoint, vae.config), strict=True)
    text = convert_ldm_clip_checkpoint(checkpoint)
    if not hasattr(text_encoder, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        text = {k.removeprefix("text_model."): v for k, v in text.items()}
    text_encoder.load_state_dict({k: v for k, v in text.items() if not k.endswith("position_ids")}, strict=True)


def _latent(resolution: int) -> np.ndarray:
    h = resolution // 8
    return np.random.default_rng(7).standard_normal((1, h, h, 4)).astype(np.float32)


def probe_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Our text encoder and UNet on the probe inputs (float32), as lists."""
    import keras

    from core.bench import _components
    from core.schedule import timestep_embedding

    comps = _components({**spec, "weights": spec["weights"]}, False)
    pos = np.arange(77, dtype="int32")[None]
    ctx = keras.ops.convert_to_numpy(comps.text_encoder([np.asarray([PROBE_IDS], "int32"), pos]))
    eps = keras.ops.convert_to_numpy(comps.diffusion_model({
        "latent": _latent(spec["resolution"]), "timestep_embedding": timestep_embedding(np.asarray([PROBE_T])),
        "context": ctx}))
    return {"context": ctx.ravel().tolist(), "eps": eps.ravel().tolist()}


def probe_diffusers(spec: dict[str, Any]) -> dict[str, Any]:
    """diffusers' text encoder and UNet on the probe inputs (float32, NHWC order like ours), as lists."""
    import torch

    from core.bench import _diffusers_networks

    text_encoder, unet, _ = _diffusers_networks(spec["resolution"], weights=spec["weights"])
    with torch.no_grad():
        ctx = text_encoder(torch.tensor([PROBE_IDS]))[0]
        latent = torch.from_numpy(_latent(spec["resolution"]).transpose(0, 3, 1, 2).copy())
        eps = unet(latent, torch.tensor([PROBE_T]), ctx).sample.numpy().transpose(0, 2, 3, 1)
    return {"context": ctx.numpy().ravel().tolist(), "eps": eps.ravel().tolist()}


def agreement(spec: dict[str, Any], run_in_subprocess, timeout: float) -> dict[str, Any]:
    """Both probes, each in its own process; their relative differences and whether they are within TOLERANCE."""
    ours = run_in_subprocess("core.benchweights:probe_ours", spec, timeout=timeout)
    theirs = run_in_subprocess("core.benchweights:probe_diffusers", spec, timeout=timeout)
    for side, res in (("ours", ours), ("diffusers", theirs)):
        if "error" in res:
            return {"ok": False, "error": f"{side}: {res['error']}", "output_tail": res.get("output_tail", "")}
    out: dict[str, Any] = {"inputs": f"token ids {PROBE_IDS[:6]}..., UNet at t={PROBE_T} on a seeded latent",
                           "tolerance": TOLERANCE}
    for key in ("context", "eps"):
        a, b = np.asarray(ours[key], np.float64), np.asarray(theirs[key], np.float64)
        out[f"{key}_relative_error"] = float(np.abs(a - b).max() / np.abs(b).max())
    out["ok"] = max(out["context_relative_error"], out["eps_relative_error"]) <= TOLERANCE
    return out
