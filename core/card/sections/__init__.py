"""The card's sections, one function per top-level section of the Hugging Face model-card template.

Each function takes the `CardFacts` and returns its Section and subsections (a list, in order). SECTIONS is the
order of the card; `build_sections` runs them all.
"""

from __future__ import annotations

from core.card.sections.closing import about_the_card, citation, ethics_checklist, warnings
from core.card.sections.evaluation import environmental_impact, evaluation, model_examination
from core.card.sections.identity import identity_measures
from core.card.sections.legal import licence, licence_text
from core.card.sections.overview import card_summary, model_details, uses
from core.card.sections.risks import bias_risks_limitations
from core.card.sections.usage import get_started, technical_specifications, training_details

SECTIONS = (
    model_details, uses, licence, bias_risks_limitations, get_started, training_details, evaluation,
    identity_measures, model_examination, environmental_impact, technical_specifications, ethics_checklist,
    citation, about_the_card, warnings, licence_text,
)

REQUIRED_SECTIONS = (
    "Model Details", "Uses", "Direct Use", "Downstream Use", "Out-of-Scope Use and Misuse",
    "License and Use Restrictions", "Bias, Risks, and Limitations", "How to Get Started with the Model",
    "Training Details", "Training Data", "Evaluation", "Testing Data, Factors & Metrics", "Results",
    "Environmental Impact", "Technical Specifications", "Compute Infrastructure", "Ethics Checklist", "Citation",
    "Full Text of the CreativeML Open RAIL-M Licence",
)


def build_sections(facts) -> list:
    return [part for make in SECTIONS for part in make(facts)]


__all__ = ["SECTIONS", "REQUIRED_SECTIONS", "build_sections", "card_summary"]
