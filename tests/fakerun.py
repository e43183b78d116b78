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
                                 "height": 64, "sampler": "ddim", "seconds": 0.1,
                                 "cond_gap": round(float(2.0 + 0.05 * s + rng.random()), 4)})
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
            "n_images": len(rows), "inputs": run.scores_inputs(), "complete": True,
            **fake_identity_fields(run, rows, clip, n_boot), **fields}
    run.write_scores_meta(meta)
    return meta


def fake_identity_fields(run: Run, rows: list[dict], clip: dict, n_boot: int) -> dict:
    """scores.json's issue-21 keys for a fixture run: the real formulas (core.identity, core.protocol) on
    fabricated, seeded features and survival flags (test data, not measurements)."""
    from core.clip_score import describe
    from core.identity import identity_rows, leakage_rows, screen_rows, token_similarity_row
    from core.identity_stage import provenance
    from core.protocol import DIFFERENCES, PUBLISHED_TI_BASELINE, SOURCE, protocol_rows

    rng = np.random.default_rng(zlib.crc32(run.name.encode()))
    steps = run.embedding_steps()
    labels = ["Tom, the cat from Tom and Jerry", "a cat", "Garfield, the orange cartoon cat", "a mouse"]
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    base = unit(rng.normal(size=8))
    tokens = {s: unit(base + 0.05 * s * rng.normal(size=8)) for s in steps}
    refs = np.stack([unit(base + 0.5 * rng.normal(size=8)) for _ in range(4)])
    texts = {x: unit(rng.normal(size=8)) for x in labels}
    token_rows = [token_similarity_row(s, tokens[s], refs, texts[labels[0]], tokens[steps[0]],
                                       {x: texts[x] for x in labels[2:]}, n_boot=n_boot) for s in steps]
    img_steps = [int(r["step"]) for r in rows]
    feats = np.stack([texts[labels[0]] if rng.random() < 0.2 + 0.02 * st else texts[labels[1]] for st in img_steps])
    img_rows = run.read_images()
    gaps = [float(r["cond_gap"]) if r.get("cond_gap") else None for r in img_rows]
    token_prov = {"computed": True, "encoder": {"model": "ViT-L-14", "pretrained": "random", "source": "random"},
                  "encoder_label": "ViT-L-14 random weights (seed 0)", "method": "end-of-text hidden state x "
                  "projection", "versions": {"open_clip_torch": "test"}, "templates": ["a photo of {}"]}
    prot = {"name": "customconcept101", "source": SOURCE, "differences": list(DIFFERENCES),
            "formulas": {"clip_t": "mean of 2.5 * max(cos, 0)", "clip_i": "mean pairwise", "dino": "mean pairwise"},
            "published_textual_inversion": dict(PUBLISHED_TI_BASELINE),
            "rows": protocol_rows(img_steps, [float(r["clip_t"]) for r in rows], [float(r["clip_i"]) for r in rows]),
            "dino": {"computed": False, "note": "pass --dino FILE"}}
    return {
        "token_similarity": token_rows, "token_similarity_provenance": token_prov,
        "identity": identity_rows(img_steps, feats, np.stack([texts[x] for x in labels]), n_boot=n_boot),
        "identity_labels": {"labels": labels, "subject": labels[0], "initializer_class": "a cat",
                            "template": "a picture of {}", "leakage_subjects": {"a dog sitting next to {}": "a dog"},
                            "note": None},
        "leakage": leakage_rows(img_steps, [(r["template"], int(r["seed"])) for r in rows],
                                [bool(rng.random() < 0.7 - 0.01 * st) for st in img_steps], n_boot=n_boot),
        "memorisation": screen_rows([int(r["step"]) for r in img_rows], gaps, n_boot=n_boot),
        "protocol": prot,
        "provenance": provenance(clip, describe(clip), token_prov, prot, run.record.weights.describe()),
    }
