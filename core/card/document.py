"""The card's document model: a `Card` is a list of `Section`s made of typed blocks holding plain text.

Sections build these blocks; each renderer (render_md, render_html, render_pdf, render_json) escapes the plain
text as its format needs, so user-supplied strings (prompts, file names, overrides, the token) are never pasted
into HTML or Markdown unescaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Link:
    text: str
    url: str


@dataclass(frozen=True)
class Bold:
    text: str


@dataclass(frozen=True)
class Mono:
    text: str


Inline = Union[str, Link, Bold, Mono]


@dataclass
class Para:
    parts: list
    kind: str = "para"


@dataclass
class Bullets:
    items: list  # list[list[Inline]]
    kind: str = "bullets"


@dataclass
class Table:
    columns: list
    rows: list  # list[list[str]]
    kind: str = "table"


@dataclass
class CodeBlock:
    lang: str
    text: str
    kind: str = "code"


@dataclass
class Figure:
    name: str      # file name under images/
    caption: str
    kind: str = "figure"


@dataclass
class Callout:
    """A warning or note shown in a box (blockquote in Markdown)."""
    parts: list
    level: str = "warning"  # warning | note
    kind: str = "callout"


Block = Union[Para, Bullets, Table, CodeBlock, Figure, Callout]


@dataclass
class Section:
    id: str
    title: str
    level: int          # 2 = ##, 3 = ###, 4 = ####
    blocks: list = field(default_factory=list)


@dataclass
class Card:
    """Everything one model card says, independent of the output format."""
    run_name: str
    title: str
    summary: str
    pipeline_check: bool
    metadata: dict            # YAML front matter (ModelCardData.to_dict())
    sections: list            # list[Section], in order
    figures: dict             # file name -> PNG bytes
    warnings: list            # plain-text warnings, also shown in the card
    data: dict                # everything else for JSON: provenance, tables, environment, overrides, ...
    date: str                 # ISO date taken from run.json (not the clock: same inputs, same bytes)

    def section(self, title: str) -> Section:
        for candidate in self.sections:
            if candidate.title == title:
                return candidate
        raise KeyError(title)

    def model_card(self):
        """The huggingface_hub ModelCard (YAML metadata + Markdown body). Offline: never validated online."""
        from huggingface_hub import ModelCard

        from core.card.render_md import markdown_document

        return ModelCard(markdown_document(self))
