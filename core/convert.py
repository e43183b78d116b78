"""`convert-weights`: an SD 1.x checkpoint (single file or diffusers folder, `core.sdcheckpoint`) written as
KerasCV's four `.h5` weight files, plus `source.json` saying what they came from; and the sha256-keyed cache
that `--weights FILE` converts into once, so later runs load the `.h5` files directly.

The `.h5` files are Keras' legacy HDF5 weights format, the one KerasCV publishes: a group per layer holding
weights, layers matched by position (`core.weightmap` gives the order). They are written tensor by tensor with
h5py, without building a network or importing TensorFlow: peak memory is one tensor (plus the file cache), and
KerasCV's networks, tf-keras' and ours load them with `load_weights` as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from core.config import StrictConfig, add_options, add_progress_flag, from_args, option
from core.errors import UserError
from core.weightmap import LAYERS

# component -> KerasCV's file name (the names `core.weights.WEIGHT_FILES` checks for in a folder)
H5_NAMES = {"text_encoder": "kcv_encoder.h5", "diffusion_model": "kcv_diffusion_model.h5",
            "image_encoder": "vae_encoder.h5", "decoder": "kcv_decoder.h5"}
MANIFEST = "source.json"
MAPPING_VERSION = 1  # bump when the mapping changes: cached conversions made before are then redone
CACHE_ENV = "TOMCAT_WEIGHTS_CACHE"


# ---------------------------------------------------------------------------------------------------- hashing
def sha256_of(path: Path, index: Path | None = None) -> str:
    """sha256 of a file, remembered in `index` (JSON keyed by path, size and mtime) so a 4 GB checkpoint is
    hashed once, not on every run."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    known: dict[str, str] = {}
    if index is not None and index.exists():
        try:
            known = json.loads(index.read_text())
        except (OSError, ValueError):
            known = {}
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    digest = h.hexdigest()
    if index is not None:
        from core.runfolder import atomic_write_json

        known[key] = digest
        atomic_write_json(index, known)
    return digest


def cache_root() -> Path:
    """Where converted checkpoints are kept: $TOMCAT_WEIGHTS_CACHE, else ~/.cache/tomcat-ti/weights."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tomcat-ti" / "weights"


# ------------------------------------------------------------------------------------------------ writing
def write_h5(ckpt, component: str, path: Path, bar=None) -> None:
    """KerasCV's `.h5` for one component, in Keras' legacy layout: root attrs `layer_names`, `backend`,
    `keras_version`; a group per layer whose attr `weight_names` lists its datasets in load order."""
    import h5py
    import numpy as np

    layers = LAYERS[component]()
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([layer.name.encode() for layer in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = _version("keras").encode()
        for layer in layers:
            group = f.create_group(layer.name)
            group.attrs["weight_names"] = np.array([w.ldm.encode() for w in layer.weights])  # paths in the group
            for w in layer.weights:
                group.create_dataset(w.ldm, data=ckpt.tensor(component, w))
                if bar is not None:
                    bar.update(1)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def describe_source(ckpt, index: Path | None) -> dict[str, Any]:
    """What `source.json` and run.json record about the checkpoint (provenance)."""
    sha = _tree_sha256(ckpt.path, index) if ckpt.path.is_dir() else sha256_of(ckpt.path, index)
    vae = None
    if ckpt.vae_path is not None:
        vae = {"file": str(ckpt.vae_path.resolve()), "sha256": sha256_of(ckpt.vae_path, index)}
    return {"format": ckpt.format, "file": str(ckpt.path.resolve()), "sha256": sha, "short_hash": sha[:10],
            "dtype": ckpt.dtypes(), "ema": ckpt.ema, "vae": vae, "modelspec": ckpt.modelspec,
            "mapping_version": MAPPING_VERSION}


def _tree_sha256(folder: Path, index: Path | None) -> str:
    """A diffusers folder's identity: sha256 over the sha256 of its weight files, by relative path."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix in (".safetensors", ".bin", ".json"):
            h.update(f"{p.relative_to(folder)}:{sha256_of(p, index)}\n".encode())
    return h.hexdigest()


def convert(ckpt, out: Path, source: dict[str, Any], progress: bool = True,
            index: Path | None = None) -> dict[str, Any]:
    """Write the four `.h5` files and `source.json` into `out` (made if missing). Files appear complete or not at
    all: they are written beside, renamed in, and `source.json` is written last. Returns the manifest. The `.h5`
    files' sha256 go into `index` too, so the first load does not hash them again."""
    from tqdm.auto import tqdm

    out = Path(out)
    ckpt.check()  # every key and shape, from the headers, before anything is written
    total = sum(len(layer.weights) for fn in LAYERS.values() for layer in fn())
    t0 = time.time()
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=out))
    try:
        # disable=None: no bar when stderr is not a terminal (a log file, a test), as with the other commands
        with tqdm(total=total, desc=f"convert {ckpt.path.name}", unit="tensor", disable=None if progress else True,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            for component, name in H5_NAMES.items():
                write_h5(ckpt, component, tmp / name, bar)
        files = {}
        for component, name in H5_NAMES.items():
            os.replace(tmp / name, out / name)
            files[name] = sha256_of(out / name, index)
    except BaseException:
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    manifest = {**source, "files": files, "seconds": round(time.time() - t0, 1),
                "converter": {"keras_cv": _version("keras-cv"), "h5py": _version("h5py")}}
    from core.runfolder import atomic_write_json

    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """`source.json` of a converted folder, or None if the folder has none."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e}); convert again with `python -m core convert-weights`") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or "sha256" not in data:
        raise UserError(f"{path}: not a conversion record; convert again with `python -m core convert-weights`")
    return data


# -------------------------------------------------------------------------------------------------- cache
def cached(path: Path, vae: Path | None = None, ema: bool = False, progress: bool = True) -> Path:
    """The converted folder for this checkpoint (+ VAE, EMA choice) in the cache, converting it the first time.
    Everything is checked (and a bad file refused) before anything is written."""
    from core.sdcheckpoint import open_checkpoint

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    index = root / "sha256-index.json"
    ckpt = open_checkpoint(path, vae, ema)
    source = describe_source(ckpt, index)
    key = source["sha256"][:16] + (f"-vae{source['vae']['sha256'][:12]}" if source["vae"] else "") + \
        ("-ema" if ema else "") + f"-m{MAPPING_VERSION}"
    folder = root / key
    manifest = read_manifest(folder) if folder.exists() else None
    if manifest is not None and all((folder / n).exists() for n in H5_NAMES.values()):
        return folder
    print(f"converting {path} to KerasCV's weight files (once; cached in {folder})", file=sys.stderr)
    convert(ckpt, folder, source, progress, index)
    return folder


# ---------------------------------------------------------------------------------------------------- CLI
@dataclass
class ConvertConfig(StrictConfig):
    """`convert-weights` options besides SRC (one command-line option per field)."""

    out: Path = option(required=True, help="folder for KerasCV's four .h5 files and source.json", metavar="DIR")
    vae: Path | None = option(None, "a VAE file replacing (or supplying) the checkpoint's VAE, e.g. "
                                    "vae-ft-mse-840000-ema-pruned.safetensors", metavar="FILE")
    ema: bool = option(False, "use the EMA weights of a full training checkpoint (diffusers' --extract_ema); "
                              "default: the non-EMA ones, as A1111 and diffusers' from_single_file")
    force: bool = option(False, "overwrite .h5 files already in --out")


def add_arguments(p, command: str) -> None:
    p.add_argument("source", type=Path, help="SD 1.x single file (.safetensors/.ckpt) or diffusers folder")
    add_options(p, ConvertConfig)
    add_progress_flag(p)


def run(args) -> int:
    from core.sdcheckpoint import open_checkpoint

    cfg = from_args(ConvertConfig, args)
    existing = [n for n in H5_NAMES.values() if (cfg.out / n).exists()]
    if existing and not cfg.force:
        raise UserError(f"{cfg.out}: already holds {', '.join(existing)}; pass --force to overwrite")
    ckpt = open_checkpoint(args.source, cfg.vae, cfg.ema)  # every refusal happens here, before --out is touched
    index = cache_root() / "sha256-index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    manifest = convert(ckpt, cfg.out, describe_source(ckpt, index), not args.no_progress, index)
    print(f"wrote {', '.join(H5_NAMES.values())} and {MANIFEST} to {cfg.out} in {manifest['seconds']} s "
          f"(source sha256 {manifest['sha256'][:10]}, {manifest['dtype']}, EMA: {manifest['ema']}); "
          f"use it with --weights {cfg.out}")
    return 0


# ------------------------------------------------------------------------------------- the other direction
def write_ldm_single_file(models: dict[str, Any], path: Path, metadata: dict[str, str] | None = None) -> None:
    """KerasCV networks (built, any weights) written as an original SD 1.x single file (`.safetensors`, fp32,
    LDM names as diffusers' conversion script writes them): what A1111 or diffusers' `from_single_file` loads.
    The order of each network's layers and weights is `core.weightmap`'s, as in the `.h5` files."""
    import numpy as np

    from core.ckptfile import write_safetensors
    from core.weightmap import LDM_PREFIX, to_torch, torch_shape

    items: list[tuple[str, tuple[int, ...], Any]] = []
    seen: set[str] = set()
    for component, model in models.items():
        layers = [layer for layer in model.layers if layer.trainable_weights + layer.non_trainable_weights]
        spec = LAYERS[component]()
        if len(layers) != len(spec):
            raise ValueError(f"{component}: {len(layers)} layers with weights, the map has {len(spec)}")
        for layer, mapped in zip(layers, spec):
            for var, w in zip(layer.trainable_weights + layer.non_trainable_weights, mapped.weights, strict=True):
                key = LDM_PREFIX[component] + w.ldm
                if key not in seen:
                    seen.add(key)
                    items.append((key, torch_shape(w), lambda v=var, w=w: to_torch(w, np.asarray(v))))
    write_safetensors(Path(path), items, metadata or {})
