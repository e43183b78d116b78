"""The JSON card (card.json, schema tomcat-ti/model-card/1): metadata, warnings, every fact the card states
(provenance, summaries, comparison, environment, ...) and the sections as typed blocks. Strict JSON: NaN and
infinities become null."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping

from core.card.document import Bullets, Callout, Card, Figure, Para
from core.card.render_md import IMAGES_SUBDIR
from core.runfolder import PIPELINE_CHECK_LABEL

JSON_SCHEMA = "tomcat-ti/model-card/1"


def _inline(parts: list) -> list:
    return [part if isinstance(part, str) else {"type": type(part).__name__.lower(), **dataclasses.asdict(part)}
            for part in parts]


def block(item: Any) -> dict:
    if isinstance(item, Para):
        return {"kind": "para", "parts": _inline(item.parts)}
    if isinstance(item, Bullets):
        return {"kind": "bullets", "items": [_inline(entry) for entry in item.items]}
    if isinstance(item, Callout):
        return {"kind": "callout", "level": item.level, "parts": _inline(item.parts)}
    if isinstance(item, Figure):
        return {"kind": "figure", "name": item.name, "path": f"{IMAGES_SUBDIR}/{item.name}", "caption": item.caption}
    return dataclasses.asdict(item)


def finite(value: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python, recursively."""
    if isinstance(value, Mapping):
        return {str(key): finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def render_json(card: Card) -> bytes:
    """Everything: metadata, sections (as typed blocks), tables, provenance, environment, warnings."""
    document = {
        "schema": JSON_SCHEMA,
        "title": card.title,
        "summary": card.summary,
        "pipeline_check": card.pipeline_check,
        "pipeline_check_label": PIPELINE_CHECK_LABEL if card.pipeline_check else None,
        "date": card.date,
        "metadata": card.metadata,
        "warnings": card.warnings,
        "figures": [f"{IMAGES_SUBDIR}/{name}" for name in card.figures],
        **card.data,
        "sections": [{"id": part.id, "title": part.title, "level": part.level,
                      "blocks": [block(item) for item in part.blocks]} for part in card.sections],
    }
    text = json.dumps(finite(document), indent=2, ensure_ascii=False, default=_default, allow_nan=False)
    return (text + "\n").encode("utf-8")
