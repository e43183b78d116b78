"""CLIP tokenizer for SD v1.4 (KerasCV's SimpleTokenizer on the BPE file shipped with open_clip; no download)
and the placeholder-token rules: validation, adding it, encoding prompts that contain it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from core.errors import UserError

MAX_LENGTH = 77  # CLIP's context length, including start and end tokens
VOCAB_SIZE = 49408
END_OF_TEXT = 49407
# sha256 KerasCV 0.9.0 publishes for bpe_simple_vocab_16e6.txt.gz (open_clip ships the identical file)
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
_TOKEN_RE = re.compile(r"^[a-z0-9<>\-_.*|\[\]()~]+$")


def bpe_path() -> Path:
    """open_clip's copy of CLIP's BPE merges, found without importing open_clip (which would import torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("open_clip_torch is not installed; it ships the CLIP vocabulary "
                        "(pip install -r requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.exists():
        raise UserError(f"{path}: CLIP vocabulary missing from open_clip; reinstall open_clip_torch")
    return path


def placeholder_tokens(token: str, n_vectors: int) -> list[str]:
    """diffusers' naming for multi-vector tokens: <t>, <t>_1, ..., <t>_{n-1}."""
    return [token] + [f"{token}_{i}" for i in range(1, n_vectors)]


def validate_token(token: str) -> None:
    if not token or any(c.isspace() for c in token):
        raise UserError(f"--token {token!r}: must be one word without spaces, e.g. '<tom-cat>'")
    if token != token.lower():
        raise UserError(f"--token {token!r}: the CLIP tokenizer lower-cases prompts; use {token.lower()!r}")
    if not _TOKEN_RE.match(token):
        raise UserError(f"--token {token!r}: use lower-case letters, digits and <>-_. only, e.g. '<tom-cat>'")


class PromptTokenizer:
    """SimpleTokenizer plus the placeholder token(s), which take ids VOCAB_SIZE, VOCAB_SIZE+1, ..."""

    def __init__(self, token: str | None = None, n_vectors: int = 1):
        from keras_cv.models.stable_diffusion import SimpleTokenizer

        self.base = SimpleTokenizer(bpe_path=str(bpe_path()))
        self.token = token
        self.n_vectors = n_vectors
        self.placeholder_ids: list[int] = []
        if token is not None:
            validate_token(token)
            if token in self.base.vocab or f"{token}</w>" in self.base.vocab:
                raise UserError(f"--token {token!r} is already in the CLIP vocabulary; "
                                "pick a new word like '<tom-cat>'")
            self.base.add_tokens(token)
            self.placeholder_ids = list(range(VOCAB_SIZE, VOCAB_SIZE + n_vectors))
            self._token_id = self.base.encoder[token]
            if self._token_id != VOCAB_SIZE:  # a real check: a KerasCV change here would shift every id
                raise RuntimeError(f"placeholder {token!r} got id {self._token_id}, expected {VOCAB_SIZE} (the first "
                                   "added token); the installed keras_cv SimpleTokenizer changed how add_tokens works")

    def initializer_id(self, word: str) -> int:
        ids = self.base.encode(word)[1:-1]
        if len(ids) != 1:
            pieces = " ".join(self.base.decoder[i] for i in ids) or "(nothing)"
            raise UserError(f"--init {word!r} tokenizes to {len(ids)} tokens ({pieces}); choose a word that is "
                            "exactly one token, e.g. 'cat'")
        return ids[0]

    def decode_id(self, token_id: int) -> str:
        return self.base.decoder.get(int(token_id), f"<{token_id}>")

    def encode(self, prompt: str) -> list[int]:
        """Token ids padded to 77 with end-of-text; the placeholder expands to its n vectors."""
        ids = self.base.encode(prompt)
        if self.token is not None and self.n_vectors > 1:
            out = []
            for i in ids:
                out.extend(self.placeholder_ids if i == self._token_id else [i])
            ids = out
        if len(ids) > MAX_LENGTH:
            raise UserError(f"prompt {prompt!r} is {len(ids)} tokens long (with start/end tokens); the limit is "
                            f"{MAX_LENGTH}; shorten it")
        return ids + [END_OF_TEXT] * (MAX_LENGTH - len(ids))
