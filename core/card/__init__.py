"""Model card: a Hugging Face model card for one run (Markdown, HTML, PDF, JSON), built from the run folder.

The card follows the Hugging Face model-card template (after Mitchell et al. 2019, "Model Cards for Model
Reporting"): model details, uses, out-of-scope use, bias/risks/limitations, how to get started, training
details, evaluation, environmental impact, technical specifications, citation. What is *measured* is read from
what earlier stages wrote (scores.json's summaries, the comparison folder, embeddings); what is *declared* comes
from the user's overrides (RUN/card.yaml: owner, intended use, ethics checklist); nothing is guessed.

The package, in the order data flows:

    facts.py        read_facts(run, ...) -> CardFacts: every fact, read once and validated (frozen dataclass)
      overrides.py    card.yaml, validated;   movement.py, examples.py, energy.py: measurements of the run
    sections/       one function per top-level section: facts -> [Section, subsections...]; SECTIONS is the order
    texts.py        the fixed texts (licence restrictions, base-model and KerasCV limits, citations, snippets)
    legal.py        the legal texts, each with its source (licence duties, copyright for character / style, misuse
                    limits, AI-Act disclosure, training-image and third-party licences); licenses/: the licence file
    basemodel.py    base_model_claim(weights): what may be said about the base model (nothing, for random weights)
    build.py        build_card(run, compare_run=None, overrides_path=None) -> Card (document.py: typed blocks)
    render_md.py, render_html.py (+ fragment() for the dashboard), render_pdf.py, render_json.py
    output.py       render(card_or_run, fmt) -> bytes; write_card(run, out_dir, formats) -> {fmt: path}
    cli.py          python -m core card RUN [--compare RUN_B] [--format md,html,pdf,json] [--out DIR]

Adding to the card:
  - a top-level section: write `def my_section(facts) -> list[Section]` (use `sections.common.section`) in a
    module under sections/, and put it in `sections.SECTIONS` where it belongs;
  - a sub-block of "Bias, Risks, and Limitations" (e.g. measured risks): write `def my_blocks(facts) -> list`
    in sections/risks.py and append it to `MEASURED_BLOCKS`, or add a subsection function to `SUBSECTIONS`;
  - a new fact: add a field to `CardFacts` and read it in `read_facts` (never in a section).
Renderers need no change unless a new block type is added (document.py).

Every string from the run is escaped by the renderer of each format. Outputs are deterministic for a given run
state (dates come from run.json, not the clock), so the CLI and the dashboard produce identical bytes. The Hub is
never contacted: huggingface_hub's `ModelCard` only assembles the Markdown.
"""

from __future__ import annotations

from core.card.build import build_card
from core.card.cli import add_arguments, run
from core.card.document import Card, Section
from core.card.energy import DEFAULT_CARBON_G_PER_KWH, DEFAULT_CPU_W, DEFAULT_GPU_W, DEFAULT_PUE
from core.card.facts import CardFacts, comparison_dir, find_comparison, read_facts
from core.card.legal import LICENSE_FILE_NAME, NOT_LEGAL_ADVICE, license_text
from core.card.output import FIGURE_NAMES, FILE_NAMES, FORMATS, MIME_TYPES, parse_formats, render, write_card
from core.card.overrides import (
    ETHICS_ITEMS,
    ETHICS_STATUSES,
    OVERRIDE_KEYS,
    OWNER_NOT_STATED,
    load_overrides,
    overrides_template,
    validate_overrides,
)
from core.card.render_html import fragment
from core.card.render_json import JSON_SCHEMA
from core.card.render_md import IMAGES_SUBDIR, md_escape
from core.card.render_pdf import find_unicode_fonts, latin1_safe
from core.card.sections import REQUIRED_SECTIONS
from core.card.texts import BASE_MODEL, BASE_MODEL_URL, LICENSE_ID, LICENSE_NAME, LICENSE_URL, LICENSE_USE_RESTRICTIONS

__all__ = [
    "BASE_MODEL", "BASE_MODEL_URL", "Card", "CardFacts", "DEFAULT_CARBON_G_PER_KWH", "DEFAULT_CPU_W",
    "DEFAULT_GPU_W", "DEFAULT_PUE", "ETHICS_ITEMS", "ETHICS_STATUSES", "FIGURE_NAMES", "FILE_NAMES", "FORMATS",
    "IMAGES_SUBDIR", "JSON_SCHEMA", "LICENSE_FILE_NAME", "LICENSE_ID", "LICENSE_NAME", "LICENSE_URL",
    "LICENSE_USE_RESTRICTIONS", "NOT_LEGAL_ADVICE", "license_text",
    "MIME_TYPES", "OVERRIDE_KEYS", "comparison_dir", "find_comparison", "OWNER_NOT_STATED", "REQUIRED_SECTIONS",
    "Section", "add_arguments",
    "build_card", "find_unicode_fonts", "fragment", "latin1_safe", "load_overrides", "md_escape",
    "overrides_template", "parse_formats", "read_facts", "render", "run", "validate_overrides", "write_card",
]
