"""The acceptance rules of other tools' embedding loaders, restated from their source (file and function named on
each) so tests can check our files against them without installing the tools. Where a tool calls a library we
have (torch.load, safetensors), the real library call is used.

Restated, not copied: A1111 is AGPL-3.0 and ComfyUI GPL-3.0, so their code stays out of this repository. Each
rule was compared line by line with the upstream source at these commits (re-check them when a tool changes):
- AUTOMATIC1111/stable-diffusion-webui 05933840f0676dd1a90a7e2ad3f2a0672624b2cd modules/safe.py
  (RestrictedUnpickler.find_class, allowed_zip_names_re, data_pkl_re, check_pt; the pytorch_lightning globals it
  also allows are left out: no embedding needs them), and 22ecb78b51f7e6f0234cbc0efbde4ee9a2dc466f
  modules/textual_inversion/textual_inversion.py (EmbeddingDatabase.load_from_file, expected_shape).
- comfyanonymous/ComfyUI b55c2247654476fbc744e572ba7a834fd9378745 comfy/sd1_clip.py (load_embed with
  embed_key 'clip_l', SDClipModel.set_up_textual_embeddings; its safe_load_embed_zip fallback and `bundle_emb.`
  keys are left out: they apply only to files torch.load(weights_only=True) refuses or to LoRA bundles).
- invoke-ai/InvokeAI 8e71a8a519399d6db32054ae9afc7c6c4e2355af invokeai/backend/model_manager/configs/
  textual_inversion.py (TI_Config_Base._file_looks_like_embedding, _get_base_or_raise) and
  invokeai/backend/textual_inversion.py (TextualInversionModelRaw.from_checkpoint).
tests/test_export.py runs every rule over every file `export` writes (the docs/export-import.md table).
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

# A1111 modules/safe.py: `allowed_zip_names_re` and `data_pkl_re` (check_zip_filenames / check_pt), v1.0-1.10
A1111_ALLOWED_ZIP_NAMES = re.compile(r"^([^/]+)/((data/\d+)|version|(data\.pkl))$")
# The other forms that regex has had: the first web UI releases (`allowed_zip_names` list + data/N regex, the
# folder must be "archive") and the later form that also lets byteorder and .data/serialization_id through.
A1111_ZIP_RULE_VARIANTS = {
    "early": lambda n: n in ("archive/data.pkl", "archive/version") or re.match(r"^archive/data/\d+$", n),
    "1.x": A1111_ALLOWED_ZIP_NAMES.match,
    "late": re.compile(r"^([^/]+)/((data/\d+)|version|byteorder|.data/serialization_id|(data\.pkl))$").match,
}
A1111_DATA_PKL = re.compile(r"^([^/]+)/data\.pkl$")
# A1111 modules/safe.py: RestrictedUnpickler.find_class (the globals it lets through; everything else is forbidden)
A1111_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    *(("torch._utils", n) for n in ("_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_device_tensor_from_numpy")),
    *(("torch", n) for n in ("FloatStorage", "HalfStorage", "IntStorage", "LongStorage", "DoubleStorage",
                             "ByteStorage", "float32", "BFloat16Storage")),
    ("torch.nn.modules.container", "ParameterDict"),
    ("numpy.core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("_codecs", "encode"), ("__builtin__", "set"),
}


def pickle_globals(pkl: bytes) -> set[tuple[str, str]]:
    """(module, name) of every GLOBAL / STACK_GLOBAL in a pickle: what find_class would be asked for."""
    found, strings = set(), []
    for op, arg, _pos in pickletools.genops(pkl):
        if op.name == "GLOBAL":
            module, name = arg.split(" ", 1)
            found.add((module, name))
        elif op.name == "STACK_GLOBAL":
            found.add((strings[-2], strings[-1]))
        if isinstance(arg, str):
            strings.append(arg)
    return found


def a1111_check_pt(path: Path) -> None:
    """A1111 modules/safe.py check_pt for a zip file: raises like the web UI does (it then skips the embedding)."""
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not A1111_ALLOWED_ZIP_NAMES.match(name):
                raise ValueError(f"bad file inside {path}: {name}")
        pkls = [f for f in z.namelist() if A1111_DATA_PKL.match(f)]
        if len(pkls) != 1:
            raise ValueError(f"{len(pkls)} data.pkl in {path}")
        forbidden = pickle_globals(z.read(pkls[0])) - A1111_ALLOWED_GLOBALS
        if forbidden:
            raise ValueError(f"global {sorted(forbidden)[0]} is forbidden")


def a1111_load(path: Path) -> tuple[np.ndarray, dict]:
    """A1111 textual_inversion.py EmbeddingDatabase.load_from_file + create_embedding_from_data (SD v1 model:
    expected_shape 768): (vectors [n, 768], the fields it keeps). Raises where A1111 would skip the file."""
    ext = path.suffix.upper()
    if ext in (".PT", ".BIN"):
        a1111_check_pt(path)  # torch.load is patched to safe.load
        data = torch.load(path, map_location="cpu")
    elif ext == ".SAFETENSORS":
        import safetensors.torch

        data = safetensors.torch.load_file(str(path), device="cpu")
    else:
        raise ValueError(f"A1111 ignores {ext}")
    if "string_to_param" in data:
        param_dict = data["string_to_param"]
        param_dict = getattr(param_dict, "_parameters", param_dict)
        assert len(param_dict) == 1, "embedding file has multiple terms in it"
        vec = next(iter(param_dict.items()))[1].detach().to(dtype=torch.float32)
    elif isinstance(data, dict) and "clip_g" in data and "clip_l" in data:
        raise ValueError("SDXL embedding")
    elif isinstance(data, dict) and isinstance(next(iter(data.values())), torch.Tensor):
        assert len(data.keys()) == 1, "embedding file has multiple terms in it"
        emb = next(iter(data.values()))
        if len(emb.shape) == 1:
            emb = emb.unsqueeze(0)
        vec = emb.detach().to(dtype=torch.float32)
    else:
        raise ValueError(f"Couldn't identify {path.name} as neither textual inversion embedding nor diffuser concept.")
    if vec.shape[-1] != 768:  # EmbeddingDatabase.load_from_file: expected_shape mismatch -> skipped
        raise ValueError(f"shape {vec.shape[-1]} != 768")
    fields = {k: data.get(k) for k in ("step", "sd_checkpoint", "sd_checkpoint_name")} if ext != ".SAFETENSORS" else {}
    return vec.numpy(), fields


def comfyui_load(path: Path) -> np.ndarray:
    """ComfyUI comfy/sd1_clip.py load_embed (embed_key 'clip_l', embedding_size 768) + SDTokenizer
    tokenize_with_weights / SDClipModel.set_up_textual_embeddings: the vectors it puts in the prompt."""
    if str(path).lower().endswith(".safetensors"):
        import safetensors.torch

        embed = safetensors.torch.load_file(str(path), device="cpu")
    else:
        embed = torch.load(path, weights_only=True, map_location="cpu")
    if "string_to_param" in embed:
        embed_out = next(iter(embed["string_to_param"].values()))
    elif "clip_l" in embed:
        embed_out = embed["clip_l"]
    else:
        embed_out = next(iter(embed.values()))  # the FIRST tensor in the file's order
    rows = [embed_out] if len(embed_out.shape) == 1 else [embed_out[x] for x in range(embed_out.shape[0])]
    for r in rows:
        if r.shape[0] != 768:  # set_up_textual_embeddings: "shape mismatch ... embedding will be ignored"
            raise ValueError(f"shape mismatch {r.shape[0]} != 768")
    return torch.stack(rows).float().numpy()


def invokeai_probe(path: Path) -> str:
    """InvokeAI configs/textual_inversion.py TI_Config_Base._file_looks_like_embedding + _get_base_or_raise:
    the base model the installer assigns, or ValueError('unrecognized token dimension N')."""
    if path.suffix == ".safetensors":
        import safetensors.torch

        sd = safetensors.torch.load_file(str(path), device="cpu")
    else:
        sd = torch.load(path, map_location="cpu")  # after picklescan; torch >= 2.6 defaults to weights_only
    looks = (path.name in ("learned_embeds.safetensors", "learned_embeds.bin")
             or any(k in {"string_to_param", "emb_params", "clip_g"} for k in sd)
             or (len(sd) < 10 and all(isinstance(v, torch.Tensor) for v in sd.values())))
    if not looks:
        raise ValueError("model does not look like a textual inversion embedding file")
    if "string_to_token" in sd:
        dim = list(sd["string_to_param"].values())[0].shape[-1]
    elif "emb_params" in sd:
        dim = sd["emb_params"].shape[-1]
    elif "clip_g" in sd:
        dim = sd["clip_g"].shape[-1]
    else:
        dim = list(sd.values())[0].shape[0]
    bases = {768: "sd-1", 1024: "sd-2", 1280: "sdxl"}
    if dim not in bases:
        raise ValueError(f"unrecognized token dimension {dim}")
    return bases[dim]


def invokeai_load(path: Path) -> np.ndarray:
    """InvokeAI backend/textual_inversion.py TextualInversionModelRaw.from_checkpoint: the embedding it uses."""
    if path.suffix == ".safetensors":
        import safetensors.torch

        sd = safetensors.torch.load_file(str(path), device="cpu")
    else:
        sd = torch.load(path, map_location="cpu")
    if "string_to_param" in sd:
        emb = next(iter(sd["string_to_param"].values()))
    elif "emb_params" in sd:
        emb = sd["emb_params"]
    elif "clip_g" in sd and "clip_l" in sd:
        raise ValueError("SDXL")
    else:
        emb = next(iter(sd.values()))
        if len(emb.shape) == 1:
            emb = emb.unsqueeze(0)
    return emb.float().numpy()
