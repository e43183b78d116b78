"""A run's checkpoint embedding files (embeddings/step-NNNNNN.safetensors): read and validated where they are read.

Other tools' layouts (diffusers, A1111 .pt/.bin) are read by core/embedfile.py, which reuses `validate_step_embedding`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import UserError

MAX_EMBEDDING_BYTES = 64 << 20  # a textual-inversion file holds a few vectors of 768/1024 floats: ~KB


def read_step_embedding(path: Path, dim: int | None = None) -> dict[str, np.ndarray]:
    """A run's own checkpoint file (embeddings/step_N.safetensors; other tools' layouts: core/embedfile.py) ->
    {token: float32[n_vectors, dim]}, validated where it is read: a real safetensors
    file of sane size, every tensor 2-D (n_vectors >= 1) with the same width (`dim` when given), floating point,
    all values finite. Anything else is a one-line UserError naming the file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise UserError(f"{path}: empty embedding file (0 bytes); delete it and re-run the step that writes it")
        if size > MAX_EMBEDDING_BYTES:
            raise UserError(f"{path}: {size:,} bytes is far too large for a textual-inversion embedding")
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the embedding ({e.strerror or e})") from e
    try:
        tensors = dict(load(data))
    except (SafetensorError, ValueError, TypeError, OverflowError) as e:
        raise UserError(f"{path}: not a safetensors embedding ({' '.join(str(e).split())[:160]})") from e
    return validate_step_embedding(tensors, str(path), dim)


def validate_step_embedding(tensors: Mapping[str, Any], source: str, dim: int | None = None) -> dict[str, np.ndarray]:
    """The checks of `read_step_embedding` on tensors already in memory: returns float32 copies."""
    if not tensors:
        raise UserError(f"{source}: holds no tensors; expected {{token: [n_vectors, dim]}}")
    out, widths = {}, set()
    for name, t in tensors.items():
        a = np.asarray(t)
        if a.dtype.kind != "f":
            raise UserError(f"{source}: tensor {name!r} has dtype {a.dtype}; an embedding is floating point")
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
            raise UserError(f"{source}: tensor {name!r} has shape {list(a.shape)}; expected [n_vectors, dim]")
        if dim is not None and a.shape[1] != dim:
            raise UserError(f"{source}: tensor {name!r} is {a.shape[1]} wide; this text encoder needs {dim}")
        if not np.isfinite(a).all():
            raise UserError(f"{source}: tensor {name!r} holds NaN or infinite values; it cannot be used")
        widths.add(a.shape[1])
        out[name] = a.astype(np.float32)
    if len(widths) > 1:
        raise UserError(f"{source}: tensors of different widths {sorted(widths)}")
    return out

