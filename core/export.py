"""`export` / `import`: a run's learned token as files other tools load with their default settings, and any
tool's embedding file brought into a run folder. File layouts live in core/embedfile.py; this module decides
what each format gets (provenance, names, the --bundle folder) and owns the two commands.

Formats (`--format`): diffusers (learned_embeds.safetensors), a1111 (.pt or .safetensors), comfyui, invokeai
and kohya (all three: `emb_params` safetensors with ModelSpec metadata, which each of them loads for any number
of vectors). The README's export table says which tool loads which file.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from core import __version__
from core.config import StrictConfig, add_options, add_run_argument, check, check_resolution, from_args, option
from core.embedfile import (
    META_PREFIX,
    a1111_pt_bytes,
    clean,
    diffusers_bytes,
    emb_params_bytes,
    metadata_json,
    read_embedding_file,
)
from core.errors import UserError
from core.runfolder import (
    PIPELINE_CHECK_LABEL,
    Run,
    RunRecord,
    TokenInfo,
    WeightsProvenance,
    atomic_write_bytes,
    check_run_name,
    check_runs_dir,
)

IMPORT_STEP = 1  # an imported embedding has no training history: it is stored as the run's only checkpoint
ARCHITECTURE = "stable-diffusion-v1/textual-inversion"  # ModelSpec: kohya's ARCH_SD_V1 + ADAPTER_TEXTUAL_INVERSION
LICENSE = "creativeml-openrail-m"  # SD v1.4's licence; its use restrictions carry over to what is made with it
BASE_MODEL = "stable-diffusion-v1-4"
RANDOM_CHECKPOINT_NAME = "random-weights-PIPELINE-CHECK (not stable-diffusion-v1-4)"


@dataclass(frozen=True)
class Format:
    """One `--format`: the file suffixes it writes, its default file name, and how its bytes are made."""

    suffixes: tuple[str, ...]
    default_name: str  # {name} = the token's file name
    help: str


FORMATS: dict[str, Format] = {
    "diffusers": Format((".safetensors",), "learned_embeds.safetensors",
                        "diffusers load_textual_inversion: {token: [768]} (one vector) or {token: [n, 768]}"),
    "a1111": Format((".pt", ".safetensors"), "{name}.pt",
                    "AUTOMATIC1111 embeddings folder: .pt (string_to_param, passes its safe unpickler) or "
                    ".safetensors (emb_params)"),
    "comfyui": Format((".safetensors",), "{name}.safetensors", "ComfyUI models/embeddings: emb_params safetensors"),
    "invokeai": Format((".safetensors",), "{name}.safetensors",
                       "InvokeAI model install: emb_params safetensors (passes its width check for any n)"),
    "kohya": Format((".safetensors",), "{name}.safetensors", "kohya-style emb_params with ModelSpec metadata"),
}


# ----------------------------------------------------------------------------------------------- provenance
def file_stem(token: str) -> str:
    """The token as a file name (A1111 and ComfyUI use the file name as the prompt word): <tom-cat> -> tom-cat."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", token.strip("<>")).strip("-.")
    return stem or "embedding"


def weights_hash(files: dict[str, str]) -> str | None:
    """One hash for a set of weight files: sha256 of their `sha256sum` listing (KerasCV ships SD v1.4 as four
    .h5 files, so there is no single-checkpoint hash to quote)."""
    if not files:
        return None
    listing = "".join(f"{sha}  {name}\n" for name, sha in sorted(files.items()))
    return hashlib.sha256(listing.encode()).hexdigest()


def provenance(run: Run, step: int, vectors: np.ndarray) -> dict[str, str]:
    """Where the vectors came from, as str -> str (`tomcat_ti.*`), the same in every format. A random-weight run
    says so; real weights carry their files' sha256 and the combined hash; an imported run names its source."""
    rec = run.record
    w = rec.weights
    files = {str(k): str(v) for k, v in w.files.items()}
    pc = rec.is_pipeline_check
    source_file = dict(rec.source_file or {})
    if rec.kind == "import":
        base = f"unknown: imported from {source_file.get('path', '?')}"
    elif pc:
        base = f"none: {w.source} weights (PIPELINE CHECK, not {BASE_MODEL})"
    elif w.checkpoint is not None:  # the user's SD 1.x checkpoint, as A1111 names it: "name [short hash]"
        base = f"{w.checkpoint.name} [{w.checkpoint.short_hash}] (SD 1.x checkpoint, sha256 {w.checkpoint.sha256})"
    else:
        base = f"{BASE_MODEL} (KerasCV weights{'' if w.verified else ', UNVERIFIED files'})"
    out = {
        "token": rec.token.placeholder, "vectors": str(len(vectors)), "run": rec.name, "step": str(step),
        "property": rec.property, "weights_source": w.source,
        "pipeline_check": "true" if pc else "false", "base_model": base,
        "base_weights_sha256": metadata_json(files), "base_weights_hash": weights_hash(files) or "",
        "tool": f"tomcat-ti {__version__}",
    }
    if w.checkpoint is not None and not pc:
        c = w.checkpoint
        out.update(base_checkpoint=c.name, base_checkpoint_short_hash=c.short_hash,
                   base_checkpoint_licence=c.licence or "not stated")
    if pc:
        out["note"] = PIPELINE_CHECK_LABEL
    if rec.kind == "import":
        out["imported_from"] = metadata_json({k: source_file.get(k) for k in ("path", "sha256", "layout")})
    return out


def modelspec(run: Run, token: str, prov: dict[str, str]) -> dict[str, str]:
    """ModelSpec 1.0.0 keys, as kohya's sd-scripts write them for an SD v1 textual inversion."""
    rec = run.record
    created = datetime.datetime.fromtimestamp(rec.created or time.time(), datetime.timezone.utc)
    check = " - PIPELINE CHECK (random weights)" if prov["pipeline_check"] == "true" else ""
    return {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": ARCHITECTURE,
        "modelspec.implementation": "diffusers",
        "modelspec.title": f"{token} ({rec.name}, step {prov['step']}){check}",
        "modelspec.description": (f"Textual-inversion token {token} ({prov['vectors']} vector(s)) trained by "
                                  f"tomcat-ti; base: {prov['base_model']}."
                                  + (f" {PIPELINE_CHECK_LABEL}" if check else "")),
        "modelspec.resolution": f"{rec.resolution}x{rec.resolution}",
        "modelspec.trigger_phrase": token,
        "modelspec.license": prov.get("base_checkpoint_licence", LICENSE),  # a fine-tune's own, never assumed
        "modelspec.date": created.date().isoformat(),
        "modelspec.tags": "textual-inversion" + (",pipeline-check" if check else ""),
    }


def a1111_checkpoint(prov: dict[str, str]) -> tuple[str | None, str]:
    """A1111's `sd_checkpoint` (the short hash it shows) and `sd_checkpoint_name`: the truth, never SD v1.4's name
    for random weights."""
    if prov["pipeline_check"] == "true":
        return None, RANDOM_CHECKPOINT_NAME
    if prov["base_model"].startswith("unknown"):
        return None, "unknown (imported embedding)"
    if "base_checkpoint_short_hash" in prov:  # what A1111 itself records for a checkpoint it loaded
        return prov["base_checkpoint_short_hash"], prov["base_checkpoint"]
    h = prov["base_weights_hash"]
    return (h[:10] if h else None), f"{BASE_MODEL} (KerasCV weights, files hash {h[:10]})"


# --------------------------------------------------------------------------------------------------- export
def export_bytes(run: Run, fmt: str, suffix: str, step: int) -> bytes:
    """The file `fmt` writes for checkpoint `step` (no disk writes: the dashboard offers these as downloads)."""
    token = run.record.token.placeholder
    vecs = run.load_embedding(step)[token].astype(np.float32)
    prov = provenance(run, step, vecs)
    flat = {f"{META_PREFIX}{k}": v for k, v in prov.items()}
    if fmt == "diffusers":
        return diffusers_bytes(token, vecs, flat)
    if fmt == "a1111" and suffix == ".pt":
        sd_checkpoint, sd_name = a1111_checkpoint(prov)
        return a1111_pt_bytes(vecs, token, step, sd_checkpoint, sd_name, prov)
    return emb_params_bytes(vecs, {**modelspec(run, token, prov), **flat})


def export_step(run: Run, checkpoint: str) -> int:
    """The one checkpoint step an export uses: `final`, a step, or `recommended` (core.advice's rule on the run's
    CLIP scores)."""
    if checkpoint.strip() == "recommended":
        from core.advice import recommended_step

        return recommended_step(run)
    steps = run.resolve_steps(checkpoint)
    if len(steps) != 1:
        raise UserError(f"--checkpoint {checkpoint!r}: pick one checkpoint (e.g. final or a step)")
    return steps[0]


def check_out_file(out: Path, force: bool) -> None:
    """--out must be a file path in a writable folder, and not overwrite an existing file without --force."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {clean(out)}: is a folder; give a file name, "
                        f"e.g. {clean(out / 'learned_embeds.safetensors')}")
    if out.exists() and not force:
        raise UserError(f"--out {clean(out)}: exists; pass --force to overwrite it, or choose another name")
    parent = out.parent if str(out.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"--out {clean(out)}: cannot write in {clean(probe)} (not a writable folder); "
                        "choose another path")


def _write(out: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(out, data)
    except OSError as e:
        raise UserError(f"--out {clean(out)}: cannot write ({clean(e.strerror or e)}); choose another path") from None


def export_embedding(run: Run, fmt: str, out: Path, checkpoint: str = "final", force: bool = False) -> Path:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    out = Path(out)
    spec = FORMATS[fmt]
    if out.suffix.lower() not in spec.suffixes and not out.is_dir():
        raise UserError(f"--out {clean(out)}: the {fmt} format writes a {' or '.join(spec.suffixes)} file "
                        f"(e.g. {spec.default_name.format(name=file_stem(run.record.token.placeholder))})")
    check_out_file(out, force)
    step = export_step(run, checkpoint)
    _write(out, export_bytes(run, fmt, out.suffix.lower(), step))
    return out


def best_grid(run: Run, step: int) -> Path | None:
    """The grid that shows the exported checkpoint best: its prompt x seed grid (txt2img before img2img), else
    the latest checkpoint grid, else any grid. Grids of random-weight runs carry the PIPELINE CHECK banner."""
    if not run.grids_dir.is_dir():
        return None
    grids = sorted(run.grids_dir.glob("*.png"))
    for mode in ("txt2img", "img2img"):
        p = run.grid_path(f"checkpoint-{step:06d}-{mode}.png")
        if p.exists():
            return p
    ckpt = [g for g in grids if g.name.startswith("checkpoint-")]
    return (ckpt or grids or [None])[-1]


def description(run: Run, step: int, prov: dict[str, str], stem: str) -> str:
    lines = []
    if prov["pipeline_check"] == "true":
        lines += [PIPELINE_CHECK_LABEL, ""]
    lines += [
        f"{prov['token']}: textual-inversion embedding for Stable Diffusion v1 ({prov['vectors']} vector(s), "
        f"{prov['property']}), made by tomcat-ti, run {run.name}, step {step}.",
        f"Prompt word: {stem} in AUTOMATIC1111 and InvokeAI, embedding:{stem} in ComfyUI, "
        f"{prov['token']} in diffusers.",
        f"Base model: {prov['base_model']}. Weights hash: {prov['base_weights_hash'] or 'none'}.",
        # CreativeML Open RAIL-M 4(a)-(b): the use restrictions pass on, and every recipient gets the licence text
        f"Licence: CreativeML Open RAIL-M ({LICENSE}); its full text is {stem}.LICENSE.txt beside this file. Its "
        "paragraph-5 use restrictions (Attachment A) apply to this embedding and to what you make with it; pass "
        "them and the licence text on with every copy.",
    ]
    return "\n".join(lines) + "\n"


def export_bundle(run: Run, folder: Path, checkpoint: str = "final", force: bool = False) -> list[Path]:
    """What a user drops into a web UI's embeddings folder: NAME.safetensors (emb_params: A1111, ComfyUI and
    InvokeAI load it for any number of vectors), NAME.preview.png (A1111's card preview, from the best grid),
    NAME.description.txt (A1111's card description) and NAME.LICENSE.txt (the CreativeML Open RAIL-M text: its
    paragraph 4(b) requires giving every recipient a copy; web UIs ignore .txt files in that folder)."""
    from core.card.legal import license_text

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--bundle {clean(folder)}: exists and is not a folder; give a folder path")
    step = export_step(run, checkpoint)
    token = run.record.token.placeholder
    stem = file_stem(token)
    emb = folder / f"{stem}.safetensors"
    files: dict[Path, Callable[[], bytes]] = {emb: lambda: export_bytes(run, "kohya", ".safetensors", step)}
    grid = best_grid(run, step)
    if grid is not None:
        files[folder / f"{stem}.preview.png"] = grid.read_bytes
    vecs = run.load_embedding(step)[token]
    files[folder / f"{stem}.description.txt"] = lambda: description(
        run, step, provenance(run, step, vecs), stem).encode("utf-8")
    files[folder / f"{stem}.LICENSE.txt"] = lambda: license_text().encode("utf-8")
    for p in files:
        check_out_file(p, force)
    for p, make in files.items():
        _write(p, make())
    return list(files)


# --------------------------------------------------------------------------------------------------- import
def import_embedding(path: Path, runs_dir: Path, name: str | None, token: str | None, weights: str,
                     weights_seed: int, resolution: int, prop: str) -> Run:
    from core.runfolder import sha256_file
    from core.tokenizer import placeholder_tokens, validate_token
    from core.weights import WeightSpec

    emb = read_embedding_file(path)
    token = token or emb.token
    if not token:
        raise UserError(f"{clean(path)}: the file names no token ({emb.layout} layout); pass --token "
                        f"'<{file_stem(Path(path).stem)}>'")
    validate_token(token)
    spec = WeightSpec.parse(weights, weights_seed)
    n = int(emb.vectors.shape[0])
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-.") or "embedding"
    name = name or f"import-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    record = RunRecord.new(
        name=name, kind="import", property=prop,
        config={"weights": weights, "weights_seed": weights_seed, "resolution": resolution, "token": token,
                "vectors": n, "property": prop},
        token=TokenInfo(token, None, n, tuple(placeholder_tokens(token, n))),
        weights=WeightsProvenance.from_json(spec.provenance()), final_step=IMPORT_STEP,
        source_file={"path": str(path), "sha256": sha256_file(Path(path)), "layout": emb.layout,
                     "metadata": emb.metadata})
    run = _staging_run(runs_dir, record)
    with run.stage("import", owns_status=True):  # `finished` only once the embedding is in place
        run.save_embedding(IMPORT_STEP, {token: emb.vectors}, {"imported_from": Path(path).name})
        run.update(status="finished")
    return _move_into_place(run, Path(runs_dir) / name)


STAGING = ".importing"  # runs_dir/.importing/NAME: an import being written (no run.json at its top: not a run)


def _staging_run(runs_dir: Path, record: RunRecord) -> Run:
    """A new run folder for `import`, made in runs_dir/.importing/ and moved into place finished
    (`_move_into_place`): a kill at any moment leaves no run or the whole one, so re-running `import` loses and
    duplicates nothing. A folder a killed import left there is cleared first."""
    import shutil

    check_run_name(record.name)
    check_runs_dir(runs_dir)
    final = Path(runs_dir) / record.name
    if final.exists() and any(final.iterdir()):
        raise UserError(f"{final}: a run with this name exists; choose another --name")
    staging = Run(Path(runs_dir) / STAGING / record.name)
    if staging.path.exists():
        holder = staging.lock_holder()
        if holder is not None:
            raise UserError(f"{final}: pid {holder['pid']} (import) is importing into this name; wait for it "
                            "to end (or stop it) and retry")
        shutil.rmtree(staging.path)  # a killed import's half-written folder
    return Run.create(staging.path.parent, record.name, record)


def _move_into_place(staging: Run, final: Path) -> Run:
    try:
        os.rename(staging.path, final)
    except OSError as e:  # another import took the name meanwhile
        raise UserError(f"{final}: cannot move the imported run into place ({e.strerror}); choose another "
                        "--name") from e
    return Run(final)


# ------------------------------------------------------------------------------------------------------ CLI
@dataclass
class ExportConfig(StrictConfig):
    """`export` options besides the run (one command-line option per field)."""

    format: str = option("diffusers", "; ".join(f"{k}: {v.help}" for k, v in FORMATS.items()),
                         choices=tuple(FORMATS))
    out: Path | None = option(None, "file to write (learned_embeds.safetensors | NAME.pt | NAME.safetensors)",
                              metavar="FILE")
    bundle: Path | None = option(None, "write NAME.safetensors + NAME.preview.png + NAME.description.txt + "
                                       "NAME.LICENSE.txt into DIR (a web UI's embeddings folder); --format is "
                                       "ignored", metavar="DIR")
    checkpoint: str = option("final", "'final', a step, or 'recommended' (the checkpoint core.advice recommends from "
                                      "the run's CLIP scores; see the dashboard's Risks page and the model card)")
    force: bool = option(False, "overwrite existing files")

    def validate(self) -> None:
        if (self.out is None) == (self.bundle is None):
            raise UserError("export: pass exactly one of --out FILE or --bundle DIR")


@dataclass
class ImportConfig(StrictConfig):
    """`import` options besides the embedding file (one command-line option per field)."""

    token: str | None = option(None, "placeholder token (default: the token the file names)")
    property: str = option("object", "object: a character; style: an art style (picks generate's eval prompts)",
                           choices=("object", "style"))
    weights: str = option("kerascv", "SD weights to generate with: kerascv | random | DIR")
    weights_seed: int = option(0, "seed of --weights random")
    resolution: int = option(512, "generation size in px (SD v1.4's is 512; any multiple of 64)")
    runs_dir: Path = option(Path("runs"), "where the run folder is made", metavar="DIR")
    name: str | None = option(None, "run folder name (default: from the token)")

    def validate(self) -> None:
        check(0 <= self.weights_seed < 2**32, "weights_seed", self.weights_seed, "must be in [0, 2**32)")
        check_resolution(self.resolution)


def add_arguments(p, command: str) -> None:
    if command == "export":
        add_run_argument(p, "the run whose learned token is exported")
        add_options(p, ExportConfig)
    else:
        p.add_argument("file", type=Path, help="diffusers learned_embeds.safetensors/.bin, A1111 .pt/.safetensors, "
                                               "kohya/ComfyUI/InvokeAI emb_params .safetensors, original TI .pt")
        add_options(p, ImportConfig)


def run(args: Any) -> int:
    if args.command == "export":
        cfg = from_args(ExportConfig, args)
        r = Run(args.run)
        if cfg.checkpoint.strip() == "recommended":
            print(f"checkpoint recommended = step {export_step(r, 'recommended')} (core.advice; the dashboard's "
                  "Risks page and the model card say why)")
        if cfg.bundle is not None:
            for p in export_bundle(r, cfg.bundle, cfg.checkpoint, cfg.force):
                print(f"wrote {clean(p)}")
        else:
            print(f"wrote {clean(export_embedding(r, cfg.format, cfg.out, cfg.checkpoint, cfg.force))}")
        if r.record.is_pipeline_check:
            print("note: random-weight run: the files say PIPELINE CHECK in their metadata")
    else:
        cfg = from_args(ImportConfig, args)
        r = import_embedding(args.file, cfg.runs_dir, cfg.name, cfg.token, cfg.weights, cfg.weights_seed,
                             cfg.resolution, cfg.property)
        print(f"imported {r.record.token.placeholder} into {clean(r.path)} (checkpoint {IMPORT_STEP}); "
              "generate with --checkpoints final")
    return 0
