"""`export` / `import`: learned embeddings in the layouts other tools load.

- diffusers: `learned_embeds.safetensors` = {token: float32[n_vectors, 768]} (what `load_textual_inversion` reads;
  a [n, 768] tensor becomes tokens <t>, <t>_1, ...). Identical to our run's embedding files.
- A1111 (stable-diffusion-webui embeddings folder): `.pt` with `string_to_param: {"*": [n, 768]}` (its own
  layout), or `.safetensors` holding the single tensor `emb_params`.
Importing reads any of these into a new run folder (kind "import") so it can be generated from and compared.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.runfolder import Run, atomic_write_bytes

IMPORT_STEP = 1  # an imported embedding has no training history: it is stored as the run's only checkpoint


def export_embedding(run: Run, fmt: str, out: Path, checkpoint: str = "final") -> Path:
    steps = run.resolve_steps(checkpoint)
    if len(steps) != 1:
        raise UserError(f"--checkpoint {checkpoint!r}: pick one checkpoint (e.g. final or a step)")
    step = steps[0]
    token = run.token
    vecs = run.load_embedding(step)[token].astype(np.float32)
    md = {"token": token, "step": str(step), "run": run.name, "base_model": "CompVis/stable-diffusion-v1-4",
          "weights_source": str(run.weights.get("source")), "format": fmt}
    out = Path(out)
    if fmt == "diffusers":
        from safetensors.numpy import save

        if out.suffix != ".safetensors":
            raise UserError(f"--out {out}: the diffusers layout is a .safetensors file (learned_embeds.safetensors)")
        atomic_write_bytes(out, save({token: vecs}, metadata=md))
    elif fmt == "a1111":
        if out.suffix == ".safetensors":
            from safetensors.numpy import save

            atomic_write_bytes(out, save({"emb_params": vecs}, metadata=md))
        elif out.suffix == ".pt":
            import io

            import torch

            data = {"string_to_token": {"*": 265}, "string_to_param": {"*": torch.from_numpy(vecs.copy())},
                    "name": token.strip("<>"), "step": step, "sd_checkpoint": None,
                    "sd_checkpoint_name": "stable-diffusion-v1-4", "tomcat_ti": md}
            buf = io.BytesIO()
            torch.save(data, buf)
            atomic_write_bytes(out, buf.getvalue())
        else:
            raise UserError(f"--out {out}: A1111 embeddings are .pt or .safetensors files")
    else:
        raise UserError(f"--format {fmt!r}: use diffusers or a1111")
    return out


def read_embedding_file(path: Path) -> tuple[str | None, np.ndarray]:
    """(token name if the file has one, float32[n, 768]) from a diffusers or A1111 file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            data = dict(load_file(str(path)))
            if "emb_params" in data and len(data) == 1:
                return None, _as_matrix(path, data["emb_params"])
            if len(data) != 1:
                raise UserError(f"{path}: holds {len(data)} tensors ({', '.join(list(data)[:5])}); expected one "
                                "token's embedding")
            (name, value), = data.items()
            return name, _as_matrix(path, value)
        if path.suffix in (".pt", ".bin"):
            import torch

            data = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(data, dict) and "string_to_param" in data:
                (value,) = data["string_to_param"].values()
                return None, _as_matrix(path, value.detach().float().numpy())
            if isinstance(data, dict) and len(data) == 1:
                (name, value), = data.items()
                return name, _as_matrix(path, value.detach().float().numpy())
            raise UserError(f"{path}: not a diffusers ({{token: tensor}}) or A1111 (string_to_param) embedding")
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{path}: cannot read embedding ({type(e).__name__}: {e})") from None
    raise UserError(f"{path}: unknown embedding file type; use .safetensors, .pt or .bin")


def _as_matrix(path: Path, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 768:
        raise UserError(f"{path}: embedding shape {tuple(arr.shape)} does not fit SD v1's text encoder "
                        "([n_vectors, 768])")
    return arr


def import_embedding(path: Path, runs_dir: Path, name: str | None, token: str | None, weights: str,
                     weights_seed: int, resolution: int, prop: str) -> Run:
    from core.runfolder import sha256_file
    from core.tokenizer import placeholder_tokens, validate_token
    from core.weights import WeightSpec

    file_token, vecs = read_embedding_file(path)
    token = token or file_token
    if not token:
        raise UserError(f"{path}: the file names no token; pass --token '<name>'")
    validate_token(token)
    spec = WeightSpec.parse(weights, weights_seed)
    run = Run.create(runs_dir, name or f"import-{Path(path).stem}-{time.strftime('%Y%m%d-%H%M%S')}", {
        "kind": "import", "status": "finished",
        "config": {"weights": weights, "weights_seed": weights_seed, "resolution": resolution,
                   "token": token, "vectors": int(vecs.shape[0]), "property": prop},
        "token": {"placeholder": token, "initializer": None, "vectors": int(vecs.shape[0]),
                  "tokens": placeholder_tokens(token, int(vecs.shape[0]))},
        "property": prop, "weights": spec.provenance(),
        "source_file": {"path": str(path), "sha256": sha256_file(Path(path))},
        "final_step": IMPORT_STEP,
        "timings": {"seconds_total": 0.0, "steps_done": 0},
    })
    run.save_embedding(IMPORT_STEP, {token: vecs}, {"imported_from": Path(path).name})
    return run


# ------------------------------------------------------------------------------------------------------ CLI
def add_arguments(p, command: str) -> None:
    if command == "export":
        p.add_argument("run_dir", type=Path, metavar="RUN")
        p.add_argument("--format", choices=("diffusers", "a1111"), default="diffusers")
        p.add_argument("--out", type=Path, required=True, help="learned_embeds.safetensors | NAME.pt | NAME.safetensors")
        p.add_argument("--checkpoint", default="final", help="'final' or a step")
    else:
        p.add_argument("file", type=Path, help="diffusers learned_embeds.safetensors/.bin or A1111 .pt/.safetensors")
        p.add_argument("--token", help="placeholder token (default: the name stored in the file)")
        p.add_argument("--property", choices=("object", "style"), default="object")
        p.add_argument("--weights", default="kerascv", help="SD weights to generate with: kerascv | random | DIR")
        p.add_argument("--weights-seed", type=int, default=0)
        p.add_argument("--resolution", type=int, default=512)
        p.add_argument("--runs-dir", type=Path, default=Path("runs"))
        p.add_argument("--name")


def run(args) -> int:
    if args.command == "export":
        out = export_embedding(Run(args.run_dir), args.format, args.out, args.checkpoint)
        print(f"wrote {out}")
    else:
        r = import_embedding(args.file, args.runs_dir, args.name, args.token, args.weights, args.weights_seed,
                             args.resolution, args.property)
        print(f"imported into {r.path} (checkpoint {IMPORT_STEP}); generate with --checkpoints final")
    return 0
