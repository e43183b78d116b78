"""Embedding files in the layouts other tools use: one writer per layout, and one safe reader that turns every
accepted layout into `EmbeddingFile(token, float32[n, 768], metadata)` (after diffusers'
`_retrieve_tokens_and_embeddings`: validate once, then everything downstream has one shape).

Layouts (which tool loads which, with default settings, is the README's export table):
- diffusers   `{token: [768]}` for one vector (InvokeAI's install check reads shape[0] as the width, so a
              `[1, 768]` tensor fails there), `{token: [n, 768]}` for several; safetensors.
- A1111 .pt   `{"string_to_token": {"*": 265}, "string_to_param": {"*": [n, 768]}, "name", "step",
              "sd_checkpoint", "sd_checkpoint_name"}` as its `Embedding.save` writes, in a zip whose members
              A1111's safe unpickler accepts (core/torchfile.py).
- emb_params  `{"emb_params": [n, 768]}` safetensors with ModelSpec metadata: kohya's layout, loaded by A1111,
              ComfyUI and InvokeAI for any n.
Every file carries the same provenance (`tomcat_ti.*` keys, made by core/export.py).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from core.errors import UserError

SD1_WIDTH = 768  # CLIP ViT-L/14 token embedding width (SD v1.x)
MAX_VECTORS = 75  # CLIP's 77-token context minus start/end: a token cannot expand to more vectors
MAX_FILE_BYTES = 8 << 20  # 75 x 768 float32 is 230 KB; anything near this is not an SD v1 embedding
# diffusers' textual_inversion.py run on a CPU saves `weight[min_id:max_id + 1]`, a view, and torch writes the whole
# 49,409-row storage (145 MiB): such .bin/.pt files are read up to this size, only the viewed rows (an SD 1.x
# checkpoint is >= 1.6 GiB even pruned to fp16, and is still refused)
MAX_VIEW_FILE_BYTES = 256 << 20
OTHER_WIDTHS = {1024: "an SD 2.x embedding (OpenCLIP ViT-H, width 1024)",
                1280: "an SDXL embedding (clip_g, width 1280)"}
META_PREFIX = "tomcat_ti."


def clean(text: Any, limit: int = 120) -> str:
    """`text` safe to print on a terminal: control characters (escape codes included) shown as \\x.. escapes."""
    s = str(text)
    out = "".join(c if unicodedata.category(c)[0] != "C" else c.encode("unicode_escape").decode("ascii")
                  for c in s)
    return out if len(out) <= limit else out[: limit - 3] + "..."


@dataclass
class EmbeddingFile:
    """What an embedding file holds, validated: the token it names (None if it names none), its vectors, its
    layout and its metadata (str -> str: safetensors metadata, or the .pt's plain fields)."""

    token: str | None
    vectors: np.ndarray  # float32[n, 768], finite
    layout: str  # "diffusers" | "a1111-pt" | "original-ti" | "emb_params"
    metadata: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- write
def _st_bytes(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> bytes:
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
                metadata={k: str(v) for k, v in metadata.items()})


def diffusers_bytes(token: str, vectors: np.ndarray, metadata: Mapping[str, str]) -> bytes:
    """`learned_embeds.safetensors`: one tensor under the token; 1-D [768] for a single vector (see above)."""
    return _st_bytes({token: vectors[0] if len(vectors) == 1 else vectors}, metadata)


def emb_params_bytes(vectors: np.ndarray, metadata: Mapping[str, str]) -> bytes:
    """kohya / A1111 `.safetensors`: the single tensor `emb_params` [n, 768] (A1111 refuses files with more than
    one tensor; ComfyUI and InvokeAI take the first)."""
    return _st_bytes({"emb_params": vectors}, metadata)


def a1111_pt_bytes(vectors: np.ndarray, name: str, step: int, sd_checkpoint: str | None,
                   sd_checkpoint_name: str | None, provenance: Mapping[str, str]) -> bytes:
    """The dict A1111's `Embedding.save` writes, plus our provenance under `tomcat_ti` (plain strings)."""
    from core.torchfile import write_pt

    return write_pt({"string_to_token": {"*": 265}, "string_to_param": {"*": np.asarray(vectors, np.float32)},
                     "name": name, "step": int(step), "sd_checkpoint": sd_checkpoint,
                     "sd_checkpoint_name": sd_checkpoint_name, "tomcat_ti": dict(provenance)})


# ----------------------------------------------------------------------------------------------------- read
def read_embedding_file(path: Path) -> EmbeddingFile:
    """Any layout above (and diffusers `.bin`, original textual-inversion `.pt`) -> EmbeddingFile, or one
    clear UserError. Never unpickles anything but tensors and plain data (core/torchfile.py)."""
    path = Path(path)
    shown = clean(path)
    if not path.is_file():
        raise UserError(f"{shown}: file not found")
    size = path.stat().st_size
    suffix = path.suffix.lower()
    if size > (MAX_VIEW_FILE_BYTES if suffix in (".bin", ".pt") else MAX_FILE_BYTES):
        raise UserError(f"{shown}: {size / 2**20:.1f} MiB is far too large for a textual-inversion embedding "
                        f"(at most {MAX_VECTORS} x {SD1_WIDTH} floats, about 0.2 MiB); is it a model checkpoint?")
    try:
        if suffix == ".safetensors":
            return _from_safetensors(path)
        if suffix in (".pt", ".bin", ".ckpt"):
            return _from_pickle(path)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - damaged file: one line, never a traceback or raw library message with escapes
        raise UserError(f"{shown}: cannot read embedding ({type(e).__name__}: {clean(e)})") from None
    raise UserError(f"{shown}: unknown embedding file type {clean(suffix) or '(none)'}; use .safetensors, .pt or .bin")


def _from_safetensors(path: Path) -> EmbeddingFile:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        metadata = dict(f.metadata() or {})
        keys = list(f.keys())
        _reject_other_models(path, keys, {k: f.get_slice(k).get_shape() for k in keys})
        if "emb_params" in keys:
            return _validated(path, _named_token(metadata), f.get_tensor("emb_params"), "emb_params", metadata)
        if len(keys) != 1:
            raise UserError(f"{clean(path)}: holds {len(keys)} tensors ({clean(', '.join(keys[:5]))}); an embedding "
                            "file holds one token's vectors")
        token = _named_token(metadata) or keys[0]
        return _validated(path, token, f.get_tensor(keys[0]), "diffusers", metadata)


def _viewed_rows(path: Path) -> dict[str, np.ndarray]:
    """{token: rows} of a large `{token: tensor}` pickle whose tensor is a view into a bigger storage (the whole
    vocabulary table): only the viewed elements are read (core.ckptfile's lazy allow-list reader)."""
    from core.ckptfile import NotACheckpoint, open_tensors

    try:
        tf = open_tensors(path)
    except NotACheckpoint as e:
        raise UserError(f"{clean(path)}: not loaded: {clean(e)}") from None
    big = [k for k, e in tf.entries.items() if int(np.prod(e.shape)) > MAX_VECTORS * 1024]
    if big or not tf.entries:
        raise UserError(f"{clean(path)}: {path.stat().st_size / 2**20:.1f} MiB holding "
                        f"{len(tf.entries)} tensor(s) like {clean(big[0] if big else '(none)')}: not a "
                        "textual-inversion embedding; is it a model checkpoint?")
    return {k: tf.read(k).astype(np.float32) for k in tf.entries}


def _from_pickle(path: Path) -> EmbeddingFile:
    import zipfile

    from core.torchfile import UnsafePickle, read_pt

    try:
        data = _viewed_rows(path) if path.stat().st_size > MAX_FILE_BYTES else read_pt(path.read_bytes(),
                                                                                          MAX_FILE_BYTES)
    except zipfile.BadZipFile:
        raise UserError(f"{clean(path)}: not a PyTorch zip file (older torch formats and other pickles are not "
                        "read, since unpickling them can run code); re-save it with a current PyTorch or as "
                        ".safetensors") from None
    except UnsafePickle as e:
        raise UserError(f"{clean(path)}: not loaded: the file {clean(e)} (unpickling it could run code); "
                        "if you trust it, convert it to .safetensors") from None
    if not isinstance(data, dict):
        raise UserError(f"{clean(path)}: holds a {type(data).__name__}, not an embedding dict")
    if "string_to_param" in data:  # A1111 / original textual inversion
        params = data["string_to_param"]
        items = list(params.items()) if hasattr(params, "items") else []
        if len(items) != 1:
            raise UserError(f"{clean(path)}: string_to_param holds {len(items)} entries; expected one token")
        ours = data.get("tomcat_ti") if isinstance(data.get("tomcat_ti"), dict) else {}
        metadata = {f"{META_PREFIX}{k}": str(v) for k, v in ours.items()}
        for k in ("name", "step", "sd_checkpoint", "sd_checkpoint_name"):
            if isinstance(data.get(k), (str, int)) and not isinstance(data.get(k), bool):
                metadata[k] = str(data[k])
        token = _named_token(metadata)
        if token is None and isinstance(data.get("name"), str) and data["name"].strip():
            name = data["name"].strip()
            token = name if name.startswith("<") else f"<{name}>"  # A1111's prompt word, as a placeholder token
        layout = "original-ti" if type(params).__name__ == "_ParameterDict" else "a1111-pt"
        return _validated(path, token, items[0][1], layout, metadata)
    _reject_other_models(path, list(data), {k: getattr(v, "shape", ()) for k, v in data.items()})
    tensors = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
    if "emb_params" in tensors:
        return _validated(path, None, tensors["emb_params"], "emb_params", {})
    if len(data) == 1 and len(tensors) == 1:  # diffusers learned_embeds.bin
        (token, value), = tensors.items()
        return _validated(path, token, value, "diffusers", {})
    raise UserError(f"{clean(path)}: not an embedding layout we know ({clean(', '.join(map(str, list(data)[:5])))}); "
                    "expected diffusers {token: tensor}, A1111 string_to_param or emb_params")


def _named_token(metadata: Mapping[str, str]) -> str | None:
    """The token our own metadata names (older exports wrote a bare `token` key), else ModelSpec's trigger."""
    for key in (f"{META_PREFIX}token", "token", "modelspec.trigger_phrase"):
        if metadata.get(key, "").strip():
            return metadata[key].strip()
    return None


def _reject_other_models(path: Path, keys: list[str], shapes: Mapping[str, Any]) -> None:
    if "clip_g" in keys or "clip_l" in keys:
        raise UserError(f"{clean(path)}: an SDXL embedding (clip_g/clip_l pair); this tool uses SD v1.4, whose "
                        f"text encoder takes {SD1_WIDTH}-wide vectors")
    for k in keys:
        shape = tuple(shapes.get(k) or ())
        if shape and shape[-1] in OTHER_WIDTHS:
            raise UserError(f"{clean(path)}: {OTHER_WIDTHS[shape[-1]]}; this tool uses SD v1.4, whose text encoder "
                            f"takes {SD1_WIDTH}-wide vectors")


def _validated(path: Path, token: str | None, value: Any, layout: str, metadata: Mapping[str, str]) -> EmbeddingFile:
    shown = clean(path)
    if not isinstance(value, np.ndarray):
        raise UserError(f"{shown}: the embedding is a {type(value).__name__}, not a tensor")
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != SD1_WIDTH:
        known = OTHER_WIDTHS.get(arr.shape[-1] if arr.ndim else -1)
        what = f"{known}" if known else f"shape {tuple(arr.shape)}"
        raise UserError(f"{shown}: {what} does not fit SD v1's text encoder ([n_vectors, {SD1_WIDTH}])")
    if not 1 <= arr.shape[0] <= MAX_VECTORS:
        raise UserError(f"{shown}: {arr.shape[0]} vectors; a token has 1 to {MAX_VECTORS} (CLIP's context is 77)")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise UserError(f"{shown}: {bad} NaN/inf value(s) in the embedding; the file is damaged or training diverged")
    return EmbeddingFile(token=token, vectors=np.ascontiguousarray(arr), layout=layout,
                         metadata={str(k): str(v) for k, v in metadata.items()})


def metadata_json(value: Any) -> str:
    """A structured provenance value as the one-line JSON string safetensors metadata can hold."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
