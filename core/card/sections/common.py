"""Helpers every section module uses: `section()` makes a Section (dropping None blocks), and short phrases."""

from __future__ import annotations

from core.card.document import Section
from core.card.formatting import slug


def section(title: str, level: int, *blocks) -> Section:
    """A section with an id from its title; blocks that are None (a condition did not hold) are left out."""
    return Section(id=slug(title), title=title, level=level, blocks=[block for block in blocks if block is not None])


def concept(facts, character: str = "character/object", style: str = "style") -> str:
    """What the token learned, in the words the sentence needs."""
    return character if facts.is_character else style
