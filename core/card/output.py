"""The card's files: one renderer per format, `render` (one format's bytes, for download buttons) and
`write_card` (every chosen format plus the figures, atomically) - the same bytes either way."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from core.card.build import build_card
from core.card.document import Card
from core.card.examples import FIGURE_NAMES as EXAMPLE_FIGURES
from core.card.facts import Comparison
from core.card.legal import LICENSE_FILE_NAME, license_text
from core.card.render_html import render_html
from core.card.render_json import render_json
from core.card.render_md import IMAGES_SUBDIR, render_md
from core.card.render_pdf import render_pdf
from core.errors import UserError
from core.runfolder import Run, atomic_write_bytes

FORMATS = ("md", "html", "pdf", "json")
FILE_NAMES = {"md": "README.md", "html": "card.html", "pdf": "card.pdf", "json": "card.json"}
MIME_TYPES = {"md": "text/markdown", "html": "text/html", "pdf": "application/pdf", "json": "application/json"}
RENDERERS = {"md": render_md, "html": render_html, "pdf": render_pdf, "json": render_json}
FIGURE_NAMES = EXAMPLE_FIGURES | {Comparison.figure_name}  # every figure a card can have


def parse_formats(spec: str | Sequence[str]) -> list[str]:
    items = [item.strip().lower() for item in (spec.split(",") if isinstance(spec, str) else spec) if item.strip()]
    for item in items:
        if item not in FORMATS:
            raise UserError(f"--format {item!r}: unknown format; choose from {', '.join(FORMATS)} (comma-separated)")
    if not items:
        raise UserError(f"--format: give at least one of {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))


def render(run: Run | Card, fmt: str, compare_run: Run | None = None) -> bytes:
    """One format's bytes, e.g. for st.download_button. Pass a Card (from build_card) to render several formats
    without rebuilding. Markdown refers to figures under images/ (write_card writes them); HTML inlines them."""
    fmt = parse_formats([fmt])[0]
    card = run if isinstance(run, Card) else build_card(run, compare_run)
    return RENDERERS[fmt](card)


def write_card(run: Run, out_dir: str | Path, formats: Sequence[str] | str = FORMATS, compare_run: Run | None = None,
               overrides_path: str | Path | None = None, comparison_folder: str | Path | None = None
               ) -> dict[str, Path]:
    """Write the chosen formats, the figures and the licence text (LICENSE) into out_dir atomically. Returns
    {format: path} for the formats."""
    chosen = parse_formats(formats)
    card = build_card(run, compare_run, overrides_path, comparison_folder)
    out = Path(out_dir)
    for name, png in card.figures.items():
        atomic_write_bytes(out / IMAGES_SUBDIR / name, png)
    for stale in FIGURE_NAMES - set(card.figures):  # a figure of an earlier build that this card no longer has
        (out / IMAGES_SUBDIR / stale).unlink(missing_ok=True)
    written: dict[str, Path] = {}
    for fmt in chosen:
        written[fmt] = out / FILE_NAMES[fmt]
        atomic_write_bytes(written[fmt], RENDERERS[fmt](card))
    # LICENSE 4(b): whoever receives the card folder receives a copy of the licence, not only a link to it
    atomic_write_bytes(out / LICENSE_FILE_NAME, license_text().encode("utf-8"))
    return written
