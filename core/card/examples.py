"""Successes and failures: the best and worst images of the last scored checkpoint by CLIP-I and by CLIP-T, as
numbered thumbnail grids (PNG) with a table beside each (the grid holds only digits, never user text)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from core.runfolder import Run

SUCCESS_FAILURE_K = 4   # images in each success / failure grid
THUMB_PX = 160
FIGURE_NAMES = frozenset(f"{kind}-{metric}.png" for kind in ("best", "worst") for metric in ("clipi", "clipt"))


@dataclass(frozen=True)
class Examples:
    step: int | None = None
    sets: list = field(default_factory=list)      # [{name, kind, metric, items: [{n, path, prompt, seed, clip_*}]}]
    figures: dict = field(default_factory=dict)   # figure name -> PNG bytes
    missing: list = field(default_factory=list)   # image paths listed in scores.csv that could not be read


def _score(row: Mapping, metric: str) -> float | None:
    try:
        value = float(row.get(metric, ""))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _item(number: int, row: Mapping) -> dict[str, Any]:
    return {"n": number, "path": row.get("path", ""), "prompt": row.get("prompt", ""), "seed": row.get("seed", ""),
            "clip_i": _score(row, "clip_i"), "clip_t": _score(row, "clip_t")}


def pick_examples(run: Run, score_rows: Sequence[Mapping]) -> Examples:
    steps = sorted({int(float(row["step"])) for row in score_rows if str(row.get("step", "")).strip() != ""})
    if not steps:
        return Examples()
    last = steps[-1]
    at_last = [row for row in score_rows if str(row.get("step", "")).strip() and int(float(row["step"])) == last]
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
            figures[name], unreadable = grid_png(run, items)
            missing += unreadable
            sets.append({"name": name, "kind": kind, "metric": metric, "items": items})
    return Examples(step=last, sets=sets, figures=figures, missing=missing)


def _inside(run: Run, path: str) -> bool:
    from core.errors import UserError

    try:
        run.resolve_inside(path, what="image")
        return True
    except UserError:
        return False


def grid_png(run: Run, items: Sequence[Mapping]) -> tuple[bytes, list[str]]:
    """A one-row grid of thumbnails, each numbered (the table beside it gives prompt and scores)."""
    from PIL import Image, ImageDraw

    from core.errors import UserError
    from core.images import opened

    label_height = 18
    grid = Image.new("RGB", (THUMB_PX * len(items), THUMB_PX + label_height), "white")
    draw = ImageDraw.Draw(grid)
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
        grid.paste(tile, (left + (THUMB_PX - tile.width) // 2, (THUMB_PX - tile.height) // 2))
        draw.text((left + 4, THUMB_PX + 3), f"#{item['n']}", fill="black")  # only digits: never user text in pixels
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue(), missing
