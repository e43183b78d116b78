"""`bench`: textual-inversion training and text-to-image generation speed and peak memory of our code against
KerasCV's own `generate_image` and the diffusers recipe (same SD v1.4 architecture, random weights), in one run.

Every measurement runs in a fresh process (core.worker): TensorFlow and torch never share one, and each side's
peak memory is its own. Rounds interleave the sides (ours, KerasCV, diffusers, ours, ...) so machine noise hits
all of them; the table and JSON give images/s (median over all timed iterations), peak memory and the ratios.
Random weights do the same arithmetic as the real ones, so the timings hold for real weights; no image here
means anything."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import StrictConfig, add_options, check, check_resolution, from_args, option

SIDES = ("ours", "kerascv", "diffusers")
WORK_SIDES = {"train": ("ours", "diffusers"), "generate": ("ours", "kerascv", "diffusers")}
PROMPT_IDS = [49406, 320, 1125, 539, 49408] + [49407] * 72  # "a photo of <tom-cat>" with our new token's id


@dataclass
class BenchConfig(StrictConfig):
    resolution: int = option(512, "SD v1.4's size; 128 is the CPU-sized run")
    quick: bool = option(False, "CPU-sized defaults: batch 2, 5 steps, 2 rounds")
    train_batches: str = option("", "images per training step, comma list ('' = 1,4; quick: 2)")
    gen_batches: str = option("", "images per generation call, comma list ('' = 1,8; quick: 2)")
    gen_steps: int = option(0, "DDIM steps (0 = 50; quick: 5)")
    guidance: float = option(7.5, "classifier-free guidance scale")
    train_iters: int = option(0, "timed training steps per process after one warm-up step (0 = 5; quick: 2)")
    gen_iters: int = option(0, "timed generation calls per process after one warm-up call (0 = 3; quick: 1)")
    rounds: int = option(0, "processes per side and measurement, interleaved across sides (0 = 3; quick: 2)")
    references: str = option("kerascv,diffusers", "which references to run, comma list ('' = ours only)")
    work: str = option("train,generate", "what to measure: train and/or generate")
    mixed_precision: str = option("auto", "auto: bf16 for Keras and fp16 for diffusers on a GPU, float32 on a CPU",
                                  choices=("auto", "no", "bf16", "fp16"))
    jit_compile: str = option("auto", "our training step under XLA: auto = on a GPU only",
                              choices=("auto", "yes", "no"))
    fused_attention: str = option("auto", "ours: keras.ops.dot_product_attention (auto: on JAX only)",
                                  choices=("auto", "yes", "no"))
    remat: bool = option(False, "our training step recomputes UNet blocks in the backward pass (less memory)")
    timeout: int = option(3600, "seconds allowed per measurement process")
    weights: str = option("random", "random (timing only) | FILE: an SD 1.x single file both sides load (ours "
                                    "converted, diffusers through its own converters); one untimed call of each "
                                    "must agree before timing (core.benchweights)", metavar="random|FILE")
    out: str = option("bench.json", "JSON result file", metavar="FILE")

    def validate(self) -> None:
        check_resolution(self.resolution)
        for key in ("train_batches", "gen_batches"):
            value = getattr(self, key)
            check(value == "" or all(p.strip().isdigit() and int(p) >= 1 for p in value.split(",")), key, value,
                  "must be a comma list of positive integers, e.g. 1,4")
        for key in ("gen_steps", "train_iters", "gen_iters", "rounds"):
            check(getattr(self, key) >= 0, key, getattr(self, key), "must be >= 0 (0 = default)")
        refs = [r for r in self.references.split(",") if r]
        check(all(r in ("kerascv", "diffusers") for r in refs), "references", self.references,
              "must list kerascv and/or diffusers")
        works = [w for w in self.work.split(",") if w]
        check(works and all(w in WORK_SIDES for w in works), "work", self.work, "must list train and/or generate")
        check(self.mixed_precision in ("auto", "no", "bf16", "fp16"), "mixed_precision", self.mixed_precision,
              "must be auto, no, bf16 or fp16")
        check(self.fused_attention in ("auto", "yes", "no"), "fused_attention", self.fused_attention,
              "must be auto, yes or no")
        check(self.jit_compile in ("auto", "yes", "no"), "jit_compile", self.jit_compile, "must be auto, yes or no")
        check(self.weights == "random" or Path(self.weights).is_file(), "weights", self.weights,
              "must be random or an SD 1.x single file (.safetensors/.ckpt)")

    def resolved(self, gpu: bool) -> dict[str, Any]:
        q = self.quick
        batches = lambda s, full, quick: [int(p) for p in s.split(",")] if s else (quick if q else full)  # noqa: E731
        mp = self.mixed_precision if self.mixed_precision != "auto" else ("bf16" if gpu else "no")
        return {
            "resolution": self.resolution,
            "train_batches": batches(self.train_batches, [1, 4], [2]),
            "gen_batches": batches(self.gen_batches, [1, 8], [2]),
            "gen_steps": self.gen_steps or (5 if q else 50),
            "guidance": self.guidance,
            "train_iters": self.train_iters or (2 if q else 5),
            "gen_iters": self.gen_iters or (1 if q else 3),
            "rounds": self.rounds or (2 if q else 3),
            "references": [r for r in self.references.split(",") if r],
            "work": [w for w in self.work.split(",") if w],
            "mixed_precision": mp,
            "diffusers_precision": "fp16" if gpu and mp != "no" else "fp32",
            "jit_compile": self.jit_compile == "yes" or (self.jit_compile == "auto" and gpu),
            "fused_attention": self.fused_attention,
            "remat": self.remat,
            "weights": self.weights if self.weights == "random" else str(Path(self.weights).resolve()),
        }


# ------------------------------------------------------------------------------------------ memory, timing
def _reset_peak() -> None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_gb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def _timed(fn, iters: int) -> tuple[float, list[float]]:
    t = time.perf_counter()
    fn()
    warm = time.perf_counter() - t
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()  # every fn below returns host data, so the device has finished
        times.append(time.perf_counter() - t)
    return warm, times


# --------------------------------------------------------------------------------------- Keras side (ours)
def _keras_setup(spec):
    import keras

    from core.train import set_precision

    set_precision(spec["mixed_precision"])
    backend = keras.backend.backend()
    gpu = _keras_gpu()
    if gpu and backend == "jax":
        import jax

        stats = lambda: jax.devices()[0].memory_stats() or {}  # noqa: E731
        return backend, gpu, (lambda: None), (lambda: stats().get("peak_bytes_in_use", 0) / 1e9)
    if gpu and backend == "tensorflow":
        import tensorflow as tf

        return (backend, gpu, lambda: tf.config.experimental.reset_memory_stats("GPU:0"),
                lambda: tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1e9)
    return backend, gpu, _reset_peak, _peak_rss_gb


def _keras_gpu() -> bool:
    from core.train import environment

    return any(d.startswith(("GPU", "CUDA")) for d in environment()["hardware"]["devices"])


def _components(spec, fused: bool):
    from core.components import Components
    from core.weights import WeightSpec

    return Components(WeightSpec.parse(spec.get("weights", "random")), spec["resolution"],
                      fused_attention={"auto": None, "yes": True, "no": False, False: False}[fused])


def measure_ours_train(spec: dict[str, Any]) -> dict[str, Any]:
    """Our textual-inversion step (core.train.build_model + TrainingData) at spec['batch']."""
    from core.cartoon import write_image_set
    from core.components import PlaceholderTextEncoder, vocabulary_table
    from core.tokenizer import PromptTokenizer
    from core.train import TrainConfig, TrainingData, build_model

    backend, gpu, reset, peak = _keras_setup(spec)
    t0 = time.perf_counter()
    comps = _components(spec, spec["fused_attention"])
    cfg = TrainConfig(images="bench", resolution=spec["resolution"], batch_size=spec["batch"],
                      mixed_precision=spec["mixed_precision"], jit_compile=spec["jit_compile"],
                      remat=spec["remat"], fused_attention=spec["fused_attention"])
    vocab = vocabulary_table(comps.text_encoder)
    encoder = PlaceholderTextEncoder(comps.text_encoder, vocab[2368][None])  # "cat"
    model = build_model(encoder, comps.diffusion_model, comps.image_encoder, cfg)
    with tempfile.TemporaryDirectory() as d:
        paths = write_image_set(Path(d), "character", 4, size=max(96, spec["resolution"] // 2))
        data = TrainingData(paths, ["a photo of {}"], PromptTokenizer(cfg.token), cfg)
        batches = [data.batch(k + 1) for k in range(spec["iters"] + 1)]  # made before timing, as diffusers' are
    build_s = time.perf_counter() - t0
    it = iter(batches)
    losses = []
    reset()
    warm, times = _timed(lambda: losses.append(float(model.train_on_batch(next(it), return_dict=True)["loss"])),
                         spec["iters"])
    return {"build_s": build_s, "warmup_s": warm, "times": times, "peak_gb": peak(), "backend": backend,
            "finite": all(np.isfinite(losses))}


def measure_ours_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """Our sampler: one batched guidance UNet call per step, the loop compiled, then the VAE decoder."""
    from core.sampler import Sampler

    backend, gpu, reset, peak = _keras_setup(spec)
    t0 = time.perf_counter()
    comps = _components(spec, spec["fused_attention"])
    ctx, uncond, noise = _contexts(comps, spec)
    sampler = Sampler(comps.diffusion_model, comps.decoder, jit_compile=spec["jit_compile"])
    build_s = time.perf_counter() - t0
    reset()
    warm, times = _timed(lambda: sampler.sample(ctx, uncond, noise, spec["steps"], spec["guidance"]), spec["iters"])
    return {"build_s": build_s, "warmup_s": warm, "times": times, "peak_gb": peak(), "backend": backend}


def measure_kerascv_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """KerasCV's own StableDiffusion.generate_image (two UNet calls per step) on plain KerasCV networks."""
    import keras_cv

    backend, gpu, reset, peak = _keras_setup(spec)
    t0 = time.perf_counter()
    comps = _components(spec, False)
    ctx, _, noise = _contexts(comps, spec)
    r = spec["resolution"]
    sd = keras_cv.models.StableDiffusion(img_height=r, img_width=r, jit_compile=gpu)  # its default is XLA on
    sd._text_encoder, sd._diffusion_model, sd._decoder = comps.text_encoder, comps.diffusion_model, comps.decoder
    build_s = time.perf_counter() - t0
    reset()
    warm, times = _timed(lambda: sd.generate_image(ctx, batch_size=spec["batch"], num_steps=spec["steps"],
                                                   unconditional_guidance_scale=spec["guidance"],
                                                   diffusion_noise=noise), spec["iters"])
    return {"build_s": build_s, "warmup_s": warm, "times": times, "peak_gb": peak(), "backend": backend}


def _contexts(comps, spec):
    from core.components import PlaceholderTextEncoder, vocabulary_table
    from core.sampler import UNCONDITIONAL_TOKENS

    b, h = spec["batch"], spec["resolution"] // 8
    encoder = PlaceholderTextEncoder(comps.text_encoder, vocabulary_table(comps.text_encoder)[2368][None])
    ctx = encoder.encode(np.asarray([PROMPT_IDS] * b))
    uncond = encoder.encode(np.asarray([UNCONDITIONAL_TOKENS] * b))
    noise = np.random.default_rng(0).standard_normal((b, h, h, 4)).astype("float32")
    return ctx, uncond, noise


# --------------------------------------------------------------------------------------- diffusers side
def _diffusers_networks(resolution: int, tiny: bool = False, weights: str = "random"):
    """SD v1.4's text encoder, UNet and VAE from their published configs, random weights (no download) or
    `weights`, an SD 1.x single file. `tiny`: the same classes a few channels wide, so a test can run the
    diffusers side's code in seconds."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    width = 32 if tiny else 768
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=width, intermediate_size=37 if tiny else 3072,
        num_hidden_layers=1 if tiny else 12, num_attention_heads=2 if tiny else 12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=width))
    if tiny:
        unet = UNet2DConditionModel(sample_size=resolution // 8, cross_attention_dim=width, block_out_channels=(32, 64),
                                    layers_per_block=1, attention_head_dim=8, norm_num_groups=32,
                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    else:
        unet = UNet2DConditionModel(sample_size=resolution // 8, cross_attention_dim=768, attention_head_dim=8)
    channels = (32, 32, 32, 32) if tiny else (128, 256, 512, 512)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1 if tiny else 2,
                        block_out_channels=channels, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=resolution,
                        norm_num_groups=32)
    if weights != "random":
        from core.benchweights import load_into_diffusers

        load_into_diffusers(weights, text_encoder, unet, vae)
    text_encoder.resize_token_embeddings(49409)  # PROMPT_IDS holds the new token's id, as after training
    return text_encoder, unet, vae


def _torch_setup():
    import torch

    if torch.cuda.is_available():
        dev = torch.device("cuda")
        torch.cuda.reset_peak_memory_stats()
        return dev, torch.cuda.reset_peak_memory_stats, lambda: torch.cuda.max_memory_allocated() / 1e9
    return torch.device("cpu"), _reset_peak, _peak_rss_gb


def measure_diffusers_train(spec: dict[str, Any]) -> dict[str, Any]:
    """diffusers' examples/textual_inversion/textual_inversion.py training step: VAE encode + sample, DDPM noise,
    text encoder with the new row, UNet, MSE, AdamW over the embedding table, original rows restored."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    dev, reset, peak = _torch_setup()
    t0 = time.perf_counter()
    text_encoder, unet, vae = _diffusers_networks(spec["resolution"], spec.get("tiny", False),
                                                  spec.get("weights", "random"))
    vae.requires_grad_(False)
    unet.requires_grad_(False)
    body = getattr(text_encoder, "text_model", text_encoder)  # transformers 5 dropped the .text_model wrapper
    body.encoder.requires_grad_(False)
    body.final_layer_norm.requires_grad_(False)
    body.embeddings.position_embedding.requires_grad_(False)
    half = spec["diffusers_precision"] == "fp16"
    weight_dtype = torch.float16 if half else torch.float32
    unet.to(dev, dtype=weight_dtype)
    vae.to(dev, dtype=weight_dtype)
    text_encoder.to(dev)
    unet.train()
    text_encoder.train()
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(text_encoder.get_input_embeddings().parameters(), lr=2e-3, betas=(0.9, 0.999),
                                  weight_decay=1e-2, eps=1e-8)
    scaler = torch.amp.GradScaler("cuda", enabled=half)
    orig = text_encoder.get_input_embeddings().weight.data.clone()
    keep = torch.ones((49409,), dtype=torch.bool)
    keep[49408] = False
    b, r = spec["batch"], spec["resolution"]
    g = torch.Generator().manual_seed(0)
    pixel_values = torch.rand((b, 3, r, r), generator=g).mul(2).sub(1).to(dev)
    input_ids = torch.tensor([PROMPT_IDS] * b, device=dev)
    build_s = time.perf_counter() - t0
    losses = []

    def step():
        with torch.autocast(dev.type, dtype=torch.float16, enabled=half):
            latents = vae.encode(pixel_values.to(dtype=weight_dtype)).latent_dist.sample().detach() * 0.18215
            noise = torch.randn_like(latents)
            timesteps = torch.randint(0, 1000, (b,), device=dev).long()
            noisy = scheduler.add_noise(latents, noise, timesteps)
            hidden = text_encoder(input_ids)[0].to(dtype=weight_dtype)
            pred = unet(noisy, timesteps, hidden).sample
            loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        with torch.no_grad():
            text_encoder.get_input_embeddings().weight[keep] = orig[keep]
        losses.append(loss.detach().item())  # the script logs loss.item() every step (a device sync)

    reset()
    warm, times = _timed(step, spec["iters"])
    return {"build_s": build_s, "warmup_s": warm, "times": times, "peak_gb": peak(), "backend": f"torch-{dev.type}",
            "finite": all(np.isfinite(losses)), "precision": spec["diffusers_precision"], "attention": "sdpa"}


def measure_diffusers_generate(spec: dict[str, Any]) -> dict[str, Any]:
    """StableDiffusionPipeline with DDIM (SD v1.4's scheduler config), guidance 7.5, decode to numpy."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    dev, reset, peak = _torch_setup()
    t0 = time.perf_counter()
    text_encoder, unet, vae = _diffusers_networks(spec["resolution"], spec.get("tiny", False),
                                                  spec.get("weights", "random"))
    dtype = torch.float16 if spec["diffusers_precision"] == "fp16" else torch.float32
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=None, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False).to(dev, dtype)
    pipe.set_progress_bar_config(disable=True)
    if spec.get("torch_compile") and dev.type == "cuda":
        pipe.unet = torch.compile(pipe.unet)
    b, h = spec["batch"], spec["resolution"] // 8
    with torch.no_grad():
        ids = torch.tensor([PROMPT_IDS] * b, device=dev)
        ctx = text_encoder(ids)[0]
        uncond = text_encoder(torch.tensor([[49406] + [49407] * 76] * b, device=dev))[0]
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((b, 4, h, h)).astype("float32")).to(dev, dtype)
    build_s = time.perf_counter() - t0
    reset()
    warm, times = _timed(lambda: pipe(prompt_embeds=ctx, negative_prompt_embeds=uncond, latents=noise,
                                      num_inference_steps=spec["steps"], guidance_scale=spec["guidance"],
                                      height=spec["resolution"], width=spec["resolution"], output_type="np"),
                         spec["iters"])
    return {"build_s": build_s, "warmup_s": warm, "times": times, "peak_gb": peak(), "backend": f"torch-{dev.type}",
            "precision": spec["diffusers_precision"], "attention": "sdpa",
            "torch_compile": bool(spec.get("torch_compile") and dev.type == "cuda")}


def versions(spec: dict[str, Any]) -> dict[str, Any]:
    """Package versions, Keras backend and devices (Keras side), in its own process."""
    from core.train import environment

    env = environment()
    return {"versions": env["versions"], "devices": env["hardware"]["devices"]}


def torch_versions(spec: dict[str, Any]) -> dict[str, Any]:
    import diffusers
    import torch

    return {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}


# ------------------------------------------------------------------------------------------- the run
def plan(r: dict[str, Any]) -> list[tuple[int, str, int, str]]:
    """(round, work, batch, side) in run order: within a round every side of one measurement runs back to
    back, so a noisy minute hits ours and the references alike."""
    out = []
    for rnd in range(r["rounds"]):
        for work in r["work"]:
            for batch in (r["train_batches"] if work == "train" else r["gen_batches"]):
                sides = [s for s in WORK_SIDES[work] if s == "ours" or s in r["references"]]
                if rnd % 2:  # alternate who goes first
                    sides = sides[::-1]
                out += [(rnd, work, batch, s) for s in sides]
    return out


def summarize(r: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (work, batch): each side's images/s (median over every timed iteration of every round), peak memory
    (max over rounds), and ours / reference ratios."""
    table: dict[str, Any] = {}
    for res in results:
        key = f"{res['work']}@{res['batch']}"
        side = table.setdefault(key, {}).setdefault(res["side"], {"times": [], "peak_gb": [], "errors": []})
        if "error" in res:
            side["errors"].append(res["error"])
            continue
        side["times"] += res["times"]
        side["peak_gb"].append(res["peak_gb"])
        side.setdefault("warmup_s", []).append(round(res["warmup_s"], 2))
        side.setdefault("build_s", []).append(round(res["build_s"], 2))
    for key, sides in table.items():
        batch = int(key.split("@")[1])
        for s in sides.values():
            if s["times"]:
                s["median_s"] = statistics.median(s["times"])
                s["images_per_s"] = batch / s["median_s"]
                s["peak_gb"] = max(s["peak_gb"])
        ours = sides.get("ours", {})
        for ref in ("kerascv", "diffusers"):
            if ref in sides and "images_per_s" in ours and "images_per_s" in sides[ref]:
                sides[f"ratio_vs_{ref}"] = ours["images_per_s"] / sides[ref]["images_per_s"]
                sides[f"memory_ratio_vs_{ref}"] = ours["peak_gb"] / sides[ref]["peak_gb"]
    return table


def render_table(summary: dict[str, Any], header: str) -> str:
    lines = [header, "",
             "| work | batch | ours img/s | KerasCV img/s | diffusers img/s | speed vs KerasCV | speed vs diffusers "
             "| peak GB ours / KerasCV / diffusers |", "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, f="{:.3f}": f.format(v) if isinstance(v, (int, float)) else "—"  # noqa: E731
    for key, sides in summary.items():
        work, batch = key.split("@")
        cell = lambda s, k: sides.get(s, {}).get(k)  # noqa: E731
        lines.append(
            f"| {work} | {batch} | {fmt(cell('ours', 'images_per_s'))} | {fmt(cell('kerascv', 'images_per_s'))} | "
            f"{fmt(cell('diffusers', 'images_per_s'))} | {fmt(sides.get('ratio_vs_kerascv'), '{:.2f}x')} | "
            f"{fmt(sides.get('ratio_vs_diffusers'), '{:.2f}x')} | {fmt(cell('ours', 'peak_gb'), '{:.2f}')} / "
            f"{fmt(cell('kerascv', 'peak_gb'), '{:.2f}')} / {fmt(cell('diffusers', 'peak_gb'), '{:.2f}')} |")
        for side, s in sides.items():
            if isinstance(s, dict) and s.get("errors"):
                lines.append(f"  {side} failed: {s['errors'][0]}")
    return "\n".join(lines)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def bench(cfg: BenchConfig, echo=print) -> dict[str, Any]:
    from core.doctor import nvidia_smi
    from core.worker import run_in_subprocess

    gpu = bool(nvidia_smi())
    r = cfg.resolved(gpu)
    r["torch_compile"] = gpu  # the GPU reference is diffusers with torch.compile
    info = run_in_subprocess("core.bench:versions", {}, timeout=600)
    tinfo = run_in_subprocess("core.bench:torch_versions", {}, timeout=600) if "diffusers" in r["references"] else {}
    started = time.time()
    agreed = None
    if r["weights"] != "random":  # identical weights: both sides must compute the same before anything is timed
        from core.benchweights import agreement

        echo(f"untimed agreement check on {r['weights']} ...")
        agreed = agreement({"resolution": r["resolution"], "weights": r["weights"]}, run_in_subprocess, cfg.timeout)
        echo(f"    {agreed}")
        if not agreed["ok"]:
            from core.errors import UserError

            raise UserError(f"bench --weights {r['weights']}: the two sides disagree before timing ({agreed}); "
                            "nothing was timed")
    loads = [load_average()]
    results = []
    steps = plan(r)
    for i, (rnd, work, batch, side) in enumerate(steps, 1):
        spec = {"resolution": r["resolution"], "batch": batch, "mixed_precision": r["mixed_precision"],
                "diffusers_precision": r["diffusers_precision"], "jit_compile": r["jit_compile"],
                "fused_attention": r["fused_attention"], "remat": r["remat"], "guidance": r["guidance"],
                "steps": r["gen_steps"], "iters": r["train_iters"] if work == "train" else r["gen_iters"],
                "torch_compile": r["torch_compile"], "weights": r["weights"]}
        echo(f"[{i}/{len(steps)}] round {rnd + 1}: {work} batch {batch}: {side} ...")
        res = run_in_subprocess(f"core.bench:measure_{side}_{'train' if work == 'train' else 'generate'}", spec,
                                timeout=cfg.timeout)
        res.update(work=work, batch=batch, side=side, round=rnd)
        if "error" in res:
            echo(f"    failed: {res['error']}\n{res.get('output_tail', '')[-1500:]}")
        else:
            echo(f"    {', '.join(f'{t:.2f}' for t in res['times'])} s (warm-up {res['warmup_s']:.1f} s), "
                 f"peak {res['peak_gb']:.2f} GB")
        results.append(res)
        loads.append(load_average())
    summary = summarize(r, results)
    return {"kind": "bench", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.time() - started, 1), "config": cfg.to_dict(), "resolved": r,
            "device": (nvidia_smi()[0]["name"] if gpu
                       else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"),
            "keras": info, "torch": tinfo, "load_average_1_5_15": loads,
            "weights": ("random (timing only: same arithmetic as the real weights; the images mean nothing)"
                        if r["weights"] == "random" else r["weights"]),
            "agreement_before_timing": agreed,
            "ratio_definitions": {
                "ratio_vs_kerascv": "our images/s divided by KerasCV generate_image's images/s (>1: ours faster)",
                "ratio_vs_diffusers": "our images/s divided by the diffusers recipe's images/s (>1: ours faster)",
                "memory_ratio_vs_*": "our peak memory divided by the reference's (<1: ours leaner); CPU: peak RSS "
                                     "of the measuring process during the timed work, weights included; GPU: peak "
                                     "device memory"},
            "results": summary, "raw": results}


def _weights_words(weights: str) -> str:
    return "random weights" if weights == "random" else f"weights {weights} (identical on both sides)"


def header(report: dict[str, Any]) -> str:
    r, k, t = report["resolved"], report["keras"], report["torch"]
    v = k.get("versions", {})
    return (f"device: {report['device']}; Keras {v.get('keras')} on {v.get('backend')} "
            f"(tensorflow {v.get('tensorflow', '-')}, jax {v.get('jax', '-')}, keras_cv {v.get('keras_cv', '-')}); "
            f"torch {t.get('torch', '-')}, diffusers {t.get('diffusers', '-')}\n"
            f"{r['resolution']} px, {_weights_words(r.get('weights', 'random'))}; "
            f"train batches {r['train_batches']}, generation batches "
            f"{r['gen_batches']} x {r['gen_steps']} DDIM steps, guidance {r['guidance']}; ours: precision "
            f"{r['mixed_precision']}, XLA step {r['jit_compile']}, fused attention {r['fused_attention']}, remat "
            f"{r['remat']}; diffusers: {r['diffusers_precision']}, SDPA; {r['rounds']} interleaved rounds; "
            f"load average {report['load_average_1_5_15'][0]} -> {report['load_average_1_5_15'][-1]}")


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(p, command: str) -> None:
    add_options(p, BenchConfig)


def run(args) -> int:
    cfg = from_args(BenchConfig, args)
    report = bench(cfg, echo=lambda s: print(s, file=sys.stderr, flush=True))
    text = render_table(report["results"], header(report))
    print(text)
    report["table"] = text
    Path(cfg.out).write_text(json.dumps(report, indent=2, default=float))
    print(f"wrote {cfg.out}")
    failed = any("error" in x for x in report["raw"])
    return 1 if failed else 0
