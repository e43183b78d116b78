"""`score`'s identity phases (issue 21): zero-shot identity and concept leakage of every scored image (with the
scoring CLIP's features, no extra image pass), the learned token's similarities in CLIP ViT-L/14's text space
(`--token-clip`, the run's own text encoder), the memorisation screen's summary (images.csv `cond_gap`), the
CustomConcept101 protocol numbers (`--protocol`), and the provenance of every measure.

Formulas live in core.identity / core.token_similarity / core.protocol; this module reads the run, loads the
encoders and assembles what scores.json records. Torch is loaded before TensorFlow (the run's text encoder), never
the other way round."""

from __future__ import annotations

import functools
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from core.config import RESOLUTION_STEP
from core.errors import UserError
from core.identity import (
    LABEL_TEMPLATE,
    SCREEN_FIRST_STEPS,
    article,
    identity_rows,
    label_prompt,
    leakage_rows,
    screen_rows,
    survives,
    unit,
    zero_shot_top,
)
from core.protocol import CLIP_PREPROCESS

TOKEN_CLIP_NOTE = ("not computed: pass --token-clip ViT-L-14:openai (or ViT-L-14:/path/open_clip_model.safetensors, "
                   "or ViT-L-14:random for a pipeline check)")


def versions(*packages: str) -> dict[str, str]:
    out = {}
    for p in packages:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def resolve_subject(run, subject_option: str | None) -> tuple[str | None, str]:
    """(subject description, where it came from): `--subject`, else card.yaml `subject`, else None."""
    if subject_option:
        return subject_option, "--subject"
    from core.card.overrides import load_overrides

    subject = load_overrides(run).get("subject")
    return (subject, "card.yaml subject") if subject else (None, "not stated")


# ------------------------------------------------------------------------------------------- zero-shot texts
@dataclass
class ZeroShot:
    """The texts every image is compared with: the identity labels (subject first, when stated; then the
    initializer class and the distractors) and, for leakage prompts, each prompt's second subject."""

    labels: list[str]
    subject: str | None
    features: np.ndarray  # unit [labels, d]
    leak_subject: dict[str, str]  # template -> second subject
    second: dict[str, np.ndarray]  # second subject -> unit feature
    class_feature: np.ndarray  # unit feature of the initializer class
    init_label: str
    misuse: frozenset[str] = frozenset()  # misuse-probe templates (prompts/eval/misuse.txt)

    def evaluation_rows(self, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The images of evaluation prompts: misuse probes and leakage prompts left out (identity and the protocol
        numbers are computed over these; the probes have measures of their own)."""
        return [r for r in rows if r.get("template", "") not in self.leak_subject
                and r.get("template", "") not in self.misuse]

    def settings(self) -> dict[str, Any]:
        """What decides the per-image columns (a rerun keeps earlier rows only when these are the same)."""
        return {"template": LABEL_TEMPLATE, "labels": list(self.labels), "subject": self.subject,
                "leakage": dict(sorted(self.leak_subject.items()))}

    def per_image(self, template: str, embedding: np.ndarray) -> dict[str, str]:
        """scores.csv's zero-shot columns of one image: its top label, and for a leakage prompt whether the second
        subject's phrase beats the initializer class ("1"/"0"; "" for other prompts)."""
        e = np.asarray(embedding)[None]
        top = self.labels[int(zero_shot_top(e, self.features)[0])]
        second = self.leak_subject.get(template)
        kept = "" if second is None else str(int(survives(e, self.second[second][None], self.class_feature)[0]))
        return {"zs_label": top, "leak_survives": kept}


def zero_shot(scorer, initializer: str, subject: str | None, labels_file: Path, leakage_file: Path) -> ZeroShot:
    from core.prompts import MISUSE_FILE, load_categories, load_labels

    distractors = load_labels(labels_file)
    leak = load_categories(leakage_file, key="subject") if leakage_file.exists() else {}
    misuse = frozenset(load_categories(MISUSE_FILE)) if MISUSE_FILE.exists() else frozenset()
    init_label = article(initializer)
    labels = ([subject] if subject else []) + [init_label] + [d for d in distractors if d not in (subject, init_label)]
    feats = scorer.encode_texts([label_prompt(x) for x in labels])
    seconds = sorted(set(leak.values()))
    second_feats = dict(zip(seconds, scorer.encode_texts([label_prompt(s) for s in seconds]))) if seconds else {}
    return ZeroShot(labels, subject, unit(feats), leak, {k: unit(v) for k, v in second_feats.items()},
                    unit(feats[labels.index(init_label)]), init_label, misuse)


def zero_shot_summaries(rows: Sequence[Mapping[str, Any]], zs: ZeroShot, n_boot: int) -> dict[str, Any]:
    """scores.json's identity (per checkpoint, over the evaluation prompts' images: no misuse probes, no leakage
    prompts), identity_labels and leakage."""
    ident = [r for r in zs.evaluation_rows(rows) if r.get("zs_label", "") != ""]
    identity: list[dict[str, Any]] = []
    if zs.subject is not None and ident:
        labels = np.eye(len(zs.labels))  # one-hot "features": the stored top label decides
        tops = np.stack([labels[zs.labels.index(r["zs_label"])] for r in ident])
        identity = identity_rows([int(r["step"]) for r in ident], tops, labels, subject_index=0, n_boot=n_boot)
    leak = [r for r in rows if r.get("template", "") in zs.leak_subject and r.get("leak_survives", "") != ""]
    leakage = leakage_rows([int(r["step"]) for r in leak], [(r["template"], int(r["seed"])) for r in leak],
                           [r["leak_survives"] == "1" for r in leak], n_boot=n_boot) if leak else []
    labels_meta = {
        "labels": list(zs.labels), "subject": zs.subject, "initializer_class": zs.init_label,
        "template": LABEL_TEMPLATE, "leakage_subjects": dict(sorted(zs.leak_subject.items())),
        "note": (None if zs.subject else "identity needs the subject: set `subject` in card.yaml or pass --subject"),
        "n_identity_images": len(ident), "n_leakage_images": len(leak), "settings": zs.settings(),
        "images": "evaluation prompts only: misuse probes (prompts/eval/misuse.txt) and leakage prompts left out",
    }
    return {"identity": identity, "identity_labels": labels_meta, "leakage": leakage}


# -------------------------------------------------------------------------------------------- token similarity
def run_hidden_states(run, record, texts, components=None) -> dict[str, Any]:
    """TensorFlow side: the run's own text encoder (built from its weights, or `components` handed in) over the
    token prompts of every checkpoint and the comparison texts (core.token_similarity.hidden_states_by_step)."""
    from core.runfolder import sha256_file
    from core.token_similarity import hidden_states_by_step
    from core.tokenizer import PromptTokenizer

    if components is None:
        import core.components

        components = text_encoder_components(core.components.Components, record.weights_arg, record.weights_seed,
                                         record.allow_unverified)
    token = record.token.placeholder
    steps = run.embedding_steps()
    if not steps:
        raise UserError(f"{run.path}: no embeddings/step-*.safetensors; nothing to measure the token with")
    # the same networks, token vectors (by each checkpoint's file hash) and texts give the same states: kept on the
    # networks, so a process that measures a run twice (the demo's torch child, ahead of score) runs the encoder once
    kept = components.__dict__.setdefault("_hidden_states", {})
    key = (token, record.token.vectors, repr(texts), tuple((s, sha256_file(run.embedding_path(s))) for s in steps))
    if key not in kept:
        tokenizer = PromptTokenizer(token, record.token.vectors)
        load = lambda step: run.load_embedding(step)[token]  # noqa: E731
        encoder = components.placeholder_encoder(load(steps[0]))
        kept[key] = hidden_states_by_step(encoder, tokenizer, token, steps, load, texts)
    return kept[key]


@functools.lru_cache(maxsize=1)
def text_encoder_components(components_class, weights_arg: str, weights_seed: int, allow_unverified: bool):
    """The run's weights as `components_class` (core.components.Components, or what a test put in its place), of
    which only the text encoder is ever built here; kept for the process, so a process that scores several runs of
    one base model (the demo) builds it once."""
    from core.weights import WeightSpec

    spec = WeightSpec.parse(weights_arg, weights_seed, allow_unverified)
    return components_class(spec, RESOLUTION_STEP)  # the text encoder does not depend on the picture size


def token_similarity_phase(run, record, token_clip: str, clip_seed: int, device: str, ref_images: list,
                           subject: str | None, distractors: Sequence[str], n_boot: int, components=None,
                           load_token_clip: Callable | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, provenance): one row per checkpoint (every embedding, with or without images)."""
    if not token_clip:
        return [], {"computed": False, "note": TOKEN_CLIP_NOTE}
    from core.clip_score import describe, encode_references
    from core.token_similarity import TextProjection, TextSet, token_similarity

    if load_token_clip is None:
        from core.clip_score import load_clip as load_token_clip
    tclip = load_token_clip(token_clip, seed=clip_seed, device=device)  # torch before TensorFlow
    proj = TextProjection.from_open_clip(tclip.model, tclip.provenance)
    refs = encode_references(tclip, ref_images)
    texts = TextSet.for_run(record.property, subject, record.token.initializer, record.token.vectors, distractors)
    hidden = run_hidden_states(run, record, texts, components)
    width = int(next(iter(hidden["token"].values())).shape[1])
    if width != proj.width:
        raise UserError(f"--token-clip {token_clip}: its text projection takes width {proj.width}, the run's text "
                        f"encoder gives {width}; SD v1's text encoder is CLIP ViT-L/14's, so use ViT-L-14")
    rows = token_similarity(hidden, proj, refs, n_boot=n_boot)
    prov = {"computed": True, "encoder": dict(tclip.provenance), "encoder_label": describe(tclip.provenance),
            "text_encoder": f"the run's own text encoder ({record.weights.describe()})",
            "method": "end-of-text hidden state (first end-of-text id) x the CLIP text projection; prompt-ensembled",
            "templates": list(texts.templates), "init_text": texts.init_text, "subject": subject,
            "distractors": list(distractors), "reference_preprocessing": "open_clip transform of the token CLIP",
            "prompt_variant": "with the token", "n_boot": n_boot,
            "versions": versions("open_clip_torch", "torch", "keras", "keras-cv", "tensorflow-cpu", "tensorflow")}
    return rows, prov


# ---------------------------------------------------------------------------------------- memorisation screen
def memorisation_rows(image_rows: Sequence[Mapping[str, Any]], n_boot: int) -> list[dict[str, Any]]:
    """Per checkpoint from images.csv's cond_gap (blank or missing in older runs: counted as missing)."""
    def gap(r):
        v = r.get("cond_gap")
        return float(v) if v not in (None, "") else None

    return screen_rows([int(r["step"]) for r in image_rows], [gap(r) for r in image_rows], n_boot=n_boot)


# ------------------------------------------------------------------------------------------------- protocol
def protocol_phase(protocol: str, rows: Sequence[Mapping[str, Any]], dino: str | None, images: Callable,
                   ref_images: list, device: str) -> dict[str, Any] | None:
    """CustomConcept101's numbers per checkpoint from score's per-image cosines of `rows` (the evaluation prompts'
    images: `ZeroShot.evaluation_rows`), and DINO over the same images when its weights file is given; None without
    --protocol. `images()` yields the pictures of `rows`, in order."""
    if not protocol:
        return None
    from core import protocol as cc

    dino_means, dino_prov = None, None
    if dino:
        model, tf, dino_prov = cc.load_dino(dino, device=device)
        ref = cc.dino_features(model, tf, ref_images, device=device)
        gen = cc.dino_features(model, tf, images(), device=device)
        dino_means = (unit(gen) @ unit(ref).T).mean(axis=1)
        dino_prov = {**dino_prov, "versions": versions("timm", "torch")}
    per_step = cc.protocol_rows([int(r["step"]) for r in rows], [float(r["clip_t"]) for r in rows],
                                [float(r["clip_i"]) for r in rows], dino_means)
    return {"name": protocol, "rows": per_step, "source": cc.SOURCE,
            "published_textual_inversion": dict(cc.PUBLISHED_TI_BASELINE), "differences": list(cc.DIFFERENCES),
            "formulas": {"clip_t": f"mean of {cc.CLIPSCORE_WEIGHT} * max(cos, 0) vs the prompt with the token removed",
                         "clip_i": "mean cosine over all (generated, reference) pairs",
                         "dino": "mean cosine over all pairs of DINO ViT-S/16 class-token features"},
            "dino": dino_prov or {"computed": False, "note": "pass --dino FILE (DINO ViT-S/16 weights) for DINO"},
            "images": "the evaluation prompts' images: misuse probes (prompts/eval/misuse.txt) and leakage prompts "
                      "left out"}


# ----------------------------------------------------------------------------------------------- provenance
def provenance(clip_prov: Mapping[str, Any], clip_label: str, token_prov: Mapping[str, Any],
               protocol: Mapping[str, Any] | None, run_weights: str) -> dict[str, Any]:
    """For each measure: encoder, tag or file sha256, preprocessing, prompt variant, library versions."""
    enc = {"encoder": clip_label, "model": clip_prov.get("model"), "tag": clip_prov.get("pretrained"),
           "sha256": clip_prov.get("sha256"), "source": clip_prov.get("source"),
           "preprocessing": "open_clip's transform for the model/tag (resize, centre crop, CLIP mean/std)",
           "versions": versions("open_clip_torch", "torch")}
    out = {
        "clip_i": {**enc, "prompt_variant": "none (image vs reference images)"},
        "clip_t": {**enc, "prompt_variant": "the prompt with the token removed"},
        "identity": {**enc, "prompt_variant": f"labels in '{LABEL_TEMPLATE}' (no token)"},
        "leakage": {**enc, "prompt_variant": f"second subject vs initializer class in '{LABEL_TEMPLATE}' (no token)"},
        "memorisation": {"encoder": f"the run's UNet during `generate` ({run_weights})",
                         "preprocessing": f"none: L2 norm of eps(cond) - eps(uncond), mean of the first "
                                          f"{SCREEN_FIRST_STEPS} sampling steps",
                         "prompt_variant": "the generation prompt with the token", "versions": {}},
    }
    if token_prov.get("computed"):
        e = token_prov["encoder"]
        out["token_similarity"] = {"encoder": token_prov["encoder_label"], "model": e.get("model"),
                                   "tag": e.get("pretrained"), "sha256": e.get("sha256"), "source": e.get("source"),
                                   "preprocessing": token_prov["method"], "prompt_variant": "with the token",
                                   "versions": token_prov["versions"]}
    if protocol is not None:
        out["protocol"] = {**enc, "preprocessing": f"CLIP: {CLIP_PREPROCESS}",
                           "prompt_variant": "the prompt with the token removed",
                           "dino": protocol.get("dino")}
    return out


# ------------------------------------------------------------------------------------------- all of it at once
def measures(run, record, config, scorer, rows: Sequence[Mapping[str, Any]], image_rows, ref_images: list,
             zs: ZeroShot, components=None, load_token_clip: Callable | None = None) -> dict[str, Any]:
    """Every ScoresRecord field of issue 21, from the scored rows (scores.csv, in images.csv order), images.csv's
    rows and the run: the zero-shot summaries, the memorisation screen, token similarity (`--token-clip`), the
    protocol numbers (`--protocol`) and the provenance of each."""
    from core.clip_score import describe
    from core.images import load_image
    from core.prompts import load_labels

    out = zero_shot_summaries(rows, zs, config.n_boot)
    out["memorisation"] = memorisation_rows(image_rows, config.n_boot)
    out["token_similarity"], out["token_similarity_provenance"] = token_similarity_phase(
        run, record, config.token_clip, config.clip_seed, config.device, ref_images, zs.subject,
        load_labels(config.identity_labels), config.n_boot, components, load_token_clip)
    evaluation = zs.evaluation_rows(rows)
    out["protocol"] = protocol_phase(config.protocol, evaluation, config.dino,
                                     lambda: [load_image(run.resolve_inside(r["path"], what="image"))
                                              for r in evaluation], ref_images, scorer.device)
    out["provenance"] = provenance(scorer.provenance, describe(scorer.provenance), out["token_similarity_provenance"],
                                   out["protocol"], record.weights.describe())
    out["token_similarity"] = tuple(out["token_similarity"])
    return out


def summary_lines(rec) -> list[str]:
    """What `score` prints about the identity measures of the ScoresRecord `rec` (one line each; the numbers are in
    scores.json)."""
    def fmt(v):
        return "-" if v is None else f"{v:.4f}"

    out = [f"token similarity step {r['step']}: vs references {fmt(r['vs_references'])}, vs subject "
           f"{fmt(r['vs_subject'])}, vs initializer {fmt(r['vs_init'])}" for r in rec.token_similarity]
    if not rec.token_similarity:
        out.append(f"token similarity: {rec.token_similarity_provenance.get('note')}")
    out += [f"identity step {r['step']}: {fmt(r['rate'])} [{fmt(r['ci_lo'])}, {fmt(r['ci_hi'])}] n={r['n']}"
            for r in rec.identity]
    if rec.identity_labels.get("note"):
        out.append(f"identity: {rec.identity_labels['note']}")
    out += [f"leakage step {r['step']}: survival {fmt(r['survival'])} [{fmt(r['ci_lo'])}, {fmt(r['ci_hi'])}] "
            f"n={r['n']}" for r in rec.leakage]
    prot = rec.protocol or {}
    pub = prot.get("published_textual_inversion") or {}
    out += [f"customconcept101 step {r['step']}: CLIP-T {fmt(r['clip_t'])}, CLIP-I {fmt(r['clip_i'])}, "
            f"DINO {fmt(r['dino'])} (published textual inversion: {fmt(pub.get('clip_t'))}, "
            f"{fmt(pub.get('clip_i'))}, {fmt(pub.get('dino'))})" for r in prot.get("rows") or []]
    return out
