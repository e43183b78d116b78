"""Comparing two scored runs (`compare`), typically a character (object) run against a style run trained with the
same prompts, seeds and budget: paired metric differences with bootstrap CIs, and the reconstruction (CLIP-I)
versus editability (CLIP-T) plane with each run's path over its checkpoints.

Rows are matched on (prompt template, seed) at the same checkpoint position: "before" is each run's first scored
checkpoint (step 0 = the initializer word), "after" its last, plus every step both runs scored. Differences are
A - B, with a paired bootstrap over the matched (template, seed) pairs. Torch- and TensorFlow-free (the dashboard
and the model card import it); plotly only builds the figure.

    OUT/compare.csv   metric, checkpoint, step_a, step_b, a_mean, b_mean, diff, diff_lo, diff_hi, n
    OUT/plane.csv     run, property, step, n, clip_i_mean/lo/hi, clip_t_mean/lo/hi
    OUT/compare.json  runs, properties, SD and CLIP weights provenance of both, pipeline-check flag, notes
    OUT/plane.html    the interactive plotly figure (plotly.js embedded: opens offline)
    OUT/plane.png     the same figure as PNG (plotly + kaleido; a labelled PIL drawing where kaleido cannot run)

OUT defaults to RUNS_DIR/reports/A-vs-B (`core.runfolder.comparison_dir`). Readers never run `compare_runs` again:
`read_comparison(OUT)` gives the typed `ComparisonRecord` the card and the dashboard show, and its `stale_reason()`
says when either run was rescored since (compare.json records the sha256 of both scores.csv files). The runs'
scores come in through `Run.scores_record()` (the CLIP model each was scored with) and scores.csv.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.clip_score import describe, provenance_key
from core.config import StrictConfig, add_options, add_run_argument, check, from_args, option
from core.errors import UserError
from core.runfolder import (
    PIPELINE_CHECK_LABEL,
    JsonFields,
    Run,
    ScoresRecord,
    WeightsProvenance,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    comparison_dir,
    pipeline_check_reasons,
    sha256_file,
)
from core.score import METRICS, scores_frame, summarize_by_step
from core.stats import DEFAULT_N_BOOT, bootstrap_diff_ci

COMPARE_SCHEMA = 1
PIPELINE_TAG = "random weights - pipeline check"
TABLE_COLUMNS = ["metric", "checkpoint", "step_a", "step_b", "a_mean", "b_mean", "diff", "diff_lo", "diff_hi", "n"]
PLANE_COLUMNS = ["run", "property", "step", "n", "clip_i_mean", "clip_i_lo", "clip_i_hi", "clip_t_mean", "clip_t_lo",
                 "clip_t_hi"]
METRIC_NAMES = {"clip_i": "CLIP-I (reconstruction: image vs reference images)",
                "clip_t": "CLIP-T (editability: image vs prompt text)"}
GAIN = "gain (after - before)"
FILES = {"table": "compare.csv", "plane": "plane.csv", "meta": "compare.json", "html": "plane.html",
         "png": "plane.png"}
CHROME_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def _budget(run: Run) -> int | None:
    """The training budget (--steps); an imported embedding has none, so its single checkpoint stands for it."""
    record = run.record
    return record.steps if record.steps is not None else record.final_step


def _scores(run: Run) -> tuple[pd.DataFrame, ScoresRecord | None]:
    df = scores_frame(run.read_scores())
    if df.empty:
        raise UserError(f"{run.path}: not scored yet; run `python -m core score {run.path} --references DIR` first")
    return df, run.scores_record()


def _plane(run: Run, df: pd.DataFrame, record: ScoresRecord | None, n_boot: int) -> pd.DataFrame:
    """A run's points on the CLIP-I/CLIP-T plane: the per-checkpoint summaries `score` wrote to scores.json (read,
    not recomputed); stale ones are refused with the command that refreshes them. Only a scores.json without
    summaries (written before 0.2) has them computed here from scores.csv."""
    stale = run.scores_stale(record) if record is not None else None
    if stale:
        raise UserError(f"{run.scores_meta_path}: {stale}")
    p = record.by_step_frame() if record is not None and record.by_step else summarize_by_step(df, n_boot=n_boot)
    p.insert(0, "property", run.record.property)
    p.insert(0, "run", run.name)
    return p


def _diff_list(name: str, a: set, b: set, na: str, nb: str) -> str | None:
    if a == b:
        return None
    only_a, only_b = sorted(a - b, key=str), sorted(b - a, key=str)
    return f"{name} differ (only in {na}: {only_a or 'none'}; only in {nb}: {only_b or 'none'})"


def _paired(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of `metric` for the (template, seed) keys both frames have, in the same order."""
    m = (a[[metric]].rename(columns={metric: f"{metric}_a"})
         .join(b[[metric]].rename(columns={metric: f"{metric}_b"}), how="inner").sort_index())
    return m[f"{metric}_a"].to_numpy(), m[f"{metric}_b"].to_numpy()


@dataclass
class Comparison:
    """The comparison of run A with run B: `table` (differences), `plane` (per-checkpoint means), `info`."""

    run_a: Run
    run_b: Run
    table: pd.DataFrame
    plane: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_pipeline_check(self) -> bool:
        return bool(self.info.get("pipeline_check"))

    def title(self) -> str:
        a, b = self.info["runs"]["a"], self.info["runs"]["b"]
        t = f"Reconstruction vs editability: {a['name']} ({a['property']}) vs {b['name']} ({b['property']})"
        return f"{t} - {PIPELINE_TAG}" if self.is_pipeline_check else t

    def figure(self):
        """The reconstruction-vs-editability plane (plotly): x CLIP-T, y CLIP-I, one path per run over its
        checkpoints with 95% CI bars, and each run's reference ceiling as a dashed line."""
        import plotly.graph_objects as go

        tag = f" [{PIPELINE_TAG}]" if self.is_pipeline_check else ""
        fig = go.Figure()
        colors = ["#1f77b4", "#d62728"]
        for i, key in enumerate(("a", "b")):
            r = self.info["runs"][key]
            p = self.plane[self.plane["run"] == r["name"]].sort_values("step")
            fig.add_trace(go.Scatter(
                x=p["clip_t_mean"], y=p["clip_i_mean"], mode="lines+markers+text",
                name=f"{r['name']} ({r['property']}){tag}",
                text=[f"step {s}" for s in p["step"]], textposition="top center",
                line={"color": colors[i]}, marker={"size": 9, "color": colors[i]},
                error_x={"type": "data", "symmetric": False, "array": p["clip_t_hi"] - p["clip_t_mean"],
                         "arrayminus": p["clip_t_mean"] - p["clip_t_lo"], "thickness": 1},
                error_y={"type": "data", "symmetric": False, "array": p["clip_i_hi"] - p["clip_i_mean"],
                         "arrayminus": p["clip_i_mean"] - p["clip_i_lo"], "thickness": 1},
            ))
            ceiling = r.get("reference_ceiling_clip_i")
            if ceiling is not None:
                fig.add_hline(y=ceiling, line={"dash": "dash", "color": colors[i], "width": 1},
                              annotation_text=f"{r['name']} reference ceiling{tag}",
                              annotation_position="top left" if key == "a" else "bottom right")
        fig.update_layout(title=self.title(), template="plotly_white", width=900, height=650,
                          xaxis_title=METRIC_NAMES["clip_t"] + tag, yaxis_title=METRIC_NAMES["clip_i"] + tag,
                          legend={"orientation": "h", "y": -0.18})
        if self.is_pipeline_check:
            fig.add_annotation(text=PIPELINE_CHECK_LABEL, xref="paper", yref="paper", x=0, y=1.06,
                               showarrow=False, font={"size": 10, "color": "#b00"}, align="left")
        return fig

    def write(self, out_dir: str | os.PathLike) -> dict[str, Any]:
        """Write compare.csv, plane.csv, compare.json, plane.html and plane.png into out_dir; return compare.json."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / FILES["table"], self.table.to_csv(index=False))
        atomic_write_text(out / FILES["plane"], self.plane.to_csv(index=False))
        fig = self.figure()
        atomic_write_text(out / FILES["html"], fig.to_html(include_plotlyjs=True, full_html=True))
        png = _write_png(fig, self, out / FILES["png"])
        record = self.record(out, png)
        atomic_write_json(out / FILES["meta"], record.to_json())
        return record.to_json()

    def record(self, out: Path, png: Mapping[str, Any]) -> ComparisonRecord:
        """What `write` saves in `out`, as the typed record `read_comparison` gives back."""
        meta_path, info = out / FILES["meta"], self.info
        return ComparisonRecord(
            folder=out, a=_compared_run(meta_path, info["runs"]["a"], "a"),
            b=_compared_run(meta_path, info["runs"]["b"], "b"), table=self.table, plane=self.plane,
            is_pipeline_check=self.is_pipeline_check, pipeline_check_reasons=tuple(info["pipeline_check_reasons"]),
            label=info["label"], n_boot=info["n_boot"], notes=tuple(info["notes"]), html=out / FILES["html"],
            png=out / FILES["png"] if png["renderer"] else None, png_renderer=png["renderer"],
            png_warning=png["warning"], written=time.time(), matched_on=info["matched_on"],
            checkpoints=info["checkpoints"],
            inputs={key: sha256_file(run.scores_path) for key, run in (("a", self.run_a), ("b", self.run_b))})


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


def compare_runs(run_a: Run | str | os.PathLike, run_b: Run | str | os.PathLike,
                 n_boot: int = DEFAULT_N_BOOT) -> Comparison:
    """Compare two scored runs. Refuses (UserError naming what differs) unless both have the same prompt templates,
    seeds and training budget, and were scored with the same CLIP model and weights."""
    run_a, run_b = (r if isinstance(r, Run) else Run(r) for r in (run_a, run_b))
    if run_a.path.resolve() == run_b.path.resolve():
        raise UserError(f"{run_a.path}: RUN_A and RUN_B are the same run; pass two different runs")
    da, ma = _scores(run_a)
    db, mb = _scores(run_b)
    na, nb = f"A={run_a.name}", f"B={run_b.name}"
    problems = [p for p in (
        _diff_list("prompts", set(da["template"]), set(db["template"]), na, nb),
        _diff_list("seeds", set(da["seed"]), set(db["seed"]), na, nb),
    ) if p]
    if _budget(run_a) != _budget(run_b):
        problems.append(f"budget differs ({na}: {_budget(run_a)} steps; {nb}: {_budget(run_b)} steps)")
    clip_a, clip_b = (dict(m.clip) if m is not None else None for m in (ma, mb))
    if provenance_key(clip_a) != provenance_key(clip_b):
        problems.append(f"CLIP models differ ({na}: {describe(clip_a)}; {nb}: {describe(clip_b)}); "
                        "rescore one of them with the other's --clip")
    if problems:
        raise UserError(f"cannot compare {run_a.path} with {run_b.path}: " + "; ".join(problems)
                        + ". Train and generate both with the same --steps, prompts and seeds")

    keys = ["template", "seed"]
    ga = da.groupby(["step"] + keys)[list(METRICS)].mean()  # duplicates of a (template, seed, step) are averaged
    gb = db.groupby(["step"] + keys)[list(METRICS)].mean()
    steps_a, steps_b = sorted(set(da["step"])), sorted(set(db["step"]))
    shared = sorted(set(steps_a) & set(steps_b))
    checkpoints = [("before", steps_a[0], steps_b[0]), ("after", steps_a[-1], steps_b[-1])]
    checkpoints += [(f"step {s}", s, s) for s in shared]

    rows = []
    for metric in METRICS:
        for label, sa, sb in checkpoints:
            xa, xb = _paired(ga.loc[sa], gb.loc[sb], metric)
            rows.append(_row(metric, label, sa, sb, xa, xb, n_boot))
        # did training move A further than B? per (template, seed): after - before, then A - B
        gain_a = (ga.loc[steps_a[-1]][[metric]] - ga.loc[steps_a[0]][[metric]]).dropna()
        gain_b = (gb.loc[steps_b[-1]][[metric]] - gb.loc[steps_b[0]][[metric]]).dropna()
        xa, xb = _paired(gain_a, gain_b, metric)
        rows.append(_row(metric, GAIN, steps_a[-1], steps_b[-1], xa, xb, n_boot))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)

    plane = pd.DataFrame(pd.concat([_plane(run, df, m, n_boot) for run, df, m in ((run_a, da, ma), (run_b, db, mb))],
                                   ignore_index=True), columns=PLANE_COLUMNS)

    reasons = [reason for run, m in ((run_a, ma), (run_b, mb))
               for reason in pipeline_check_reasons(run.record, m.clip if m is not None else None, f"{run.name}: ")]

    def run_info(run: Run, m: ScoresRecord | None, steps: list[int]) -> dict[str, Any]:
        clip = dict(m.clip) if m is not None else None
        return {"name": run.name, "path": str(run.path), "property": run.record.property,
                "budget_steps": _budget(run), "weights": run.record.weights.as_dict(),
                "pipeline_check": run.record.is_pipeline_check, "clip": clip,
                "clip_label": describe(clip), "scored_steps": steps,
                "reference_ceiling_clip_i": m.reference_ceiling_clip_i if m is not None else None,
                "reference_ceiling": dict(m.reference_ceiling) if m is not None and m.reference_ceiling else None}

    info = {
        "schema_version": COMPARE_SCHEMA,
        "runs": {"a": run_info(run_a, ma, steps_a), "b": run_info(run_b, mb, steps_b)},
        "pipeline_check": bool(reasons),
        "pipeline_check_reasons": reasons,
        "label": PIPELINE_CHECK_LABEL if reasons else "",
        "matched_on": "prompt template + seed, at the same checkpoint position",
        "checkpoints": {label: {"step_a": sa, "step_b": sb} for label, sa, sb in checkpoints},
        "n_boot": n_boot,
        "notes": [
            "diff = A - B; CI = paired percentile bootstrap (95%) over matched (template, seed) pairs",
            "CLIP-I compares each run with its own reference images, so absolute CLIP-I values of a character run "
            "and a style run are on different targets; the 'gain (after - before)' rows and each run's reference "
            "ceiling are the fairer comparison",
        ],
    }
    return Comparison(run_a=run_a, run_b=run_b, table=table, plane=plane, info=info)


def _row(metric: str, label: str, sa: int, sb: int, xa: np.ndarray, xb: np.ndarray, n_boot: int) -> dict[str, Any]:
    nan = float("nan")
    if len(xa) == 0:
        return {"metric": metric, "checkpoint": label, "step_a": sa, "step_b": sb, "a_mean": nan, "b_mean": nan,
                "diff": nan, "diff_lo": nan, "diff_hi": nan, "n": 0}
    diff, lo, hi = bootstrap_diff_ci(xa, xb, n_boot=n_boot, paired=True)
    return {"metric": metric, "checkpoint": label, "step_a": int(sa), "step_b": int(sb), "a_mean": float(xa.mean()),
            "b_mean": float(xb.mean()), "diff": diff, "diff_lo": lo, "diff_hi": hi, "n": int(len(xa))}


# ------------------------------------------------------------------------------------------------------ PNG
def _write_png(fig, comp: Comparison, path: Path) -> dict[str, Any]:
    """plotly's PNG export (kaleido 1.x drives a Chrome; a system Chromium is passed to it when one is
    installed). Where that fails, a plain PIL drawing of the same plane, labelled as the fallback, so the model
    card always has a picture; compare.json records which renderer made it and why."""
    chrome = next((c for c in CHROME_CANDIDATES if Path(c).is_file()), None)
    try:
        import kaleido

        # the system Chromium is handed to kaleido (choreographer's `path`), not put into the environment
        data = kaleido.calc_fig_sync(fig, opts={"format": "png", "width": 900, "height": 650},
                                     kopts={"path": chrome} if chrome else None)
        atomic_write_bytes(path, data)
        return {"renderer": "plotly-kaleido", "warning": None}
    except Exception as e:  # noqa: BLE001 - kaleido missing, no Chrome, Chrome crashed...
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    try:
        atomic_write_bytes(path, render_plane_pil(comp))
        return {"renderer": "pil-fallback",
                "warning": f"plotly PNG export failed ({reason}); plane.png is a simplified PIL drawing of the "
                           "same data (plane.html is the full figure)"}
    except Exception as e2:  # noqa: BLE001 - never lose the CSV/JSON/HTML because a picture failed
        path.unlink(missing_ok=True)
        return {"renderer": None, "warning": f"no plane.png: plotly export failed ({reason}); PIL fallback "
                                             f"failed ({type(e2).__name__}: {e2})"}


def render_plane_pil(comp: Comparison, size: tuple[int, int] = (900, 650)) -> bytes:
    """The plane drawn with PIL (fallback when plotly cannot export PNG): axes, each run's path with CI bars."""
    import io

    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 90, w - 30, 80, h - 110
    p = comp.plane
    xs = pd.concat([p["clip_t_lo"], p["clip_t_hi"]]).dropna()
    ceilings = [r.get("reference_ceiling_clip_i") for r in comp.info["runs"].values()]
    ys = pd.concat([p["clip_i_lo"], p["clip_i_hi"], pd.Series([c for c in ceilings if c is not None], dtype=float)])
    ys = ys.dropna()
    x0, x1 = float(xs.min()), float(xs.max())
    y0, y1 = float(ys.min()), float(ys.max())
    padx, pady = max((x1 - x0) * 0.1, 1e-3), max((y1 - y0) * 0.1, 1e-3)
    x0, x1, y0, y1 = x0 - padx, x1 + padx, y0 - pady, y1 + pady

    def px(x: float, y: float) -> tuple[float, float]:
        return left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top)

    d.rectangle([left, top, right, bottom], outline="black")
    for i in range(5):
        xv, yv = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        gx, _ = px(xv, y0)
        _, gy = px(x0, yv)
        d.line([gx, bottom, gx, bottom + 5], fill="black")
        d.text((gx - 15, bottom + 8), f"{xv:.3f}", fill="black")
        d.line([left - 5, gy, left, gy], fill="black")
        d.text((left - 50, gy - 6), f"{yv:.3f}", fill="black")
    tag = f" [{PIPELINE_TAG}]" if comp.is_pipeline_check else ""
    d.text((left, 10), comp.title(), fill="black")
    d.text((left, 28), "fallback rendering (plotly PNG export unavailable); see plane.html", fill="#b00")
    if comp.is_pipeline_check:
        d.text((left, 46), PIPELINE_CHECK_LABEL[:140], fill="#b00")
    d.text((left + 150, bottom + 30), METRIC_NAMES["clip_t"] + tag, fill="black")
    d.text((5, top - 20), METRIC_NAMES["clip_i"] + tag, fill="black")
    colors = [(31, 119, 180), (214, 39, 40)]
    for i, key in enumerate(("a", "b")):
        r = comp.info["runs"][key]
        q = p[p["run"] == r["name"]].sort_values("step")
        pts = [px(x, y) for x, y in zip(q["clip_t_mean"], q["clip_i_mean"])]
        if len(pts) > 1:
            d.line(pts, fill=colors[i], width=2)
        for (cx, cy), (_, row) in zip(pts, q.iterrows()):
            lx, _ = px(row["clip_t_lo"], row["clip_i_mean"])
            hx, _ = px(row["clip_t_hi"], row["clip_i_mean"])
            _, ly = px(row["clip_t_mean"], row["clip_i_lo"])
            _, hy = px(row["clip_t_mean"], row["clip_i_hi"])
            d.line([lx, cy, hx, cy], fill=colors[i])
            d.line([cx, ly, cx, hy], fill=colors[i])
            d.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=colors[i])
            d.text((cx + 7, cy - 14), f"step {int(row['step'])}", fill=colors[i])
        c = r.get("reference_ceiling_clip_i")
        if c is not None:
            _, cy = px(x0, c)
            for sx in range(left, right, 12):
                d.line([sx, cy, min(sx + 6, right), cy], fill=colors[i])
        d.text((left + 10 + 400 * i, bottom + 60), f"- {r['name']} ({r['property']}){tag}", fill=colors[i])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class ComparedRun:
    """One side of a saved comparison, as compare.json records it."""

    name: str
    path: str
    property: str
    budget_steps: int | None
    weights: WeightsProvenance
    clip: dict[str, Any]
    clip_label: str
    scored_steps: tuple[int, ...]
    reference_ceiling_clip_i: float | None
    pipeline_check: bool = True  # the run's Stable Diffusion weights were random
    reference_ceiling: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "property": self.property, "budget_steps": self.budget_steps,
                "weights": self.weights.to_json(), "pipeline_check": self.pipeline_check, "clip": self.clip or None,
                "clip_label": self.clip_label, "scored_steps": list(self.scored_steps),
                "reference_ceiling_clip_i": self.reference_ceiling_clip_i,
                "reference_ceiling": self.reference_ceiling}


@dataclass(frozen=True)
class ComparisonRecord:
    """A comparison folder written by `compare` (`Comparison.write`), validated once where it is read: what the
    card and the dashboard show instead of running `compare_runs` again. `stale_reason()` says when either run was
    rescored since (compare.json records the sha256 of both scores.csv files; folders written before 0.2 did not,
    and are taken as they are)."""

    folder: Path
    a: ComparedRun
    b: ComparedRun
    table: pd.DataFrame  # TABLE_COLUMNS
    plane: pd.DataFrame  # PLANE_COLUMNS
    is_pipeline_check: bool
    pipeline_check_reasons: tuple[str, ...]
    label: str
    n_boot: int
    notes: tuple[str, ...]
    html: Path | None
    png: Path | None
    png_renderer: str | None
    png_warning: str | None
    inputs: dict[str, str] | None  # {"a": sha256 of A's scores.csv, "b": ...}
    written: float | None
    matched_on: str = ""
    checkpoints: dict[str, Any] = field(default_factory=dict)  # label -> {"step_a", "step_b"}

    def to_json(self) -> dict[str, Any]:
        """compare.json as this record states it (`Comparison.write` writes it; `read_comparison` parses it)."""
        return {"schema_version": COMPARE_SCHEMA, "runs": {"a": self.a.to_json(), "b": self.b.to_json()},
                "pipeline_check": self.is_pipeline_check, "pipeline_check_reasons": list(self.pipeline_check_reasons),
                "label": self.label, "matched_on": self.matched_on, "checkpoints": dict(self.checkpoints),
                "n_boot": self.n_boot, "notes": list(self.notes),
                "png": {"renderer": self.png_renderer, "warning": self.png_warning}, "files": dict(FILES),
                "written": self.written, "inputs": self.inputs, "table": _records(self.table)}

    def stale_reason(self) -> str | None:
        """Why the saved numbers no longer match the runs' scores, with the command that remakes them; or None."""
        if self.inputs is None:
            return None
        for key, side in (("a", self.a), ("b", self.b)):
            scores = Run(side.path).scores_path
            now = sha256_file(scores) if scores.exists() else None
            if now != self.inputs.get(key):
                return (f"stale: {scores} changed since {self.folder / FILES['meta']} was written; rerun "
                        f"`python -m core compare {self.a.path} {self.b.path} --out {self.folder}`")
        return None


def _compared_run(path: Path, data: Any, key: str) -> ComparedRun:
    if not isinstance(data, dict):
        raise UserError(f"{path}: key 'runs.{key}' is missing; run `compare` again")
    missing = [k for k in ("name", "path", "property", "weights") if k not in data]
    if missing:
        raise UserError(f"{path}: key 'runs.{key}.{missing[0]}' is missing; run `compare` again")
    weights = data["weights"] if isinstance(data["weights"], dict) else {}
    return ComparedRun(
        name=str(data["name"]), path=str(data["path"]), property=str(data["property"]),
        budget_steps=data.get("budget_steps"),
        weights=WeightsProvenance.parse(JsonFields(path, weights, f"runs.{key}.weights.")),
        clip=dict(data.get("clip") or {}), clip_label=str(data.get("clip_label") or describe(data.get("clip"))),
        scored_steps=tuple(int(x) for x in data.get("scored_steps") or ()),
        reference_ceiling_clip_i=data.get("reference_ceiling_clip_i"),
        pipeline_check=bool(data.get("pipeline_check", True)),
        reference_ceiling=dict(data["reference_ceiling"]) if isinstance(data.get("reference_ceiling"), dict) else None)


def read_comparison(out_dir: str | os.PathLike) -> ComparisonRecord:
    """Read a comparison folder written by `Comparison.write`. A missing or damaged file is a UserError naming it
    and the command that makes it."""
    out = Path(out_dir)
    json_path = out / FILES["meta"]
    if not json_path.exists():
        raise UserError(f"{out}: no {FILES['meta']}; make it with `python -m core compare RUN_A RUN_B --out {out}`")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{json_path}: damaged ({e}); run `compare` again") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("runs"), dict):
        raise UserError(f"{json_path}: key 'runs' is missing; run `compare` again")
    tables = {}
    for key, columns in (("table", TABLE_COLUMNS), ("plane", PLANE_COLUMNS)):
        p = out / FILES[key]
        if not p.exists():
            raise UserError(f"{p}: missing; run `compare` again")
        try:
            df = pd.read_csv(p)
        except Exception as e:  # noqa: BLE001 - pandas raises many kinds for a damaged CSV
            raise UserError(f"{p}: damaged ({type(e).__name__}: {e}); run `compare` again") from e
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise UserError(f"{p}: lacks column(s) {', '.join(missing)}; run `compare` again")
        tables[key] = df
    png, html = out / FILES["png"], out / FILES["html"]
    png_info = meta.get("png") if isinstance(meta.get("png"), dict) else {}
    inputs = meta.get("inputs")
    return ComparisonRecord(
        folder=out, a=_compared_run(json_path, meta["runs"].get("a"), "a"),
        b=_compared_run(json_path, meta["runs"].get("b"), "b"), table=tables["table"], plane=tables["plane"],
        is_pipeline_check=bool(meta.get("pipeline_check", True)),
        pipeline_check_reasons=tuple(meta.get("pipeline_check_reasons") or ()), label=str(meta.get("label") or ""),
        n_boot=int(meta.get("n_boot") or DEFAULT_N_BOOT), notes=tuple(meta.get("notes") or ()),
        html=html if html.exists() else None, png=png if png.exists() else None,
        png_renderer=png_info.get("renderer"), png_warning=png_info.get("warning"),
        inputs=dict(inputs) if isinstance(inputs, dict) else None, written=meta.get("written"),
        matched_on=str(meta.get("matched_on") or ""),
        checkpoints=dict(meta["checkpoints"]) if isinstance(meta.get("checkpoints"), dict) else {})


def load_comparison(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Deprecated (core/card.py still uses it): {"meta", "table", "plane", "html", "png"}; use `read_comparison`."""
    rec = read_comparison(out_dir)
    meta = json.loads((Path(out_dir) / FILES["meta"]).read_text(encoding="utf-8"))
    return {"meta": meta, "table": rec.table, "plane": rec.plane, "html": Path(out_dir) / FILES["html"],
            "png": rec.png}


# ------------------------------------------------------------------------------------------------------ CLI
@dataclass
class CompareConfig(StrictConfig):
    """`compare` options besides the two runs."""

    out: Path | None = option(None, "folder for compare.csv/json, plane.csv/html/png (default: RUNS_DIR/reports/"
                                    "A-vs-B, where the dashboard and the card look)", metavar="DIR")
    n_boot: int = option(DEFAULT_N_BOOT, "bootstrap resamples for every confidence interval")

    def validate(self) -> None:
        check(self.n_boot >= 1, "n_boot", self.n_boot, "must be at least 1")


def add_arguments(parser, command: str) -> None:
    add_run_argument(parser, "first scored run (e.g. the character run)", name="run_a")
    add_run_argument(parser, "second scored run (e.g. the style run)", name="run_b")
    add_options(parser, CompareConfig)


def run(args) -> int:
    cfg = from_args(CompareConfig, args)
    comp = compare_runs(Run(args.run_a), Run(args.run_b), n_boot=cfg.n_boot)
    out = cfg.out or comparison_dir(comp.run_a, comp.run_b)
    meta = comp.write(out)
    if comp.is_pipeline_check:
        print(f"{PIPELINE_CHECK_LABEL} ({'; '.join(meta['pipeline_check_reasons'])})")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        print(comp.table.to_string(index=False))
    if meta["png"]["warning"]:
        print(f"warning: {meta['png']['warning']}")
    print(f"wrote {', '.join(FILES.values())} to {out}")
    return 0
