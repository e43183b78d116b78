"""Tensors of one checkpoint file, read one at a time: safetensors (its JSON header parsed here) and torch zip
pickles (`.ckpt`, `.bin`, `.pt`) through the allow-list unpickler of `core.torchfile` (nothing in a pickle runs).

Why not `safetensors.safe_open` / `torch.load`: numpy has no bfloat16 (safe_open(framework="np") refuses bf16
files), and `torch.load(weights_only=False)` runs whatever a pickle asks for. Reading a tensor seeks to its bytes
and copies only them, so converting a checkpoint holds one tensor of it at a time, never the whole file.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from core import torchfile

# safetensors dtype -> (numpy dtype of the stored elements, bytes each); BF16 is widened to float32 on read
_ST_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2), "F64": ("<f8", 8), "I64": ("<i8", 8),
              "I32": ("<i4", 4), "I16": ("<i2", 2), "I8": ("i1", 1), "U8": ("u1", 1), "BOOL": ("?", 1)}
# the short names run.json records
_SHORT = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "F64": "fp64", "<f4": "fp32", "<f2": "fp16",
          "bfloat16": "bf16", "<f8": "fp64"}
MAX_HEADER = 100 << 20  # a safetensors header larger than this is not a checkpoint's


class NotACheckpoint(ValueError):
    """The file cannot be read as a checkpoint (the message says why, in a few words)."""


class Entry:
    """Where one tensor's bytes are: `read()` returns it as a numpy array (bf16 widened to float32)."""

    __slots__ = ("_read", "dtype", "shape")

    def __init__(self, shape: tuple[int, ...], dtype: str, read):
        self.shape, self.dtype, self._read = shape, dtype, read

    @property
    def short_dtype(self) -> str:
        return _SHORT.get(self.dtype, self.dtype)

    def read(self) -> np.ndarray:
        return self._read()


class TensorFile:
    """A checkpoint's tensors by key (`entries`), plus safetensors' `__metadata__` (ModelSpec lives there)."""

    def __init__(self, path: Path, entries: dict[str, Entry], metadata: dict[str, str], fmt: str):
        self.path, self.entries, self.metadata, self.format = path, entries, metadata, fmt

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def keys(self) -> Iterator[str]:
        return iter(self.entries)

    def read(self, key: str) -> np.ndarray:
        return self.entries[key].read()


def open_tensors(path: Path) -> TensorFile:
    """Open `path` by its content (a safetensors header, or a zip holding data.pkl). Raises NotACheckpoint."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:2] == b"PK":
        return _open_zip(path)
    if len(head) == 8 and 2 <= struct.unpack("<Q", head)[0] <= MAX_HEADER:
        return _open_safetensors(path)
    if head[:2] == b"\x80\x02":
        raise NotACheckpoint("a torch file in the pre-1.6 format (not a zip); re-save it with a current torch or "
                             "as .safetensors")
    raise NotACheckpoint("neither safetensors nor a torch zip checkpoint")


# ----------------------------------------------------------------------------------------------- safetensors
def _open_safetensors(path: Path) -> TensorFile:
    size = path.stat().st_size
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        if 8 + n > size:
            raise NotACheckpoint(f"truncated: the safetensors header says {n} bytes, the file has {size}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise NotACheckpoint(f"not safetensors (header is not JSON: {e})") from None
    if not isinstance(header, dict):
        raise NotACheckpoint("not safetensors (header is not a JSON object)")
    metadata = {str(k): str(v) for k, v in (header.pop("__metadata__", None) or {}).items()}
    entries, base = {}, 8 + n
    for key, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(int(s) for s in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise NotACheckpoint(f"not safetensors (bad header entry {key[:80]!r})") from None
        if dtype not in _ST_DTYPES:
            raise NotACheckpoint(f"tensor {key[:80]!r} has dtype {dtype}, not one a checkpoint uses")
        if end - begin != int(np.prod(shape, dtype=np.int64)) * _ST_DTYPES[dtype][1] or begin < 0:
            raise NotACheckpoint(f"damaged: tensor {key[:80]!r} ({dtype} {list(shape)}) does not fit its offsets")
        if base + end > size:
            raise NotACheckpoint(f"truncated: tensor {key[:80]!r} ends at byte {base + end}, the file has {size} "
                                 "(an interrupted download?)")
        entries[key] = Entry(shape, dtype, _st_reader(path, base + begin, end - begin, dtype, shape))
    return TensorFile(path, entries, metadata, "safetensors")


def _st_reader(path: Path, offset: int, nbytes: int, dtype: str, shape: tuple[int, ...]):
    def read() -> np.ndarray:
        arr = np.empty(nbytes, np.uint8)
        with open(path, "rb") as f:
            f.seek(offset)
            if f.readinto(memoryview(arr)) != nbytes:
                raise NotACheckpoint(f"truncated at byte {offset}")
        arr = arr.view(_ST_DTYPES[dtype][0]).reshape(shape)
        return _widen_bf16(arr) if dtype == "BF16" else arr
    return read


def _widen_bf16(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


# ------------------------------------------------------------------------------------------------ torch zip
class _Dummy:
    """What a pickle's harmless bookkeeping class becomes (PyTorch Lightning's ModelCheckpoint callback key)."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _numpy_scalar(dtype, data=None):
    return np.frombuffer(data, dtype=dtype)[0] if data is not None else dtype.type()


def _codecs_encode(text, encoding="latin1"):
    if encoding != "latin1":
        raise torchfile.UnsafePickle(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


class _Storage:
    """A storage the pickle names: which zip member, element dtype; bytes are read only for the tensors used."""

    def __init__(self, zf: zipfile.ZipFile, member: str, dtype: str, numel: int):
        self.zf, self.member, self.dtype, self.numel = zf, member, dtype, numel
        self.itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize

    def read(self, offset: int, count: int) -> np.ndarray:
        """Elements [offset, offset + count) of the storage (seeking inside the zip member)."""
        with self.zf.open(self.member) as f:
            f.seek(offset * self.itemsize)
            raw = f.read(count * self.itemsize)
        if len(raw) != count * self.itemsize:
            raise NotACheckpoint(f"member {self.member} is shorter than its tensors (truncated?)")
        if self.dtype == "bfloat16":
            return _widen_bf16(np.frombuffer(raw, "<u2"))
        return np.frombuffer(raw, self.dtype)


class LazyTensor:
    """A tensor of a torch pickle, not yet read: `_rebuild_tensor_v2`'s arguments, kept."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.shape, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        n = (1 + sum((s - 1) * st for s, st in zip(self.shape, self.stride))) if all(self.shape) else 0
        if self.offset < 0 or self.offset + n > storage.numel:
            raise ValueError(f"tensor of size {self.shape} does not fit its storage ({storage.numel} elements)")
        self.span = n

    def read(self) -> np.ndarray:
        flat = self.storage.read(self.offset, self.span)
        if not self.span:
            return np.zeros(self.shape, flat.dtype)
        view = np.lib.stride_tricks.as_strided(flat, self.shape, [s * flat.itemsize for s in self.stride])
        return np.ascontiguousarray(view)


def _lazy_rebuild(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return LazyTensor(storage, offset, size, stride)


# A1111's modules/safe.py allows these besides the tensor machinery; each is replaced by something inert here.
_CHECKPOINT_EXTRAS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _lazy_rebuild,
    ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"): _Dummy,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs_encode,
    ("torch", "Size"): tuple,
}


class _LazyUnpickler(torchfile._AllowListUnpickler):
    """torchfile's allow-list plus what Lightning checkpoints hold; storages become `_Storage` (no bytes read)."""

    def find_class(self, module: str, name: str):
        fn = _CHECKPOINT_EXTRAS.get((module, name))
        if fn is None and (module, name) not in torchfile._ALLOWED:
            raise torchfile.UnsafePickle(f"refers to {module}.{name}, which a checkpoint never needs")
        return fn if fn is not None else super().find_class(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], torchfile._Storage)):
            raise torchfile.UnsafePickle(f"unexpected persistent id {str(pid)[:60]}")
        _, storage, key, _location, numel = pid
        member = f"{self._prefix}/data/{key}"
        try:
            info = self._zf.getinfo(member)
        except KeyError:
            raise NotACheckpoint(f"member {member} is missing (truncated?)") from None
        lazy = _Storage(self._zf, member, storage.dtype, int(numel))
        if info.file_size < lazy.numel * lazy.itemsize:
            raise NotACheckpoint(f"member {member} holds {info.file_size} bytes, the pickle says {numel} elements")
        return lazy


def _open_zip(path: Path) -> TensorFile:
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise NotACheckpoint(f"damaged or truncated zip ({e})") from None
    try:
        pkl, prefix = torchfile.pickle_member(zf.namelist())
    except (torchfile.UnsafePickle, ValueError) as e:
        raise NotACheckpoint(f"a zip that is not a torch checkpoint ({e})") from None
    with zf.open(pkl) as f:
        try:
            obj = _LazyUnpickler(f, zf, prefix, 1 << 62).load()
        except torchfile.UnsafePickle as e:
            raise NotACheckpoint(f"refused: its pickle {e} (nothing in it was run)") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
            raise NotACheckpoint(f"unreadable pickle ({type(e).__name__}: {str(e)[:120]})") from None
    entries = {}
    for key, t in _flatten(_state_dict(obj)).items():
        entries[key] = Entry(t.shape, t.storage.dtype, t.read)
    return TensorFile(path, entries, {}, "ckpt")


def _state_dict(obj: Any) -> dict:
    """The tensor dict inside a torch checkpoint: `state_dict` of a Lightning checkpoint, else the object."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    if isinstance(obj, dict):
        return obj
    raise NotACheckpoint(f"holds a {type(obj).__name__}, not a dict of tensors")


def _flatten(d: dict, prefix: str = "") -> OrderedDict[str, LazyTensor]:
    out: OrderedDict[str, LazyTensor] = OrderedDict()
    for k, v in d.items():
        if isinstance(v, LazyTensor):
            out[prefix + str(k)] = v
        elif isinstance(v, dict) and not prefix:  # one level: {token: tensor} files, string_to_param
            out.update(_flatten(v, f"{k}."))
    return out


# ------------------------------------------------------------------------------------------------- writing
def write_safetensors(path: Path, items: list[tuple[str, tuple[int, ...], Any]], metadata: dict[str, str],
                      dtype: str = "F32") -> None:
    """A safetensors file from (key, shape, produce) items, each tensor produced and written in turn (the header,
    which needs every shape, comes first): memory holds one tensor, not the whole state dict."""
    np_dtype, size = {"F32": ("<f4", 4), "F16": ("<f2", 2)}[dtype]
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for key, shape, _ in items:
        n = int(np.prod(shape, dtype=np.int64)) * size
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # as safetensors pads its header
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for key, shape, produce in items:
            arr = np.ascontiguousarray(produce(), dtype=np_dtype)
            if arr.shape != tuple(shape):
                raise ValueError(f"{key}: produced shape {arr.shape}, the header says {tuple(shape)}")
            f.write(arr.tobytes())
