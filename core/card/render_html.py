"""The HTML card: `fragment(card)` (a stylesheet scoped to `.tomcat-card` plus the card's body, which the
dashboard embeds as is) and `render_html(card)` (a self-contained page around that same fragment, figures
inlined as data: URIs). Every string from the run is escaped."""

from __future__ import annotations

import base64
import html
from typing import Any, Iterable, Mapping

from core.card.document import Bold, Bullets, Callout, Card, CodeBlock, Figure, Inline, Link, Mono, Para, Table
from core.card.formatting import safe_url
from core.card.render_md import IMAGES_SUBDIR
from core.runfolder import PIPELINE_CHECK_LABEL

WRAPPER_CLASS = "tomcat-card"
# every rule is scoped to the wrapper, so embedding the fragment restyles nothing around it
CARD_CSS = """.tomcat-card{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;line-height:1.5;color:#1b1b1b}
.tomcat-card table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}.tomcat-card th,.tomcat-card td{border:1px
solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}.tomcat-card th{background:#f3f3f3}.tomcat-card
pre{background:#f6f8fa;padding:.75rem;overflow-x:auto}.tomcat-card code{font-family:ui-monospace,monospace}
.tomcat-card .callout{border-left:4px solid #d4a017;background:#fff8e1;padding:.5rem .75rem;margin:.5rem 0}
.tomcat-card .callout.note{border-color:#2b6cb0;background:#ebf4ff}.tomcat-card .pipeline-check{background:#c53030;
color:#fff;padding:.75rem 1rem;font-weight:bold;margin-bottom:1rem}.tomcat-card figure{margin:.5rem 0}
.tomcat-card img{max-width:100%}.tomcat-card .meta{font-size:.85rem;background:#f6f8fa;padding:.5rem}"""
PAGE_CSS = "body{max-width:60rem;margin:2rem auto;padding:0 1rem}"  # the stand-alone page only


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def inline(parts: Iterable[Inline]) -> str:
    out = []
    for part in parts:
        if isinstance(part, Link):
            url = safe_url(part.url)
            out.append(f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(part.text)}</a>' if url
                       else escape(part.text))
        elif isinstance(part, Bold):
            out.append(f"<strong>{escape(part.text)}</strong>")
        elif isinstance(part, Mono):
            out.append(f"<code>{escape(part.text)}</code>")
        else:
            out.append(escape(part))
    return "".join(out)


def _figure(item: Figure, figures: Mapping[str, bytes]) -> str:
    png = figures.get(item.name)
    src = f"data:image/png;base64,{base64.b64encode(png).decode('ascii')}" if png else f"{IMAGES_SUBDIR}/{item.name}"
    return (f'<figure><img src="{escape(src)}" alt="{escape(item.caption)}">'
            f"<figcaption>{escape(item.caption)}</figcaption></figure>")


def block(item: Any, figures: Mapping[str, bytes]) -> str:
    if isinstance(item, Para):
        return f"<p>{inline(item.parts)}</p>"
    if isinstance(item, Bullets):
        return "<ul>" + "".join(f"<li>{inline(entry)}</li>" for entry in item.items) + "</ul>"
    if isinstance(item, Callout):
        label = "Warning" if item.level == "warning" else "Note"
        return f'<div class="callout {escape(item.level)}"><strong>{label}:</strong> {inline(item.parts)}</div>'
    if isinstance(item, Table):
        head = "".join(f"<th>{escape(column)}</th>" for column in item.columns)
        rows = "".join("<tr>" + "".join(f"<td>{escape(value)}</td>" for value in row) + "</tr>" for row in item.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(item, CodeBlock):
        return f'<pre><code class="language-{escape(item.lang)}">{escape(item.text)}</code></pre>'
    if isinstance(item, Figure):
        return _figure(item, figures)
    raise TypeError(f"unknown block {type(item).__name__}")


def fragment(card: Card) -> str:
    """The card as an embeddable fragment: `<style>` (rules scoped to .tomcat-card) + `<div class="tomcat-card">`."""
    import yaml

    parts = [f"<style>{CARD_CSS}</style>", f'<div class="{WRAPPER_CLASS}">']
    if card.pipeline_check:
        parts.append(f'<div class="pipeline-check" role="alert">{escape(PIPELINE_CHECK_LABEL)}</div>')
    parts.append(f"<h1>{escape(card.title)}</h1><p>{escape(card.summary)}</p>")
    meta_yaml = yaml.safe_dump(card.metadata, sort_keys=False, allow_unicode=True)
    parts.append(f'<details class="meta"><summary>Metadata (YAML)</summary><pre>{escape(meta_yaml)}</pre></details>')
    for part in card.sections:
        parts.append(f'<h{part.level} id="{escape(part.id)}">{escape(part.title)}</h{part.level}>')
        parts.extend(block(item, card.figures) for item in part.blocks)
    parts.append("</div>")
    return "\n".join(parts)


def render_html(card: Card) -> bytes:
    """A self-contained HTML page: the fragment inside a minimal document."""
    head = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(card.title)}</title><style>{PAGE_CSS}</style></head><body>")
    return f"{head}\n{fragment(card)}\n</body></html>\n".encode("utf-8")
