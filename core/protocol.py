"""Protocol-compatible numbers: CustomConcept101's evaluation (`score --protocol customconcept101`), restated
from its `customconcept101/evaluate.py` (adobe-research/custom-diffusion), and its published textual-inversion
baseline, so our numbers can be put beside theirs with what differs said.

    CLIP-T = mean over images of 2.5 * max(cos(E_img(image), E_txt(prompt with the token removed)), 0)
    CLIP-I = mean over all (generated, reference) pairs of cos(E_img(generated), E_img(reference))
    DINO   = the same mean pairwise cosine with DINO ViT-S/16's class-token feature

CLIP is OpenAI's ViT-B/32 (224 px: resize the short side to 224 bicubic, centre crop, CLIP's mean/std) - the same
model and preprocessing as open_clip's `ViT-B-32:openai`. DINO is `dino_vits16` (resize to 256 bicubic, centre
crop 224, ImageNet mean/std); here its weights come only from a local file (`--dino FILE`), never downloaded.

The CLIP numbers need no new network call: the per-image cosines are `score`'s clip_t and clip_i (CLIP-I of an
image is its mean cosine over the references, and every image has the same references, so the mean of those
means is the mean over all pairs). Torch is imported only inside the DINO functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError

PROTOCOLS = ("", "customconcept101")
CLIPSCORE_WEIGHT = 2.5  # CLIPScore's w (Hessel et al. 2021), as evaluate.py's get_clip_score(w=2.5)
PROTOCOL_CLIP_MODEL = "ViT-B-32"
SOURCE = ("CustomConcept101 (Kumari et al., CVPR 2023, 'Multi-Concept Customization of Text-to-Image Diffusion'), "
          "github.com/adobe-research/custom-diffusion, customconcept101/README.md and evaluate.py")
# their single-concept table, Textual Inversion row, 200 DDPM steps (README 'Results')
PUBLISHED_TI_BASELINE = {"clip_t": 0.6126, "clip_i": 0.7524, "dino": 0.5111}
DIFFERENCES = (
    ("their 101 real-world concepts (3-15 images each) and 20 prompts per concept, ours one character or style "
     "and our evaluation prompts"),
    "their images from 200 DDPM steps, ours from our DDIM sampler (`generate --steps`)",
    "their CLIP image features in float16 on CUDA, ours in float32",
    "their DINO from torch.hub, ours from the local file given (sha256 recorded)",
    "different numbers of images per checkpoint (n is given with every row)",
)
DINO_ARCH = "vit_small_patch16_224"  # timm's ViT-S/16: the same layer names and class-token output as dino_vits16
DINO_PREPROCESS = "resize 256 bicubic, centre crop 224, ImageNet mean/std"
CLIP_PREPROCESS = "resize 224 bicubic, centre crop 224, CLIP mean/std (open_clip's ViT-B-32:openai transform)"


def clip_t(cosines: Sequence[float]) -> float:
    """CLIPScore: mean of 2.5 * max(cos, 0) over the images."""
    c = np.asarray(cosines, dtype=np.float64)
    return float(np.mean(CLIPSCORE_WEIGHT * np.clip(c, 0.0, None))) if len(c) else float("nan")


def mean_pairwise(generated: np.ndarray, references: np.ndarray) -> float:
    """Mean cosine over every (generated, reference) pair of unit features (evaluate.py's clipeval_image)."""
    g = np.asarray(generated, dtype=np.float64)
    r = np.asarray(references, dtype=np.float64)
    if not len(g) or not len(r):
        return float("nan")
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    r = r / np.linalg.norm(r, axis=1, keepdims=True)
    return float(np.mean(g @ r.T))


def protocol_rows(steps: Sequence[int], clip_t_cosines: Sequence[float], clip_i_means: Sequence[float],
                  dino_means: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """One row per checkpoint: step, n, clip_t (CLIPScore), clip_i (mean pairwise) and dino (or None), from the
    per-image cosines `score` computed (clip_i_means[i] = image i's mean cosine over the references)."""
    steps = np.asarray(steps, dtype=int)
    ct, ci = np.asarray(clip_t_cosines, dtype=np.float64), np.asarray(clip_i_means, dtype=np.float64)
    dn = None if dino_means is None else np.asarray(dino_means, dtype=np.float64)
    rows = []
    for step in sorted(set(steps.tolist())):
        m = steps == step
        rows.append({"step": int(step), "n": int(m.sum()), "clip_t": clip_t(ct[m]), "clip_i": float(ci[m].mean()),
                     "dino": None if dn is None else float(dn[m].mean())})
    return rows


def check_protocol(protocol: str, clip_model: str, dino: str | None) -> None:
    """One-line errors for a protocol the options cannot follow (before any model is loaded)."""
    if protocol not in PROTOCOLS:
        raise UserError(f"--protocol {protocol!r}: use one of {', '.join(p for p in PROTOCOLS if p)}")
    if protocol and clip_model != PROTOCOL_CLIP_MODEL:
        raise UserError(f"--protocol {protocol}: the protocol scores with CLIP {PROTOCOL_CLIP_MODEL}; pass --clip "
                        f"{PROTOCOL_CLIP_MODEL}:openai (or a local {PROTOCOL_CLIP_MODEL} file), not {clip_model}")
    if dino and not protocol:
        raise UserError("--dino FILE is used only with --protocol customconcept101; add it or drop --dino")
    if dino and not Path(dino).is_file():
        raise UserError(f"--dino {dino}: not a file; give DINO ViT-S/16 weights (dino_deitsmall16_pretrain.pth or a "
                        "safetensors file of the same state dict)")


# ----------------------------------------------------------------------------------------------- DINO (torch)
def load_dino(path: str | Path, device: str = "cpu"):
    """(model, transform, provenance) for DINO ViT-S/16 from a local state-dict file (.pth/.pt via torch.load with
    weights_only, or .safetensors). A file that does not fit the architecture is a one-line error."""
    import timm
    import torch
    from torchvision import transforms

    from core.runfolder import sha256_file

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch/safetensors raise many kinds for a damaged or foreign file
        raise UserError(f"--dino {path}: cannot read it as a state dict ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if isinstance(state, dict) and "teacher" in state and isinstance(state["teacher"], dict):
        state = {k.removeprefix("backbone."): v for k, v in state["teacher"].items()}  # a DINO training checkpoint
    model = timm.create_model(DINO_ARCH, pretrained=False, num_classes=0)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or [k for k in unexpected if not k.startswith("head")]:
        raise UserError(f"--dino {path}: not DINO ViT-S/16 weights ({len(missing)} missing, e.g. "
                        f"{(missing or unexpected)[:3]}); give dino_deitsmall16_pretrain.pth")
    model.eval().to(device)
    tf = transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])
    prov = {"model": "DINO ViT-S/16", "architecture": f"timm {DINO_ARCH}", "file": str(path.resolve()),
            "sha256": sha256_file(path), "preprocessing": DINO_PREPROCESS}
    return model, tf, prov


def dino_features(model, transform, images: Sequence, batch_size: int = 16, device: str = "cpu") -> np.ndarray:
    """PIL RGB images -> [n, 384] class-token features (not normalised; mean_pairwise normalises)."""
    import torch

    out = []
    for i in range(0, len(images), batch_size):
        x = torch.stack([transform(im.convert("RGB")) for im in images[i:i + batch_size]]).to(device)
        with torch.inference_mode():
            out.append(model(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)
