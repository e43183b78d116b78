"""The CLIP scorer: loading an open_clip model (pretrained tag, local weights file, or seeded random) with its
provenance, and batched, L2-normalised image and text embeddings.

This is the one place CLIP weights are loaded. torch and open_clip are imported only inside functions, and
loading refuses to run in a process that has already imported TensorFlow (TensorFlow first, then torch, crashes).

`--clip MODEL:TAG` (after open_clip's factory: `pretrained` is a tag *or* a file path):
    ViT-B-32:openai                              a pretrained tag (downloaded once into the Hugging Face cache)
    ViT-B-32:/path/open_clip_model.safetensors   a local weights file (recorded with its sha256)
    ViT-B-32:random                              random weights, `torch.manual_seed(seed)` right before the build
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from core.errors import UserError

DEFAULT_CLIP = "ViT-B-32:openai"  # the textual-inversion paper's protocol (OpenAI CLIP ViT-B/32)
RANDOM = "random"


def parse_clip_spec(spec: str) -> tuple[str, str]:
    """'MODEL:TAG' -> (model, tag). The tag may itself contain ':' (a path), so split at the first one."""
    model, sep, tag = str(spec).partition(":")
    if not sep or not model or not tag:
        raise UserError(f"--clip {spec!r}: expected MODEL:TAG, e.g. {DEFAULT_CLIP}, "
                        "ViT-B-32:/path/open_clip_model.safetensors or ViT-B-32:random")
    return model, tag


def provenance_key(prov: dict[str, Any] | None) -> tuple:
    """What makes two CLIP models the same model (for 'score only new images' on a rerun)."""
    prov = prov or {}
    return tuple(prov.get(k) for k in ("model", "pretrained", "source", "sha256", "seed"))


def describe(prov: dict[str, Any] | None) -> str:
    """One line naming a CLIP model and its weights, for messages and labels."""
    if not prov:
        return "unknown CLIP model"
    src = prov.get("source")
    if src == "random":
        return f"{prov.get('model')} random weights (seed {prov.get('seed')})"
    if src == "local":
        return f"{prov.get('model')} weights {prov.get('pretrained')} (sha256 {str(prov.get('sha256'))[:12]})"
    return f"{prov.get('model')}:{prov.get('pretrained')}"


def weights_label(prov: dict[str, Any]) -> str:
    """The short `clip_weights` value written on every score row."""
    if prov["source"] == "random":
        return RANDOM
    if prov["source"] == "local":
        return f"{Path(prov['pretrained']).name}@{prov['sha256'][:12]}"
    return prov["pretrained"]


@dataclass
class ClipScorer:
    """An open_clip model with its preprocessing, tokenizer and provenance; encodes in batches."""

    model: Any
    preprocess: Callable
    tokenizer: Callable
    provenance: dict[str, Any]
    device: str = "cpu"

    @property
    def is_random(self) -> bool:
        return self.provenance.get("source") == RANDOM

    def encode_images(self, images: Sequence, batch_size: int = 16, progress: Callable[[int], None] | None = None
                      ) -> np.ndarray:
        """PIL RGB images -> float32 [n, d] unit vectors. `progress(k)` is called after each batch of k images."""
        import torch

        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            x = torch.stack([self.preprocess(im) for im in chunk]).to(self.device)
            with torch.inference_mode():
                f = self.model.encode_image(x).float()
            out.append(torch.nn.functional.normalize(f, dim=-1).cpu().numpy())
            if progress:
                progress(len(chunk))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Strings -> float32 [n, d] unit vectors."""
        import torch

        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i:i + batch_size])).to(self.device)
            with torch.inference_mode():
                f = self.model.encode_text(tokens).float()
            out.append(torch.nn.functional.normalize(f, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @property
    def dim(self) -> int:
        return int(getattr(self.model, "embed_dim", 0) or self.model.text_projection.shape[-1])


def encode_references(scorer, images: Sequence, batch_size: int = 16) -> np.ndarray:
    """`scorer.encode_images` for pictures encoded again and again (a run's reference and held-out sets): each
    picture's feature is kept on the scorer by its pixels, so a process that scores and audits (the demo) encodes each
    reference once per model."""
    import hashlib

    kept = scorer.__dict__.setdefault("_reference_features", {})
    keys = [hashlib.sha256(im.mode.encode() + str(im.size).encode() + im.tobytes()).hexdigest() for im in images]
    todo = [(k, im) for k, im in dict(zip(keys, images)).items() if k not in kept]
    if todo:
        kept.update(zip([k for k, _ in todo], scorer.encode_images([im for _, im in todo], batch_size=batch_size)))
    return np.stack([kept[k] for k in keys]) if keys else scorer.encode_images([], batch_size=batch_size)


# ---------------------------------------------------------------------------------------------- loading
def _refuse_after_tensorflow() -> None:
    if "tensorflow" in sys.modules and "torch" not in sys.modules:
        raise UserError("CLIP scoring must run in a process that has not imported TensorFlow (importing torch "
                        "after it crashes); run `python -m core score ...` on its own")


def _cached_tag_file(cfg: dict) -> str | None:
    """The tag's weights file if it is already in the Hugging Face cache (no network), else None."""
    hub = cfg.get("hf_hub") or ""
    if not hub:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    except ImportError:
        return None
    model_id, filename = os.path.split(hub)  # 'org/repo/' -> default file name, as open_clip does
    filename = filename or HF_WEIGHTS_NAME
    names = [filename]
    if filename == HF_WEIGHTS_NAME:
        names.insert(0, HF_SAFE_WEIGHTS_NAME)
    elif filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    for name in names:
        hit = try_to_load_from_cache(model_id, name)
        if isinstance(hit, str) and Path(hit).is_file():
            return hit
    return None


def _offline_message(model: str, tag: str, err: Exception) -> str:
    return (f"--clip {model}:{tag}: cannot get the pretrained weights (offline, or the download failed: "
            f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}). Download "
            f"open_clip_model.safetensors for this tag on a machine with network and pass it as a file, "
            f"e.g. --clip {model}:/path/open_clip_model.safetensors, or use --clip {model}:random for a "
            "pipeline check")


def resolve_tag_file(model: str, tag: str, cfg: dict) -> str:
    """Path of the weights for a pretrained tag: from the cache without network, else downloaded."""
    cached = _cached_tag_file(cfg)
    if cached:
        return cached
    from open_clip import pretrained as oc_pretrained

    print(f"downloading CLIP weights for {model}:{tag} ...", file=sys.stderr)
    try:
        path = oc_pretrained.download_pretrained(cfg)
    except Exception as e:  # huggingface_hub/urllib raise many kinds; all mean "no weights here"
        raise UserError(_offline_message(model, tag, e)) from e
    if not path or not Path(path).is_file():
        raise UserError(_offline_message(model, tag, FileNotFoundError("no file returned")))
    return path


def load_clip(spec: str = DEFAULT_CLIP, seed: int = 0, device: str = "auto") -> ClipScorer:
    """Build the CLIP scorer named by `spec` ('MODEL:TAG'; see the module docstring) in eval mode. A random model is
    built once per process and setting (the demo scores and audits two runs with the same ones)."""
    if parse_clip_spec(spec)[1] == RANDOM:
        return _random_clip(spec, int(seed), device)
    return _load_clip(spec, seed, device)


@functools.lru_cache(maxsize=4)
def _random_clip(spec: str, seed: int, device: str) -> ClipScorer:
    return _load_clip(spec, seed, device)


def _load_clip(spec: str, seed: int, device: str) -> ClipScorer:
    """load_clip, uncached.

    Provenance: {"model", "pretrained" (tag | file path | "random"), "source" ("open_clip-tag" | "local" |
    "random"), "sha256" (weights file; None for random), "seed" (random only; else None)}."""
    from core.runfolder import sha256_file

    model_name, tag = parse_clip_spec(spec)
    _refuse_after_tensorflow()
    import open_clip
    import torch

    if model_name not in open_clip.list_models():
        raise UserError(f"--clip {spec}: unknown open_clip model {model_name!r} (e.g. ViT-B-32, ViT-L-14; "
                        "see open_clip.list_models())")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs: dict[str, Any] = {}
    if tag == RANDOM:
        prov = {"model": model_name, "pretrained": RANDOM, "source": "random", "sha256": None, "seed": int(seed)}
        torch.manual_seed(int(seed))  # right before the build, so anyone rebuilds the same model
        pretrained = None
    else:
        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        if cfg:
            path = resolve_tag_file(model_name, tag, cfg)
            prov = {"model": model_name, "pretrained": tag, "source": "open_clip-tag", "sha256": sha256_file(path),
                    "seed": None}
            # what open_clip's factory applies for a tag, applied to the cached file: the tag's preprocessing,
            # and QuickGELU where the tag was trained with it (OpenAI's weights), which the factory only warns about
            for ours, theirs in (("image_mean", "mean"), ("image_std", "std"),
                                 ("image_interpolation", "interpolation"), ("image_resize_mode", "resize_mode")):
                if cfg.get(theirs) is not None:
                    kwargs[ours] = cfg[theirs]
            if cfg.get("quick_gelu"):
                kwargs["force_quick_gelu"] = True
            pretrained = path
        elif Path(tag).is_file():
            path = str(Path(tag).resolve())
            prov = {"model": model_name, "pretrained": path, "source": "local", "sha256": sha256_file(path),
                    "seed": None}
            pretrained = path
        else:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)[:6])
            raise UserError(f"--clip {spec}: {tag!r} is neither a pretrained tag of {model_name} ({tags}, ...) nor "
                            f"an existing weights file; or use {model_name}:random")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained,
                                                                     device=device, **kwargs)
    except (RuntimeError, KeyError, ValueError, OSError) as e:
        if prov["source"] == "random":
            raise
        raise UserError(f"--clip {spec}: cannot load the weights into {model_name} ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:300] if str(e) else ''}); check that the file is an open_clip "
                        f"{model_name} checkpoint") from e
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    return ClipScorer(model=model, preprocess=preprocess, tokenizer=tokenizer, provenance=prov, device=device)
