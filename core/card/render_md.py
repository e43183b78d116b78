"""The Markdown card (README.md): YAML front matter + body, assembled through huggingface_hub's ModelCard.
Every string from the run is escaped so it renders as the text it is (no links, images or HTML can form)."""

from __future__ import annotations

import re
from typing import Any, Iterable

from core.card.document import Bold, Bullets, Callout, Card, CodeBlock, Figure, Inline, Link, Mono, Para, Table
from core.card.formatting import safe_url
from core.runfolder import PIPELINE_CHECK_LABEL

IMAGES_SUBDIR = "images"
_MD_SPECIAL = re.compile(r"([\\`*_\[|~])")  # with [ escaped, no link, image or footnote can form


def md_escape(text: Any, line_start: bool = True) -> str:
    """Plain text -> Markdown that renders as that text (HTML-significant characters become entities).
    line_start: the text may begin a line, so a leading '-', '#', '>' or '1.' is escaped too."""
    raw = str(text)
    escaped = " ".join(raw.split()) if "\n" in raw or "\r" in raw else raw
    escaped = escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    escaped = _MD_SPECIAL.sub(r"\\\1", escaped)
    if line_start:  # a leading '-', '#', '>', '=' or '1.' could start a list, heading, quote or underline
        escaped = re.sub(r"^(\s*)([-=+#>])", r"\1\\\2", escaped)
        escaped = re.sub(r"^(\s*\d+)([.)])", r"\1\\\2", escaped)
    return escaped


def code_span(text: str) -> str:
    text = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def inline(parts: Iterable[Inline]) -> str:
    out = []
    for index, part in enumerate(parts):
        if isinstance(part, Link):
            url = safe_url(part.url)
            out.append(f"[{md_escape(part.text)}](<{url}>)" if url else md_escape(part.text))
        elif isinstance(part, Bold):
            out.append(f"**{md_escape(part.text)}**")
        elif isinstance(part, Mono):
            out.append(code_span(part.text))
        else:
            out.append(md_escape(part, line_start=(index == 0)))
    return "".join(out)


def _table(table: Table) -> str:
    def cell(value):
        return md_escape(value, line_start=False) if str(value).strip() else " "

    head = "| " + " | ".join(cell(column) for column in table.columns) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.rows]
    return "\n".join([head, rule, *body])


def block(item: Any) -> str:
    if isinstance(item, Para):
        return inline(item.parts)
    if isinstance(item, Bullets):
        return "\n".join("- " + inline(entry) for entry in item.items)
    if isinstance(item, Callout):
        label = "Warning" if item.level == "warning" else "Note"
        return f"> **{label}:** " + inline(item.parts)
    if isinstance(item, Table):
        return _table(item)
    if isinstance(item, CodeBlock):
        longest = max((len(run) for run in re.findall(r"`+", item.text)), default=0)
        fence = "`" * max(3, longest + 1)
        return f"{fence}{item.lang}\n{item.text}\n{fence}"
    if isinstance(item, Figure):
        return f"![{md_escape(item.caption)}]({IMAGES_SUBDIR}/{item.name})\n\n*{md_escape(item.caption)}*"
    raise TypeError(f"unknown block {type(item).__name__}")


def body(card: Card) -> str:
    lines = [f"> **{md_escape(PIPELINE_CHECK_LABEL)}**", ""] if card.pipeline_check else []
    lines += [f"# {md_escape(card.title)}", "", md_escape(card.summary), ""]
    for part in card.sections:
        lines += [f"{'#' * part.level} {md_escape(part.title)}", ""]
        for item in part.blocks:
            lines += [block(item), ""]
    return "\n".join(lines).rstrip() + "\n"


def markdown_document(card: Card) -> str:
    from huggingface_hub import ModelCardData

    front_matter = ModelCardData(**card.metadata).to_yaml()
    return f"---\n{front_matter}\n---\n\n{body(card)}"


def render_md(card: Card) -> bytes:
    return str(card.model_card()).encode("utf-8")
