"""Where each file of a run folder lives: `RunPaths` (the paths `Run` gives, and containment), the run and runs-folder
name rules, the CSV columns, and where report folders go. The one place a path into a run is spelled."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from core.errors import UserError

METRIC_COLUMNS = ["step", "loss", "lr", "seconds"]
MANIFEST_COLUMNS = ["file", "sha256", "bytes", "width", "height", "license", "source", "author"]
NEIGHBOR_COLUMNS = ["step", "vector", "rank", "token", "token_id", "cosine", "distance_from_init"]
IMAGE_COLUMNS = [
    "path", "prompt", "template", "negative_prompt", "seed", "step", "steps", "guidance", "token",
    "init_image", "strength", "weights_source", "width", "height", "sampler", "seconds", "cond_gap",
]  # cond_gap (0.3): memorisation screen, see core.sampler; older images.csv files lack it (read as missing)
SCORE_COLUMNS = [
    "path", "step", "prompt", "template", "seed", "clip_i", "clip_t", "clip_model", "clip_weights",
    "zs_label", "leak_survives",  # zero-shot identity's top label; leakage prompts: second subject survives (1/0)
]
AUDIT_COLUMNS = [
    "path", "step", "template", "seed", "category", "phash_nearest", "phash_distance", "clip_nearest",
    "clip_cosine", "heldout_phash_distance", "heldout_clip_cosine", "copy_phash", "copy_clip", "copy",
]
_STEP_FILE = re.compile(r"^step-(\d{6,})\.(safetensors|npz)$")


def reports_dir(runs_dir: str | os.PathLike) -> Path:
    """RUNS_DIR/reports: the one place comparison and model-card folders live (compare, card, demo, dashboard)."""
    return Path(runs_dir) / "reports"


def comparison_dir(run_a: RunPaths, run_b: RunPaths) -> Path:
    """Where `compare A B` writes by default and the dashboard looks: RUNS_DIR/reports/A-vs-B (RUNS_DIR = A's)."""
    return reports_dir(run_a.path.parent) / f"{run_a.name}-vs-{run_b.name}"


def card_dir(run: RunPaths) -> Path:
    """Where `card RUN` writes by default: RUNS_DIR/reports/RUN."""
    return reports_dir(run.path.parent) / run.name


# ------------------------------------------------------------------------------------------------- the run
MAX_NAME_CHARS = 200  # a run folder's name (file systems stop at 255 bytes; leave room for temp files)


def check_run_name(name: str) -> None:
    """A run folder name: 1-200 of letters, digits, '.', '_', '-', not starting with '.', '_' or '-'."""
    if not name:
        raise UserError("--name '': give a run name (letters, digits, '.', '_', '-') or leave --name out")
    if len(name) > MAX_NAME_CHARS:
        raise UserError(f"--name {name[:40]!r}...: {len(name)} characters; use at most {MAX_NAME_CHARS}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")


def check_runs_dir(runs_dir: str | os.PathLike) -> None:
    """The runs folder must be a writable folder, or not exist yet under a writable parent."""
    p = Path(runs_dir)
    if p.exists() and not p.is_dir():
        raise UserError(f"--runs-dir {p}: is a file, not a folder; pass a folder for the runs")
    probe = p if p.exists() else next((a for a in p.absolute().parents if a.exists()), Path("/"))
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"--runs-dir {p}: {probe} is not writable; pass a folder you can write to")


class RunPaths:
    """The paths of one run folder (mixed into `Run`)."""

    path: Path

    @property
    def meta_path(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def manifest_path(self) -> Path:
        return self.path / "dataset.csv"

    @property
    def embeddings_dir(self) -> Path:
        return self.path / "embeddings"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def neighbors_path(self) -> Path:
        return self.path / "neighbors.csv"

    @property
    def images_dir(self) -> Path:
        return self.path / "images"

    @property
    def images_index_path(self) -> Path:
        return self.path / "images.csv"

    @property
    def grids_dir(self) -> Path:
        return self.path / "grids"

    @property
    def scores_path(self) -> Path:
        return self.path / "scores.csv"

    @property
    def scores_meta_path(self) -> Path:
        return self.path / "scores.json"

    @property
    def audit_path(self) -> Path:
        return self.path / "audit.csv"

    @property
    def audit_meta_path(self) -> Path:
        return self.path / "audit.json"

    @property
    def audit_pairs_dir(self) -> Path:
        return self.path / "audit" / "pairs"

    def audit_pair_relpath(self, filename: str) -> str:
        return f"audit/pairs/{filename}"

    @property
    def card_overrides_path(self) -> Path:
        """card.yaml: the user's model-card overrides (YAML; JSON is valid YAML too). Read by `core.card`."""
        return self.path / "card.yaml"

    @property
    def review_dir(self) -> Path:
        """review/: the human review (core.review): annotations.jsonl and findings.jsonl, append-only JSONL."""
        return self.path / "review"

    @property
    def annotations_path(self) -> Path:
        return self.review_dir / "annotations.jsonl"

    @property
    def findings_path(self) -> Path:
        return self.review_dir / "findings.jsonl"

    @property
    def lock_path(self) -> Path:
        return self.path / ".writer.lock"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def log_path(self, command: str) -> Path:
        return self.logs_dir / f"{command}.log"

    @property
    def name(self) -> str:
        return self.path.name

    # ----------------------------------------------------------------------------------------- containment
    def resolve_inside(self, relpath: str | os.PathLike, *, also: Iterable[str | os.PathLike] = (),
                       what: str = "file") -> Path:
        """The real path of `relpath` (relative to the run, or absolute), which must stay inside the run folder
        or one of the folders in `also` (e.g. the run's declared references folder) after every symlink is
        followed. Anything else (`../x`, `/etc/passwd`, a symlink out of the run) is a one-line UserError.
        Use it for every path that comes from a run's files or a listing of its folders."""
        raw = Path(os.fspath(relpath))
        if str(raw) in ("", "."):
            raise UserError(f"{self.path}: empty {what} path")
        if not raw.is_absolute() and not self.path.is_absolute() and raw.is_relative_to(self.path):
            raw = raw.relative_to(self.path)  # a path this Run built (run.grid_path(...)) from a relative run path
        try:
            target = (raw if raw.is_absolute() else self.path / raw).resolve()
        except (OSError, RuntimeError) as e:  # symlink loop
            raise UserError(f"{self.path}: {what} {str(raw)!r} cannot be resolved ({e})") from e
        roots = [self.path.resolve()] + [Path(a).resolve() for a in also if a]
        if not any(target == r or target.is_relative_to(r) for r in roots):
            raise UserError(f"{self.path}: {what} {str(raw)!r} leads outside the run folder (to {target}); "
                            "refused - remove it or regenerate it inside the run")
        return target

    def embedding_path(self, step: int) -> Path:
        return self.embeddings_dir / f"step-{int(step):06d}.safetensors"

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{int(step):06d}.npz"

    def image_relpath(self, step: int, filename: str) -> str:
        return f"images/step-{int(step):06d}/{filename}"

    def grid_path(self, filename: str) -> Path:
        return self.grids_dir / filename
