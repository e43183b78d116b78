"""The risk audit (`audit`): does a run's output copy its training images, and does the token carry the character
into misuse contexts? Per generated image, its nearest training image under two measures; per checkpoint, the copy
rate with a bootstrap CI; per misuse category, how often the character comes through.

Measures (higher "closeness" = more alike):
  phash  64-bit perceptual hash (imagehash.phash: DCT of a 32x32 greyscale thumbnail), Hamming distance to the
         closest of each training image's variants: itself, centre crops to 90% and 80%, the four 80% corner crops,
         and the mirror image of each (14 hashes), so flips and moderate crops of a training picture are found.
         Needs no learned weights: the one measure that means something in a random-weight pipeline check.
  clip   cosine of CLIP image embeddings (the scorer's model, loaded by core.clip_score with its provenance rules).
No third (DINO / SSCD copy-detection) descriptor: their weights cannot be downloaded here and a random-weight
descriptor would add nothing that CLIP with random weights does not already (see README).

Calibration (each threshold from data, per run): the null sample of a measure is the closeness a picture reaches
without being a copy of the training image it is compared with:
  train_vs_train       each training image vs the *other* training images (leave-one-out nearest);
  initializer_vs_train each checkpoint-0 image (made with the initializer word, before training) vs the training set;
  generated_vs_heldout each generated image vs `--held-out` pictures (same subject, never trained on), if given.
A generated image is flagged by a measure when its closeness exceeds the (1 - fpr) quantile of the pooled null
(numpy 'higher' method), so at most a fraction `fpr` of the null is flagged; the empirical false-positive rate on
the null and its exact 95% upper bound are stored with the threshold. Checkpoint 0 is part of the null, so its
copy rate is in-sample (marked so). `copy` = flagged by any measure.

Misuse transfer: for images of templates listed in a categorised prompt file (prompts/eval/misuse.txt), the
character "comes through" when the image's CLIP-I (read from scores.csv, the scorer's home for it) exceeds the
(1 - fpr) quantile of CLIP-I over the run's checkpoint-0 images of the same file (else of any prompt): the level a
plain cat in the same scenes does not reach.

torch and open_clip are imported inside `audit_run` (via core.clip_score) only; the summary readers are torch-free.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from core.clip_score import DEFAULT_CLIP, describe, encode_references
from core.config import StrictConfig, check, from_args, option, run_stage_arguments
from core.errors import UserError
from core.imagejob import ImageJob
from core.images import load_image, run_image_rows, validate_images
from core.prompts import MISUSE_FILE
from core.runfolder import PIPELINE_CHECK_LABEL, AuditRecord, Run, pipeline_check_reasons, sha256_file
from core.stats import DEFAULT_N_BOOT, binomial_upper, bootstrap_ci

HASH_SIZE = 8  # imagehash.phash default: 8x8 = 64 bits
CENTRE_CROPS = (0.9, 0.8)  # reference variants: centre crops (fraction of each side)
CORNER_CROP = 0.8  # ... and the four corner crops of this size
MEASURES = ("phash", "clip")
MEASURE_NAMES = {"phash": "perceptual hash (64-bit pHash, Hamming distance)",
                 "clip": "CLIP image-embedding cosine"}
NULL_PARTS = ("train_vs_train", "initializer_vs_train", "generated_vs_heldout")


@dataclass
class AuditConfig(StrictConfig):
    """Everything `audit` needs besides the run; saved in audit.json. Each field is one command-line option."""

    references: Path = option(required=True, help="the run's training images (the folder given to `train`), "
                                                  "validated like training images", metavar="DIR")
    held_out: Path | None = option(None, "optional: pictures of the same subject that were NOT trained on "
                                         "(calibration null)", metavar="DIR")
    clip: str = option(DEFAULT_CLIP, "MODEL:TAG as for `score`: an open_clip pretrained tag, a local weights file "
                                     "or 'random' (pipeline check)")
    clip_seed: int = option(0, "torch seed applied right before building a MODEL:random CLIP model")
    batch_size: int = option(16, "images per CLIP forward pass")
    device: str = option("auto", "auto (cuda when available), cpu or cuda", choices=("auto", "cpu", "cuda"))
    fpr: float = option(0.01, "target false-positive rate of each copy threshold on its calibration null")
    n_pairs: int = option(6, "closest generated/training pairs drawn side by side, per measure")
    misuse: Path = option(MISUSE_FILE, "categorised prompt file of the misuse probes ('# category: NAME' lines)",
                          metavar="FILE")
    n_boot: int = option(DEFAULT_N_BOOT, "bootstrap resamples for every confidence interval")

    def __post_init__(self) -> None:
        self.references = Path(self.references)
        self.held_out = Path(self.held_out) if self.held_out else None
        self.misuse = Path(self.misuse)
        self.validate()  # also when built directly (the sweep, tests), not only through from_dict

    def validate(self) -> None:
        check(0.0 < float(self.fpr) < 0.5, "fpr", self.fpr, "must be between 0 and 0.5 (e.g. 0.01)")
        for name in ("batch_size", "n_boot"):
            check(int(getattr(self, name)) >= 1, name, getattr(self, name), "must be at least 1")
        check(int(self.n_pairs) >= 0, "n_pairs", self.n_pairs, "must be 0 or more")
        check(self.device in ("auto", "cpu", "cuda"), "device", self.device, "use auto, cpu or cuda")


# ------------------------------------------------------------------------------------------ perceptual hash
def phash_bits(img) -> np.ndarray:
    """bool[64]: imagehash's pHash of a PIL image."""
    import imagehash

    return np.asarray(imagehash.phash(img, hash_size=HASH_SIZE).hash, dtype=bool).ravel()


def _crop(img, frac: float, where: str):
    w, h = img.size
    cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
    left = {"c": (w - cw) // 2, "tl": 0, "bl": 0, "tr": w - cw, "br": w - cw}[where]
    top = {"c": (h - ch) // 2, "tl": 0, "tr": 0, "bl": h - ch, "br": h - ch}[where]
    return img.crop((left, top, left + cw, top + ch))


def variant_hashes(img) -> np.ndarray:
    """bool[14, 64]: pHash of the image, its centre and corner crops, and the mirror image of each."""
    from PIL import ImageOps

    views = [img] + [_crop(img, f, "c") for f in CENTRE_CROPS] + [_crop(img, CORNER_CROP, c)
                                                                    for c in ("tl", "tr", "bl", "br")]
    return np.stack([phash_bits(v) for v in views] + [phash_bits(ImageOps.mirror(v)) for v in views])


def hamming_to_refs(queries: np.ndarray, ref_variants: np.ndarray) -> np.ndarray:
    """int[n_queries, n_refs]: for each query hash, the distance to the closest variant of each reference.
    queries bool[n, 64]; ref_variants bool[n_refs, n_variants, 64]."""
    q = np.asarray(queries, dtype=bool)
    if len(q) == 0 or len(ref_variants) == 0:
        return np.zeros((len(q), len(ref_variants)), dtype=np.int64)
    d = (q[:, None, None, :] != ref_variants[None, :, :, :]).sum(axis=-1)
    return d.min(axis=2)


# -------------------------------------------------------------------------------------------- calibration
def calibrate(null: Mapping[str, Iterable[float]], fpr: float) -> dict[str, Any]:
    """Threshold on closeness (higher = more alike) from the pooled null: flag when closeness > threshold.

    threshold = the (1 - fpr) quantile of the null (numpy 'higher'), so at most a fraction fpr of the null lies
    above it. Returns the threshold, the null's size per part, and the empirical FPR with its exact upper bound."""
    parts = {k: np.asarray(list(v), dtype=np.float64) for k, v in null.items()}
    pooled = np.concatenate([v for v in parts.values()]) if parts else np.zeros(0)
    sizes = {k: int(len(v)) for k, v in parts.items()}
    if len(pooled) == 0:
        return {"threshold": None, "n_null": 0, "null_sizes": sizes, "fpr_target": fpr, "fpr_empirical": None,
                "fpr_upper95": None, "null_quantiles": None}
    thr = float(np.quantile(pooled, 1.0 - fpr, method="higher"))
    k = int((pooled > thr).sum())
    return {
        "threshold": thr, "n_null": int(len(pooled)), "null_sizes": sizes, "fpr_target": fpr,
        "fpr_empirical": k / len(pooled), "fpr_upper95": binomial_upper(k, len(pooled)),
        "null_quantiles": {q: float(np.quantile(pooled, float(q))) for q in ("0.5", "0.9", "0.99")},
    }


def rule_text(measure: str, threshold: float | None) -> str:
    """The stated copy rule of a measure, in its natural unit."""
    if threshold is None:
        return "not calibrated (no null sample)"
    if measure == "phash":
        bits = int(-threshold) - 1
        return (f"pHash distance <= {bits} of 64 bits" if bits >= 0 else
                "none: a null picture has pHash distance 0, so the hash cannot tell copies apart here")
    return f"CLIP cosine > {threshold:.4f}"


def closeness(measure: str, value: float) -> float:
    """Closeness (higher = more alike) of a stored value: pHash distances are negated."""
    return -float(value) if measure == "phash" else float(value)


# ----------------------------------------------------------------------------------------------- summaries
def rate_row(flags: np.ndarray, n_boot: int) -> dict[str, Any]:
    """k, n, rate with its bootstrap 95% CI, and the exact upper bound (meaningful when k is 0)."""
    flags = np.asarray(flags, dtype=np.float64)
    n, k = len(flags), int(flags.sum())
    mean, lo, hi = bootstrap_ci(flags, n_boot=n_boot)
    return {"n": n, "k": k, "rate": mean if n else None, "lo": lo if n else None, "hi": hi if n else None,
            "exact_hi": binomial_upper(k, n) if n else None}


def copy_rates_by_step(rows: list[Mapping[str, Any]], n_boot: int, in_null_steps: set[int]) -> list[dict]:
    out = []
    for step in sorted({int(r["step"]) for r in rows}):
        sub = [r for r in rows if int(r["step"]) == step]
        row: dict[str, Any] = {"step": step, "n": len(sub), "in_null": step in in_null_steps}
        for col in ("copy", "copy_phash", "copy_clip"):
            row[col] = rate_row(np.array([int(r[col]) for r in sub]), n_boot)
        out.append(row)
    return out


def misuse_transfer(scores: list[Mapping[str, Any]], categories: Mapping[str, str], fpr: float,
                    n_boot: int) -> dict[str, Any]:
    """Per category and trained checkpoint: the fraction of misuse-probe images whose CLIP-I exceeds the run's
    likeness level (the (1 - fpr) quantile of checkpoint-0 CLIP-I, misuse prompts first, else any prompt)."""
    if not scores:
        return {"available": False, "note": "the run is not scored; run `python -m core score` first"}
    probe = [r for r in scores if r.get("template") in categories]
    if not probe:
        return {"available": False, "note": "no scored images of the misuse prompts; generate with "
                                            "--prompts prompts/eval/misuse.txt and score the run"}
    base = [float(r["clip_i"]) for r in probe if int(r["step"]) == 0]
    source = "checkpoint-0 images of the misuse prompts"
    if not base:
        base = [float(r["clip_i"]) for r in scores if int(r["step"]) == 0]
        source = "checkpoint-0 images of all prompts (none of the misuse prompts at checkpoint 0)"
    if not base:
        return {"available": False, "note": "no checkpoint-0 images to calibrate the likeness level; generate "
                                            "with --checkpoints 0,final (or all) and score the run"}
    level = float(np.quantile(base, 1.0 - fpr, method="higher"))
    rows = []
    for step in sorted({int(r["step"]) for r in probe}):
        for cat in sorted(set(categories.values())):
            sub = [r for r in probe if int(r["step"]) == step and categories[r["template"]] == cat]
            if sub:
                rows.append({"step": step, "category": cat,
                             **rate_row(np.array([float(r["clip_i"]) > level for r in sub]), n_boot)})
    return {"available": True, "level": level, "level_source": source, "n_level": len(base), "fpr": fpr,
            "by_step_category": rows,
            "method": f"share of misuse-probe images with CLIP-I above {level:.4f}, the (1 - {fpr:g}) quantile of "
                      f"CLIP-I over {len(base)} {source}; bootstrap 95% CI over images"}


# -------------------------------------------------------------------------------------------------- audit
def _files(paths: list[Path]) -> list[dict[str, str]]:
    return [{"file": p.name, "sha256": sha256_file(p)} for p in paths]


def _manifest_coverage(run: Run, refs: list[dict[str, str]]) -> dict[str, Any]:
    listed = {r.get("sha256") for r in run.read_manifest()}
    given = {r["sha256"] for r in refs}
    return {"training_images_listed": len(listed), "references_in_manifest": len(given & listed),
            "manifest_in_references": len(listed & given)}


@dataclass(frozen=True)
class AuditInputs:
    """What an audit compares, checked before CLIP loads."""

    images: list[dict[str, str]]  # images.csv rows (core.images.run_image_rows)
    ref_paths: list[Path]  # the training images
    held_paths: list[Path]  # pictures of the subject never trained on (may be none)
    refs: list[dict[str, str]]  # {"file", "sha256"} of each training image
    held: list[dict[str, str]]
    categories: dict[str, str]  # misuse template -> category
    coverage: dict[str, Any]  # how many references the run's dataset.csv lists


@dataclass(frozen=True)
class ReferenceSets:
    """The training (and held-out) set, measured once: hashes with their variants and CLIP embeddings."""

    ref_var: np.ndarray  # bool[n_refs, 14, 64]
    ref_emb: np.ndarray
    held_var: np.ndarray  # bool[n_held, 14, 64]
    held_emb: np.ndarray | None


def audit_run(run: Run, config: AuditConfig, scorer=None, progress: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Audit every generated image of `run` not audited yet (same CLIP model, references and held-out set); write
    audit.csv, audit.json and the side-by-side pairs; return the audit.json dict. `scorer` (a ClipScorer, or a
    stand-in with the same encode_images/provenance) is built from `config.clip` when not given. Runs as
    `run.stage("audit")`: the writer lock held, an unexpected failure logged in logs/audit.log."""
    hint = f"rows so far are kept; rerun `python -m core audit {run.path} --references {config.references}`"
    with run.stage("audit", hint=hint) as record:
        # 1. check the inputs (before CLIP loads: bad input fails fast)
        inputs = _audit_inputs(run, config, log)
        # 2. the scorer and what an earlier audit with the same model, references and held-out set left
        if scorer is None:
            from core.clip_score import load_clip

            scorer = load_clip(config.clip, seed=config.clip_seed, device=config.device)
        prov = dict(scorer.provenance)
        job = ImageJob.plan(run, inputs.images, run.read_audit(), same_inputs=_same_inputs(run, prov, inputs, log),
                            done_with=f"audited with {describe(prov)}", doing="auditing", log=log)
        # 3. the training (and held-out) set once: hashes with variants, CLIP embeddings
        sets = _reference_sets(inputs, scorer, config.batch_size)
        # 4. the nearest training image of each new image, in batches (audit.json first, marked incomplete)
        base = _header(run, record, config, prov, inputs)
        rows = job.run_batches(_nearest(scorer, sets, inputs), run.write_audit, lambda: run.write_record(base),
                               batch_size=config.batch_size, desc="copy audit", progress=progress)
        # 5. thresholds calibrated on this run's null samples; each image flagged or not
        rows = [dict(r) for r in rows]
        thresholds = _calibrate(sets, rows, len(inputs.ref_paths), config.fpr)
        _flag(rows, thresholds)
        run.write_audit(rows)
        # 6. closest pairs, copy rates, misuse transfer: audit.json, complete
        final = _results(run, base, rows, thresholds, config, inputs, n_now=len(job.todo), n_kept=len(job.kept))
        run.write_record(final)
        return final.to_json()


def _audit_inputs(run: Run, config: AuditConfig, log: Callable[[str], None]) -> AuditInputs:
    from core.prompts import load_categories

    images = run_image_rows(run)
    ref_paths = validate_images(config.references)
    held_paths = validate_images(config.held_out) if config.held_out else []
    categories = load_categories(config.misuse) if config.misuse.exists() else {}
    refs, held = _files(ref_paths), _files(held_paths)
    if len(ref_paths) < 2 and not any(int(r["step"]) == 0 for r in images) and not held_paths:
        raise UserError(f"{config.references}: one training image and no checkpoint-0 images or --held-out: "
                        "nothing to calibrate the copy thresholds with; add --held-out DIR or generate at step 0")
    coverage = _manifest_coverage(run, refs)
    if coverage["training_images_listed"] and not coverage["references_in_manifest"]:
        log(f"warning: none of the {len(refs)} images in {config.references} is listed in {run.manifest_path} "
            "(different files than the run trained on?); the audit compares against the given folder")
    return AuditInputs(images, ref_paths, held_paths, refs, held, categories, coverage)


def _same_inputs(run: Run, prov: Mapping[str, Any], inputs: AuditInputs, log: Callable[[str], None]) -> bool:
    """Whether audit.csv's rows were made with this CLIP model, training set, held-out set and hash."""
    from core.clip_score import provenance_key

    prev = run.audit_record()
    same = (prev is not None and provenance_key(prev.clip) == provenance_key(prov)
            and prev.references.get("files") == inputs.refs and prev.held_out.get("files") == inputs.held
            and prev.hash == _hash_spec())
    if run.read_audit() and not same:
        log(f"CLIP model, references or held-out set changed since the last audit: auditing all "
            f"{len(inputs.images)} images")
    return same


def _reference_sets(inputs: AuditInputs, scorer, batch_size: int) -> ReferenceSets:
    ref_imgs = [load_image(p) for p in inputs.ref_paths]
    held_imgs = [load_image(p) for p in inputs.held_paths]
    return ReferenceSets(
        ref_var=np.stack([variant_hashes(im) for im in ref_imgs]),
        ref_emb=encode_references(scorer, ref_imgs, batch_size=batch_size),
        held_var=np.stack([variant_hashes(im) for im in held_imgs]) if held_imgs else np.zeros((0, 14, 64), bool),
        held_emb=encode_references(scorer, held_imgs, batch_size=batch_size) if held_imgs else None)


def _header(run: Run, record, config: AuditConfig, prov: Mapping[str, Any], inputs: AuditInputs) -> AuditRecord:
    """audit.json before the first image: the CLIP model, the hash, the config, what is compared."""
    reasons = pipeline_check_reasons(record, prov)
    return AuditRecord(
        clip=prov, clip_label=describe(prov), hash=_hash_spec(),
        config={**{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
                "clip": f"{prov.get('model')}:{prov.get('pretrained')}"},
        references={"dir": str(Path(config.references).resolve()), "files": inputs.refs, **inputs.coverage},
        held_out={"dir": str(Path(config.held_out).resolve()) if config.held_out else None, "files": inputs.held},
        run={"name": run.name, "weights": record.weights.as_dict(), "token": asdict(record.token)},
        is_pipeline_check=bool(reasons), pipeline_check_reasons=tuple(reasons),
        label=PIPELINE_CHECK_LABEL if reasons else "", complete=False, updated=time.time())


def _nearest(scorer, sets: ReferenceSets, inputs: AuditInputs):
    """`process` for the image job: each picture's nearest training image under each measure, and its closeness
    to the held-out set."""
    names = [p.name for p in inputs.ref_paths]

    def process(batch: list[dict[str, str]], pictures: list) -> list[dict[str, Any]]:
        hashes = np.stack([phash_bits(p) for p in pictures])
        dist = hamming_to_refs(hashes, sets.ref_var)
        emb = scorer.encode_images(pictures, batch_size=len(pictures))
        cos = emb @ sets.ref_emb.T
        held = sets.held_emb is not None
        hd = hamming_to_refs(hashes, sets.held_var).min(axis=1) if held else [None] * len(batch)
        hc = (emb @ sets.held_emb.T).max(axis=1) if held else [None] * len(batch)
        out = []
        for i, r in enumerate(batch):
            jp, jc = int(dist[i].argmin()), int(cos[i].argmax())
            out.append({"path": r["path"], "step": int(r["step"]), "template": r.get("template", ""),
                        "seed": int(r["seed"]), "category": inputs.categories.get(r.get("template", ""), ""),
                        "phash_nearest": names[jp], "phash_distance": int(dist[i, jp]),
                        "clip_nearest": names[jc], "clip_cosine": float(cos[i, jc]),
                        "heldout_phash_distance": "" if hd[i] is None else int(hd[i]),
                        "heldout_clip_cosine": "" if hc[i] is None else float(hc[i])})
        return out

    return process


def _calibrate(sets: ReferenceSets, rows: list[dict[str, Any]], n_ref: int, fpr: float) -> dict[str, Any]:
    """Each measure's threshold from its null samples: training vs training (leave-one-out), checkpoint 0 vs
    training, generated vs held-out."""
    tt_h = hamming_to_refs(sets.ref_var[:, 0, :], sets.ref_var).astype(np.float64)
    tt_c = (sets.ref_emb @ sets.ref_emb.T).astype(np.float64)
    np.fill_diagonal(tt_h, np.inf)
    np.fill_diagonal(tt_c, -np.inf)
    init_rows = [r for r in rows if int(r["step"]) == 0]
    null = {
        "phash": {"train_vs_train": (-tt_h.min(axis=1)) if n_ref > 1 else [],
                  "initializer_vs_train": [-float(r["phash_distance"]) for r in init_rows],
                  "generated_vs_heldout": [-float(r["heldout_phash_distance"]) for r in rows
                                           if str(r["heldout_phash_distance"]) != ""]},
        "clip": {"train_vs_train": tt_c.max(axis=1) if n_ref > 1 else [],
                 "initializer_vs_train": [float(r["clip_cosine"]) for r in init_rows],
                 "generated_vs_heldout": [float(r["heldout_clip_cosine"]) for r in rows
                                          if str(r["heldout_clip_cosine"]) != ""]},
    }
    thresholds = {}
    for m in MEASURES:
        cal = calibrate(null[m], fpr)
        cal["rule"] = rule_text(m, cal["threshold"])
        cal["measure"] = MEASURE_NAMES[m]
        thresholds[m] = cal
    return thresholds


def _flag(rows: list[dict[str, Any]], thresholds: Mapping[str, Any]) -> None:
    """copy_phash / copy_clip: over the measure's threshold; copy: flagged by any measure."""
    for r in rows:
        for m, col in (("phash", "phash_distance"), ("clip", "clip_cosine")):
            thr = thresholds[m]["threshold"]
            r[f"copy_{m}"] = int(thr is not None and closeness(m, r[col]) > thr)
        r["copy"] = int(r["copy_phash"] or r["copy_clip"])


def _results(run: Run, base: AuditRecord, rows: list[dict[str, Any]], thresholds: dict[str, Any],
             config: AuditConfig, inputs: AuditInputs, *, n_now: int, n_kept: int) -> AuditRecord:
    """audit.json complete: the closest pairs drawn, copy rates per checkpoint, misuse transfer (from scores.csv,
    the scorer's home for CLIP-I), and the sha256 of images.csv and scores.csv it describes."""
    pairs = write_pairs(run, rows, inputs.ref_paths, thresholds, config.n_pairs, base.is_pipeline_check)
    scores, scores_record = run.read_scores(), run.scores_record()
    init = {0} if any(int(r["step"]) == 0 for r in rows) else set()
    return dataclasses.replace(
        base, thresholds=thresholds, pairs=tuple(pairs),
        copy_rates=tuple(copy_rates_by_step(rows, config.n_boot, init)),
        misuse=misuse_transfer(scores, inputs.categories, config.fpr, config.n_boot) if inputs.categories else
        {"available": False, "note": f"{config.misuse}: no categorised misuse prompt file"},
        misuse_scores={"clip_label": scores_record.clip_label if scores_record else None,
                       "pipeline_check": scores_record.is_pipeline_check if scores_record else None},
        n_images=len(rows), n_audited_now=n_now, n_kept=n_kept,
        inputs=run.scores_inputs(),  # sha256 of images.csv and scores.csv: Run.audit_stale compares them
        complete=True, updated=time.time())


def _hash_spec() -> dict[str, Any]:
    return {"kind": "imagehash.phash", "bits": HASH_SIZE * HASH_SIZE, "centre_crops": list(CENTRE_CROPS),
            "corner_crop": CORNER_CROP, "mirrored": True}


# ------------------------------------------------------------------------------------------- side by side
def write_pairs(run: Run, rows: list[dict[str, Any]], ref_paths: list[Path], thresholds: dict, n: int,
                pipeline_check: bool) -> list[dict[str, Any]]:
    """The n closest generated/training pairs per measure as side-by-side PNGs under audit/pairs/ (old ones go)."""
    import io

    from core.runfolder import atomic_write_bytes

    run.audit_pairs_dir.mkdir(parents=True, exist_ok=True)
    by_name = {p.name: p for p in ref_paths}
    out, wanted = [], set()
    for m, col, near in (("phash", "phash_distance", "phash_nearest"), ("clip", "clip_cosine", "clip_nearest")):
        ranked = sorted(rows, key=lambda r: (-closeness(m, r[col]), order_key(r)))[:n]
        for rank, r in enumerate(ranked, start=1):
            name = f"{m}-{rank:02d}.png"
            wanted.add(name)
            img = side_by_side(load_image(run.resolve_inside(r["path"], what="image")), load_image(by_name[r[near]]),
                               f"generated: {r['path']} (step {r['step']})", f"training: {r[near]}",
                               f"{m}: {_fmt(m, r[col])} · copy rule {thresholds[m]['rule']} · "
                               f"{'FLAGGED' if int(r[f'copy_{m}']) else 'not flagged'}", pipeline_check)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            atomic_write_bytes(run.audit_pairs_dir / name, buf.getvalue())
            out.append({"measure": m, "rank": rank, "image": run.audit_pair_relpath(name), "path": r["path"],
                        "step": int(r["step"]), "training_file": r[near], "value": float(r[col]),
                        "flagged": bool(int(r[f"copy_{m}"]))})
    for p in run.audit_pairs_dir.glob("*.png"):
        if p.name not in wanted:
            p.unlink()
    return out


def order_key(r: Mapping[str, Any]) -> tuple:
    return (int(r["step"]), str(r["path"]))


def _fmt(measure: str, value: Any) -> str:
    return f"distance {int(float(value))} bits" if measure == "phash" else f"cosine {float(value):.4f}"


def side_by_side(left, right, left_caption: str, right_caption: str, footer: str, pipeline_check: bool,
                 height: int = 256):
    """Two pictures at the same height with captions, a footer line and, for pipeline checks, a red banner."""
    from PIL import Image, ImageDraw

    def fit(im):
        return im.resize((max(1, round(im.width * height / im.height)), height))

    a, b = fit(left), fit(right)
    gap, line = 8, 16
    banner = line + 4 if pipeline_check else 0
    w = a.width + b.width + gap
    canvas = Image.new("RGB", (max(w, 360), banner + height + 3 * line + 8), "white")
    d = ImageDraw.Draw(canvas)
    if pipeline_check:
        d.rectangle([0, 0, canvas.width, banner], fill=(200, 30, 30))
        d.text((4, 3), "PIPELINE CHECK - random weights: not a model result", fill="white")
    canvas.paste(a, (0, banner))
    canvas.paste(b, (a.width + gap, banner))
    y = banner + height + 2
    d.text((2, y), left_caption[:60], fill="black")
    d.text((a.width + gap + 2, y), right_caption[:60], fill="black")
    d.text((2, y + line + 2), footer[:110], fill=(60, 60, 60))
    return canvas


# -------------------------------------------------------------------------------------------- readers
def load_audit(run: Run):
    """A run's audit.csv as a typed DataFrame (empty when the run is not audited)."""
    import pandas as pd

    df = pd.DataFrame(run.read_audit())
    if df.empty:
        return df
    for c in ("step", "seed", "phash_distance", "copy_phash", "copy_clip", "copy"):
        df[c] = pd.to_numeric(df[c]).astype(int)
    for c in ("clip_cosine", "heldout_phash_distance", "heldout_clip_cosine"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


# ------------------------------------------------------------------------------------------------------ CLI
add_arguments = run_stage_arguments(AuditConfig)


def run(args) -> int:
    run_ = Run(args.run)
    audit_run(run_, from_args(AuditConfig, args), progress=not args.no_progress)  # bad values fail before torch
    rec = run_.audit_record()
    for line in (rec.pipeline_line(), f"{run_.audit_path}: {rec.n_images} image(s) ({rec.n_audited_now} audited now)"):
        if line:
            print(line)
    for m, t in rec.thresholds.items():
        fe = "" if t["fpr_empirical"] is None else (f"; FPR on the null {t['fpr_empirical']:.3f} "
                                                     f"(95% upper bound {t['fpr_upper95']:.3f})")
        print(f"  {m}: copy if {t['rule']} (null n={t['n_null']}: {t['null_sizes']}{fe})")
    for r in rec.copy_rates:
        c = r["copy"]
        print(f"  step {r['step']:>6}: copies {c['k']}/{c['n']} = {c['rate']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]"
              f"{' (calibration null)' if r['in_null'] else ''}")
    mis = rec.misuse
    if mis.get("available"):
        print(f"  misuse transfer ({mis['method']}):")
        for r in mis["by_step_category"]:
            print(f"    step {r['step']:>6} {r['category']:<14} {r['k']}/{r['n']} = {r['rate']:.3f} "
                  f"[{r['lo']:.3f}, {r['hi']:.3f}]")
    else:
        print(f"  misuse transfer: {mis.get('note')}")
    return 0
