"""The PDF card (fpdf2): headings, text, tables, code and the figures.

Uses DejaVu Sans when installed (full Unicode text; characters it lacks become a visible '?'); otherwise the
built-in Helvetica/Courier with text passed through `latin1_safe`. The creation date comes from the card, so the
same card gives the same bytes.
"""

from __future__ import annotations

import datetime as _dt
import io
import re
import unicodedata
from pathlib import Path
from typing import Any, Callable, Iterable

from core.card.document import Bold, Bullets, Callout, Card, CodeBlock, Figure, Inline, Link, Mono, Para, Table
from core.card.formatting import safe_url
from core.runfolder import PIPELINE_CHECK_LABEL

_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/share/fonts/TTF",
              "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")
_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf", "I": "DejaVuSans-Oblique.ttf",
               "mono": "DejaVuSansMono.ttf"}
_LATIN1_REPLACE = {"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "•": "-",
                   "×": "x", "≈": "~", "≤": "<=", "≥": ">=", "™": "(TM)"}
HEADING_SIZE = {2: 14, 3: 12, 4: 11}


def find_unicode_fonts() -> dict[str, Path] | None:
    """DejaVu Sans (regular, bold, oblique) and Sans Mono if installed (Debian/Ubuntu: fonts-dejavu-core)."""
    for folder in _FONT_DIRS:
        paths = {style: Path(folder) / name for style, name in _FONT_FILES.items()}
        if all(path.exists() for path in paths.values()):
            return paths
    return None


def latin1_safe(text: str) -> str:
    """For PDF core fonts (no TTF found): typographic characters mapped, accents stripped where needed, any other
    non-Latin-1 character replaced by '?', so text is never silently dropped and never crashes fpdf."""
    out = []
    for char in str(text):
        char = _LATIN1_REPLACE.get(char, char)
        try:
            char.encode("latin-1")
            out.append(char)
        except UnicodeEncodeError:
            base = "".join(part for part in unicodedata.normalize("NFKD", char) if not unicodedata.combining(part))
            try:
                base.encode("latin-1")
                out.append(base or "?")
            except UnicodeEncodeError:
                out.append("?")
    return "".join(out)


def column_widths(table: Table) -> tuple:
    """Column widths proportional to content length (clamped), so prompts and file names get room."""
    widths = []
    for index, column in enumerate(table.columns):
        longest = max([len(str(column))] + [len(str(row[index])) for row in table.rows if index < len(row)])
        widths.append(min(max(longest, 7), 45))  # numbers such as -0.053 stay on one line
    return tuple(widths)


def break_long(text: str, limit: int = 30) -> str:
    """Insert spaces into very long unbroken runs (hashes, paths) so table cells can wrap."""
    return re.sub(r"(\S{%d})(?=\S)" % limit, r"\1 ", text)


class _PdfCard:
    """One PDF being written: fonts chosen once, one method per block type."""

    def __init__(self, card: Card):
        from fpdf import FPDF

        self.card = card
        fonts = find_unicode_fonts()
        self.pdf = pdf = FPDF(format="A4")
        pdf.set_title(card.title if fonts else latin1_safe(card.title))
        pdf.set_creator("tomcat-ti core.card")
        pdf.set_creation_date(_dt.datetime.fromisoformat(card.date + "T00:00:00+00:00"))
        pdf.set_auto_page_break(True, margin=15)
        self.text: Callable[[Any], str] = latin1_safe
        self.sans, self.mono = "Helvetica", "Courier"
        if fonts:
            for style in ("", "B", "I"):
                pdf.add_font("CardSans", style, str(fonts[style]))
            pdf.add_font("CardMono", "", str(fonts["mono"]))
            covered = set(pdf.fonts["cardsans"].cmap) & set(pdf.fonts["cardmono"].cmap)
            self.text = lambda value: "".join(char if ord(char) in covered or char in "\n\t" else "?"
                                              for char in str(value))
            self.sans, self.mono = "CardSans", "CardMono"
        pdf.add_page()

    def inline(self, parts: Iterable[Inline], size: float = 10, height: float = 5) -> None:
        pdf = self.pdf
        for part in parts:
            if isinstance(part, Link):
                pdf.set_font(self.sans, "", size)
                pdf.set_text_color(20, 60, 170)
                pdf.write(height, self.text(part.text), link=safe_url(part.url) or "")
                pdf.set_text_color(0, 0, 0)
            elif isinstance(part, Bold):
                pdf.set_font(self.sans, "B", size)
                pdf.write(height, self.text(part.text))
            elif isinstance(part, Mono):
                pdf.set_font(self.mono, "", size - 1)
                pdf.write(height, self.text(part.text))
            else:
                pdf.set_font(self.sans, "", size)
                pdf.write(height, self.text(part))
        pdf.ln(height)

    def heading(self) -> None:
        pdf, card = self.pdf, self.card
        if card.pipeline_check:
            pdf.set_fill_color(197, 48, 48)
            pdf.set_text_color(255, 255, 255)
            pdf.set_font(self.sans, "B", 11)
            pdf.multi_cell(pdf.epw, 6, self.text(PIPELINE_CHECK_LABEL), fill=True, new_x="LMARGIN", new_y="NEXT",
                           padding=2)
            pdf.set_text_color(0, 0, 0)
            pdf.ln(3)
        pdf.set_font(self.sans, "B", 18)
        pdf.multi_cell(pdf.epw, 9, self.text(card.title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(self.sans, "", 10)
        pdf.multi_cell(pdf.epw, 5, self.text(card.summary), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)

    def section_title(self, title: str, level: int) -> None:
        pdf, size = self.pdf, HEADING_SIZE.get(level, 11)
        if pdf.will_page_break(30):
            pdf.add_page()
        pdf.ln(2 if level > 2 else 4)
        pdf.set_font(self.sans, "B", size)
        pdf.multi_cell(pdf.epw, size * 0.55, self.text(title), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    def para(self, item: Para) -> None:
        self.inline(item.parts)
        self.pdf.ln(1)

    def bullets(self, item: Bullets) -> None:
        pdf, left = self.pdf, self.pdf.l_margin
        for entry in item.items:
            pdf.set_x(left)
            pdf.set_font(self.sans, "", 10)
            pdf.write(5, "- ")
            pdf.set_left_margin(left + 4)
            self.inline(entry)
            pdf.set_left_margin(left)
        pdf.ln(1)

    def callout(self, item: Callout) -> None:
        pdf = self.pdf
        pdf.set_fill_color(255, 248, 225) if item.level == "warning" else pdf.set_fill_color(235, 244, 255)
        label = "Warning: " if item.level == "warning" else "Note: "
        text = label + "".join(part if isinstance(part, str) else part.text for part in item.parts)
        pdf.set_font(self.sans, "", 9.5)
        pdf.multi_cell(pdf.epw, 5, self.text(text), fill=True, new_x="LMARGIN", new_y="NEXT", padding=1.5)
        pdf.ln(1.5)

    def table(self, item: Table) -> None:
        from fpdf.fonts import FontFace

        pdf, wide = self.pdf, len(item.columns) > 4
        pdf.set_font(self.sans, "", 7.5 if wide else 8.5)
        with pdf.table(text_align="LEFT", line_height=3.6 if wide else 4.2,
                       headings_style=FontFace(emphasis="BOLD", fill_color=(235, 235, 235)),
                       col_widths=column_widths(item), width=pdf.epw) as grid:
            for row in [item.columns] + item.rows:
                cells = grid.row()
                for value in row:
                    cells.cell(self.text(break_long(str(value))))
        pdf.ln(2)

    def code(self, item: CodeBlock) -> None:
        pdf = self.pdf
        pdf.set_font(self.mono, "", 7)
        pdf.set_fill_color(246, 248, 250)
        pdf.multi_cell(pdf.epw, 3.4, self.text(item.text), fill=True, new_x="LMARGIN", new_y="NEXT", padding=1.5)
        pdf.ln(2)

    def figure(self, item: Figure) -> None:
        from PIL import Image

        pdf, png = self.pdf, self.card.figures.get(item.name)
        if png:
            image = Image.open(io.BytesIO(png))
            width = min(pdf.epw, image.width * 0.26)  # ~96 dpi
            height = width * image.height / image.width
            if pdf.will_page_break(height + 8):
                pdf.add_page()
            pdf.image(image, w=width, h=height)
        pdf.set_font(self.sans, "I", 8.5)
        pdf.multi_cell(pdf.epw, 4.5, self.text(item.caption), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1)

    def write(self) -> bytes:
        writers = {Para: self.para, Bullets: self.bullets, Callout: self.callout, Table: self.table,
                   CodeBlock: self.code, Figure: self.figure}
        self.heading()
        for part in self.card.sections:
            self.section_title(part.title, part.level)
            for item in part.blocks:
                writers[type(item)](item)
        return bytes(self.pdf.output())


def render_pdf(card: Card) -> bytes:
    """The card as a PDF (same card, same bytes)."""
    return _PdfCard(card).write()
