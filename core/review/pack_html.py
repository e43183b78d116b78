"""The review pack's HTML building blocks: escaping, tables, images as data: URIs, the inline stylesheet and the page.

Every string that comes from a run (prompts, file names, reviewers' notes, finding texts) passes through `esc`
unless it is an `Html` fragment this module or the card's renderer built. Nothing refers to anything outside the
file: images are data: URIs, the CSS is inline, there is no script.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core.runfolder import PIPELINE_CHECK_LABEL

PACK_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;line-height:1.45;color:#1b1b1b;
max-width:75rem;margin:1.5rem auto;padding:0 1rem}h1,h2,h3{line-height:1.2}h2{border-bottom:2px solid #ddd;
padding-bottom:.2rem;margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.2rem .4rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
.pipeline-check{background:#c53030;color:#fff;padding:.6rem 1rem;font-weight:bold;margin:.5rem 0}
.note{white-space:pre-wrap;overflow-wrap:anywhere}.muted{color:#666;font-size:.85rem}
.grid td{text-align:center}.grid td:first-child{text-align:left}
.grid img{display:block;margin:auto;max-width:100%}.badge{display:inline-block;
font-size:.75rem;padding:0 .3rem;border-radius:.2rem;background:#2b6cb0;color:#fff}.badge.bad{background:#c53030}
.pairs img{max-width:32rem;width:100%}.callout{border-left:4px solid #d4a017;background:#fff8e1;padding:.4rem .7rem}
nav ul{columns:2}@media print{h2{break-before:page}table,figure,.grid tr{break-inside:avoid}
.pipeline-check{-webkit-print-color-adjust:exact;print-color-adjust:exact}}"""
SERIOUS = ("harmful", "misuse-transfer", "copy-suspected", "off-model")  # badges drawn in red


class Html(str):
    """A fragment already built as HTML (passed through unescaped); anything else is text and gets escaped."""


def esc(value: Any) -> str:
    return value if isinstance(value, Html) else html.escape(str(value), quote=True)


def tag(name: str, content: Any = "", cls: str = "", **attrs: Any) -> Html:
    """`<name class=cls attr=...>content</name>`, attributes and text escaped (content kept if it is Html)."""
    extra = "".join(f' {k.rstrip("_")}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    klass = f' class="{esc(cls)}"' if cls else ""
    return Html(f"<{name}{klass}{extra}>{esc(content)}</{name}>")


def join(parts: Iterable[Any]) -> Html:
    return Html("".join(esc(p) for p in parts))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> Html:
    """A table; with every column name empty it has no header row (a list of label/value pairs)."""
    head = f"<thead><tr>{join(tag('th', c) for c in columns)}</tr></thead>" if any(columns) else ""
    body = join(tag("tr", join(tag("td", v) for v in row)) for row in rows)
    return tag("table", Html(f"{head}<tbody>{body}</tbody>"), cls=cls)


def note(text: str) -> Html:
    """A reviewer's note: escaped, line breaks kept."""
    return tag("div", text, cls="note")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_uri(path: Path, size: int, quality: int = 82) -> str:
    """A JPEG thumbnail (longest side `size` px) of an image as a data: URI; the file is opened by
    core.images.opened (size-checked before decoding). UserError for a missing or bad file."""
    from core.images import opened

    with opened(path) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality, optimize=True)
    return data_uri(buf.getvalue(), "image/jpeg")


def img(uri: str, alt: str) -> Html:
    if not uri.startswith("data:"):
        raise ValueError("the review pack embeds every image as a data: URI")
    return Html(f'<img src="{esc(uri)}" alt="{esc(alt)}" loading="lazy">')


def badge(flag: str) -> Html:
    return tag("span", flag, cls="badge bad" if flag in SERIOUS else "badge")


def pipeline_banner() -> Html:
    return tag("div", PIPELINE_CHECK_LABEL, cls="pipeline-check", role="alert")


def section(title: str, anchor: str, *parts: Any, level: int = 2) -> Html:
    return join([tag(f"h{level}", title, id=anchor), *parts])


def page(title: str, parts: Iterable[Any], pipeline_check: bool, generated: str) -> bytes:
    """The whole document: one file, CSS inline, no script, nothing fetched."""
    head = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{PACK_CSS}</style></head><body>")
    top = [tag("h1", title)] + ([pipeline_banner()] if pipeline_check else [])
    top.append(tag("p", f"Generated {generated} by tomcat-ti review-pack: one self-contained file (images inline, "
                        "nothing fetched). Print it to PDF from the browser.", cls="muted"))
    return f"{head}\n{join(top + list(parts))}\n</body></html>\n".encode()
