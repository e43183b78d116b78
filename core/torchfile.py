"""PyTorch's zip checkpoint format without torch: write the subset embedding files use, read it back safely.

Why not `torch.save`/`torch.load`:
- AUTOMATIC1111's safe unpickler (modules/safe.py, `check_zip_filenames`) accepts only the zip members
  `<dir>/data.pkl`, `<dir>/data/<N>` and `<dir>/version`; current torch also writes `.format_version`,
  `.storage_alignment`, `byteorder` and `.data/serialization_id`, so the web UI refuses `torch.save` output.
  `write_pt` writes exactly the three allowed kinds of member (what torch 1.6-2.0 wrote).
- `torch.load(weights_only=True)` refuses original textual-inversion files (an `nn.ParameterDict` under
  `string_to_param`), and `weights_only=False` runs arbitrary code. `read_pt` unpickles with an allow-list of the
  few globals an embedding file needs and builds numpy arrays from the `data/N` members: nothing else is called.
- The dashboard may not import torch, yet offers `.pt` downloads.

The pickle written is the one torch writes for these objects (protocol 2, tensors as
`torch._utils._rebuild_tensor_v2(persistent storage, offset, size, stride, requires_grad, OrderedDict())`);
`tests/test_export.py` checks that torch, A1111's rules and ComfyUI's `weights_only=True` load it.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

ARCHIVE = "archive"  # the folder name inside the zip; torch >= 1.13 writes "archive"
# A1111 modules/safe.py `allowed_zip_names_re`: the members we write all match it.
A1111_MEMBER_RE = re.compile(r"^([^/]+)/((data/\d+)|version|(data\.pkl))$")
# What torch itself may write (we read these too): the above plus the bookkeeping members of torch >= 2.1.
_READ_MEMBER_RE = re.compile(r"^([^/]+)/((data/\d+)|version|data\.pkl|byteorder|\.format_version|"
                             r"\.storage_alignment|\.data/serialization_id)$")

# torch storage class name -> numpy dtype of its elements ("bfloat16" handled apart: numpy has none)
_STORAGES = {"FloatStorage": "<f4", "HalfStorage": "<f2", "DoubleStorage": "<f8", "BFloat16Storage": "bfloat16",
             "LongStorage": "<i8", "IntStorage": "<i4", "ByteStorage": "u1"}


class UnsafePickle(ValueError):
    """The file's pickle refers to something an embedding never needs (it could run code): not loaded."""


# ---------------------------------------------------------------------------------------------------- write
def write_pt(obj: dict[str, Any]) -> bytes:
    """Bytes of a torch zip checkpoint holding `obj` (dicts with str keys, str, int, float, bool, None, lists and
    numpy float32 arrays, which become float tensors). Members: archive/data.pkl, archive/data/N, archive/version."""
    storages: list[np.ndarray] = []
    out = io.BytesIO()
    out.write(b"\x80\x02")  # PROTO 2, as torch writes
    _emit(out, obj, storages)
    out.write(b".")  # STOP
    members = [("data.pkl", out.getvalue())]
    members += [(f"data/{i}", arr.astype("<f4").tobytes()) for i, arr in enumerate(storages)]
    members.append(("version", b"3\n"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members:  # fixed timestamps (as torch writes): the same embedding gives the same bytes
            z.writestr(zipfile.ZipInfo(f"{ARCHIVE}/{name}", date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def _global(out: io.BytesIO, module: str, name: str) -> None:
    out.write(b"c" + module.encode() + b"\n" + name.encode() + b"\n")


def _emit(out: io.BytesIO, v: Any, storages: list[np.ndarray]) -> None:
    if v is None:
        out.write(b"N")
    elif isinstance(v, bool):
        out.write(b"\x88" if v else b"\x89")
    elif isinstance(v, (int, np.integer)):
        v = int(v)
        if 0 <= v < 256:
            out.write(b"K" + bytes([v]))
        elif -(2 ** 31) <= v < 2 ** 31:
            out.write(b"J" + struct.pack("<i", v))
        else:
            raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            out.write(b"\x8a" + bytes([len(raw)]) + raw)
    elif isinstance(v, (float, np.floating)):
        out.write(b"G" + struct.pack(">d", float(v)))
    elif isinstance(v, str):
        raw = v.encode("utf-8")
        out.write(b"X" + struct.pack("<I", len(raw)) + raw)
    elif isinstance(v, dict):
        out.write(b"}")
        if v:
            out.write(b"(")
            for k, x in v.items():
                if not isinstance(k, str):
                    raise TypeError(f"dict keys must be str, got {type(k).__name__}")
                _emit(out, k, storages)
                _emit(out, x, storages)
            out.write(b"u")  # SETITEMS
    elif isinstance(v, (list, tuple)):
        out.write(b"]")
        if v:
            out.write(b"(")
            for x in v:
                _emit(out, x, storages)
            out.write(b"e")  # APPENDS
    elif isinstance(v, np.ndarray):
        arr = np.ascontiguousarray(v, dtype=np.float32)
        key = str(len(storages))
        storages.append(arr)
        _global(out, "torch._utils", "_rebuild_tensor_v2")
        out.write(b"(")  # args of _rebuild_tensor_v2
        out.write(b"(")  # persistent id ('storage', torch.FloatStorage, key, 'cpu', numel)
        _emit(out, "storage", storages)
        _global(out, "torch", "FloatStorage")
        _emit(out, key, storages)
        _emit(out, "cpu", storages)
        _emit(out, int(arr.size), storages)
        out.write(b"tQ")  # TUPLE, BINPERSID
        _emit(out, 0, storages)  # storage offset
        strides = [int(np.prod(arr.shape[i + 1:], dtype=np.int64)) for i in range(arr.ndim)]
        for seq in (arr.shape, strides):
            out.write(b"(")
            for n in seq:
                _emit(out, int(n), storages)
            out.write(b"t")
        out.write(b"\x89")  # requires_grad False
        _global(out, "collections", "OrderedDict")
        out.write(b")R")  # OrderedDict() (backward hooks)
        out.write(b"tR")  # TUPLE, REDUCE
    else:
        raise TypeError(f"cannot write {type(v).__name__} into a .pt embedding")


# ----------------------------------------------------------------------------------------------------- read
class _ParameterDict:
    """Stand-in for torch.nn.ParameterDict (original textual-inversion files): keeps its state, runs nothing."""

    def items(self):
        params = self.__dict__.get("_parameters") or {}
        return params.items()


class _Storage:
    def __init__(self, name: str):
        self.dtype = _STORAGES[name]


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    n = (1 + sum((s - 1) * st for s, st in zip(size, stride))) if all(size) else 0
    if offset < 0 or offset + n > storage.size:
        raise ValueError(f"tensor of size {size} does not fit its storage ({storage.size} elements)")
    flat = storage[offset:]
    return np.lib.stride_tricks.as_strided(flat, size, [s * flat.itemsize for s in stride]).copy()


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.nn.modules.container", "ParameterDict"): _ParameterDict,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    **{("torch", name): _Storage for name in _STORAGES},
}


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file, zf: zipfile.ZipFile, prefix: str, max_bytes: int):
        super().__init__(file)
        self._zf, self._prefix, self._max = zf, prefix, max_bytes

    def find_class(self, module: str, name: str):
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise UnsafePickle(f"refers to {module}.{name}, which an embedding never needs")
        return _Storage(name) if fn is _Storage else fn

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _Storage)):
            raise UnsafePickle(f"unexpected persistent id {str(pid)[:60]}")
        _, storage, key, _location, numel = pid
        member = f"{self._prefix}/data/{key}"
        info = self._zf.getinfo(member)
        if info.file_size > self._max:
            raise UnsafePickle(f"member {member} is {info.file_size} bytes")
        raw = self._zf.read(member)
        if storage.dtype == "bfloat16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, storage.dtype)
        if arr.size < int(numel):
            raise ValueError(f"member {member} holds {arr.size} elements, the pickle says {numel}")
        return arr


def pickle_member(names: list[str]) -> tuple[str, str]:
    """(the data.pkl member, the archive's folder prefix) of a torch zip checkpoint's member `names`. Raises
    UnsafePickle for a member a torch checkpoint does not have, ValueError unless there is exactly one data.pkl."""
    bad = [n for n in names if not _READ_MEMBER_RE.match(n)]
    if bad:
        raise UnsafePickle(f"unexpected zip member {bad[0][:80]!r}")
    pkls = [n for n in names if n.endswith("/data.pkl")]
    if len(pkls) != 1:
        raise ValueError(f"expected one data.pkl in the zip, found {len(pkls)}")
    return pkls[0], pkls[0][: -len("/data.pkl")]


def read_pt(data: bytes, max_bytes: int) -> Any:
    """The object in a torch zip checkpoint, tensors as numpy arrays, unpickled with an allow-list.
    Raises zipfile.BadZipFile (not a zip: e.g. torch's pre-1.6 format), UnsafePickle, or ValueError."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        pkl, prefix = pickle_member(names)
        if sum(i.file_size for i in z.infolist()) > max_bytes:
            raise ValueError(f"unpacks to more than {max_bytes} bytes")
        order = f"{prefix}/byteorder"
        if order in names and z.read(order).strip() not in (b"little", b""):
            raise ValueError("big-endian tensors are not supported")
        with z.open(pkl) as f:
            return _AllowListUnpickler(f, z, prefix, max_bytes).load()
