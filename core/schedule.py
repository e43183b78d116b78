"""SD v1's noise schedule (DDPM, scaled-linear betas 0.00085 -> 0.012 over 1000 steps), the sinusoidal
timestep embedding the UNet takes, and the DDIM timesteps KerasCV's sampler uses. Pure numpy."""

from __future__ import annotations

import math

import numpy as np

TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 0.00085, 0.012  # SD v1 config (CompVis v1-inference.yaml: linear_start/linear_end)


def alphas_cumprod(n: int = TRAIN_TIMESTEPS) -> np.ndarray:
    """ᾱ_t for t in [0, n): scaled-linear schedule, betas = linspace(sqrt(b0), sqrt(b1), n) ** 2."""
    betas = np.linspace(BETA_START ** 0.5, BETA_END ** 0.5, n, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def timestep_embedding(timesteps: np.ndarray, dim: int = 320, max_period: float = 10000.0) -> np.ndarray:
    """[B] ints -> [B, dim] float32, [cos | sin] as KerasCV's StableDiffusion._get_timestep_embedding."""
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float32) / half).astype(np.float32)
    args = np.asarray(timesteps, dtype=np.float32)[:, None] * freqs[None]
    return np.concatenate([np.cos(args), np.sin(args)], axis=1).astype(np.float32)


def ddim_timesteps(num_steps: int, n: int = TRAIN_TIMESTEPS) -> np.ndarray:
    """The timesteps KerasCV's generate_image visits (ascending; the sampler walks them in reverse)."""
    ratio = (n - 1) / (num_steps - 1) if num_steps > 1 else n
    return (np.arange(0, num_steps) * ratio).round().astype(np.int64)
