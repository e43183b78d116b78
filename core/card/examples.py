"""Successes and failures: the best and worst images of the last scored checkpoint by CLIP-I and by CLIP-T, as
numbered thumbnail grids (PNG) with a table beside each (the grid holds only digits and the fixed PIPELINE CHECK
banner, never user text).

Misuse-probe images (prompts/eval/misuse.txt, or the categories the audit used) are never picked: a published
figure must not distribute what the card rules out (issue 22, point 6). Grids of random-weight runs carry the
PIPELINE CHECK banner in their pixels and the label in a PNG text chunk, as generate's images do (point 9)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from core.runfolder import PIPELINE_CHECK_LABEL, Run

SUCCESS_FAILURE_K = 4   # images in each success / failure grid
THUMB_PX = 160
BANNER_PX = 30          # the red PIPELINE CHECK banner on top of a random-weight grid
BANNER_RGB = (200, 30, 30)  # the colour of generate's grid banner (core/generate.py labelled_grid)
FIGURE_NAMES = frozenset(f"{kind}-{metric}.png" for kind in ("best", "worst") for metric in ("clipi", "clipt"))


@dataclass(frozen=True)
class Examples:
    step: int | None = None
    sets: list = field(default_factory=list)      # [{name, kind, metric, items: [{n, path, prompt, seed, clip_*}]}]
    figures: dict = field(default_factory=dict)   # figure name -> PNG bytes
    missing: list = field(default_factory=list)   # image paths listed in scores.csv that could not be read
    probes_left_out: int = 0                      # misuse-probe images at that step, never shown


def _score(row: Mapping, metric: str) -> float | None:
    try:
        value = float(row.get(metric, ""))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _item(number: int, row: Mapping) -> dict[str, Any]:
    return {"n": number, "path": row.get("path", ""), "prompt": row.get("prompt", ""), "seed": row.get("seed", ""),
            "clip_i": _score(row, "clip_i"), "clip_t": _score(row, "clip_t")}


def pick_examples(run: Run, score_rows: Sequence[Mapping], misuse_templates: frozenset = frozenset(),
                  pipeline_check: bool = False) -> Examples:
    """The best and worst images of the last scored checkpoint, leaving out every image of a template in
    `misuse_templates`; `pipeline_check` labels the grids."""
    rows = [row for row in score_rows if row.get("template", "") not in misuse_templates]
    steps = sorted({int(float(row["step"])) for row in rows if str(row.get("step", "")).strip() != ""})
    if not steps:
        return Examples()
    last = steps[-1]
    left_out = sum(1 for row in score_rows if row.get("template", "") in misuse_templates
                   and str(row.get("step", "")).strip() and int(float(row["step"])) == last)
    at_last = [row for row in rows if str(row.get("step", "")).strip() and int(float(row["step"])) == last]
    sets, figures, missing = [], {}, []
    inside = [row for row in at_last if _inside(run, row.get("path", ""))]  # a path out of the run is never shown
    missing += [f"{row.get('path', '')} (refused: outside the run folder)" for row in at_last if row not in inside]
    at_last = inside
    for metric in ("clip_i", "clip_t"):
        scored = [row for row in at_last if _score(row, metric) is not None]
        if not scored:
            continue
        ranked = sorted(scored, key=lambda row: (-_score(row, metric), row.get("path", "")))
        count = min(SUCCESS_FAILURE_K, max(1, len(ranked) // 2))  # best and worst never share an image
        chosen = {"best": ranked[:count], "worst": list(reversed(ranked[-count:])) if len(ranked) >= 2 else []}
        for kind, rows in chosen.items():
            if not rows:
                continue
            name = f"{kind}-{metric.replace('_', '')}.png"
            items = [_item(index + 1, row) for index, row in enumerate(rows)]
            figures[name], unreadable = grid_png(run, items, pipeline_check)
            missing += unreadable
            sets.append({"name": name, "kind": kind, "metric": metric, "items": items})
    return Examples(step=last, sets=sets, figures=figures, missing=missing, probes_left_out=left_out)


def _inside(run: Run, path: str) -> bool:
    from core.errors import UserError

    try:
        run.resolve_inside(path, what="image")
        return True
    except UserError:
        return False


def _banner(draw, width: int) -> None:
    """The PIPELINE CHECK banner: a red strip with two short white lines (fits a one-image grid)."""
    from PIL import ImageFont

    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1: the bitmap font has no size
        font = ImageFont.load_default()
    draw.rectangle([0, 0, width, BANNER_PX - 1], fill=BANNER_RGB)
    draw.text((4, 2), "PIPELINE CHECK", fill="white", font=font)
    draw.text((4, 15), "random weights", fill="white", font=font)


def grid_png(run: Run, items: Sequence[Mapping], pipeline_check: bool = False) -> tuple[bytes, list[str]]:
    """A one-row grid of thumbnails, each numbered (the table beside it gives prompt and scores); with
    `pipeline_check`, the PIPELINE CHECK banner on top and PIPELINE_CHECK_LABEL in the PNG's `label` text chunk."""
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo

    from core.errors import UserError
    from core.images import opened

    label_height = 18
    top = BANNER_PX if pipeline_check else 0
    grid = Image.new("RGB", (THUMB_PX * len(items), top + THUMB_PX + label_height), "white")
    draw = ImageDraw.Draw(grid)
    if pipeline_check:
        _banner(draw, grid.width)
    missing = []
    for position, item in enumerate(items):
        left = position * THUMB_PX
        source = run.resolve_inside(item["path"], what="image")  # a path leaving the run refuses the card
        try:
            with opened(source) as image:  # size-checked (no decompression bombs)
                tile = image.convert("RGB")
                tile.thumbnail((THUMB_PX, THUMB_PX))
        except (OSError, ValueError, UserError):
            missing.append(item["path"])
            tile = Image.new("RGB", (THUMB_PX, THUMB_PX), (230, 230, 230))
            ImageDraw.Draw(tile).text((8, THUMB_PX // 2), "missing", fill="black")
        grid.paste(tile, (left + (THUMB_PX - tile.width) // 2, top + (THUMB_PX - tile.height) // 2))
        draw.text((left + 4, top + THUMB_PX + 3), f"#{item['n']}", fill="black")  # only digits: no user text
    info = PngInfo()
    if pipeline_check:
        info.add_text("label", PIPELINE_CHECK_LABEL)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", optimize=False, pnginfo=info)
    return buffer.getvalue(), missing
