"""`generate`: prompt grids from a run's checkpoints (checkpoint 0 = the initializer, "before"), text-to-image
or image-to-image. Every PNG carries its provenance in text chunks and is indexed in images.csv; images already
made are skipped, so an interrupted generate resumes."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from core import __version__
from core.config import StrictConfig, check, check_resolution, from_args, option, run_stage_arguments
from core.errors import UserError
from core.images import opened
from core.runfolder import PIPELINE_CHECK_LABEL, Run, atomic_write_bytes


@dataclass
class GenerateConfig(StrictConfig):
    """Everything `generate` needs besides the run. Each field's help names the source of its default."""

    prompts: str | None = option(None, "template file, one prompt with {} per line (default: prompts/eval/ for the "
                                       "run's property)", metavar="FILE")
    seeds: str = option("0,1,2", "comma-separated seeds: one image per (prompt, seed, checkpoint)")
    checkpoints: str = option("0,final", "'0,final', 'all' or steps like 0,500,1000; 0 is the initializer "
                                         "(before training)")
    steps: int = option(50, "DDIM sampling steps (KerasCV's default)")
    guidance: float = option(7.5, "classifier-free guidance scale (KerasCV's default)")
    negative: str = option("", "negative prompt ('' = KerasCV's unconditional context)")
    batch_size: int = option(4, "images per sampler call")
    init_image: str | None = option(None, "image-to-image: start from this picture", metavar="FILE")
    strength: float = option(0.6, "image-to-image: share of the denoising run (1 = ignore the picture)")
    resolution: int | None = option(None, "output size in px (default: the run's training resolution)")
    jit_compile: bool = option(False, "XLA for the sampler loop (worth it on a GPU)")
    ddim: str = option("kerascv", "DDIM timesteps: kerascv (KerasCV's generate_image: linspace, last step to "
                                  "alpha 1) or diffusers (SD v1's DDIMScheduler config: leading + 1, last step to "
                                  "alphas_cumprod[0]; matches diffusers' pipeline, docs/weights.md)",
                       choices=("kerascv", "diffusers"))

    def validate(self) -> None:
        check(self.steps >= 1, "steps", self.steps, "must be >= 1")
        check(self.guidance >= 0, "guidance", self.guidance, "must be >= 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "must be >= 1")
        check(0 < self.strength <= 1, "strength", self.strength, "must be in (0, 1]")
        if self.resolution is not None:
            check_resolution(self.resolution)
        self.seed_list()

    def seed_list(self) -> list[int]:
        try:
            seeds = [int(s) for s in self.seeds.split(",") if s.strip()]
        except ValueError:
            raise UserError(f"--seeds {self.seeds!r}: use comma-separated integers, e.g. 0,1,2") from None
        if not seeds or any(s < 0 for s in seeds):
            raise UserError(f"--seeds {self.seeds!r}: use comma-separated non-negative integers, e.g. 0,1,2")
        return sorted(set(seeds))


@dataclass(frozen=True)
class Job:
    step: int
    template: str
    prompt: str
    seed: int
    relpath: str


def image_name(cfg: GenerateConfig, template: str, seed: int, resolution: int, init_sha: str) -> str:
    """The PNG's file name: readable prompt and seed, plus a short hash of everything besides the checkpoint
    that changes the picture."""
    blob = json.dumps([template, seed, cfg.steps, cfg.guidance, cfg.negative, init_sha,
                       cfg.strength if init_sha else None, resolution] + ([cfg.ddim] if cfg.ddim != "kerascv" else []))
    return f"{slug(template)}-s{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}.png"


def slug(text: str, n: int = 40) -> str:
    s = "".join(c if c.isalnum() else "-" for c in text.replace("{}", "TOKEN").lower())
    return "-".join(p for p in s.split("-") if p)[:n]


def plan(run: Run, cfg: GenerateConfig, templates: list[str], token: str, resolution: int, init_sha: str):
    steps = run.resolve_steps(cfg.checkpoints)
    done = {r["path"] for r in run.read_images() if (run.path / r["path"]).exists()}
    jobs, skipped = [], 0
    for step in steps:
        for t in templates:
            for seed in cfg.seed_list():
                rel = run.image_relpath(step, image_name(cfg, t, seed, resolution, init_sha))
                if rel in done:
                    skipped += 1
                    continue
                jobs.append(Job(step, t, t.replace("{}", token), seed, rel))
    return steps, jobs, skipped


def png_bytes(img: np.ndarray, info: dict) -> bytes:
    import io

    meta = PngInfo()
    for k, v in info.items():
        meta.add_text(k, v if isinstance(v, str) else json.dumps(v))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", pnginfo=meta)
    return buf.getvalue()


def generate(run: Run, cfg: GenerateConfig, components, progress: bool = True) -> dict:
    """Make the missing images of the plan, then the grids. Returns counts. Holds the run's writer lock; an
    unexpected failure is logged in the run (logs/generate.log) and reported in one line."""
    with run.stage("generate", hint="images made so far are kept; rerun the same generate to continue"):
        return _generate(run, cfg, components, progress)


def _generate(run: Run, cfg: GenerateConfig, components, progress: bool) -> dict:
    from tqdm.auto import tqdm

    from core.images import center_square, check_image, load_rgb, to_array
    from core.prompts import EVAL_FILES, load_templates
    from core.sampler import UNCONDITIONAL_TOKENS, initial_noise
    from core.tokenizer import PromptTokenizer

    record = run.record
    token, n_vec = record.token.placeholder, record.token.vectors
    resolution = cfg.resolution or record.resolution
    templates = load_templates(cfg.prompts or EVAL_FILES[record.property])
    tokenizer = PromptTokenizer(token, n_vec)
    prompt_ids = {t: tokenizer.encode(t.replace("{}", token)) for t in templates}  # errors before any work
    neg_ids = tokenizer.encode(cfg.negative) if cfg.negative else UNCONDITIONAL_TOKENS
    init_sha, init_latent = "", None
    if cfg.init_image:
        reason = check_image(Path(cfg.init_image))
        if reason:
            raise UserError(f"--init-image {cfg.init_image}: {reason}")
        from core.runfolder import sha256_file

        init_sha = sha256_file(Path(cfg.init_image))
    steps, jobs, skipped = plan(run, cfg, templates, token, resolution, init_sha)
    if jobs:
        vectors = {step: run.load_embedding(step)[token] for step in sorted({j.step for j in jobs})}
        encoder = components.placeholder_encoder(next(iter(vectors.values())))
        sampler = components.sampler(cfg.ddim, cfg.jit_compile, bool(cfg.init_image))
        if cfg.init_image:
            pic = to_array(center_square(load_rgb(Path(cfg.init_image)), resolution))[None]
            init_latent = sampler.encode_image(pic)[0]
        weights = components.weights.provenance()
        b = min(cfg.batch_size, len(jobs))
        uncond = encoder.encode(np.asarray([neg_ids] * b))[0]  # b rows: the encoder's one shape (see _contexts)
        contexts = _contexts(encoder, vectors, prompt_ids, jobs, b)
        bar = tqdm(total=len(jobs), desc=f"generate {run.name}", unit="img", disable=not progress, dynamic_ncols=True)
        try:
            # every sampler call gets exactly b images, checkpoints mixed (each image's context is its own), the
            # last call padded with copies of its last image: one compiled shape per process, not one per remainder
            for i in range(0, len(jobs), b):
                chunk = jobs[i:i + b]
                padded = chunk + [chunk[-1]] * (b - len(chunk))
                t0 = time.time()
                ctx = np.stack([contexts[j.step, j.template] for j in padded])
                noise = np.stack([initial_noise(j.seed, resolution) for j in padded])
                imgs, gaps = sampler.sample_with_gap(
                    ctx, np.repeat(uncond[None], b, axis=0), noise, cfg.steps, cfg.guidance,
                    None if init_latent is None else np.repeat(init_latent[None], b, 0), cfg.strength)
                per = (time.time() - t0) / len(chunk)
                run.append_images([_write_image(run, cfg, record, j, img, gap, weights, init_sha, per)
                                   for j, img, gap in zip(chunk, imgs, gaps)])
                bar.update(len(chunk))
        finally:
            bar.close()
    grids = write_grids(run, cfg, templates, steps, resolution, init_sha)
    return {"generated": len(jobs), "skipped": skipped, "grids": len(grids)}


def _contexts(encoder, vectors: dict[int, np.ndarray], prompt_ids: dict[str, list[int]], jobs: list[Job],
              b: int) -> dict[tuple[int, str], np.ndarray]:
    """{(checkpoint, template): [77, dim] context}: each prompt through the text encoder holding its checkpoint's
    vectors, once (every seed of a prompt shares it). Every encoder call has b rows (the last padded with copies),
    so the encoder keeps one compiled shape too."""
    out: dict[tuple[int, str], np.ndarray] = {}
    for step in sorted({j.step for j in jobs}):
        templates = list(dict.fromkeys(j.template for j in jobs if j.step == step))
        encoder.set_vectors(vectors[step])
        for i in range(0, len(templates), b):
            part = templates[i:i + b]
            ids = [prompt_ids[t] for t in part]
            ctx = encoder.encode(np.asarray(ids + [ids[-1]] * (b - len(part)), dtype="int32"))
            out.update({(step, t): c for t, c in zip(part, ctx)})
    return out


def _write_image(run: Run, cfg: GenerateConfig, record, j: Job, img: np.ndarray, gap: float, weights: dict,
                 init_sha: str, per: float) -> dict:
    """The PNG (its generation settings in text chunks) and its images.csv row."""
    token = record.token.placeholder
    info = {"prompt": j.prompt, "negative_prompt": cfg.negative, "seed": str(j.seed), "steps": str(cfg.steps),
            "guidance": str(cfg.guidance), "checkpoint_step": str(j.step), "token": token,
            "init_image": cfg.init_image or "", "init_image_sha256": init_sha,
            "strength": str(cfg.strength) if cfg.init_image else "", "weights": weights, "run": run.name,
            "sampler": f"ddim ({'KerasCV' if cfg.ddim == 'kerascv' else 'diffusers'} schedule)",
            "tool": f"tomcat-ti {__version__}"}
    if record.is_pipeline_check:
        info["label"] = PIPELINE_CHECK_LABEL
    atomic_write_bytes(run.resolve_inside(j.relpath, what="image"), png_bytes(img, info))
    return {"path": j.relpath, "prompt": j.prompt, "template": j.template, "negative_prompt": cfg.negative,
            "seed": j.seed, "step": j.step, "steps": cfg.steps, "guidance": cfg.guidance, "token": token,
            "init_image": cfg.init_image or "", "strength": cfg.strength if cfg.init_image else "",
            "weights_source": weights["source"], "width": img.shape[1], "height": img.shape[0], "sampler": "ddim",
            "seconds": round(per, 3), "cond_gap": round(float(gap), 6)}


# ---------------------------------------------------------------------------------------------------- grids
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # very old Pillow
        return ImageFont.load_default()


def labelled_grid(cells: list[list[Path | None]], row_labels: list[str], col_labels: list[str], title: str,
                  banner: str | None, cell: int = 160) -> Image.Image:
    """A table of images with row/column labels, a title and (for random weights) a red banner."""
    f, fs = _font(13), _font(11)
    left, top = 220, 48 + (22 if banner else 0)
    img = Image.new("RGB", (left + cell * len(col_labels), top + cell * len(row_labels)), "white")
    d = ImageDraw.Draw(img)
    y0 = 4
    if banner:
        d.rectangle([0, 0, img.width, 20], fill=(200, 30, 30))
        d.text((6, 4), banner[: img.width // 6], fill="white", font=fs)
        y0 = 24
    d.text((6, y0), title[:160], fill="black", font=f)
    for c, lab in enumerate(col_labels):
        d.text((left + c * cell + 4, top - 18), lab[:28], fill="black", font=fs)
    for r, lab in enumerate(row_labels):
        words, lines, cur = lab.split(), [], ""
        for w in words:
            if len(cur) + len(w) > 32:
                lines.append(cur)
                cur = w
            else:
                cur = f"{cur} {w}".strip()
        lines.append(cur)
        d.multiline_text((4, top + r * cell + 4), "\n".join(lines[:8]), fill="black", font=fs)
        for c in range(len(col_labels)):
            p = cells[r][c]
            box = (left + c * cell, top + r * cell)
            if p is not None and p.exists():
                with opened(p) as im:  # checked: a non-image or a decompression bomb is a UserError
                    img.paste(im.convert("RGB").resize((cell - 4, cell - 4)), (box[0] + 2, box[1] + 2))
            else:
                d.rectangle([box[0] + 2, box[1] + 2, box[0] + cell - 2, box[1] + cell - 2], outline="gray")
    return img


def write_grids(run: Run, cfg: GenerateConfig, templates, steps, resolution, init_sha) -> list[Path]:
    import io

    token = run.record.token.placeholder
    seeds = cfg.seed_list()
    banner = "PIPELINE CHECK - random weights, not a model result" if run.record.is_pipeline_check else None
    mode = "img2img" if init_sha else "txt2img"

    def path_of(step, t, seed):
        return run.resolve_inside(run.image_relpath(step, image_name(cfg, t, seed, resolution, init_sha)),
                                  what="image")

    out = []
    for step in steps:  # prompt x seed for one checkpoint
        cells = [[path_of(step, t, s) for s in seeds] for t in templates]
        label = "initializer (before training)" if step == 0 else f"step {step}"
        g = labelled_grid(cells, [t.replace("{}", token) for t in templates], [f"seed {s}" for s in seeds],
                          f"{run.name}: {label} ({mode}, {cfg.steps} steps, guidance {cfg.guidance})", banner)
        buf = io.BytesIO()
        g.save(buf, format="PNG")
        p = run.grid_path(f"checkpoint-{step:06d}-{mode}.png")
        atomic_write_bytes(run.resolve_inside(p, what="grid"), buf.getvalue())
        out.append(p)
    for t in templates:  # checkpoint x seed for one prompt
        cells = [[path_of(step, t, s) for s in seeds] for step in steps]
        g = labelled_grid(cells, [("initializer (step 0)" if s == 0 else f"step {s}") for s in steps],
                          [f"seed {s}" for s in seeds], t.replace("{}", token), banner)
        buf = io.BytesIO()
        g.save(buf, format="PNG")
        p = run.grid_path(f"prompt-{slug(t)}-{mode}.png")
        atomic_write_bytes(run.resolve_inside(p, what="grid"), buf.getvalue())
        out.append(p)
    return out


# ------------------------------------------------------------------------------------------------------ CLI
add_arguments = run_stage_arguments(GenerateConfig, "a run folder made by train (or import)")


def run(args) -> int:
    cfg = from_args(GenerateConfig, args)  # a bad value fails here, before TensorFlow is imported
    run_ = Run(args.run)
    record = run_.record
    from core.components import Components
    from core.train import set_precision
    set_precision(record.mixed_precision)
    spec = record.weight_spec()
    if spec.source == "random":
        print("weights: random (seeded) - images are a PIPELINE CHECK, not model results", file=sys.stderr)
    counts = generate(run_, cfg, Components(spec, cfg.resolution or record.resolution), not args.no_progress)
    print(f"{counts['generated']} image(s) generated, {counts['skipped']} already there, {counts['grids']} grid(s) "
          f"in {run_.grids_dir}")
    return 0
