"""Dashboard data access: the one module the pages read runs through (via `core.runfolder`), with caching.

Pages get records, never copies of their fields: `run_infos` gives a `RunEntry` per run folder holding its
`RunRecord` (plus the checkpoints on disk, `Run.final_step`, which files exist and a stale check); scores.json,
audit.json, comparisons and sweeps come as `ScoresRecord`, `AuditRecord`, `ComparisonRecord` and `SweepState`.
What a stage computed is shown as it wrote it, never recomputed: the summaries and the checkpoint advice `score`
wrote, the comparison `compare` wrote (found through `core.runfolder.reports_dir` / `comparison_dir`).
Loaders are cached with `st.cache_data` through one decorator, `dashboard.cache.file_loader`, keyed by the files'
(mtime_ns, size): a file that changes on disk is read again on the next rerun, an unchanged one is never
re-parsed. A file that cannot be read raises `DataError` (a `UserError`) naming the file; pages catch it and show
an error for that run only.

Nothing here imports TensorFlow, keras, keras_cv or torch: the dashboard only reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import pandas as pd
import streamlit as st

from core.errors import UserError
from core.runfolder import (
    PIPELINE_CHECK_LABEL,  # noqa: F401 - the pages read the label here
    AuditRecord,
    Run,
    RunRecord,
    ScoresRecord,
    comparison_dir,
    list_runs,
    reports_dir,
)
from dashboard.cache import DataError, caches_errors, damaged, file_loader, signature  # noqa: F401 (DataError)
from dashboard.sweepdata import SweepView, sweep, sweep_names  # noqa: F401 - the pages read sweeps here

if TYPE_CHECKING:
    from core.compare import ComparisonRecord

DEFAULT_RUNS_DIR = "runs"
RUNS_DIR_ENV = "TOMCAT_RUNS_DIR"
THUMB_SIZE = 192
REAL_TRAIN_COMMAND = (
    "python -m core train --weights kerascv --images DIR --token '<tom-cat>' --init cat --property object"
)


# --------------------------------------------------------------------------------------- the runs folder
def runs_dir_from_args(argv: Sequence[str], environ: dict[str, str] | os._Environ) -> str:
    """`--runs-dir DIR` after `--` on the streamlit command line, else $TOMCAT_RUNS_DIR, else `runs`.

    Fixed for the server's life: no page offers a field that points it at another folder.
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--runs-dir")
    known, _ = parser.parse_known_args(list(argv))
    if known.runs_dir:
        return known.runs_dir
    return environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR


def review_mode_from_args(argv: Sequence[str]) -> bool:
    """`--review` after `--` on the streamlit command line (python -m dashboard --review passes it): the pages show
    flag buttons and the findings editor, which write RUN/review/ through core.review. Read-only otherwise."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--review", action="store_true")
    return parser.parse_known_args(list(argv))[0].review


def run_signature(run: Run) -> tuple:
    return tuple(signature(p) for p in (run.meta_path, run.metrics_path, run.images_index_path, run.scores_path,
                                   run.scores_meta_path, run.neighbors_path, run.embeddings_dir,
                                   run.grids_dir, run.card_overrides_path, run.audit_meta_path,
                                   run.annotations_path, run.findings_path))


def q(path: str | Path) -> str:
    """A path quoted for a shell command shown to the user."""
    return shlex.quote(str(path))


# ------------------------------------------------------------------------------------------- run summaries
RUN_FILES = ("metrics_path", "images_index_path", "scores_path", "scores_meta_path", "neighbors_path",
             "audit_meta_path")


@dataclass(frozen=True)
class RunEntry:
    """One run folder as the pages list it: the validated `RunRecord` itself (never a copy of its fields; None when
    run.json is damaged, with `error` saying why), the checkpoints on disk, which of its files exist, and whether
    a `running` status is stale (no process holds the writer lock)."""

    name: str
    path: str
    record: RunRecord | None
    error: str | None = None
    checkpoints: tuple[int, ...] = ()
    final_step: int | None = None  # Run.final_step: the one rule
    present: frozenset[str] = frozenset()  # the RUN_FILES that exist (Run attribute names)
    stale: str | None = None

    @property
    def pipeline_check(self) -> bool:
        """Random-weight (or unreadable) runs: never shown as a model result."""
        return self.record is None or self.record.is_pipeline_check

    @property
    def status(self) -> str:
        return "damaged" if self.record is None else ("stale" if self.stale else self.record.status)

    def has(self, attr: str) -> bool:
        """Whether the run's file `attr` (a Run path attribute: "scores_path", "images_index_path", ...) exists."""
        return attr in self.present

    @property
    def label(self) -> str:
        if self.record is None:
            return f"{self.name} (run.json damaged)"
        return f"{self.name} ({self.record.property}, {self.record.weights.source})"


def run_infos(runs_dir: str) -> list[RunEntry]:
    """One entry per run folder under runs_dir (sorted by name). A damaged run gets `error` and no record."""
    return [run_info(str(r.path)) for r in list_runs(runs_dir)]


def run_info(run_path: str) -> RunEntry:
    run = Run(run_path)
    entry = _run_entry(run_path, run_signature(run))
    if entry.record is not None and entry.record.status == "running":  # not cached: whether a process still
        try:                                                             # writes the run changes by itself
            stale = run.stale_reason(entry.record)
        except Exception:  # noqa: BLE001
            stale = None
        entry = dataclasses.replace(entry, stale=stale)
    return entry


@st.cache_data(show_spinner=False, max_entries=2000)
def _run_entry(run_path: str, key: tuple) -> RunEntry:
    run = Run(run_path)
    try:
        record = run.record
        steps = tuple(run.embedding_steps())
        final = run.final_step()
    except UserError as e:
        return RunEntry(run.name, run_path, None, error=str(e))
    except Exception as e:  # noqa: BLE001 - an unreadable file must not take the page down
        return RunEntry(run.name, run_path, None, error=str(damaged(run.meta_path, e)))
    present = frozenset(f for f in RUN_FILES if getattr(run, f).exists())
    return RunEntry(run.name, run_path, record, checkpoints=steps, final_step=final, present=present)


def ok_runs(infos: list[RunEntry]) -> list[RunEntry]:
    return [i for i in infos if not i.error]


def only_pipeline_checks(infos: list[RunEntry]) -> bool:
    """True when every readable run is a random-weight pipeline check (and there is at least one)."""
    ok = ok_runs(infos)
    return bool(ok) and all(i.pipeline_check for i in ok)


# ------------------------------------------------------------------------------------------------ metrics
@file_loader("metrics_path", max_entries=200)
def metrics(run: Run) -> pd.DataFrame:
    """metrics.csv as a DataFrame (step, loss, lr, seconds); empty when the file is absent."""
    return pd.DataFrame(run.read_metrics(), columns=["step", "loss", "lr", "seconds"])


def _typed_frame(rows: list[dict[str, str]], required: Sequence[str], numeric: Sequence[str],
                 ints: Sequence[str]) -> pd.DataFrame:
    """CSV rows -> DataFrame: `required` columns present, `numeric` ones coerced, `ints` whole numbers.
    Raises ValueError naming what is wrong; an empty file gives an empty frame."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"missing column(s) {', '.join(missing)}")
    for c in numeric:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    if df[list(ints)].isna().any().any():
        raise ValueError(f"non-numeric {' or '.join(ints)}")
    for c in ints:
        df[c] = df[c].astype(int)
    return df


# ------------------------------------------------------------------------------------------------- images
IMAGE_NUMERIC = ("seed", "step", "steps", "guidance", "width", "height", "seconds")


@file_loader("images_index_path")
def images(run: Run) -> pd.DataFrame:
    """images.csv as a DataFrame (IMAGE_COLUMNS; seed and step as int); empty when there is none."""
    df = _typed_frame(run.read_images(), ("path", "prompt", "seed", "step"), IMAGE_NUMERIC, ("step", "seed"))
    if df.empty:
        return df
    if "template" not in df.columns:
        df["template"] = df["prompt"]
    df["template"] = df["template"].fillna("").where(df["template"].fillna("") != "", df["prompt"])
    return df.reset_index(drop=True)


def image_file(run_path: str, rel: str) -> Path:
    """The file of an images.csv row (paths there are relative to the run folder), resolved and contained in
    the run: an absolute path, `..` or a symlink out of the run raises DataError (never shown or offered)."""
    try:
        return Run(run_path).resolve_inside(rel, what="image")
    except UserError as e:
        raise DataError(str(e)) from None


def paginate(n_items: int, page: int, per_page: int) -> tuple[int, int, int, int]:
    """(start, stop, page, n_pages) for 1-based `page`, clamped into range; n_pages >= 1."""
    per_page = max(1, int(per_page))
    n_pages = max(1, math.ceil(n_items / per_page))
    page = min(max(1, int(page)), n_pages)
    start = (page - 1) * per_page
    return start, min(start + per_page, n_items), page, n_pages


def pairs(df: pd.DataFrame, before: int, after: int, prompts: Sequence[str] = (),
          seeds: Sequence[int] = ()) -> pd.DataFrame:
    """One row per (prompt, seed) generated at `after`, with the image at `before` beside it when there is one.

    Columns: prompt, template, seed, before_path, after_path. Empty prompts/seeds select all.
    Ordered by prompt (as first generated) then seed.
    """
    if df.empty:
        return pd.DataFrame(columns=["prompt", "template", "seed", "before_path", "after_path"])
    sel = df
    if prompts:
        sel = sel[sel["prompt"].isin(list(prompts))]
    if seeds:
        sel = sel[sel["seed"].isin([int(s) for s in seeds])]
    order = {p: i for i, p in enumerate(dict.fromkeys(df["prompt"]))}
    a = sel[sel["step"] == after].drop_duplicates(["prompt", "seed"], keep="last")
    b = sel[sel["step"] == before].drop_duplicates(["prompt", "seed"], keep="last")
    out = a[["prompt", "template", "seed", "path"]].rename(columns={"path": "after_path"})
    out = out.merge(b[["prompt", "seed", "path"]].rename(columns={"path": "before_path"}),
                    on=["prompt", "seed"], how="left")
    out["_o"] = out["prompt"].map(order)
    out = out.sort_values(["_o", "seed"], kind="stable").drop(columns="_o").reset_index(drop=True)
    out = out[["prompt", "template", "seed", "before_path", "after_path"]].astype({"before_path": object})
    out["before_path"] = [p if isinstance(p, str) and p else None for p in out["before_path"]]
    return out


def shared_pairs(df_a: pd.DataFrame, step_a: int, df_b: pd.DataFrame, step_b: int) -> pd.DataFrame:
    """Images of two runs made from the same prompt template and seed: template, seed, a_path, b_path, a/b prompt."""
    cols = ["template", "seed", "a_prompt", "a_path", "b_prompt", "b_path"]
    if df_a.empty or df_b.empty:
        return pd.DataFrame(columns=cols)
    a = df_a[df_a["step"] == step_a].drop_duplicates(["template", "seed"], keep="last")
    b = df_b[df_b["step"] == step_b].drop_duplicates(["template", "seed"], keep="last")
    m = a[["template", "seed", "prompt", "path"]].merge(
        b[["template", "seed", "prompt", "path"]], on=["template", "seed"], suffixes=("_a", "_b"))
    m = m.rename(columns={"prompt_a": "a_prompt", "path_a": "a_path", "prompt_b": "b_prompt", "path_b": "b_path"})
    return m[cols].reset_index(drop=True)


@caches_errors(lambda path, key, size: Path(path), max_entries=5000)
def _thumbnail(path: str, key: Any, size: int) -> bytes:
    from core.images import opened

    if not Path(path).exists():
        raise DataError(f"{path}: missing (listed in images.csv but not on disk)")
    try:
        with opened(Path(path)) as im:  # size-checked before decoding: no decompression bombs
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
        return buf.getvalue()
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: not an image ({type(e).__name__}: {e})") from e


def thumbnail(path: str | Path, size: int = THUMB_SIZE) -> bytes:
    """A small JPEG of an image, cached by (path, mtime, size); raises DataError for a missing or bad file."""
    return _thumbnail(str(path), signature(Path(path)), int(size))


def file_bytes(path: str | Path) -> bytes:
    """The bytes of a file, for download buttons (pass `lambda: file_bytes(p)` so they load on click)."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e


def image_bytes(path: str | Path) -> bytes:
    """A full-size image's bytes for st.image, after the same checks as a thumbnail (decodable, size-limited)."""
    thumbnail(path, 16)  # DataError for a missing, non-image or oversized file
    return file_bytes(path)


def grids(run_path: str) -> list[str]:
    """Names of the grid PNGs in the run's grids folder (may be none); a symlink leaving the run is not listed."""
    run = Run(run_path)
    d = run.grids_dir
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        if p.suffix.lower() != ".png":
            continue
        try:
            if run.resolve_inside(p, what="grid").is_file():
                out.append(p.name)
        except UserError:
            continue  # never offered; grid_file() would refuse it too
    return sorted(out)


def grid_file(run_path: str, name: str) -> Path:
    """A grid PNG of the run, contained in it (DataError otherwise)."""
    run = Run(run_path)
    try:
        return run.resolve_inside(run.grid_path(Path(name).name), what="grid")
    except UserError as e:
        raise DataError(str(e)) from None


# ------------------------------------------------------------------------------------------------- scores
@file_loader("scores_path")
def scores(run: Run) -> pd.DataFrame:
    """scores.csv as a DataFrame (step, seed as int; clip_i, clip_t as float); empty when absent."""
    df = _typed_frame(run.read_scores(), ("step", "prompt", "seed", "clip_i", "clip_t"),
                      ("step", "seed", "clip_i", "clip_t"), ("step", "seed"))
    if not df.empty and "template" not in df.columns:
        df["template"] = df["prompt"]
    return df


# ---------------------------------------------------------------------------------------------- neighbors
@file_loader("neighbors_path")
def neighbors(run: Run) -> pd.DataFrame:
    """neighbors.csv as a DataFrame (NEIGHBOR_COLUMNS, typed) plus `word` (the token without '</w>')."""
    df = _typed_frame(run.read_neighbors(), ("step", "rank", "token", "cosine"),
                      ("step", "vector", "rank", "token_id", "cosine", "distance_from_init"), ("step", "rank"))
    if df.empty:
        return df
    if "vector" not in df.columns:
        df["vector"] = 0
    df["vector"] = df["vector"].fillna(0).astype(int)
    df["word"] = df["token"].astype(str).str.replace("</w>", "", regex=False)
    return df


# --------------------------------------------------------------------------- what score and compare wrote
@file_loader("scores_meta_path")
def scores_record(run: Run) -> ScoresRecord | None:
    """scores.json as a typed record (core.runfolder.ScoresRecord); None when the run is not scored. A damaged file
    is a DataError naming the file (and key)."""
    return run.scores_record()


@file_loader("scores_meta_path", "scores_path", "images_index_path")
def scores_stale(run: Run) -> str | None:
    """Why scores.json's summaries no longer describe the run's images and scores (with the command that remakes
    them), or None."""
    return run.scores_stale()


def summary(run_path: str, by: str = "step") -> pd.DataFrame:
    """The summaries `score` wrote into scores.json (means with bootstrap 95% CIs, computed with score's
    --n-boot), per checkpoint (by="step") or per prompt template and checkpoint (by="prompt"); never recomputed.
    DataError when scores.json is missing, damaged or incomplete, with the command that makes it."""
    record = scores_record(run_path)
    if record is None or not record.complete:
        state = "is missing" if record is None else "is incomplete (scoring did not finish)"
        raise DataError(f"{Run(run_path).scores_meta_path}: {state}; run `{command_score(run_path)}`")
    return record.by_step_frame() if by == "step" else record.by_prompt_frame()


def comparison_folder(run_path: str, other_path: str) -> str | None:
    """The folder `compare` wrote for these two runs (core.runfolder.comparison_dir, either order), or None."""
    from core.compare import FILES

    a, b = Run(run_path), Run(other_path)
    return next((str(folder) for folder in (comparison_dir(a, b), comparison_dir(b, a))
                 if (folder / FILES["meta"]).is_file()), None)


def model_card(run_path: str, counterpart_path: str | None = None) -> Any:
    """`core.card.build_card` for the run (with the comparison `compare` wrote for it and `counterpart_path`),
    cached by the runs' file signatures and the comparison folder's; the same Card as `python -m core card`.
    Exceptions (UserError naming the file or the command to run) propagate."""
    paths = (run_path,) + ((counterpart_path,) if counterpart_path else ())
    folder = comparison_folder(run_path, counterpart_path) if counterpart_path else None
    folder_sig = tuple((p.name, signature(p)) for p in sorted(Path(folder).iterdir())) if folder else None
    return _model_card(paths, tuple(run_signature(Run(p)) for p in paths), folder_sig)


@st.cache_resource(show_spinner=False, max_entries=50)
def _model_card(paths: tuple, key: tuple, folder_key: Any) -> Any:
    from core.card import build_card

    runs = [Run(p) for p in paths]
    return build_card(runs[0], runs[1] if len(runs) > 1 else None)


def saved_comparisons(runs_dir: str) -> list[str]:
    """Comparison folders under RUNS_DIR/reports/ (core.runfolder.reports_dir: where `compare` writes by default,
    and where the demo writes)."""
    from core.compare import FILES

    reports = reports_dir(runs_dir)
    if not reports.is_dir():
        return []
    return sorted(str(p) for p in reports.iterdir() if (p / FILES["meta"]).is_file())


def saved_comparison(folder: str) -> "ComparisonRecord":
    """`core.compare.read_comparison(folder)`, cached by its files' signatures. UserError when absent/damaged."""
    from core.compare import FILES

    d = Path(folder)
    return _saved_comparison(str(d), tuple(signature(d / f) for f in FILES.values()))


@st.cache_resource(show_spinner=False, max_entries=20)
def _saved_comparison(folder: str, key: tuple) -> "ComparisonRecord":
    # cache_resource: the record holds DataFrames and paths; callers treat it as read-only
    from core.compare import read_comparison

    try:
        return read_comparison(folder)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - e.g. a garbage CSV in the folder
        raise DataError(f"{folder}: the saved comparison cannot be read ({type(e).__name__}: {e})") from e


def cached_call(fn: Callable[..., Any], run_paths: Sequence[str], **options: Any) -> Any:
    """`fn(*[Run(p) for p in run_paths], **options)`, cached by fn's name, the runs' file signatures and the
    (small) options: for results no file holds (a live comparison of two runs, the checkpoint advice)."""
    key = tuple((str(p), run_signature(Run(p))) for p in run_paths)
    name = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}"
    return _cached_call(name, key, repr(sorted(options.items())), fn, options)


@st.cache_resource(show_spinner=False, max_entries=200)
def _cached_call(name: str, key: tuple, options_repr: str, _fn: Callable[..., Any], _options: dict) -> Any:
    # cache_resource: results such as a Comparison hold figures and need not be picklable. Arguments whose
    # names start with "_" are not hashed: the key is the function's name, every run's file signatures and
    # the repr of the options. Callers treat results as read-only.
    return _fn(*[Run(p) for p, _ in key], **_options)


# -------------------------------------------------------------------------------------------------- audit
@file_loader("audit_path")
def audit(run: Run) -> pd.DataFrame:
    """audit.csv (`python -m core audit`) as a typed DataFrame; empty when the run is not audited."""
    from core.audit import load_audit

    return load_audit(run)


@file_loader("audit_meta_path")
def audit_record(run: Run) -> AuditRecord | None:
    """audit.json as a typed record (core.runfolder.AuditRecord: thresholds with their calibration, copy rates,
    closest pairs, misuse transfer); None when the run is not audited."""
    return run.audit_record()


@file_loader("audit_meta_path", "scores_path", "images_index_path")
def audit_stale(run: Run) -> str | None:
    """`Run.audit_stale`: why audit.json no longer matches images.csv/scores.csv (with the command), or None."""
    return run.audit_stale()


def audit_pair_file(run_path: str, rel: str) -> Path:
    """A side-by-side pair image named in audit.json; DataError if it would lead outside the run."""
    try:
        return Run(run_path).resolve_inside(rel, what="audit pair image")
    except UserError as e:
        raise DataError(str(e)) from e


def _advice(run: Run) -> dict[str, Any]:
    from core.advice import advise_run

    return advise_run(run)


def advice(run_path: str) -> dict[str, Any]:
    """`core.advice.advise_run`: the CLIP-I/CLIP-T front and the recommended checkpoint (cached by the run's files)."""
    scores(run_path)  # a damaged scores.csv is a DataError naming the file
    try:
        return cached_call(_advice, [run_path])
    except (UserError, ValueError, KeyError) as e:
        raise DataError(f"{Run(run_path).scores_path}: cannot advise a checkpoint ({e})") from e


# ----------------------------------------------------------------------------- what is missing and how to make it
def command_generate(run_path: str) -> str:
    return f"python -m core generate {q(run_path)} --checkpoints all"


def command_score(run_path: str) -> str:
    return f"python -m core score {q(run_path)} --references DIR"


def command_compare(a: str, b: str) -> str:
    return f"python -m core compare {q(a)} {q(b)}"  # writes to comparison_dir(a, b), where the dashboard looks


def command_audit(run_path: str) -> str:
    return f"python -m core audit {q(run_path)} --references TRAINING_IMAGES_DIR"


def command_misuse(run_path: str) -> str:
    return (f"python -m core generate {q(run_path)} --prompts prompts/eval/misuse.txt --checkpoints all\n"
            f"{command_score(run_path)}\n{command_audit(run_path)}")


def command_card(run_path: str) -> str:
    return f"python -m core card {q(run_path)}"




# ------------------------------------------------------------------------------------------------- export
# (format, suffix, what loads it with default settings): the files `python -m core export` writes, one per layout
EXPORT_DOWNLOADS = (
    ("diffusers", ".safetensors", "diffusers load_textual_inversion (InvokeAI too for one vector)"),
    ("a1111", ".pt", "AUTOMATIC1111, ComfyUI, InvokeAI, diffusers"),
    ("kohya", ".safetensors", "AUTOMATIC1111, ComfyUI, InvokeAI (any number of vectors), kohya"),
)


@file_loader("embeddings_dir", "meta_path", "scores_meta_path", "grids_dir", "card_overrides_path")
def export_downloads(run: Run) -> list[dict[str, Any]]:
    """The final checkpoint's embedding in each export layout: [{format, file_name, data, tools}], the same bytes
    `python -m core export` writes. Cached by the run's file signatures; DataError if the run has no embedding."""
    from core import export

    step = export.export_step(run, "final")
    stem = export.file_stem(run.record.token.placeholder)
    out = []
    for fmt, suffix, tools in EXPORT_DOWNLOADS:
        name = export.FORMATS[fmt].default_name.format(name=stem)
        out.append({"format": fmt, "file_name": str(Path(name).with_suffix(suffix)), "tools": tools,
                    "data": export.export_bytes(run, fmt, suffix, step), "step": step})
    return out


def command_export(run_path: str) -> str:
    return f"python -m core export {q(run_path)} --bundle EMBEDDINGS_DIR"


# ----------------------------------------------------------------------- issue 21: nearest training images
@file_loader("audit_path", "audit_meta_path")
def nearest_training_images(run: Run) -> dict[str, dict[str, Any]]:
    """{generated image path: {"file", "name", "cosine"}}: each audited image's nearest training image by CLIP
    (audit.csv `clip_nearest`, in the references folder audit.json names); {} when the run is not audited. A file
    that would lead outside that folder is left out."""
    record = run.audit_record()
    refs = record.references.get("dir") if record is not None else None
    if not refs:
        return {}
    out = {}
    for r in run.read_audit():
        name = str(r.get("clip_nearest") or "")
        try:
            file = run.resolve_inside(Path(refs) / name, also=[refs], what="training image") if name else None
        except UserError:
            continue
        if file is not None:
            cosine = float(r["clip_cosine"]) if r.get("clip_cosine") else float("nan")
            out[str(r["path"])] = {"file": file, "name": name, "cosine": cosine}
    return out
