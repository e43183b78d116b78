"""The learned token in CLIP's own text space, without generating an image.

SD v1's text encoder *is* CLIP ViT-L/14's text transformer, and KerasCV's `TextEncoder` returns its final
layer-normed hidden states. CLIP's text feature of a prompt is the hidden state at the end-of-text position times
the text projection (open_clip `encode_text`: `ln_final(x)[eot] @ text_projection`). So putting the learned
vectors into prompts such as "a photo of {}", running them through *the run's own text encoder* and applying
ViT-L/14's projection gives the token's CLIP text feature at every checkpoint.

The end-of-text position is the first END_OF_TEXT id, not CLIP's argmax: the placeholder's ids (49408, ...) are
above END_OF_TEXT (49407), so argmax would pick the token.

Two halves, because TensorFlow and torch must not meet in the wrong order in one process:
  `pooled_hidden_states` (TensorFlow side: the run's text encoder, any weights, tiny stand-ins in tests) and
  `TextProjection` (torch side: open_clip's `text_projection`, loaded through core.clip_score).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.identity import article, ensemble, token_similarity_row, unit
from core.tokenizer import END_OF_TEXT

TEMPLATES = {  # prompts the token (and every text it is compared with) is put into; ensembled as CLIP does
    "object": ("a photo of {}", "a picture of {}", "an illustration of {}"),
    "style": ("a painting in the style of {}", "a picture in the style of {}", "an illustration in the style of {}"),
}


def eot_positions(token_ids: np.ndarray) -> np.ndarray:
    """Per row, the index of the first END_OF_TEXT id (every encoded prompt has one: padding is END_OF_TEXT)."""
    ids = np.asarray(token_ids)
    is_eot = ids == END_OF_TEXT
    if not is_eot.any(axis=1).all():
        raise ValueError("a prompt without an end-of-text id: encode prompts with core.tokenizer.PromptTokenizer")
    return np.argmax(is_eot, axis=1)


def pooled_hidden_states(encoder, token_ids: np.ndarray) -> np.ndarray:
    """[B, 77] ids -> [B, width]: the text encoder's (final layer-normed) hidden state at each end-of-text position.
    `encoder` is a core.components.PlaceholderTextEncoder holding the vectors to measure."""
    ids = np.asarray(token_ids, dtype="int32")
    hidden = np.asarray(encoder.encode(ids), dtype=np.float32)
    return hidden[np.arange(len(ids)), eot_positions(ids)]


@dataclass
class TextSet:
    """The texts a token is compared with, each filled into the same templates: the subject description (or None),
    the initializer word repeated once per vector (the step-0 token's exact twin) and the distractor labels."""

    templates: tuple[str, ...]
    subject: str | None
    init_text: str
    distractors: tuple[str, ...]

    @classmethod
    def for_run(cls, prop: str, subject: str | None, initializer: str, n_vectors: int,
                distractors: Sequence[str]) -> TextSet:
        return cls(TEMPLATES.get(prop, TEMPLATES["object"]), subject or None, " ".join([initializer] * n_vectors),
                   tuple(distractors))

    def prompts(self, text: str) -> list[str]:
        return [t.format(text) for t in self.templates]


def hidden_states_by_step(encoder, tokenizer, token: str, steps: Sequence[int], load_vectors,
                          texts: TextSet) -> dict[str, Any]:
    """TensorFlow side. {"token": {step: [T, width]}, "subject": [T, width] | None, "init": [T, width],
    "distractors": {label: [T, width]}}: pooled hidden states of every template, for the token at each checkpoint
    (`load_vectors(step)` gives its vectors) and for each comparison text (no token, so any vectors do)."""

    def pooled(prompts: list[str]) -> np.ndarray:
        return pooled_hidden_states(encoder, np.asarray([tokenizer.encode(p) for p in prompts]))

    out: dict[str, Any] = {"token": {}}
    for step in steps:
        encoder.set_vectors(load_vectors(step))
        out["token"][int(step)] = pooled(texts.prompts(token))
    out["subject"] = pooled(texts.prompts(texts.subject)) if texts.subject else None
    out["init"] = pooled(texts.prompts(texts.init_text))
    out["distractors"] = {label: pooled(texts.prompts(label)) for label in texts.distractors}
    return out


@dataclass
class TextProjection:
    """CLIP's text projection as numpy: [B, width] pooled hidden states -> [B, dim] features (not normalised)."""

    weight: np.ndarray  # [width, dim]
    bias: np.ndarray | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_open_clip(cls, model, provenance: Mapping[str, Any] | None = None) -> TextProjection:
        """open_clip keeps it as a [width, dim] Parameter (`x @ text_projection`) or, in some models, a Linear."""
        proj = model.text_projection
        if hasattr(proj, "weight"):
            bias = None if proj.bias is None else proj.bias.detach().cpu().numpy()
            return cls(proj.weight.detach().cpu().numpy().T.astype(np.float64), bias, dict(provenance or {}))
        return cls(proj.detach().cpu().numpy().astype(np.float64), None, dict(provenance or {}))

    @property
    def width(self) -> int:
        return int(self.weight.shape[0])

    def __call__(self, pooled: np.ndarray) -> np.ndarray:
        out = np.asarray(pooled, dtype=np.float64) @ self.weight
        return out if self.bias is None else out + self.bias


def token_similarity(hidden: Mapping[str, Any], projection: TextProjection, reference_features: np.ndarray,
                     n_boot: int) -> list[dict[str, Any]]:
    """One row per checkpoint (core.identity.token_similarity_row) from `hidden_states_by_step`'s output."""
    def feat(h: np.ndarray) -> np.ndarray:  # prompt-ensembled unit feature
        return ensemble(unit(projection(h)))

    subject = feat(hidden["subject"]) if hidden.get("subject") is not None else None
    init = feat(hidden["init"])
    distractors = {label: feat(h) for label, h in hidden["distractors"].items()}
    return [token_similarity_row(step, feat(h), reference_features, subject, init, distractors, n_boot=n_boot)
            for step, h in sorted(hidden["token"].items())]


def init_label(initializer: str) -> str:
    """The initializer class as a zero-shot label ('a cat')."""
    return article(initializer)
