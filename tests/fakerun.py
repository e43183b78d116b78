"""Fixture runs made without any network: complete run folders (metrics, embeddings, images, scores) written
through `core.runfolder` with synthetic content, for the fast tests of scoring, comparison, the dashboard and
the model card. The numbers are fabricated test data, and the runs say `weights.source = "random"`. Everything
is seeded (no `hash()` of strings, which changes per process), so a fixture run is the same in every test run."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from core.runfolder import Run, pipeline_check_reasons

EMBED_DIM = 768
FAKE_N_BOOT = 200  # bootstrap resamples of the fixture's summaries (fewer than the default: fast)


def draw_image(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    bg = tuple(int(c) for c in rng.integers(0, 255, 3))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    fg = tuple(int(c) for c in rng.integers(0, 255, 3))
    x0, y0 = rng.integers(0, size // 2, 2)
    d.ellipse([int(x0), int(y0), int(x0) + size // 2, int(y0) + size // 2], fill=fg)
    return img


def make_fake_run(runs_dir: Path, name: str = "fake-object", prop: str = "object", steps: int = 20,
                  checkpoint_every: int = 10, prompts: list[str] | None = None, seeds=(0, 1),
                  with_images: bool = True, with_scores: bool = True, status: str = "finished",
                  n_boot: int = FAKE_N_BOOT) -> Run:
    token = "<tom-cat>"
    prompts = prompts or ["a 3D animation frame of {}, photorealistic", "a horror movie poster with {}"]
    run = Run.create(runs_dir, name, {
        "kind": "train",
        "status": status,
        "config": {"token": token, "init": "cat", "vectors": 1, "property": prop, "steps": steps,
                   "checkpoint_every": checkpoint_every, "resolution": 128, "batch_size": 1, "lr": 2e-3,
                   "seed": 0, "weights": "random", "weights_seed": 0},
        "token": {"placeholder": token, "initializer": "cat", "vectors": 1, "tokens": [token]},
        "property": prop,
        "weights": {"source": "random", "seed": 0, "files": {}, "verified": None},
        "timings": {"seconds_total": 12.5, "steps_done": steps},
        "versions": {"core": "test"},
        "hardware": {"platform": "test", "devices": ["CPU"]},
    })
    rng = np.random.default_rng(len(name))
    run.append_metrics({"step": s, "loss": float(1.0 / s + 0.01 * rng.random()), "lr": 2e-3, "seconds": 0.5 * s}
                       for s in range(1, steps + 1))
    run.write_manifest([{"file": f"tom_{i}.png", "sha256": f"{i:064x}", "bytes": 1000 + i, "width": 64,
                         "height": 64, "license": "CC0-1.0" if i else "", "source": "drawn by code",
                         "author": "tests"} for i in range(3)])
    init = rng.normal(size=(1, EMBED_DIM)).astype(np.float32)
    ckpts = list(range(0, steps + 1, checkpoint_every))
    for s in ckpts:
        run.save_embedding(s, {token: init + 0.01 * s * rng.normal(size=init.shape).astype(np.float32)})
        run.append_neighbors({"step": s, "vector": 0, "rank": r, "token": w, "token_id": 100 + r,
                              "cosine": 0.9 - 0.01 * s - 0.1 * r, "distance_from_init": 0.01 * s}
                             for r, w in enumerate(["cat</w>", "kitten</w>", "dog</w>"]))
    run.update_meta(final_step=ckpts[-1])
    if with_images:
        rows, scores = [], []
        for s in (ckpts[0], ckpts[-1]):
            for pi, tmpl in enumerate(prompts):
                for seed in seeds:
                    rel = run.image_relpath(s, f"p{pi:02d}-s{seed}.png")
                    (run.path / rel).parent.mkdir(parents=True, exist_ok=True)
                    draw_image(zlib.crc32(f"{name}/{s}/{pi}/{seed}".encode()) % 10_000).save(run.path / rel)
                    prompt = tmpl.replace("{}", token)
                    rows.append({"path": rel, "prompt": prompt, "template": tmpl, "negative_prompt": "",
                                 "seed": seed, "step": s, "steps": 3, "guidance": 7.5, "token": token,
                                 "init_image": "", "strength": "", "weights_source": "random", "width": 64,
                                 "height": 64, "sampler": "ddim", "seconds": 0.1})
                    scores.append({"path": rel, "step": s, "prompt": prompt, "template": tmpl, "seed": seed,
                                   "clip_i": float(0.5 + 0.01 * s + 0.05 * rng.random()),
                                   "clip_t": float(0.3 - 0.002 * s + 0.05 * rng.random()),
                                   "clip_model": "ViT-B-32", "clip_weights": "random"})
        run.append_images(rows)
        if with_scores:
            run.write_scores(scores)
            write_fake_scores_meta(run, n_boot)
    return run


def write_fake_scores_meta(run: Run, n_boot: int = FAKE_N_BOOT, clip: dict | None = None, **fields) -> dict:
    """scores.json as `score` writes it for the run's scores.csv: CLIP provenance (random unless `clip` names
    another), the pipeline-check reasons, baselines, the summaries with bootstrap intervals computed with `n_boot`
    resamples (recorded in its config, as `score --n-boot` does) and the sha256 of its inputs. `fields` override."""
    from core.clip_score import describe
    from core.score import SCORES_SCHEMA, summarize_by_prompt, summarize_by_step

    rows = run.read_scores()
    clip = clip or {"model": "ViT-B-32", "pretrained": "random", "seed": 0, "source": "random"}
    reasons = pipeline_check_reasons(run.record, clip)
    records = lambda df: df.to_dict(orient="records")  # noqa: E731
    meta = {"schema_version": SCORES_SCHEMA, "clip": clip, "clip_label": describe(clip),
            "config": {"n_boot": n_boot}, "pipeline_check": bool(reasons), "pipeline_check_reasons": reasons,
            "baselines": {"reference_ceiling_clip_i": 0.8, "reference_ceiling": {"mean": 0.8}},
            "summaries": {"by_step": records(summarize_by_step(rows, n_boot=n_boot)),
                          "by_prompt": records(summarize_by_prompt(rows, n_boot=n_boot))},
            "n_images": len(rows), "inputs": run.scores_inputs(), "complete": True, **fields}
    run.write_scores_meta(meta)
    return meta

